"""The VQVAE model: fit, encode/decode, saving, bad input, learning."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import photo_patches
from tf_vqvae import VQVAE

TINY = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
)
METRICS = {
    "loss",
    "reconstruction_loss",
    "vq_loss",
    "perplexity",
    "codebook_usage",
    "epoch_perplexity",
    "epoch_codebook_usage",
    "dead_codes",
}
QUANTIZERS = ["vq", "ema"]


@pytest.fixture(scope="module")
def images():
    return photo_patches(size=16, count=32, seed=0)


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_fit_reports_every_loss_and_codebook_metric(quantizer, images):
    model = VQVAE(quantizer=quantizer, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images, batch_size=8, epochs=2, verbose=0)
    assert set(history.history) == METRICS
    logs = model.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    assert set(logs) == METRICS
    np.testing.assert_allclose(
        logs["loss"], logs["reconstruction_loss"] + logs["vq_loss"], rtol=1e-5
    )
    assert 1.0 <= logs["perplexity"] <= TINY["num_embeddings"]


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_decode_encode_equals_call(quantizer, images):
    model = VQVAE(quantizer=quantizer, **TINY)
    codes = model.encode(images)
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (32, 4, 4)
    np.testing.assert_array_equal(
        model.decode(codes), model(images, training=False)
    )


def test_uint8_and_unit_float_inputs_agree(images):
    model = VQVAE(**TINY)
    as_float = images.astype("float32") / 255.0
    np.testing.assert_array_equal(model.encode(images), model.encode(as_float))
    np.testing.assert_allclose(
        model(images, training=False), model(as_float, training=False)
    )


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_keras_round_trip_is_bit_exact(quantizer, images, tmp_path):
    model = VQVAE(
        quantizer=quantizer,
        data_init="random",
        dead_code_restart_steps=3,
        **TINY,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "vqvae.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, VQVAE)
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(restored.encode(images), model.encode(images))
    np.testing.assert_array_equal(
        restored(images, training=False), model(images, training=False)
    )
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a, b, err_msg=a.path)
    # Training resumes from the restored optimizer state.
    assert int(restored.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(a, b, err_msg=a.path)
    restored.fit(images, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "spatial_dims, shape, code_shape",
    [(1, (2, 32, 1), (2, 8)), (3, (1, 8, 8, 8, 3), (1, 2, 2, 2))],
    ids=["1d-audio", "3d-video"],
)
def test_other_spatial_ranks(spatial_dims, shape, code_shape):
    model = VQVAE(spatial_dims=spatial_dims, **TINY)
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    model.compile(optimizer="adam")
    model.fit(x, batch_size=shape[0], epochs=1, verbose=0)
    codes = model.encode(x)
    assert tuple(codes.shape) == code_shape
    assert tuple(model.decode(codes).shape) == shape


def test_unknown_batch_dimension_in_graph(images):
    """Sonnet's testNoneBatch: a graph with batch `None` (as exported)."""
    model = VQVAE(**TINY)
    model(images[:1])
    encode = tf.function(
        model.encode, input_signature=[tf.TensorSpec([None, 16, 16, 3])]
    )
    decode = tf.function(
        model.decode, input_signature=[tf.TensorSpec([None, 4, 4], tf.int32)]
    )
    x = images[:5].astype("float32") / 255.0
    codes = encode(x)
    np.testing.assert_array_equal(codes, model.encode(x))
    np.testing.assert_array_equal(decode(codes), model.decode(codes))


def test_mixed_precision_trains_without_nans(images):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = VQVAE(quantizer="ema", **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.quantizer.embeddings.dtype == "float32"
    assert model(images[:2]).dtype == tf.float32
    assert model.encoder.compute_dtype == "float16"


def test_bad_inputs_have_clear_messages(images):
    model = VQVAE(name="vqvae", **TINY)
    model(images[:1])
    cases = [
        (
            lambda: model(np.zeros((1, 16, 16, 1), "float32")),
            ValueError,
            "`vqvae` was built for inputs of rank 4 with 3 channels, e.g. "
            "(None, 32, 32, 3). Received: inputs.shape=(1, 16, 16, 1)",
        ),
        (
            lambda: model.encode(np.zeros((16, 16, 3), "float32")),
            ValueError,
            "`vqvae` was built for inputs of rank 4 with 3 channels, e.g. "
            "(None, 32, 32, 3). Received: inputs.shape=(16, 16, 3)",
        ),
        (
            lambda: model.decode(np.zeros((1, 4, 4), "float32")),
            TypeError,
            "`codes` must be an integer tensor. Received: codes.dtype=float32",
        ),
        (
            lambda: model.decode(np.zeros((4, 4), "int32")),
            ValueError,
            "`codes` must have shape (batch, ..., ...) (rank 3). "
            "Received: codes.shape=(4, 4)",
        ),
        (
            lambda: model(np.zeros((1, 16, 16, 3), "int32")),
            TypeError,
            "Images must be uint8 in [0, 255] or floating point in [0, 1]. "
            "Received: images.dtype=int32",
        ),
        (
            lambda: model.compile(optimizer="adam", loss="mse"),
            ValueError,
            "VQVAE adds its reconstruction and VQ losses itself; `compile` "
            "takes no `loss`. Received: loss='mse' (of type str).",
        ),
        (
            lambda: VQVAE(quantizer="gumbel"),
            ValueError,
            "`quantizer` must be 'ema' or 'vq'. "
            "Received: quantizer='gumbel' (of type str).",
        ),
        (
            lambda: VQVAE(**TINY)(np.zeros((1, 18, 16, 3), "float32")),
            ValueError,
            "`encoder` expects spatial sizes divisible by "
            "2**num_downsamples=4. Received: inputs.shape=(1, 18, 16, 3)",
        ),
    ]
    for call, error_type, message in cases:
        with pytest.raises(error_type) as error:
            call()
        assert message in str(error.value)


def test_check_finite_rejects_nan_pixels(images):
    model = VQVAE(check_finite=True, name="vqvae", **TINY)
    x = images[:2].astype("float32") / 255.0
    model(x)
    x[1, 3, 3, 0] = np.inf
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="`vqvae` received non-finite pixel values",
    ):
        model(x)


def test_decode_before_build_is_refused():
    with pytest.raises(ValueError) as error:
        VQVAE(**TINY).decode(np.zeros((1, 4, 4), "int32"))
    assert str(error.value) == (
        "The model must be built (called on images once, or loaded) before "
        "`decode`."
    )


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_learns_real_photos(quantizer):
    """A few hundred steps on real photo crops: reconstruction error falls
    well below the untrained model's and the codebook stays in use."""
    keras.utils.set_random_seed(0)
    train = photo_patches(size=16, count=2048, seed=0)
    test = photo_patches(size=16, count=256, seed=1)
    model = VQVAE(
        num_embeddings=64,
        embedding_dim=16,
        num_hiddens=32,
        num_residual_blocks=1,
        num_residual_hiddens=16,
        quantizer=quantizer,
        data_init="kmeans++",
        dead_code_restart_steps=20,
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    before = model.evaluate(test, batch_size=64, verbose=0, return_dict=True)
    model.fit(train, batch_size=32, epochs=5, verbose=0)  # 320 steps
    after = model.evaluate(test, batch_size=64, verbose=0, return_dict=True)
    assert after["reconstruction_loss"] < 0.3 * before["reconstruction_loss"]
    assert after["epoch_perplexity"] > 8.0
