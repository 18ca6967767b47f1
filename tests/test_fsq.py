"""FiniteScalarQuantizer against a numpy transcription of the paper's
reference code."""

import itertools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import mirrored_strategy
from tests.testing import run_layer_test, tflite_endpoints
from tf_vqvae import FiniteScalarQuantizer
from tf_vqvae.contracts import Quantizer

LEVELS = (8, 5, 5, 5)


def _inputs(shape, seed=1, scale=1.5):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=shape)).astype("float32")


def _reference_bound(z, levels, eps=1e-3):
    """The reference code's `bound`, in float64."""
    levels = np.asarray(levels, np.float64)
    half_l = (levels - 1) * (1 - eps) / 2
    offset = np.where(levels % 2 == 0, 0.5, 0.0)
    shift = np.tan(offset / half_l)
    return np.tanh(z.astype(np.float64) + shift) * half_l - offset


def _reference_codes(z, levels):
    """(z_q normalised to [-1, 1], mixed-radix index) of the reference."""
    levels = np.asarray(levels)
    half_width = levels // 2
    rounded = np.round(_reference_bound(z, levels))
    basis = np.concatenate([[1], np.cumprod(levels[:-1])])
    index = ((rounded + half_width) * basis).sum(-1).astype(np.int64)
    return rounded.astype("float32") / half_width.astype("float32"), index


def _grid(levels):
    """All K codes as normalised values, in index order (channel 0 the
    fastest-changing digit)."""
    axes = [
        (np.arange(n, dtype="float32") - n // 2) / np.float32(n // 2)
        for n in levels
    ]
    return np.array([c[::-1] for c in itertools.product(*axes[::-1])])


@pytest.mark.parametrize(
    "embedding_dim, data_init, trainable, non_trainable",
    [(None, False, 0, 0), (None, True, 2, 1), (6, True, 6, 1)],
    ids=["no-projection", "data-init", "projections-data-init"],
)
def test_layer_conformance(embedding_dim, data_init, trainable, non_trainable):
    dim = embedding_dim or len(LEVELS)
    run_layer_test(
        FiniteScalarQuantizer,
        init_kwargs={
            "levels": LEVELS,
            "embedding_dim": embedding_dim,
            "data_init": data_init,
        },
        input_data=_inputs((2, 3, 3, dim)),
        expected_output_shape=(2, 3, 3, dim),
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=non_trainable,
    )


def test_implements_the_quantizer_contract():
    layer = FiniteScalarQuantizer(LEVELS, embedding_dim=6)
    assert isinstance(layer, Quantizer)
    assert (layer.num_embeddings, layer.embedding_dim) == (1000, 6)
    assert (layer.num_levels, layer.codebook_dim) == (1, 4)
    z = _inputs((2, 5, 6))
    codes = layer.encode(z)
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (2, 5)
    np.testing.assert_array_equal(layer.lookup(codes), layer(z, training=False))
    # The codebook as the rounding sees it: before the output projection.
    codebook = layer.codebook()
    assert codebook.dtype == tf.float32 and tuple(codebook.shape) == (1000, 4)
    np.testing.assert_array_equal(
        layer.project_out(tf.gather(codebook, codes)), layer.lookup(codes)
    )


@pytest.mark.parametrize(
    "levels", [LEVELS, (2, 3, 4), (7, 5, 5, 5, 5)], ids=str
)
def test_index_code_index_is_the_identity_over_all_codes(levels):
    layer = FiniteScalarQuantizer(levels)
    k = int(np.prod(levels))
    index = np.arange(k)
    grid = _grid(levels)
    values = layer.lookup(index).numpy()
    np.testing.assert_array_equal(values, grid)
    np.testing.assert_array_equal(layer.codebook(), grid)
    assert len({tuple(row) for row in values}) == k
    assert values.min() == -1.0 and values.max() <= 1.0
    # A pre-image inside each code's rounding interval encodes to its index.
    levels = np.asarray(levels)
    half_l = (levels - 1) * (1 - 1e-3) / 2
    offset = np.where(levels % 2 == 0, 0.5, 0.0)
    # The rounded values, pulled inside the bound's open range.
    target = np.clip(
        grid * (levels // 2), -half_l - offset + 1e-4, half_l - offset - 1e-4
    )
    z = np.arctanh((target + offset) / half_l) - np.tan(offset / half_l)
    z = z.astype("float32")
    np.testing.assert_array_equal(layer.encode(z), index)
    np.testing.assert_array_equal(layer(z), grid)


@pytest.mark.parametrize(
    "shape", [(40, 4), (3, 5, 4), (2, 3, 2, 4, 4)], ids=["1d", "2d", "3d"]
)
def test_forward_equals_numpy_bound_and_round(shape):
    layer = FiniteScalarQuantizer(
        LEVELS, data_init=False, saturation_penalty=0.0
    )
    z = _inputs(shape)
    bounded = _reference_bound(z, LEVELS)
    # No value within 1e-4 of a rounding boundary (float32 vs float64).
    assert np.abs(np.abs(bounded % 1.0) - 0.5).min() > 1e-4
    np.testing.assert_allclose(layer.bound(z), bounded, atol=2e-6)
    z_q, index = _reference_codes(z, LEVELS)
    np.testing.assert_array_equal(layer(z, training=True), z_q)
    np.testing.assert_array_equal(layer.encode(z), index)
    assert layer.losses == []


def test_gradient_is_straight_through_the_rounding():
    layer = FiniteScalarQuantizer(
        LEVELS, data_init=False, saturation_penalty=0.0
    )
    z = tf.constant(_inputs((6, 4)))
    weights = _inputs((6, 4), seed=2)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(layer(z, training=True) * weights)
    levels = np.asarray(LEVELS, np.float64)
    half_l = (levels - 1) * (1 - 1e-3) / 2
    shift = np.tan(np.where(levels % 2 == 0, 0.5, 0.0) / half_l)
    d_bound = (1 - np.tanh(z.numpy() + shift) ** 2) * half_l
    expected = weights * d_bound / (levels // 2)
    np.testing.assert_allclose(tape.gradient(loss, z), expected, rtol=1e-5)


def test_projections_learn_straight_through_the_rounding():
    """With a linear loss, every gradient but `project_out`'s kernel is that
    of the same network without `round`; that kernel's is `z_q^T w`."""
    layer = FiniteScalarQuantizer(
        LEVELS,
        embedding_dim=6,
        data_init=False,
        saturation_penalty=0.0,
        seed=3,
        name="fsq",
    )
    z = tf.constant(_inputs((10, 6)))
    layer.build(z.shape)
    weights = _inputs((10, 6), seed=2)
    half_width = tf.constant(np.asarray(LEVELS) // 2, "float32")

    def unrounded(z):
        return layer.project_out(layer.bound(layer.project_in(z)) / half_width)

    grads = []
    for fn in (lambda z: layer(z, training=True), unrounded):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(z) * weights)
        grads.append(tape.gradient(loss, layer.trainable_weights))
    by_path = {w.path: i for i, w in enumerate(layer.trainable_weights)}
    out_kernel = by_path.pop("fsq/project_out/kernel")
    for i in by_path.values():
        np.testing.assert_allclose(grads[0][i], grads[1][i], rtol=1e-6)
    z_q = _reference_codes(
        z.numpy() @ layer.project_in.kernel.numpy()
        + layer.project_in.bias.numpy(),
        LEVELS,
    )[0]
    np.testing.assert_allclose(
        grads[0][out_kernel], z_q.T @ weights, rtol=1e-5, atol=1e-5
    )


def test_data_init_standardises_each_channel_at_the_first_training_batch():
    """Scale and shift against numpy's mean and std; later batches and
    inference calls leave them alone; the forward, codes and gradients are
    the reference's on the standardised inputs."""
    layer = FiniteScalarQuantizer(LEVELS, saturation_penalty=0.0)
    # Small, off-centre inputs: without the data init, one code.
    z = _inputs((6, 50, 4), seed=3, scale=0.02) + np.float32(0.01)
    layer(z, training=False)
    assert int(layer.initialized.numpy()) == 0
    assert np.unique(layer.encode(z)).size == 1
    layer(np.zeros((0, 50, 4), "float32"), training=True)
    assert int(layer.initialized.numpy()) == 0

    weights = _inputs((6, 50, 4), seed=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(z, training=True) * weights)
    grads = tape.gradient(loss, [layer.input_scale, layer.input_shift])
    flat = z.reshape(-1, 4).astype(np.float64)
    scale = 1 / np.sqrt(flat.var(0) + 1e-6)
    shift = -flat.mean(0) * scale
    np.testing.assert_allclose(layer.input_scale, scale, rtol=1e-4)
    np.testing.assert_allclose(layer.input_shift, shift, rtol=1e-4, atol=1e-6)
    standard = z * scale.astype("float32") + shift.astype("float32")
    z_q, index = _reference_codes(standard, LEVELS)
    np.testing.assert_array_equal(layer.encode(z), index)
    np.testing.assert_allclose(layer(z), z_q, atol=1e-6)
    # At least 90% of the 5**3 x 8 grid's cells near the centre are used.
    assert np.unique(index).size > 150
    # d loss / d scale_c = sum over positions of w * bound'(z s + b) z / hw.
    levels = np.asarray(LEVELS, np.float64)
    half_l = (levels - 1) * (1 - 1e-3) / 2
    offset_shift = np.tan(np.where(levels % 2 == 0, 0.5, 0.0) / half_l)
    d_bound = (1 - np.tanh(standard + offset_shift) ** 2) * half_l
    upstream = (weights * d_bound / (levels // 2)).reshape(-1, 4)
    np.testing.assert_allclose(
        grads[0], (upstream * flat).sum(0), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(grads[1], upstream.sum(0), rtol=1e-4, atol=1e-4)

    before = [w.numpy() for w in layer.weights]
    layer(_inputs((6, 50, 4), seed=9, scale=5.0), training=True)
    for w, value in zip(layer.weights, before):
        np.testing.assert_array_equal(w, value)


def test_data_init_folded_into_the_projection_against_numpy():
    """With projections, the data init's affine acts on the projected
    inputs, `u = (x W + b) s + t`, though the layer folds it into the
    kernel and bias: statistics, codes, forward and the gradient of every
    trainable weight against numpy in float64."""
    layer = FiniteScalarQuantizer(
        LEVELS, embedding_dim=6, saturation_penalty=0.0, seed=3, name="fsq"
    )
    x = _inputs((4, 30, 6), seed=3, scale=0.3) + np.float32(0.2)
    layer(x, training=True)
    as64 = lambda w: w.numpy().astype(np.float64)  # noqa: E731
    kernel, bias = as64(layer.project_in.kernel), as64(layer.project_in.bias)
    flat = x.reshape(-1, 6).astype(np.float64)
    projected = flat @ kernel + bias
    scale = 1 / np.sqrt(projected.var(0) + 1e-6)
    shift = -projected.mean(0) * scale
    np.testing.assert_allclose(layer.input_scale, scale, rtol=1e-4)
    np.testing.assert_allclose(layer.input_shift, shift, rtol=1e-4, atol=1e-5)

    standard = projected * as64(layer.input_scale) + as64(layer.input_shift)
    z_q, index = _reference_codes(standard, LEVELS)
    # Away from rounding boundaries, where float32 and float64 agree.
    bounded = _reference_bound(standard, LEVELS)
    clear = (np.abs(bounded - np.round(bounded)) < 0.499).all(-1)
    assert clear.mean() > 0.9
    codes = layer.encode(x).numpy().reshape(-1)
    np.testing.assert_array_equal(codes[clear], index[clear])
    out_kernel = as64(layer.project_out.kernel)
    out_bias = as64(layer.project_out.bias)
    expected = z_q.astype(np.float64) @ out_kernel + out_bias
    output = layer(x).numpy().reshape(-1, 6)
    np.testing.assert_allclose(output[clear], expected[clear], atol=1e-5)

    weights = _inputs((4, 30, 6), seed=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * weights)
    variables = [
        layer.project_in.kernel,
        layer.project_in.bias,
        layer.input_scale,
        layer.input_shift,
    ]
    grads = tape.gradient(loss, variables)
    levels = np.asarray(LEVELS, np.float64)
    half_l = (levels - 1) * (1 - 1e-3) / 2
    offset_shift = np.tan(np.where(levels % 2 == 0, 0.5, 0.0) / half_l)
    d_bound = (1 - np.tanh(standard + offset_shift) ** 2) * half_l
    upstream = weights.reshape(-1, 6) @ out_kernel.T * d_bound / (levels // 2)
    s = as64(layer.input_scale)
    for grad, reference in zip(
        grads,
        (
            flat.T @ (upstream * s),
            (upstream * s).sum(0),
            (upstream * projected).sum(0),
            upstream.sum(0),
        ),
    ):
        np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-4)


def test_saturation_penalty_and_its_gradient_against_numpy():
    """`w mean(relu(|u| - 2)^2)` on the tanh arguments `u`, added in every
    call; its gradient adds to the straight-through one."""
    w = 0.3
    layer = FiniteScalarQuantizer(LEVELS, data_init=False, saturation_penalty=w)
    z = tf.constant(_inputs((5, 7, 4), seed=4, scale=2.5))
    weights = _inputs((5, 7, 4), seed=5)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = layer(z, training=True)
        (penalty,) = layer.losses
        loss = tf.reduce_sum(out * weights) + penalty
    levels = np.asarray(LEVELS, np.float64)
    half_l = (levels - 1) * (1 - 1e-3) / 2
    u = z.numpy().astype(np.float64) + np.tan(
        np.where(levels % 2 == 0, 0.5, 0.0) / half_l
    )
    excess = np.maximum(np.abs(u) - 2.0, 0.0)
    assert 0.05 < (excess > 0).mean() < 0.8
    np.testing.assert_allclose(penalty, w * np.mean(excess**2), rtol=1e-5)
    expected = (
        weights * (1 - np.tanh(u) ** 2) * half_l / (levels // 2)
        + w * 2 * excess * np.sign(u) / u.size
    )
    # The two terms nearly cancel in places: float32 leaves ~1e-7 there.
    np.testing.assert_allclose(
        tape.gradient(loss, z), expected, rtol=1e-5, atol=2e-6
    )
    # Inside [-2, 2] the loss is zero, and 0 turns it off.
    layer(np.clip(z.numpy(), -1.8, 1.8), training=True)
    assert float(layer.losses[0]) == 0.0
    off = FiniteScalarQuantizer(LEVELS, data_init=False, saturation_penalty=0)
    off(z, training=True)
    assert off.losses == []


def test_saturation_penalty_keeps_channels_out_of_the_tails():
    """A decoder target beyond the outermost level pulls every vector of a
    channel outwards: without the penalty Adam drives the tanh's argument
    into the flat tail; with it, the arguments stay near the threshold."""
    target = np.full((256, 4), 1.5, "float32")  # beyond the +1 level
    final = {}
    for penalty in (0.0, 1.0):
        layer = FiniteScalarQuantizer(
            LEVELS, data_init=False, saturation_penalty=penalty
        )
        z = tf.Variable(_inputs((256, 4), seed=6, scale=0.5))
        opt = keras.optimizers.Adam(0.05)
        for _ in range(300):
            with tf.GradientTape() as tape:
                out = layer(z, training=True)
                loss = tf.reduce_mean(tf.square(out - target)) + tf.add_n(
                    [tf.constant(0.0)] + layer.losses
                )
            opt.apply_gradients([(tape.gradient(loss, z), z)])
        final[penalty] = np.abs(z.numpy()).max()
    assert final[0.0] > 3.5  # tanh' < 0.004: the channel is stuck there
    assert final[1.0] < 2.5


def test_usage_metric_counts_the_codes():
    layer = FiniteScalarQuantizer((3, 4))
    z = _inputs((200, 2))
    layer(z)
    counts = np.bincount(_reference_codes(z, (3, 4))[1], minlength=12)
    np.testing.assert_array_equal(layer.usage.counts, counts)
    result = layer.usage.result()
    assert float(result["dead_codes"]) == float((counts == 0).sum())


def test_codebook_is_none_above_65536_codes():
    assert FiniteScalarQuantizer((8,) * 6).codebook() is None
    assert FiniteScalarQuantizer((8, 8, 8, 8, 4, 4)).codebook() is not None


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_arithmetic(policy):
    """Projections (float32 weights) and the data init under a mixed
    policy: the float32 layer's codes, and `lookup(encode(z)) == call(z)`
    (2048 values: a weight autocast to 8 or 11 bits would move many of
    them across a rounding boundary)."""
    z = _inputs((8, 64, 6))
    keras.mixed_precision.set_global_policy(policy)
    layer = FiniteScalarQuantizer(LEVELS, embedding_dim=6, seed=1)
    low = tf.cast(z, layer.compute_dtype)
    out = layer(low, training=True)
    assert out.dtype == layer.compute_dtype
    assert {w.dtype for w in layer.weights} == {"float32", "int64"}
    keras.mixed_precision.set_global_policy("float32")
    reference = FiniteScalarQuantizer(LEVELS, embedding_dim=6, seed=1)
    reference.build(z.shape)
    reference.set_weights(layer.get_weights())
    # The codes of the float16/bfloat16 inputs, computed in float32.
    as_float32 = tf.cast(low, "float32")
    np.testing.assert_array_equal(
        layer.encode(low), reference.encode(as_float32)
    )
    np.testing.assert_array_equal(
        out, tf.cast(reference(as_float32), layer.compute_dtype)
    )
    np.testing.assert_array_equal(layer(low), layer.lookup(layer.encode(low)))


def test_zero_size_batch():
    layer = FiniteScalarQuantizer(LEVELS, embedding_dim=6)
    empty = np.zeros((0, 4, 6), "float32")
    assert tuple(layer(empty, training=True).shape) == (0, 4, 6)
    assert tuple(layer.encode(empty).shape) == (0, 4)
    assert tuple(layer.lookup(np.zeros((0, 4), "int32")).shape) == (0, 4, 6)


def _fit(strategy, weights, images, targets):
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((4, 4, 3)),
                keras.layers.Dense(8),
                FiniteScalarQuantizer(LEVELS, embedding_dim=8, name="fsq"),
                keras.layers.Dense(3),
            ]
        )
        if weights is not None:
            model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    start = model.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(8)
    history = model.fit(dataset, epochs=2, verbose=0)
    return model, start, history


def test_two_replicas_match_one_device():
    """Outputs, summed gradients and usage of a batch split over 2
    replicas equal one device's."""
    z = _inputs((16, 3, 6), seed=4)
    weights = _inputs((16, 3, 6), seed=5)

    def step(layer, z, weights):
        with tf.GradientTape() as tape:
            out = layer(z, training=True)
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, layer.trainable_weights)

    one = FiniteScalarQuantizer(LEVELS, embedding_dim=6, seed=1)
    out_one, grads_one = step(one, z, weights)
    strategy = mirrored_strategy()
    with strategy.scope():
        two = FiniteScalarQuantizer(LEVELS, embedding_dim=6, seed=1)
        two.build(z.shape)

    def shard(array):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(
                array[8 * ctx.replica_id_in_sync_group :][:8]
            )
        )

    outs, grads = strategy.run(
        tf.function(lambda z, w: step(two, z, w)),
        args=(shard(z), shard(weights)),
    )
    np.testing.assert_array_equal(
        tf.concat(strategy.experimental_local_results(outs), 0), out_one
    )
    for g_one, g_two in zip(grads_one, grads):
        total = strategy.reduce("SUM", g_two, axis=None)
        np.testing.assert_allclose(total, g_one, rtol=1e-5, atol=1e-6)
    for key, value in one.usage.result().items():
        np.testing.assert_allclose(
            two.usage.result()[key], value, rtol=1e-6, err_msg=key
        )


@pytest.mark.slow
def test_fit_on_two_replicas_matches_one_device():
    images = _inputs((32, 4, 4, 3), seed=4)
    targets = _inputs((32, 4, 4, 3), seed=5, scale=0.5)
    keras.utils.set_random_seed(0)
    one, start, h1 = _fit(tf.distribute.get_strategy(), None, images, targets)
    two, _, h2 = _fit(mirrored_strategy(), start, images, targets)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    moved = False
    for w1, w2, w0 in zip(one.weights, two.weights, start):
        np.testing.assert_allclose(w1, w2, atol=1e-5, err_msg=w1.path)
        moved |= not np.allclose(w1, w0)
    assert moved
    # Not "loss": a plain Keras model on 2 replicas reports its `add_loss`
    # terms wrongly (`VQVAE.compute_loss` corrects that; tested with the
    # defaults in tests/test_distribute.py).
    for key in ("perplexity", "epoch_codebook_usage"):
        np.testing.assert_allclose(
            h1.history[key], h2.history[key], rtol=1e-5, err_msg=key
        )


def test_encode_and_lookup_convert_to_tflite_builtins(tmp_path):
    layer = FiniteScalarQuantizer(LEVELS, embedding_dim=6, seed=2)
    layer.build((None, 4, 4, 6))
    converted = tflite_endpoints(
        layer,
        {
            "encode": (layer.encode, tf.TensorSpec((None, 4, 4, 6))),
            "lookup": (layer.lookup, tf.TensorSpec((None, 4, 4), tf.int32)),
        },
        os.fspath(tmp_path),
    )
    z = _inputs((3, 4, 4, 6))
    codes = layer.encode(z).numpy()
    np.testing.assert_array_equal(converted["encode"](z), codes)
    vectors = converted["lookup"](codes)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, layer.lookup(codes), atol=1e-6)


def test_bad_arguments_message():
    cases = [
        (
            {"levels": (8, 1)},
            "`levels` must be a non-empty sequence of integers >= 2. "
            "Received: levels=(8, 1) (of type tuple).",
        ),
        (
            {"levels": []},
            "`levels` must be a non-empty sequence of integers >= 2. "
            "Received: levels=[] (of type list).",
        ),
        (
            {"levels": "855"},
            "`levels` must be a non-empty sequence of integers >= 2. "
            "Received: levels='855' (of type str).",
        ),
        (
            {"levels": (8.0, 5)},
            "`levels` must be a non-empty sequence of integers >= 2. "
            "Received: levels=(8.0, 5) (of type tuple).",
        ),
        (
            {"levels": (2**16, 2**16)},
            "`levels` must have a product (the number of codes) of at most "
            "2**31 - 1, for int32 codes. "
            "Received: levels=(65536, 65536) (of type tuple).",
        ),
        (
            {"embedding_dim": 0},
            "`embedding_dim` must be a positive integer. "
            "Received: embedding_dim=0 (of type int).",
        ),
        (
            {"saturation_penalty": -0.1},
            "`saturation_penalty` must be a non-negative finite number. "
            "Received: saturation_penalty=-0.1 (of type float).",
        ),
        (
            {"saturation_penalty": float("nan")},
            "`saturation_penalty` must be a non-negative finite number. "
            "Received: saturation_penalty=nan (of type float).",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as error:
            FiniteScalarQuantizer(**kwargs)
        assert str(error.value) == message


def test_bad_input_shape_message():
    layer = FiniteScalarQuantizer(LEVELS, name="fsq")
    for method in (layer, layer.encode):
        with pytest.raises(ValueError) as error:
            method(np.zeros((2, 5, 3), "float32"))
        assert str(error.value) == (
            "`fsq` expects inputs of shape (batch, ..., 4): the last "
            "dimension must equal embedding_dim=4. "
            "Received: inputs.shape=(2, 5, 3)"
        )
