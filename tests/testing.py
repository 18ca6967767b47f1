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
