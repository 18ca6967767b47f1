"""Shared test helpers: the layer conformance test and small data."""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae.data import photo_crops

# `vqvae train` flags for a model small enough for unit tests.
TINY_MODEL_FLAGS = [
    "--global-batch-size",
    "8",
    "--num-embeddings",
    "16",
    "--embedding-dim",
    "4",
    "--num-hiddens",
    "8",
    "--num-residual-hiddens",
    "4",
    "--num-residual-blocks",
    "1",
]

# Tiny options of every quantizer kind (`VQVAE(quantizer=kind,
# quantizer_options=...)`, with K=16, D=4 as in `TINY_MODEL_FLAGS`) and the
# `vqvae train` flags that give them.
TINY_QUANTIZER_OPTIONS = {
    "vq": {},
    "ema": {},
    "rvq": {"num_quantizers": 2},
    "fsq": {"levels": (4, 4)},
    "lfq": {},
}
TINY_QUANTIZER_FLAGS = {
    "vq": ["--quantizer", "vq"],
    "ema": ["--quantizer", "ema"],
    "rvq": ["--quantizer", "rvq", "--num-quantizers", "2"],
    "fsq": ["--quantizer", "fsq", "--levels", "4", "4"],
    "lfq": ["--quantizer", "lfq"],
}


def run_layer_test(
    layer_cls,
    init_kwargs: dict,
    input_data,
    expected_output_shape: tuple,
    expected_num_trainable_weights: int,
    expected_num_non_trainable_weights: int,
    call_kwargs: dict | None = None,
    run_training_check: bool = True,
):
    """Checks a layer the way Keras checks its own.

    Config round trip, `.keras` round trip (bit-identical outputs), weight
    counts, eager and symbolic calls, `compute_output_shape`, and one `fit`
    step of a model wrapping the layer.
    """
    call_kwargs = call_kwargs or {}
    input_data = tf.convert_to_tensor(input_data)

    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"get_config() misses constructor arg {key!r}"
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config

    output = layer(input_data, **call_kwargs)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert (
        len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    )
    assert tuple(layer.compute_output_shape(input_data.shape)) == tuple(
        expected_output_shape
    )

    symbolic_in = keras.Input(
        shape=input_data.shape[1:], batch_size=None, dtype=input_data.dtype
    )
    symbolic_layer = layer_cls(**init_kwargs)
    symbolic_out = symbolic_layer(symbolic_in, **call_kwargs)
    assert tuple(symbolic_out.shape)[1:] == tuple(expected_output_shape)[1:]

    model = keras.Model(symbolic_in, symbolic_out)
    reference = model(input_data, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        restored(input_data, training=False), reference
    )

    if run_training_check:
        model.compile(optimizer="sgd", loss="mse")
        target = np.zeros(tuple(reference.shape), dtype="float32")
        history = model.fit(
            input_data, target, batch_size=input_data.shape[0], verbose=0
        )
        assert np.isfinite(history.history["loss"][0])
    return layer


def photo_patches(
    size: int = 32, count: int = 512, seed: int = 0
) -> np.ndarray:
    """Real RGB photo crops (uint8) that need no network."""
    return photo_crops(size, count, seed)


def tflite_encode(layer, inputs: np.ndarray) -> np.ndarray:
    """`layer.encode` converted to TFLite with builtin ops only (a dynamic
    batch size), run on `inputs` by the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    archive = keras.export.ExportArchive()
    archive.track(layer)
    archive.add_endpoint(
        "encode",
        lambda x: {"codes": layer.encode(x)},
        input_signature=[tf.TensorSpec((None, *inputs.shape[1:]))],
    )
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            tmp, signature_keys=["encode"]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        content = converter.convert()
    runner = Interpreter(model_content=content).get_signature_runner("encode")
    (name,) = runner.get_input_details()
    return runner(**{name: inputs})["codes"]


def tflite_endpoints(layer, endpoints: dict, directory: str) -> dict:
    """Converts methods of `layer` to TFLite with builtin ops only.

    `endpoints` maps a name to `(method, input_spec)`; each is exported
    through `keras.export.ExportArchive` (as `tf_vqvae.export` does) and
    converted with `TFLITE_BUILTINS` only (conversion fails on any other op).
    Returns name -> a function running the converted endpoint in LiteRT on
    one input array.
    """
    from ai_edge_litert.interpreter import Interpreter

    archive = keras.export.ExportArchive()
    archive.track(layer)
    for name, (method, spec) in endpoints.items():
        archive.add_endpoint(name, method, [spec])
    path = os.path.join(directory, "saved_model")
    archive.write_out(path, verbose=False)
    runners = {}
    for name in endpoints:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            path, signature_keys=[name]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        interpreter = Interpreter(model_content=converter.convert())
        runners[name] = interpreter.get_signature_runner(name)

    def run(runner):
        def call(inputs):
            (input_name,) = runner.get_input_details()
            (output,) = runner(**{input_name: inputs}).values()
            return output

        return call

    return {name: run(runner) for name, runner in runners.items()}


def numpy_log_mel(x, sample_rate, frame_length, frame_step, fft_length,
                   num_mel_bins, lower, upper):  # fmt: skip
    """An independent float64 reference: framing, periodic Hann, rfft,
    HTK-mel triangles (DC bin excluded), log(. + 1e-6)."""
    num_frames = 1 + (len(x) - frame_length) // frame_step
    n = np.arange(frame_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / frame_length)
    frames = np.stack(
        [
            x[t * frame_step : t * frame_step + frame_length] * window
            for t in range(num_frames)
        ]
    )
    power = np.abs(np.fft.rfft(frames, n=fft_length)) ** 2

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bins = fft_length // 2 + 1
    bin_mels = mel(np.linspace(0.0, sample_rate / 2, bins))
    edges = np.linspace(mel(lower), mel(upper), num_mel_bins + 2)
    weights = np.zeros((bins, num_mel_bins))
    for m in range(num_mel_bins):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for b in range(1, bins):
            rising = (bin_mels[b] - left) / (centre - left)
            falling = (right - bin_mels[b]) / (right - centre)
            weights[b, m] = max(0.0, min(rising, falling))
    return np.log(power @ weights + 1e-6)
