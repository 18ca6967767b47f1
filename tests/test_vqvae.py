"""The VQVAE model: fit, encode/decode, saving, bad input, learning."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import TINY_QUANTIZER_OPTIONS, photo_patches
from tf_vqvae import VQVAE
from tf_vqvae.quantizers import VectorQuantizerEMA

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
# The other kinds, each checked once end to end in the model.
OTHER_QUANTIZERS = [q for q in TINY_QUANTIZER_OPTIONS if q not in QUANTIZERS]


def _tiny(quantizer, **kwargs):
    options = TINY_QUANTIZER_OPTIONS[quantizer]
    return VQVAE(
        quantizer=quantizer, quantizer_options=options, **TINY, **kwargs
    )


@pytest.fixture(scope="module")
def images():
    return photo_patches(size=16, count=32, seed=0)


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_fit_reports_every_loss_and_codebook_metric(quantizer, images):
    model = _tiny(quantizer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images, batch_size=8, epochs=2, verbose=0)
    # A kind may add metrics of its own (per-level usage, entropy terms).
    assert METRICS <= set(history.history)
    logs = model.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    assert METRICS <= set(logs)
    assert set(logs) == set(history.history)
    np.testing.assert_allclose(
        logs["loss"], logs["reconstruction_loss"] + logs["vq_loss"], rtol=1e-5
    )
    assert 1.0 <= logs["perplexity"] <= TINY["num_embeddings"]


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_decode_encode_equals_call(quantizer, images):
    model = _tiny(quantizer)
    codes = model.encode(images)
    levels = model.quantizer.num_levels
    expected = (32, 4, 4) + ((levels,) if levels > 1 else ())
    assert codes.dtype == tf.int32 and tuple(codes.shape) == expected
    assert model.num_embeddings == 16
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
    model = _tiny(quantizer, data_init="random", dead_code_restart_steps=3)
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


@pytest.mark.parametrize("quantizer", OTHER_QUANTIZERS)
def test_every_kind_fits_decodes_and_round_trips(quantizer, images, tmp_path):
    """The model with each quantizer kind: every loss and usage metric in
    History, `decode(encode(x)) == model(x)` and a bit-exact `.keras` round
    trip (training resumed from one: `test_keras_round_trip_is_bit_exact`
    and the CLI's resume tests)."""
    model = _tiny(quantizer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images[:16], batch_size=8, epochs=1, verbose=0)
    assert METRICS <= set(history.history)
    logs = history.history
    assert all(np.isfinite(v[-1]) for v in logs.values()), logs
    np.testing.assert_allclose(
        logs["loss"][-1],
        logs["reconstruction_loss"][-1] + logs["vq_loss"][-1],
        rtol=1e-5,
    )
    codes = model.encode(images)
    levels = model.quantizer.num_levels
    expected = (32, 4, 4) + ((levels,) if levels > 1 else ())
    assert codes.dtype == tf.int32 and tuple(codes.shape) == expected
    assert model.num_embeddings == 16
    assert 0 <= int(tf.reduce_min(codes)) and int(tf.reduce_max(codes)) < 16
    reconstructions = model(images, training=False)
    np.testing.assert_array_equal(model.decode(codes), reconstructions)
    if levels > 1:
        # A prefix of the levels decodes too (a lower bitrate).
        prefix = model.decode(codes[..., :1])
        assert prefix.shape == reconstructions.shape
    # A code out of range is refused (FSQ's and LFQ's arithmetic would
    # decode it silently; a codebook's gather fails in TensorFlow's words).
    for bad in (16, -1):
        wrong = tf.tensor_scatter_nd_update(
            codes, [[0] * codes.shape.rank], [bad]
        )
        message = (
            "`codes` must be in [0, num_embeddings=16). Received: codes "
            f"from {int(tf.reduce_min(wrong))} to {int(tf.reduce_max(wrong))}."
        )
        with pytest.raises(ValueError) as error:
            model.decode(wrong)
        assert str(error.value) == message
        with pytest.raises(tf.errors.InvalidArgumentError, match="`codes`"):
            tf.function(model.decode)(wrong)
    path = os.path.join(tmp_path, "vqvae.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == model.get_config()
    assert type(restored.quantizer) is type(model.quantizer)
    np.testing.assert_array_equal(restored.encode(images), codes)
    np.testing.assert_array_equal(
        restored(images, training=False), reconstructions
    )
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a, b, err_msg=a.path)


def test_quantizer_layer_instead_of_a_kind(images, tmp_path):
    """A quantizer layer is used as it is, saved in the config and restored
    bit-exactly; K and D are the layer's."""
    layer = VectorQuantizerEMA(12, 3, decay=0.9, name="quantizer")
    model = VQVAE(quantizer=layer, **{**TINY, "num_embeddings": 99})
    assert model.quantizer is layer
    assert (model.num_embeddings, model.embedding_dim) == (12, 3)
    assert model.quantizer_type is None and model.quantizer_options is None
    model(images[:2])
    path = os.path.join(tmp_path, "vqvae.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.quantizer) is VectorQuantizerEMA
    assert restored.quantizer.decay == 0.9
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(
        restored(images, training=False), model(images, training=False)
    )


def test_quantizer_options_are_saved_whole_and_checked():
    model = VQVAE(quantizer="fsq", quantizer_options={"levels": [4, 4]}, **TINY)
    assert model.get_config()["quantizer_options"] == {
        "levels": [4, 4],
        "fsq_data_init": True,
        "fsq_saturation_penalty": 0.0,
    }
    assert model.num_embeddings == 16
    cases = [
        (
            lambda: VQVAE(quantizer="fsq", quantizer_options={"decay": 0.9}),
            ValueError,
            "`quantizer_options` has 'decay', which quantizer 'fsq' does not "
            "take (its options: ['fsq_data_init', 'fsq_saturation_penalty', "
            "'levels']). Received: decay=0.9",
        ),
        (
            lambda: VQVAE(
                quantizer=VectorQuantizerEMA(8, 4),
                quantizer_options={"rotation_trick": True},
            ),
            ValueError,
            "`quantizer_options` go with a kind name; a quantizer layer takes "
            "its options itself. Received: quantizer_options="
            "{'rotation_trick': True}",
        ),
        (
            lambda: VQVAE(quantizer=keras.layers.Dense(4)),
            TypeError,
            "`quantizer` must be a kind name or a layer meeting "
            "tf_vqvae.contracts.Quantizer",
        ),
    ]
    for call, error_type, message in cases:
        with pytest.raises(error_type) as error:
            call()
        assert message in str(error.value)


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


@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_mixed_precision_trains_without_nans(images, compute):
    keras.mixed_precision.set_global_policy(f"mixed_{compute}")
    model = VQVAE(quantizer="ema", **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.quantizer.embeddings.dtype == "float32"
    assert model(images[:2]).dtype == tf.float32
    assert model.encoder.compute_dtype == compute
    assert model.decoder.compute_dtype == compute
    for variable in model.variables:
        assert variable.dtype in ("float32", "int64"), variable.path
    scaled = isinstance(
        model.optimizer, keras.mixed_precision.LossScaleOptimizer
    )
    assert scaled == (compute == "float16")


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
            "`quantizer` must be one of 'ema', 'vq', 'rvq', 'fsq', 'lfq' "
            "or a quantizer layer. "
            "Received: quantizer='gumbel' (of type str).",
        ),
        (
            lambda: VQVAE(**TINY)(np.zeros((1, 18, 16, 3), "float32")),
            ValueError,
            "`encoder` expects spatial sizes divisible by "
            "2**num_downsamples=4. Received: inputs.shape=(1, 18, 16, 3)",
        ),
        # The same once built (the encoder's own check ran at build only).
        (
            lambda: model.encode(np.zeros((1, 15, 16, 3), "float32")),
            ValueError,
            "`vqvae` needs spatial sizes that are multiples of "
            "downsampling_factor=4 (2**num_downsamples), e.g. "
            "(None, 32, 32, 3). Received: inputs.shape=(1, 15, 16, 3)",
        ),
        (
            lambda: model.encode(None),
            TypeError,
            "`images` must be a tensor or an array of numbers. "
            "Received: images=None.",
        ),
        (
            lambda: model.encode("photo.png"),
            TypeError,
            "`images` must be a tensor or an array of numbers. "
            "Received: images.dtype=string.",
        ),
        (
            lambda: model.decode(None),
            TypeError,
            "`codes` must be a tensor or an array of numbers. "
            "Received: codes=None.",
        ),
        (
            lambda: model.decode([[[1, 2]], [[3]]]),
            TypeError,
            "`codes` must be a tensor or an array of numbers. Received: "
            "codes=[[[1, 2]], [[3]]] (of type list): Can't convert "
            "non-rectangular Python sequence to Tensor.",
        ),
        (
            lambda: VQVAE(check_finite="no"),
            TypeError,
            "`check_finite` must be True or False. "
            "Received: check_finite='no' (of type str).",
        ),
    ]
    for call, error_type, message in cases:
        with pytest.raises(error_type) as error:
            call()
        assert message in str(error.value)


@pytest.mark.parametrize(
    "second, message",
    [
        ((16, 16, 1), "was built for inputs of rank 4 with 3 channels"),
        pytest.param(
            (16, 16),
            "was built for inputs of rank 4 with 3 channels",
            marks=pytest.mark.slow,
        ),
        ((12, 14, 3), "needs spatial sizes that are multiples of"),
    ],
)
def test_fit_on_a_new_shape_is_checked_at_run_time(images, second, message):
    """Keras retraces `fit` on a new input shape with `None` sizes (or an
    unknown rank), where the static checks cannot see the problem."""
    model = VQVAE(name="vqvae", **TINY)
    model.compile(optimizer="adam")
    model.fit(images[:8], batch_size=8, verbose=0)
    model.fit(np.zeros((8, 32, 32, 3), "float32"), batch_size=8, verbose=0)
    x = np.zeros((8, *second), "float32")
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.fit(x, batch_size=8, verbose=0)
    received = " ".join(str(n) for n in x.shape)
    assert f"`vqvae` {message}" in str(error.value)
    assert f"Received: inputs.shape=] [{received}]" in str(error.value)


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


@pytest.mark.parametrize(
    "quantizer", ["ema", pytest.param("vq", marks=pytest.mark.slow)]
)
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


def test_example_shape_is_recorded_saved_and_reloaded(images, tmp_path):
    model = VQVAE(**TINY)
    assert model.example_shape is None
    assert model.get_config()["example_shape"] is None
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    assert model.example_shape == (16, 16, 3)
    # Later calls on other sizes do not change the record.
    model.encode(images[:1, :8, :8])
    assert model.example_shape == (16, 16, 3)
    assert model.get_config()["example_shape"] == [16, 16, 3]
    path = os.path.join(tmp_path, "vqvae.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.example_shape == (16, 16, 3)
    assert restored.get_config() == model.get_config()


def test_keras_file_without_example_shape_still_loads(images, tmp_path):
    """A `.keras` file written before `example_shape` existed: the shape is
    taken from the build at load time."""
    model = VQVAE(**TINY)
    model(images[:2])
    path = os.path.join(tmp_path, "new.keras")
    model.save(path)
    old = os.path.join(tmp_path, "old.keras")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["config"].pop("example_shape") == [16, 16, 3]
                data = json.dumps(config).encode()
            out.writestr(item, data)
    restored = keras.saving.load_model(old)
    assert restored.example_shape == (16, 16, 3)
    np.testing.assert_array_equal(restored.encode(images), model.encode(images))


def test_declared_example_shape():
    model = VQVAE(example_shape=[8, 8, 1], **TINY)
    assert model.example_shape == (8, 8, 1)
    model(np.zeros((1, 16, 16, 1), "float32"))
    assert model.example_shape == (8, 8, 1)
    with pytest.raises(ValueError) as error:
        VQVAE(example_shape=(8, 8, 1), name="v", **TINY)(
            np.zeros((1, 8, 8, 3), "float32")
        )
    assert str(error.value) == (
        "`v` has example_shape=(8, 8, 1): inputs must have 1 channels. "
        "Received: inputs.shape=(1, 8, 8, 3)"
    )
    for bad in (
        (8, 8),
        (8, 8, 0),
        "8x8",
        (8.0, 8, 3),
        (True, 8, 3),
        (8, 8, None),
    ):
        with pytest.raises(ValueError) as error:
            VQVAE(example_shape=bad, **TINY)
        assert str(error.value) == (
            "`example_shape` must be None or 3 positive integers (*spatial, "
            "channels), e.g. (32, 32, 3) (a spatial size may be None). "
            f"Received: example_shape={bad!r} (of type {type(bad).__name__})."
        )


def test_example_shape_of_a_model_built_without_sizes(images):
    model = VQVAE(**TINY)
    model.build((None, None, None, 3))
    assert model.example_shape == (None, None, 3)
    assert model.get_config()["example_shape"] == [None, None, 3]
    model.encode(images[:1])
    assert model.example_shape == (16, 16, 3)


@pytest.mark.parametrize(
    "spatial_dims, num_downsamples, input_shape, expected",
    [
        (2, 2, (32, 32, 3), (8, 8)),
        (2, 3, (16, 24, 1), (2, 3)),
        (1, 2, (64, 1), (16,)),
        (3, 1, (4, 6, 8, 3), (2, 3, 4)),
    ],
    ids=["2d", "2d-3-downsamples", "1d", "3d"],
)
def test_code_shape_and_downsampling_factor(
    spatial_dims, num_downsamples, input_shape, expected
):
    model = VQVAE(
        spatial_dims=spatial_dims, num_downsamples=num_downsamples, **TINY
    )
    assert model.downsampling_factor == 2**num_downsamples
    assert model.code_shape(input_shape) == expected
    x = np.zeros((1, *input_shape), "float32")
    assert tuple(model.encode(x).shape) == (1, *expected)


def test_code_shape_rejects_bad_shapes():
    model = VQVAE(**TINY)
    for bad in ((18, 16, 3), (16, 16), (0, 16, 3), None, (16.0, 16, 3)):
        with pytest.raises(ValueError) as error:
            model.code_shape(bad)
        assert str(error.value) == (
            "`input_shape` must be (*spatial, channels) with 2 spatial sizes "
            "that are positive multiples of downsampling_factor=4. Received: "
            f"input_shape={bad!r} (of type {type(bad).__name__})."
        )


@pytest.mark.parametrize("likelihood", ["mse", "discretized_logistic"])
def test_decoder_outputs_are_the_likelihood_parameters(images, likelihood):
    model = VQVAE(likelihood=likelihood, **TINY)
    codes = model.encode(images[:3])
    outputs = model.decoder_outputs(codes)
    per_channel = {"mse": 1, "discretized_logistic": 2}[likelihood]
    assert outputs.dtype == tf.float32
    assert tuple(outputs.shape) == (3, 16, 16, 3 * per_channel)
    if likelihood == "mse":
        np.testing.assert_array_equal(model.decode(codes), outputs + 0.5)
    else:
        locations = np.clip(np.asarray(outputs)[..., :3] + 0.5, 0.0, 1.0)
        np.testing.assert_allclose(
            model.decode(codes), locations, rtol=0, atol=1e-6
        )


RANGE_MESSAGE = (
    "Images must be uint8 in [0, 255] or floating point in [0, 1]. "
    "Received: floating point images with values from"
)


def test_float_images_outside_unit_range_are_refused(images):
    model = VQVAE(**TINY)
    model(images[:2])
    as_255 = images[:4].astype("float32")
    shifted = as_255 / 255.0 - 0.5
    cases = [
        (model.encode, as_255, f"{as_255.min():g} to {as_255.max():g}"),
        (model, shifted, f"{shifted.min():g} to {shifted.max():g}"),
        (model.encode, np.full((1, 16, 16, 3), np.nan), "nan to nan"),
    ]
    for call, x, values in cases:
        with pytest.raises(ValueError) as error:
            call(x)
        # Keras adds its call context around errors from `call`.
        assert (
            f"{RANGE_MESSAGE} {values} (divide 8-bit images by 255, or pass "
            "them as uint8)."
        ) in str(error.value)
    # uint8, floats in [0, 1] (both ends) and an empty batch are accepted.
    model.encode(images[:2])
    model.encode(np.stack([np.zeros((16, 16, 3)), np.ones((16, 16, 3))]))
    model.encode(np.zeros((0, 16, 16, 3), "float32"))


def test_fit_and_graphs_refuse_float_images_outside_unit_range(images):
    model = VQVAE(**TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.fit(images.astype("float32"), batch_size=8, epochs=1, verbose=0)
    assert RANGE_MESSAGE in error.value.message
    encode = tf.function(
        model.encode, input_signature=[tf.TensorSpec([None, 16, 16, 3])]
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        encode(np.full((2, 16, 16, 3), 2.0, "float32"))
    assert RANGE_MESSAGE in error.value.message
    assert "[2]" in error.value.message
    # In range: the same codes as eagerly.
    x = images[:2].astype("float32") / 255.0
    np.testing.assert_array_equal(encode(x), model.encode(x))


def test_fsq_in_the_model_uses_its_codes_from_the_first_step(images):
    """The default encoder's outputs start far smaller than FSQ's rounding
    steps; without the data init every position gets one code (what the
    CIFAR-10 benchmark found), with it most of the grid is used at once."""
    used = {}
    for data_init in (False, True):
        keras.utils.set_random_seed(0)
        model = VQVAE(
            **{**TINY, "embedding_dim": 8},
            quantizer="fsq",
            quantizer_options={"levels": (4, 4, 4), "fsq_data_init": data_init},
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(images, batch_size=32, epochs=1, verbose=0)
        used[data_init] = np.unique(model.encode(images)).size
    assert used[False] <= 2
    assert used[True] >= 32  # of 64 codes, from 512 positions


def test_fsq_models_saved_before_the_data_init_load_without_it(
    images, tmp_path
):
    model = _tiny("fsq")
    model(images[:2])
    config = model.get_config()
    del config["quantizer_options"]["fsq_data_init"]
    del config["quantizer_options"]["fsq_saturation_penalty"]
    restored = VQVAE.from_config(config)
    assert restored.quantizer.data_init is False
    assert restored.quantizer.saturation_penalty == 0.0
    assert restored.quantizer_options["fsq_data_init"] is False
    assert restored.quantizer_options["fsq_saturation_penalty"] == 0.0
