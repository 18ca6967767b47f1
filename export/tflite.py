"""TFLite / LiteRT export: on-device decoder (codes -> image) and encoder.

`export_tflite(model, "tflite", representative_images=images)` writes

    tflite/decoder_float32.tflite   codes int32 (batch, h, w) -> images
                                    (for an L-level quantizer such as
                                    residual VQ, codes (batch, h, w, n):
                                    the first n <= L levels, n per call)
    tflite/decoder_float16.tflite   float16 weights, float32 compute/in/out
    tflite/decoder_int8.tflite      full-integer int8 ops; codes stay int32,
                                    images come out float32
    tflite/encoder_float32.tflite   images float32 (batch, H, W, C) -> codes
                                    (`model.encode` itself: the layer's
                                    row-chunked nearest-code search)
    tflite/prior_sampler_float32.tflite   (optional, see `sampler_fn`)
    tflite/MANIFEST.json

Audio models (`VQVAE(modality="audio")`, `S` samples, `n = S / 64` codes):

    tflite/decoder_<q>.tflite       codes int32 (batch, n) [, speaker int32
                                    (batch,)] -> waveforms float32
                                    (batch, S), each sample's expected
                                    value (`VQVAE.decode`)
    tflite/encoder_float32.tflite   waveforms float32 (batch, S) in [-1, 1]
                                    -> codes int32 (batch, n)

(`speaker` when the model is conditioned on speakers: decoding speech in
another voice on a device). The int8 decoder is calibrated on the codes of
real waveforms (`representative_images` takes them), with the speaker ids
cycling through the table.

Every file uses builtin ops only (`supported_ops=[TFLITE_BUILTINS]`, or
`TFLITE_BUILTINS_INT8` for int8): no Flex/Select TF ops and no resource
variables, so the plain LiteRT interpreter runs it. Each has one signature
(`decode`, `encode`, `sample`) with named inputs and outputs; batch is
dynamic (LiteRT resizes inputs on each call), and so is the decoder's level
axis: one file decodes every prefix of the levels (every bitrate), as
`model.decode(codes[..., :n])` does; n = 0 fails in `GATHER`, and levels
past L are not read.

The int8 decoder is calibrated with real codes: those the encoder gives for
`representative_images` (or `representative_codes` directly), never random
codes, whose activations would not match what the decoder sees in use.

No validation survives conversion: the converter strips `tf.debugging`
asserts, and LiteRT's `GATHER` fails with "gather index out of bounds" for a
code >= K but is not guaranteed to reject every bad code. Apps must check
`0 <= code < num_embeddings` themselves (see README, "Export and serving").
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae import options, precision
from tf_vqvae.arg_checks import describe
from tf_vqvae.contracts import prior_event_shape
from tf_vqvae.export import checks, common
from tf_vqvae.tensor_checks import as_tensor, check_range

QUANTIZATIONS = tuple(options.TFLITE_QUANTIZATIONS)
# Ops that would need the Flex delegate or mean state left in the graph.
_FORBIDDEN_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def encoder_fn(model: keras.Model) -> Callable:
    """images float32 in [0, 1] -> `{"codes": int32 (batch, h, w)}` (with a
    trailing level axis for a quantizer with levels).

    `model.encode` as it is: the quantizer's own row-chunked search, whose
    ops the converter maps to builtins (the `[rows, K]` scores of one chunk
    at a time, never `[N, K]`), so the codes are `model.encode`'s. Its
    range check is a `tf.debugging` assert, which the converter strips.
    """

    def encode(images):
        return {"codes": model.encode(images)}

    return encode


def decoder_fn(model: keras.Model) -> Callable:
    """codes int32 -> `{"images": float32 (batch, H, W, C)}` (`tf.gather`)."""

    def decode(codes):
        return {"images": model.decode(codes)}

    return decode


def audio_encoder_fn(model: keras.Model) -> Callable:
    """waveforms float32 `(batch, samples)` in [-1, 1] -> `{"codes": int32
    (batch, samples / downsampling_factor)}`, as `encoder_fn`."""

    def encode(waveforms):
        return {"codes": model.encode(waveforms[..., None])}

    return encode


def audio_decoder_fn(model: keras.Model) -> Callable:
    """codes int32 `(batch, n)` [and speaker ids int32 `(batch,)` for a
    model with speakers] -> `{"waveforms": float32 (batch, samples)}`."""
    if model.num_speakers is None:

        def decode(codes):
            return {"waveforms": model.decode(codes)[..., 0]}

        return decode

    def decode_as(codes, speaker):
        return {"waveforms": model.decode(codes, speaker=speaker)[..., 0]}

    return decode_as


def prior_sampler_fn(
    prior, batch_size: int = 1
) -> tuple[Callable, list[tf.TensorSpec]]:
    """The prior's Gumbel-max sampler with its uniform noise as an input.

    `noise` float32 `(batch_size, *event_shape, K)` uniform in [0, 1)
    (`(batch_size, H, W, K)` for a `PixelCNNPrior`, `(batch_size, H, W, L,
    K)` for one over L levels, `(batch_size, length, K)` for a
    `WaveNetPrior`; and, for a class-conditional prior, `labels` int32
    `(batch_size,)`) -> `{"codes": int32 (batch_size, *event_shape)}`:
    `prior.sample_codes(noise,
    labels)` traced as it is (graph ops only, static shapes for a static
    batch, so it converts to builtins), hence the same codes as in Python.
    TFLite has no builtin random categorical op, so the app draws the noise
    (`tf_vqvae.sampling.prior_noise` gives the noise of a seed).
    """
    noise = tf.TensorSpec(
        (batch_size, *prior_event_shape(prior), prior.num_embeddings),
        tf.float32,
        name="noise",
    )
    if prior.num_classes is None:

        def sample(noise):
            return {"codes": prior.sample_codes(noise)}

        return sample, [noise]

    def sample_conditional(noise, labels):
        return {"codes": prior.sample_codes(noise, labels)}

    labels = tf.TensorSpec((batch_size,), tf.int32, name="labels")
    return sample_conditional, [noise, labels]


def _convert(
    model: keras.Model,
    name: str,
    fn: Callable,
    input_signature: Sequence[tf.TensorSpec],
    quantization: str,
    representative: Callable | None = None,
    track: Sequence = (),
) -> bytes:
    """Exports `fn` through `ExportArchive` and converts it, builtins only."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for resource in track:
            archive.track(resource)
        archive.add_endpoint(
            name, tf.function(fn, input_signature=list(input_signature))
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            tmp, signature_keys=[name]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
        return converter.convert()


def op_names(model_path: str | os.PathLike) -> list[str]:
    """Sorted names of the ops in every subgraph of a `.tflite` file.

    Read from the flatbuffer with LiteRT's schema module: the ops inside
    WHILE and IF bodies count too.
    """
    from ai_edge_litert import schema_py_generated as schema

    with open(model_path, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
    names = {
        code: name
        for name, code in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    ops = set()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            opcode = model.operatorCodes[op.opcodeIndex]
            name = names[max(opcode.builtinCode, opcode.deprecatedBuiltinCode)]
            custom = (opcode.customCode or b"").decode()
            # Flex ops are custom ops named `Flex<TF op>`.
            ops.add(custom if custom.startswith("Flex") else name)
    return sorted(ops)


def _check_builtins(path: str) -> list[str]:
    ops = op_names(path)
    bad = [
        op
        for op in ops
        if op.startswith("Flex") or op == "CUSTOM" or op in _FORBIDDEN_OPS
    ]
    if bad:
        raise ValueError(
            f"{os.path.basename(path)} uses non-builtin or stateful ops "
            f"{bad}: LiteRT without the Flex delegate cannot run it."
        )
    return ops


def _describe_details(details: dict[str, dict]) -> dict:
    out = {}
    for key, detail in details.items():
        out[key] = {
            "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(d) for d in detail["shape_signature"]],
        }
    return dict(sorted(out.items()))


def file_signatures(model_path: str | os.PathLike) -> dict:
    """`{signature: {"inputs": ..., "outputs": ...}}` of one `.tflite` file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(model_path))
    contract = {}
    for key in sorted(interpreter.get_signature_list()):
        runner = interpreter.get_signature_runner(key)
        contract[key] = {
            "inputs": _describe_details(runner.get_input_details()),
            "outputs": _describe_details(runner.get_output_details()),
        }
    return contract


def signature_contract(export_dir: str | os.PathLike) -> dict:
    """`{file name: its signatures}` for every `.tflite` in `export_dir`."""
    export_dir = os.fspath(export_dir)
    return {
        name: file_signatures(os.path.join(export_dir, name))
        for name in sorted(os.listdir(export_dir))
        if name.endswith(".tflite")
    }


def representative_codes_from(model, images, batch_size: int = 8):
    """Real codes for int8 calibration: `model.encode` on real images."""
    images = np.asarray(images)
    codes = [
        np.asarray(model.encode(images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(codes).astype(np.int32)


def _checked_quantization(quantization) -> tuple[str, ...]:
    """`quantization` as a tuple of known names, in order, without repeats;
    one name is a tuple of one (`tuple("int8")` would be its letters)."""
    names = (quantization,) if isinstance(quantization, str) else quantization
    try:
        names = tuple(dict.fromkeys(names))
    except TypeError:  # not iterable, or unhashable entries
        names = ()
    if not names or any(q not in QUANTIZATIONS for q in names):
        raise ValueError(
            "`quantization` must be a non-empty subset of "
            f"{list(QUANTIZATIONS)}. Received: quantization={quantization!r}"
        )
    return names


def _received(name: str, tensor: tf.Tensor) -> str:
    return (
        f"Received: {name} of dtype {tensor.dtype.name} and shape "
        f"{tuple(tensor.shape)}."
    )


def _checked_calibration_inputs(
    images, shapes: common.ExportShapes
) -> tf.Tensor:
    """`representative_images` checked against what the exported encoder
    takes: a non-empty batch of its size, in the range `model.encode`
    accepts (a wrong size would fail in the TFLite calibrator)."""
    name = "representative_images"
    audio = shapes.modality == "audio"
    size = tuple(shapes.image_size)
    if audio:
        wanted = [size, (*size, 1)]
        expected = (
            f"`{name}` must be a non-empty batch of waveforms (n, {size[0]}) "
            f"of the export's image_size={size}, floating point in [-1, 1]"
        )
        bounds, hint = (-1.0, 1.0), " (divide 16-bit PCM by 32768)"
    else:
        wanted = [(*size, shapes.channels)]
        expected = (
            f"`{name}` must be a non-empty batch of images "
            f"(n, {', '.join(map(str, wanted[0]))}) of the export's "
            f"image_size={size}, uint8 in [0, 255] or floating point in "
            "[0, 1]"
        )
        bounds = (0.0, 1.0)
        hint = " (divide 8-bit images by 255, or pass them as uint8)"
    tensor = as_tensor(images, name)
    shape = tuple(tensor.shape)
    dtype_ok = tensor.dtype.is_floating or (
        not audio and tensor.dtype == tf.uint8
    )
    if not (dtype_ok and shape and shape[0] > 0 and shape[1:] in wanted):
        raise ValueError(f"{expected}. {_received(name, tensor)}")
    if tensor.dtype.is_floating:
        check_range(
            tensor, bounds, f"{expected}. Received: values from", hint, name
        )
    return tensor


def _checked_calibration_codes(
    codes, shapes: common.ExportShapes
) -> np.ndarray:
    """`representative_codes` checked against what the exported decoder
    takes (a bad code would fail in the TFLite calibrator's `GATHER`):
    int32 `(n, *code_size)`, with a level axis of 1 to `num_levels`."""
    name = "representative_codes"
    k = shapes.num_embeddings
    grid = shapes.decode_code_grid
    dims = checks._describe_dims(shapes.code_axes, grid)
    levels = ""
    if shapes.num_levels > 1:
        levels = f" with levels from 1 to {shapes.num_levels}"
    expected = (
        f"`{name}` must be a non-empty batch of integer codes in [0, {k}) "
        f"(num_embeddings={k}) of shape (n, {dims}){levels}, as the encoder "
        f"gives for the export's image_size={tuple(shapes.image_size)}"
    )
    tensor = as_tensor(codes, name)
    shape = tuple(tensor.shape)
    shape_ok = (
        len(shape) == len(grid) + 1
        and shape[0] > 0
        and all(
            low <= size <= high
            for size, (low, high) in zip(
                shape[1:],
                (d if isinstance(d, tuple) else (d, d) for d in grid),
                strict=True,
            )
        )
    )
    if not (tensor.dtype.is_integer and shape_ok):
        raise ValueError(f"{expected}. {_received(name, tensor)}")
    check_range(
        tensor, (0, k - 1), f"{expected}. Received: values from", "", name
    )
    return np.asarray(tensor, np.int32)


def export_tflite(
    model: keras.Model,
    out_dir: str | os.PathLike,
    image_size: tuple[int, ...] | int | str | None = common.AUTO,
    quantization: Sequence[str] | str = QUANTIZATIONS,
    representative_images=None,
    representative_codes=None,
    encoder: bool = True,
    prior=None,
    sampler_batch_size: int = 1,
    overwrite: bool = False,
) -> dict[str, str]:
    """Converts the decoder (and encoder) to builtins-only `.tflite` files.

    Args:
        model: a built `VQVAE` with `spatial_dims=2` or an audio `VQVAE`
            (any `tf_vqvae.contracts.CodeModel`; files of audio models in
            the module docstring).
        out_dir: directory for the files and `MANIFEST.json`; written under a
            temporary name and renamed into place.
        image_size: `(height, width)` of the images, `(samples,)` (or
            `samples`) of the waveforms (codes are `2**num_downsamples`
            times smaller). Default `"auto"`: the size the model was
            trained on (its `example_shape`).
        quantization: any of `"float32"`, `"float16"`, `"int8"` for the
            decoder (the encoder is always float32: int8 would change codes);
            one name alone is a tuple of one.
        representative_images: real images `(n, height, width, channels)`
            of `image_size` (uint8, or float in [0, 1]) whose codes
            calibrate int8; e.g. a few hundred training images. Real
            waveforms `(n, samples)` in [-1, 1] for audio.
            Required for `"int8"` (unless `representative_codes` are given).
        representative_codes: real int codes `(n, h, w)` (`(n, h, w,
            levels)` for a quantizer with levels) in `[0, num_embeddings)`,
            instead of images.
        encoder: also write `encoder_float32.tflite`.
        prior: optional `PixelCNNPrior` over the model's codes (any
            `tf_vqvae.contracts.CodePrior`): also write
            `prior_sampler_float32.tflite`, see `prior_sampler_fn`.
        sampler_batch_size: the sampler's static batch (samples per call).
        overwrite: replace an existing `out_dir`.

    Returns:
        `{file name: path}` of the written `.tflite` files.

    Raises:
        ValueError: for invalid arguments, missing calibration data or
            calibration data of another shape, dtype or range than the
            export takes (checked before any conversion), or a conversion
            that would need non-builtin ops.
        FileExistsError: if `out_dir` exists and `overwrite` is False.
    """
    common.check_model(model, audio=True)
    # TFLite has no bfloat16 convolutions: a model trained under a mixed
    # policy converts as its float32 copy (the same float32 weights).
    model = precision.float32_copy(model)
    if prior is not None:
        prior = precision.float32_copy(prior)
    shapes = common.export_shapes(model, image_size)
    audio = shapes.modality == "audio"
    if None in shapes.image_size:
        raise ValueError(
            "`image_size` is required for TFLite: "
            f"{'(samples,)' if audio else '(height, width)'}. "
            + (
                "Received: image_size=None"
                if image_size is None
                else f"The model's example_shape={model.example_shape} has "
                f"no size. Received: image_size={image_size!r}"
            )
        )
    quantization = _checked_quantization(quantization)
    int8 = "int8" in quantization
    if int8 and representative_codes is None and representative_images is None:
        raise ValueError(
            "int8 quantization needs real calibration data: pass "
            "`representative_images` (real images) or "
            "`representative_codes` (their codes from the encoder)."
        )
    if representative_codes is not None:
        representative_codes = _checked_calibration_codes(
            representative_codes, shapes
        )
    elif representative_images is not None:
        representative_images = _checked_calibration_inputs(
            representative_images, shapes
        )
    if isinstance(sampler_batch_size, bool) or not (
        isinstance(sampler_batch_size, int) and sampler_batch_size >= 1
    ):
        raise ValueError(
            "`sampler_batch_size` must be a positive integer. "
            f"{describe('sampler_batch_size', sampler_batch_size)}"
        )
    if prior is not None:
        common.check_prior(prior, shapes)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(
            f"{out_dir!r} already exists. Pass `overwrite=True` to replace it."
        )
    if int8 and representative_codes is None:
        if audio:
            representative_images = np.asarray(
                representative_images, np.float32
            ).reshape(-1, *shapes.image_size, 1)
        representative_codes = representative_codes_from(
            model, representative_images
        )

    def representative():
        for i, codes in enumerate(representative_codes):
            inputs = {"codes": codes[None]}
            if shapes.num_speakers is not None:
                speaker = i % shapes.num_speakers
                inputs["speaker"] = np.array([speaker], np.int32)
            yield inputs

    if audio:
        decode, encode = audio_decoder_fn(model), audio_encoder_fn(model)
        decode_specs = [shapes.codes_spec()]
        if shapes.num_speakers is not None:
            decode_specs.append(
                tf.TensorSpec((None,), tf.int32, name="speaker")
            )
        encode_specs = [shapes.waveform_spec()]
    else:
        decode, encode = decoder_fn(model), encoder_fn(model)
        decode_specs = [shapes.codes_spec()]
        encode_specs = [shapes.image_spec(tf.float32)]

    fields = common.metadata(
        model,
        shapes,
        quantization=list(quantization),
        calibration_codes=(
            None if representative_codes is None else len(representative_codes)
        ),
    )
    with common.staged_export(
        out_dir, "tflite", signature_contract, fields, overwrite=overwrite
    ) as tmp:
        files = {}
        for q in quantization:
            files[f"decoder_{q}.tflite"] = _convert(
                model,
                "decode",
                decode,
                decode_specs,
                q,
                representative if q == "int8" else None,
            )
        if encoder:
            files["encoder_float32.tflite"] = _convert(
                model, "encode", encode, encode_specs, "float32"
            )
        if prior is not None:
            sampler, signature = prior_sampler_fn(prior, sampler_batch_size)
            files["prior_sampler_float32.tflite"] = _convert(
                model, "sample", sampler, signature, "float32", track=[prior]
            )
        ops = {}
        for name, content in files.items():
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(content)
            ops[name] = _check_builtins(path)
        fields["ops"] = ops
    return {name: os.path.join(out_dir, name) for name in files}
