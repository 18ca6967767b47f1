"""SavedModel export for TF Serving: named signatures, in-graph validation.

`export_saved_model(model, "models", "vqvae", version=1)` writes

    models/vqvae/1/saved_model.pb
    models/vqvae/1/variables/...
    models/vqvae/1/assets.extra/tf_serving_warmup_requests  (with [serving])
    models/vqvae/1/MANIFEST.json

the layout TF Serving polls. The version directory is written under a hidden
temporary name in `models/vqvae/` and renamed into place, so a server never
sees half a version (TF Serving only loads directories named by an integer).

Signatures (batch is dimension 0 and dynamic; `H, W, C` the image size,
`h = H / 2**num_downsamples`, `w` likewise):

    serving_default  images float32 (batch, H, W, C) in [0, 1]
                     -> reconstructions float32 (batch, H, W, C),
                        codes int32 (batch, h, w) (with a trailing level
                        axis, (batch, h, w, L), for an L-level quantizer
                        such as residual VQ; so in every signature)
    serving_uint8    images uint8 (batch, H, W, C) in [0, 255] -> as above
    encode           images float32 (batch, H, W, C) -> codes int32
    encode_uint8     images uint8 (batch, H, W, C) -> codes int32
    decode           codes int32 (batch, h, w) -> images float32
                     (L levels: codes (batch, h, w, n) of the first n
                     levels, 1 <= n <= L, e.g. `codes[..., :n]` of
                     `encode`: a lower bitrate)
    sample           num int32 (), seed int32 () [, labels int32 (num,)]
                     -> codes int32 (num, h, w), images float32
                     (only when a prior is given)

Audio models (`VQVAE(modality="audio")`; `S` samples, `n = S / 64` codes
with the paper's encoder):

    serving_default  waveforms float32 (batch, S) in [-1, 1]
                     [, speaker int32 (batch,)]
                     -> reconstructions float32 (batch, S), codes int32
                        (batch, n)
    encode           waveforms float32 (batch, S) -> codes int32 (batch, n)
    decode           codes int32 (batch, n) [, speaker int32 (batch,)]
                     -> waveforms float32 (batch, S)
    sample           num, seed [, labels] [, speaker int32 (num,)]
                     -> codes int32 (num, n), waveforms float32 (num, S)
    convert          waveforms float32 (batch, S), speaker int32 (batch,)
                     -> waveforms float32 (batch, S): the speech said by
                        `speaker` (`VQVAE.convert_voice`; speakers only)

`speaker` is there when the model is conditioned on speakers
(`num_speakers`): decoding codes with another speaker's id converts the
voice, and `convert` does it in one call. Exported with `image_size=None`,
`convert` takes any length (padded to a multiple of 64 inside, cropped
back), the other signatures multiples of 64. Waveforms out are each
sample's expected value (`VQVAE.decode`).

Every signature validates its request in the graph (see `checks`): wrong
rank or size (a level count outside [1, L] included), codes outside [0, K)
(at any level), non-finite pixels or float pixels outside [0, 1] (samples
outside [-1, 1]), speaker ids outside [0, num_speakers), a batch above
`max_batch_size`, `num` outside
[1, max_batch_size] each raise `InvalidArgumentError` (HTTP 400 in TF
Serving) with a message naming it.

The SavedModel is built with `keras.export.ExportArchive`, which freezes Keras
3 variables correctly (a plain `tf.Module` + `tf.saved_model.save` converts
to TFLite files that return garbage without an error).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import keras
import tensorflow as tf

from tf_vqvae import sampling
from tf_vqvae.arg_checks import check_int, describe
from tf_vqvae.export import checks, common, manifest

WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ServingFunctions:
    """The validated tf.functions behind each signature.

    Shared by the SavedModel export (with checks) and usable on their own,
    e.g. `ServingFunctions(model, (32, 32)).encode(images)`. They call only
    the `CodeModel` and `CodePrior` contracts (`tf_vqvae.contracts`).

    Args:
        model: a built `VQVAE` (spatial_dims=2, or an audio model).
        image_size: `(height, width)` (`(samples,)` for audio); `"auto"`
            (default) for the model's
            `example_shape`; `None` for any size divisible by the
            downsampling factor (signature shapes then have `None` there).
        max_batch_size: largest accepted batch (and `num` for `sample`).
        prior: optional `CodePrior` (e.g. `PixelCNNPrior`); enables
            `sample`, which draws `prior.sample_codes` on the noise of
            `tf_vqvae.sampling.prior_noise`.
        sample_fn: optional `(num, seed) -> codes` function, used instead of
            `prior` (e.g. to export a sampler of your own).
        num_labels: if the prior is class-conditional, its number of classes
            (default `prior.num_classes`): `sample` then takes
            `labels int32 (num,)` and passes `labels=` to `sample_fn`.
    """

    def __init__(
        self,
        model: keras.Model,
        image_size=common.AUTO,
        max_batch_size: int = 64,
        prior=None,
        sample_fn: Callable | None = None,
        num_labels: int | None = None,
    ):
        common.check_model(model, audio=True)
        check_int("max_batch_size", max_batch_size)
        if num_labels is not None:
            check_int("num_labels", num_labels)
        self.model = model
        self.shapes = common.export_shapes(model, image_size)
        self.max_batch_size = max_batch_size
        self.prior = prior
        if prior is not None:
            common.check_prior(prior, self.shapes)
            if num_labels is None:
                num_labels = prior.num_classes
        if sample_fn is None and prior is not None:
            sample_fn = _prior_sample_fn(prior)
        self.sample_fn = sample_fn
        self.num_labels = num_labels

    # ------------------------------------------------------------ checks
    def checked_images(self, images: tf.Tensor) -> tf.Tensor:
        images, valid = checks.check_grid(
            images,
            "images",
            ("height", "width", "channels"),
            (*self.shapes.image_size, self.shapes.channels),
            self.shapes.downsampling_factor,
            self.max_batch_size,
        )
        if images.dtype.is_floating:
            images = checks.check_finite(images, "images", valid)
            images = checks.check_unit_range(images, "images", valid)
        return images

    def checked_codes(self, codes: tf.Tensor) -> tf.Tensor:
        codes, valid = checks.check_grid(
            codes,
            "codes",
            self.shapes.code_axes,
            self.shapes.decode_code_grid,
            1,
            self.max_batch_size,
        )
        return checks.check_codes(
            codes, self.shapes.num_embeddings, valid, self.shapes.num_levels
        )

    def checked_waveforms(self, waveforms: tf.Tensor, any_length=False):
        """`(waveforms, ok)` after the shape, finiteness and range checks;
        a dynamic length must be a multiple of the downsampling factor
        unless `any_length`."""
        waveforms, valid = checks.check_grid(
            waveforms,
            "waveforms",
            ("samples",),
            self.shapes.image_size,
            1 if any_length else self.shapes.downsampling_factor,
            self.max_batch_size,
        )
        waveforms = checks.check_finite(waveforms, "waveforms", valid)
        waveforms = checks.check_waveform_range(waveforms, "waveforms", valid)
        return waveforms, valid

    def checked_speaker(
        self, speaker: tf.Tensor, batch_of: tf.Tensor, valid=True
    ) -> tf.Tensor:
        """Speaker ids `(batch,)` of `batch_of`'s batch, each in
        `[0, num_speakers)`."""
        batch = tf.pad(tf.shape(batch_of), [[0, 1]])[0]
        return checks.check_labels(
            speaker,
            batch,
            self.shapes.num_speakers,
            valid,
            name="speaker",
            classes_name="num_speakers",
            count_name="batch",
        )

    # --------------------------------------------------------- functions
    def _decode(self, codes, speaker=None) -> tf.Tensor:
        if speaker is None:
            return self.model.decode(codes)
        return self.model.decode(codes, speaker=speaker)

    def reconstruct_waveforms(
        self, waveforms, speaker=None, validate: bool = True
    ) -> dict:
        if validate:
            waveforms, valid = self.checked_waveforms(waveforms)
            if speaker is not None:
                speaker = self.checked_speaker(speaker, waveforms, valid)
        codes = self.model.encode(waveforms[..., None])
        return {
            "reconstructions": self._decode(codes, speaker)[..., 0],
            "codes": codes,
        }

    def encode_waveforms(self, waveforms, validate: bool = True) -> dict:
        if validate:
            waveforms, _ = self.checked_waveforms(waveforms)
        return {"codes": self.model.encode(waveforms[..., None])}

    def decode_waveforms(
        self, codes, speaker=None, validate: bool = True
    ) -> dict:
        if validate:
            codes = self.checked_codes(codes)
            if speaker is not None:
                speaker = self.checked_speaker(speaker, codes)
        return {"waveforms": self._decode(codes, speaker)[..., 0]}

    def convert_waveforms(
        self, waveforms, speaker, validate: bool = True
    ) -> dict:
        if validate:
            waveforms, valid = self.checked_waveforms(waveforms, True)
            speaker = self.checked_speaker(speaker, waveforms, valid)
        return {"waveforms": self.model.convert_voice(waveforms, speaker)}

    def _images(self, images, validate: bool) -> tf.Tensor:
        if validate:
            images = self.checked_images(images)
        return images

    def reconstruct(self, images, validate: bool = True) -> dict:
        images = self._images(images, validate)
        codes = self.model.encode(images)
        return {"reconstructions": self.model.decode(codes), "codes": codes}

    def encode(self, images, validate: bool = True) -> dict:
        return {"codes": self.model.encode(self._images(images, validate))}

    def decode(self, codes, validate: bool = True) -> dict:
        if validate:
            codes = self.checked_codes(codes)
        return {"images": self.model.decode(codes)}

    def sample(
        self, num, seed, labels=None, speaker=None, validate: bool = True
    ) -> dict:
        if validate:
            num, num_ok = checks.check_scalar_range(
                num, "num", 1, self.max_batch_size
            )
            seed, _ = checks.check_scalar_range(seed, "seed", 0, 2**31 - 1)
            if labels is not None:
                labels = checks.check_labels(
                    labels, num, self.num_labels, num_ok
                )
            if speaker is not None:
                speaker = checks.check_labels(
                    speaker,
                    num,
                    self.shapes.num_speakers,
                    num_ok,
                    name="speaker",
                    classes_name="num_speakers",
                )
        kwargs = {} if labels is None else {"labels": labels}
        codes = tf.cast(self.sample_fn(num, seed, **kwargs), tf.int32)
        decoded = self._decode(codes, speaker)
        if self.shapes.modality == "audio":
            return {"codes": codes, "waveforms": decoded[..., 0]}
        return {"codes": codes, "images": decoded}

    # ---------------------------------------------------------- endpoints
    def _audio_endpoints(self) -> dict:
        waveforms = self.shapes.waveform_spec()
        codes = self.shapes.codes_spec()
        encode = tf.function(
            lambda waveforms: self.encode_waveforms(waveforms),
            input_signature=[waveforms],
        )
        if self.shapes.num_speakers is None:
            return {
                "serving_default": tf.function(
                    lambda waveforms: self.reconstruct_waveforms(waveforms),
                    input_signature=[waveforms],
                ),
                "encode": encode,
                "decode": tf.function(
                    lambda codes: self.decode_waveforms(codes),
                    input_signature=[codes],
                ),
            }
        speaker = tf.TensorSpec((None,), tf.int32, name="speaker")
        return {
            "serving_default": tf.function(
                lambda waveforms, speaker: self.reconstruct_waveforms(
                    waveforms, speaker
                ),
                input_signature=[waveforms, speaker],
            ),
            "encode": encode,
            "decode": tf.function(
                lambda codes, speaker: self.decode_waveforms(codes, speaker),
                input_signature=[codes, speaker],
            ),
            "convert": tf.function(
                lambda waveforms, speaker: self.convert_waveforms(
                    waveforms, speaker
                ),
                input_signature=[waveforms, speaker],
            ),
        }

    def _sample_endpoint(self) -> tf.types.experimental.PolymorphicFunction:
        specs = [
            tf.TensorSpec((), tf.int32, name="num"),
            tf.TensorSpec((), tf.int32, name="seed"),
        ]
        if self.num_labels is not None:
            specs.append(tf.TensorSpec((None,), tf.int32, name="labels"))
        if self.shapes.num_speakers is not None:
            specs.append(tf.TensorSpec((None,), tf.int32, name="speaker"))
        names = [spec.name for spec in specs]
        return tf.function(
            lambda *inputs: self.sample(**dict(zip(names, inputs))),
            input_signature=specs,
        )

    def endpoints(self) -> dict[str, tf.types.experimental.PolymorphicFunction]:
        """`{signature name: tf.function with an input signature}`."""
        if self.shapes.modality == "audio":
            fns = self._audio_endpoints()
            if self.sample_fn is not None:
                fns["sample"] = self._sample_endpoint()
            return fns
        float_images = self.shapes.image_spec(tf.float32)
        uint8_images = self.shapes.image_spec(tf.uint8)
        fns = {
            "serving_default": tf.function(
                lambda images: self.reconstruct(images),
                input_signature=[float_images],
            ),
            "serving_uint8": tf.function(
                lambda images: self.reconstruct(images),
                input_signature=[uint8_images],
            ),
            "encode": tf.function(
                lambda images: self.encode(images),
                input_signature=[float_images],
            ),
            "encode_uint8": tf.function(
                lambda images: self.encode(images),
                input_signature=[uint8_images],
            ),
            "decode": tf.function(
                lambda codes: self.decode(codes),
                input_signature=[self.shapes.codes_spec()],
            ),
        }
        if self.sample_fn is not None:
            num = tf.TensorSpec((), tf.int32, name="num")
            seed = tf.TensorSpec((), tf.int32, name="seed")
            if self.num_labels is None:
                fns["sample"] = tf.function(
                    lambda num, seed: self.sample(num, seed),
                    input_signature=[num, seed],
                )
            else:
                labels = tf.TensorSpec((None,), tf.int32, name="labels")
                fns["sample"] = tf.function(
                    lambda num, seed, labels: self.sample(num, seed, labels),
                    input_signature=[num, seed, labels],
                )
        return fns


def _prior_sample_fn(prior) -> Callable:
    """`(num, seed, labels=None) -> codes` for a `CodePrior`.

    `prior.sample_codes` on the noise `tf_vqvae.sampling.prior_noise(prior,
    num, seed)`, the noise `prior.distribution().sample(num, seed=seed)`
    draws: a seed gives the same codes in Python and in the SavedModel.
    """

    def sample(num, seed, labels=None):
        noise = sampling.prior_noise(prior, num, seed)
        return prior.sample_codes(noise, labels)

    return sample


def build_archive(functions: ServingFunctions) -> keras.export.ExportArchive:
    """An `ExportArchive` tracking the model (and prior) with every endpoint."""
    archive = keras.export.ExportArchive()
    archive.track(functions.model)
    if isinstance(functions.prior, keras.layers.Layer):
        archive.track(functions.prior)
    for name, fn in functions.endpoints().items():
        archive.add_endpoint(name, fn)
    return archive


def signature_contract(export_dir: str | os.PathLike) -> dict:
    """Names, dtypes and shapes of every signature, read from saved_model.pb.

    What `saved_model_cli show --all` prints for the `serve` tag set, as a
    dict: `{name: {"inputs": {input: {"dtype": "float32", "shape": [-1, 32,
    32, 3]}}, "outputs": {...}}}` (-1 for dynamic dimensions, `None` for an
    unknown rank). Reads the protocol buffer only; loads no TensorFlow graph.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(os.fspath(export_dir), "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    (meta_graph,) = [
        m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags
    ]

    def tensor_specs(tensors) -> dict:
        out = {}
        for key in sorted(tensors):
            info = tensors[key]
            shape = (
                None
                if info.tensor_shape.unknown_rank
                else [d.size for d in info.tensor_shape.dim]
            )
            out[key] = {
                "dtype": tf.dtypes.as_dtype(info.dtype).name,
                "shape": shape,
            }
        return out

    contract = {}
    for name in sorted(meta_graph.signature_def):
        if name.startswith("__"):
            continue
        signature = meta_graph.signature_def[name]
        contract[name] = {
            "inputs": tensor_specs(signature.inputs),
            "outputs": tensor_specs(signature.outputs),
        }
    return contract


def _warmup_inputs(functions: ServingFunctions) -> dict[str, dict]:
    """One small valid request per signature (batch 1)."""
    shapes = functions.shapes
    factor = shapes.downsampling_factor
    size = tuple(s or factor for s in shapes.image_size)
    levels = (shapes.num_levels,) if shapes.num_levels > 1 else ()
    code_size = (*(s // factor for s in size), *levels)
    images = (1, *size, shapes.channels)
    if shapes.modality == "audio":
        speaker = (
            {}
            if shapes.num_speakers is None
            else {"speaker": tf.zeros((1,), tf.int32)}
        )
        waveforms = {"waveforms": tf.zeros((1, *size), tf.float32)}
        requests = {
            "serving_default": {**waveforms, **speaker},
            "encode": waveforms,
            "decode": {
                "codes": tf.zeros((1, *code_size), tf.int32),
                **speaker,
            },
        }
        if speaker:
            requests["convert"] = {**waveforms, **speaker}
        if functions.sample_fn is not None:
            requests["sample"] = {
                "num": tf.constant(1, tf.int32),
                "seed": tf.constant(0, tf.int32),
                **speaker,
            }
            if functions.num_labels is not None:
                requests["sample"]["labels"] = tf.zeros((1,), tf.int32)
        return requests
    requests = {
        "serving_default": {"images": tf.zeros(images, tf.float32)},
        "serving_uint8": {"images": tf.zeros(images, tf.uint8)},
        "encode": {"images": tf.zeros(images, tf.float32)},
        "encode_uint8": {"images": tf.zeros(images, tf.uint8)},
        "decode": {"codes": tf.zeros((1, *code_size), tf.int32)},
    }
    if functions.sample_fn is not None:
        requests["sample"] = {
            "num": tf.constant(1, tf.int32),
            "seed": tf.constant(0, tf.int32),
        }
        if functions.num_labels is not None:
            requests["sample"]["labels"] = tf.zeros((1,), tf.int32)
    return requests


def write_warmup_requests(
    export_dir: str, functions: ServingFunctions, model_name: str
) -> str | None:
    """Writes `assets.extra/tf_serving_warmup_requests` for TF Serving.

    One `PredictionLog` per signature, so the first real request does not pay
    for graph initialisation. Needs `tensorflow-serving-api` (the `[serving]`
    extra); returns `None` without it.
    """
    try:
        from tensorflow_serving.apis import (
            model_pb2,
            predict_pb2,
            prediction_log_pb2,
        )
    except ImportError:
        return None
    path = os.path.join(export_dir, WARMUP_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for name, inputs in _warmup_inputs(functions).items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(
                    name=model_name, signature_name=name
                )
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def check_names(model_name: str, version: int) -> None:
    """Checks the `model_name` and `version` of `export_saved_model` (they
    become the directories `model_name/version`).

    Raises:
        ValueError: unless `model_name` is a non-empty name of letters,
            digits, `_`, `.` or `-` and `version` a positive integer.
    """
    if not isinstance(model_name, str) or not _NAME_PATTERN.match(model_name):
        raise ValueError(
            "`model_name` must be a non-empty name of letters, digits, '_', "
            "'.' or '-' (it becomes a directory). "
            f"{describe('model_name', model_name)}"
        )
    check_int("version", version)


def export_saved_model(
    model: keras.Model,
    out_dir: str | os.PathLike,
    model_name: str = "vqvae",
    version: int = 1,
    prior=None,
    overwrite: bool = False,
    max_batch_size: int = 64,
    image_size: tuple[int, int] | str | None = common.AUTO,
    sample_fn: Callable | None = None,
    num_labels: int | None = None,
    warmup: bool = True,
) -> str:
    """Exports `model` as `out_dir/model_name/version` for TF Serving.

    Args:
        model: a built `VQVAE` with `spatial_dims=2` or an audio `VQVAE`
            (any `tf_vqvae.contracts.CodeModel`; signatures of audio
            models in the module docstring).
        out_dir: the model base directory TF Serving is pointed at, minus
            the model name (`--model_base_path=out_dir/model_name`).
        model_name: directory name, and the name in warm-up requests.
        version: a positive integer; TF Serving serves the highest.
        prior: optional trained `PixelCNNPrior` (any
            `tf_vqvae.contracts.CodePrior`); adds the `sample` signature.
        overwrite: replace an existing version directory (atomically: the
            new version is complete before the old one is removed).
        max_batch_size: requests with a larger batch are rejected with
            `InvalidArgumentError`.
        image_size: `(height, width)` accepted by the signatures
            (`(samples,)` for audio). Default
            `"auto"`: the size the model was trained on (its
            `example_shape`); `None` accepts any size divisible by
            `2**num_downsamples`.
        sample_fn: `(num, seed) -> codes`, instead of `prior`.
        num_labels: classes of a class-conditional prior (adds `labels`).
        warmup: write TF Serving warm-up requests when `tensorflow-serving-api`
            is installed.

    Returns:
        The version directory.

    Raises:
        FileExistsError: if the version exists and `overwrite` is False.
        ValueError, TypeError: for invalid arguments.
    """
    check_names(model_name, version)
    functions = ServingFunctions(
        model,
        image_size=image_size,
        max_batch_size=max_batch_size,
        prior=prior,
        sample_fn=sample_fn,
        num_labels=num_labels,
    )
    final = os.path.join(os.fspath(out_dir), model_name, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(
            f"Version directory {final!r} already exists. Pass a new "
            "`version`, or `overwrite=True` to replace it."
        )
    fields = {
        "model_name": model_name,
        "version": version,
        "max_batch_size": functions.max_batch_size,
        "has_prior": functions.sample_fn is not None,
        "num_labels": functions.num_labels,
    }
    # Staged beside the version directory under a hidden, non-integer name
    # (TF Serving loads integer names only) and renamed into place.
    with common.staged_export(
        final,
        "saved_model",
        signature_contract,
        common.metadata(model, functions.shapes, **fields),
        overwrite=overwrite,
    ) as tmp:
        build_archive(functions).write_out(tmp, verbose=False)
        if warmup:
            write_warmup_requests(tmp, functions, model_name)
    return final


def load_unverified(export_dir: str | os.PathLike):
    """`tf.saved_model.load` without checking the manifest."""
    return tf.saved_model.load(os.fspath(export_dir))


def load(export_dir: str | os.PathLike):
    """Loads an exported version after `manifest.verify` passed.

    Refuses a tampered, truncated or incomplete export with
    `manifest.VerificationError` naming the file.
    """
    manifest.verify_files(export_dir)
    return load_unverified(export_dir)
