"""Tests of the gated PixelCNN prior: layers, causality, training, sampling
(what every autoregressive prior shares: test_autoregressive.py)."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import mirrored_strategy
from tests.testing import run_layer_test
from tf_vqvae.prior import (
    GatedPixelCNNBlock,
    MaskedConv2D,
    PixelCNNPrior,
    causal_mask,
)

TINY = dict(num_embeddings=7, grid_shape=(5, 6), num_hiddens=8, num_layers=3)


def _codes(shape, num_embeddings, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_embeddings, size=shape).astype("int32")


# ------------------------------------------------------------ MaskedConv2D
def test_causal_mask():
    expected = {
        ("vertical", "A"): [[1, 1, 1], [0, 0, 0], [0, 0, 0]],
        ("vertical", "B"): [[1, 1, 1], [1, 1, 1], [0, 0, 0]],
        ("horizontal", "A"): [[1, 0, 0]],
        ("horizontal", "B"): [[1, 1, 0]],
    }
    for (stack, mask_type), mask in expected.items():
        np.testing.assert_array_equal(
            causal_mask(3, stack, mask_type), np.array(mask, "float32")
        )


def test_masked_conv_layer():
    run_layer_test(
        MaskedConv2D,
        init_kwargs=dict(
            filters=4, kernel_size=3, stack="vertical", mask_type="A"
        ),
        input_data=np.random.default_rng(0).normal(size=(2, 5, 5, 3)),
        expected_output_shape=(2, 5, 5, 4),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )


def _check_masked_conv_against_numpy(stack, mask_type):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    layer = MaskedConv2D(2, 3, stack=stack, mask_type=mask_type)
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    bias = rng.normal(size=(2,)).astype("float32")
    layer.set_weights([kernel, bias])

    mask = causal_mask(3, stack, mask_type)
    rows, cols = mask.shape
    padded = np.pad(x, [(0, 0), (rows // 2,) * 2, (1, 1), (0, 0)])
    expected = np.zeros((2, 4, 5, 2), "float64")
    for i in range(4):
        for j in range(5):
            window = padded[:, i : i + rows, j : j + cols]
            expected[:, i, j] = (
                np.einsum(
                    "brcd,rcdo->bo", window, kernel * mask[..., None, None]
                )
                + bias
            )
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_masked_conv_matches_numpy():
    for stack in ("vertical", "horizontal"):
        for mask_type in ("A", "B"):
            _check_masked_conv_against_numpy(stack, mask_type)


def test_masked_conv_stays_causal_after_training():
    # The mask is applied in `call`: a training step that changes the
    # masked-out kernel entries never makes the output see them.
    layer = MaskedConv2D(2, 3, stack="horizontal", mask_type="A")
    inputs = keras.Input((1, 5, 1))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    x = np.random.default_rng(0).normal(size=(4, 1, 5, 1)).astype("float32")
    model.fit(x, np.ones((4, 1, 5, 2), "float32"), verbose=0)
    changed = x.copy()
    changed[:, :, 2] += 1.0
    diff = np.abs(model(changed) - model(x)).max(axis=(0, 1, 3))
    np.testing.assert_array_equal(diff[:3], 0.0)
    assert diff[3] > 0


# ------------------------------------------------------ GatedPixelCNNBlock
def test_gated_block_layer():
    run_layer_test(
        GatedPixelCNNBlock,
        init_kwargs=dict(num_hiddens=4, kernel_size=3, mask_type="B"),
        input_data=np.random.default_rng(0).normal(size=(2, 4, 4, 8)),
        expected_output_shape=(2, 4, 4, 8),
        # vertical, horizontal (kernel + bias each), two 1x1 convolutions.
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


def test_gated_block_matches_numpy():
    rng = np.random.default_rng(2)
    block = GatedPixelCNNBlock(num_hiddens=2, kernel_size=3, mask_type="B")
    x = rng.normal(size=(1, 3, 3, 4)).astype("float32")
    condition = rng.normal(size=(1, 8)).astype("float32")
    block.build(x.shape)
    weights = [
        rng.normal(size=w.shape).astype("float32") for w in block.weights
    ]
    block.set_weights(weights)

    def conv(inputs, kernel, bias, mask):
        kernel = kernel * mask[..., None, None]
        rows, cols = kernel.shape[:2]
        padded = np.pad(
            inputs, [(0, 0), (rows // 2,) * 2, (cols // 2,) * 2, (0, 0)]
        )
        out = np.zeros(inputs.shape[:3] + (kernel.shape[-1],))
        for i in range(inputs.shape[1]):
            for j in range(inputs.shape[2]):
                window = padded[:, i : i + rows, j : j + cols]
                out[:, i, j] = np.einsum("brcd,rcdo->bo", window, kernel)
        return out + bias

    def gate(z):
        a, b = np.split(z, 2, axis=-1)
        return np.tanh(a) / (1.0 + np.exp(-b))

    vk, vb, hk, hb, v2hk, v2hb, ok, ob = weights
    v, h = np.split(x, 2, axis=-1)
    v_pre = conv(v, vk, vb, causal_mask(3, "vertical", "B")) + condition[:, :4]
    h_pre = (
        conv(h, hk, hb, causal_mask(3, "horizontal", "B"))
        + v_pre @ v2hk[0, 0]
        + v2hb
        + condition[:, 4:]
    )
    h_out = gate(h_pre) @ ok[0, 0] + ob + h
    expected = np.concatenate([gate(v_pre), h_out], axis=-1)
    np.testing.assert_allclose(
        block(x, condition=condition), expected, rtol=1e-5, atol=1e-5
    )


# --------------------------------------------------------------- causality
def _receptive_field(grid_shape, num_layers, kernel_size, position):
    """Positions whose logits can depend on the code at `position`, by
    propagating a 0/1 dependency map through the architecture's masks."""
    height, width = grid_shape

    def masked_or(dep, mask):
        rows, cols = mask.shape
        padded = np.pad(dep, [(rows // 2,) * 2, (cols // 2,) * 2])
        out = np.zeros_like(dep)
        for r in range(rows):
            for s in range(cols):
                if mask[r, s]:
                    out |= padded[r : r + height, s : s + width]
        return out

    code = np.zeros(grid_shape, bool)
    code[position] = True
    v, h, logits = code, code, np.zeros_like(code)
    for layer in range(num_layers):
        mask_type = "A" if layer == 0 else "B"
        v = masked_or(v, causal_mask(kernel_size, "vertical", mask_type))
        h_new = masked_or(h, causal_mask(kernel_size, "horizontal", mask_type))
        h = h_new | v | (h if mask_type == "B" else False)
        logits |= h
    return logits


@pytest.mark.parametrize(
    "kernel_size, position",
    [(3, (2, 3)), (3, (0, 0)), (3, (4, 5)), (5, (1, 2))],
    ids=["k3-middle", "k3-first", "k3-last", "k5"],
)
def test_causality_on_untrained_network(kernel_size, position):
    # 32 channels: with few, every ReLU unit of the head can be off at a
    # position, which then cannot change although it is in the field.
    keras.utils.set_random_seed(0)
    prior = PixelCNNPrior(
        **{**TINY, "kernel_size": kernel_size, "num_hiddens": 32}
    )
    codes = _codes((1, 5, 6), 7)
    changed = codes.copy()
    changed[(0,) + position] = (codes[(0,) + position] + 1) % 7
    diff = np.abs(prior(changed) - prior(codes)).max(axis=-1)[0] > 0

    field = _receptive_field((5, 6), 3, kernel_size, position)
    raster = np.arange(30).reshape(5, 6)
    before = raster <= raster[position]
    # Never a position at or before (i, j); within the receptive field after
    # it, every position changes.
    assert not (diff & before).any()
    assert not (field & before).any()
    np.testing.assert_array_equal(diff, field)
    if position != (4, 5):
        assert field.any()


def test_no_blind_spot():
    # With enough layers every earlier position within the kernel's reach
    # influences (2, 2): in particular the upper right one, which a single
    # masked stack misses.
    field = np.zeros((4, 5), bool)
    for position in np.ndindex(4, 5):
        field[position] = _receptive_field((4, 5), 3, 3, position)[2, 2]
    raster = np.arange(20).reshape(4, 5)
    np.testing.assert_array_equal(field, raster < raster[2, 2])


# ------------------------------------------------------------------ model
def test_prior_output_shape_and_dtype():
    prior = PixelCNNPrior(**TINY)
    logits = prior(_codes((2, 5, 6), 7))
    assert logits.shape == (2, 5, 6, 7)
    assert logits.dtype == tf.float32
    assert prior.compute_output_shape((2, 5, 6)) == (2, 5, 6, 7)


def test_fit_reports_bits_per_code(tmp_path):
    keras.utils.set_random_seed(0)
    prior = PixelCNNPrior(**TINY)
    prior.compile(optimizer=keras.optimizers.Adam(1e-2))
    dataset = tf.data.Dataset.from_tensor_slices(_codes((8, 5, 6), 7)).batch(8)
    history = prior.fit(dataset, epochs=5, verbose=0).history
    # One batch per epoch: the epoch's metric is that batch's loss in bits.
    np.testing.assert_allclose(
        history["bits_per_code"],
        np.array(history["loss"]) / math.log(2),
        rtol=1e-5,
    )
    assert history["bits_per_code"][-1] < history["bits_per_code"][0]

    # The compiled state comes back from `.keras`: training can resume.
    path = os.path.join(tmp_path, "prior.keras")
    prior.save(path)
    restored = keras.saving.load_model(path)
    assert int(restored.optimizer.iterations) == 5
    for a, b in zip(
        restored.optimizer.variables, prior.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert isinstance(restored.loss, keras.losses.SparseCategoricalCrossentropy)


def _train_step_weights(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        prior = PixelCNNPrior(7, (3, 3), num_hiddens=4, num_layers=2)
        prior.compile(optimizer=keras.optimizers.SGD(0.5))
    codes = _codes((8, 3, 3), 7, seed=3)
    prior.fit(
        tf.data.Dataset.from_tensor_slices(codes).batch(8),
        epochs=1,
        verbose=0,
    )
    return [w.numpy() for w in prior.weights]


def test_one_and_two_replicas_train_alike():
    # The loss is a keras.losses.Loss, so Keras scales it per replica: one
    # SGD step on 2 replicas equals one step on 1 device.
    one = _train_step_weights(tf.distribute.get_strategy())
    two = _train_step_weights(mirrored_strategy())
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------- sampling
def _noise(n, prior, seed=0):
    shape = (n,) + prior.grid_shape + (prior.num_embeddings,)
    return tf.random.stateless_uniform(shape, seed=(seed, 7))


def test_cached_sampler_equals_naive_sampler():
    prior = PixelCNNPrior(**TINY)
    noise = _noise(3, prior)
    for options in (
        dict(),
        dict(temperature=0.5),
        dict(top_k=3),
        dict(temperature=2.0, top_k=2),
    ):
        naive = prior.sample_codes(noise, method="naive", **options)
        cached = prior.sample_codes(noise, **options)
        assert cached.dtype == tf.int32 and cached.shape == (3, 5, 6)
        np.testing.assert_array_equal(cached, naive, err_msg=str(options))


def test_cached_sampler_equals_naive_sampler_variants():
    for kwargs in (dict(kernel_size=5, num_layers=2), dict(num_classes=3)):
        prior = PixelCNNPrior(**{**TINY, **kwargs})
        noise = _noise(2, prior, seed=1)
        labels = (
            None if prior.num_classes is None else np.array([0, 2], "int32")
        )
        np.testing.assert_array_equal(
            prior.sample_codes(noise, labels),
            prior.sample_codes(noise, labels, method="naive"),
            err_msg=str(kwargs),
        )


def test_mixed_precision_logits_and_samplers():
    keras.mixed_precision.set_global_policy("mixed_float16")
    prior = PixelCNNPrior(7, (3, 4), num_hiddens=8, num_layers=2)
    assert prior.blocks[0].vertical_conv.compute_dtype == "float16"
    logits = prior(_codes((2, 3, 4), 7))
    assert logits.dtype == tf.float32
    noise = _noise(2, prior, seed=4)
    np.testing.assert_array_equal(
        prior.sample_codes(noise), prior.sample_codes(noise, method="naive")
    )


def test_top_k_samples_are_among_the_k_most_likely():
    prior = PixelCNNPrior(**TINY)
    codes = prior.sample_codes(_noise(2, prior), top_k=2).numpy()
    logits = prior(codes).numpy()
    # Ties with the second largest logit are kept (the untrained network's
    # first position has all-equal logits).
    second = np.sort(logits, axis=-1)[..., -2]
    chosen = np.take_along_axis(logits, codes[..., None], -1)[..., 0]
    assert (chosen >= second).all()


# ----------------------------------------------------------------- levels
LEVELS = dict(TINY, num_hiddens=32, num_levels=3)


@pytest.mark.parametrize(
    "position", [(2, 3, 0), (2, 3, 1), (0, 0, 2), (4, 5, 0)]
)
def test_levels_dependency_structure(position):
    # The code at (i, j, m) changes the logits of the same position's later
    # levels (l > m) and of every level of the later positions in the
    # spatial receptive field, and nothing at or before (i, j, m).
    keras.utils.set_random_seed(0)
    prior = PixelCNNPrior(**LEVELS)
    codes = _codes((1, 5, 6, 3), 7)
    changed = codes.copy()
    changed[(0,) + position] = (codes[(0,) + position] + 1) % 7
    diff = np.abs(prior(changed) - prior(codes)).max(axis=-1)[0] > 0

    i, j, m = position
    expected = np.repeat(
        _receptive_field((5, 6), 3, 3, (i, j))[..., None], 3, axis=-1
    )
    expected[i, j, m + 1 :] = True
    np.testing.assert_array_equal(diff, expected)
    order = np.arange(5 * 6 * 3).reshape(5, 6, 3)
    assert not (diff & (order <= order[position])).any()


def test_level_head_matches_numpy():
    # logits[l] = W2 relu(h + b_l + sum_{m<l} e_m[z_m]) + c2, with
    # h = W1 relu(skip) + c1, from the layers' weights.
    rng = np.random.default_rng(4)
    prior = PixelCNNPrior(**{**LEVELS, "num_hiddens": 4})
    codes = _codes((2, 5, 6, 3), 7, seed=5)
    prior(codes)
    skip = rng.normal(size=(2, 5, 6, 4)).astype("float32")
    w1, c1 = (w.numpy() for w in prior.head_hidden.weights)
    w2, c2 = (w.numpy() for w in prior.head_logits.weights)
    table = prior.level_context.embeddings.numpy()
    bias = prior.level_bias.embeddings.numpy()
    hidden = np.maximum(skip, 0) @ w1[0, 0] + c1
    expected = np.zeros((2, 5, 6, 3, 7))
    assert table.shape == (2 * 7, 4)  # no level reads the last one's
    for level in range(3):
        context = bias[level] + sum(
            table[m * 7 + codes[..., m]] for m in range(level)
        )
        expected[..., level, :] = np.maximum(hidden + context, 0) @ w2[0, 0]
    expected += c2
    np.testing.assert_allclose(
        prior._head(skip, codes), expected, rtol=1e-5, atol=1e-5
    )


def test_levels_log_prob_and_samplers():
    prior = PixelCNNPrior(**{**LEVELS, "num_classes": 2})
    labels = np.array([1, 0], "int32")
    codes = _codes((2, 5, 6, 3), 7, seed=6)
    logits = prior({"codes": codes, "labels": labels}).numpy()
    assert logits.shape == (2, 5, 6, 3, 7)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, codes[..., None], -1)
    np.testing.assert_allclose(
        prior.distribution(labels=labels).log_prob(codes),
        expected.sum(axis=(1, 2, 3, 4)),
        rtol=1e-5,
    )
    noise = tf.random.stateless_uniform((2, 5, 6, 3, 7), seed=(1, 2))
    for options in (dict(), dict(temperature=0.5, top_k=2)):
        cached = prior.sample_codes(noise, labels, **options)
        assert cached.shape == (2, 5, 6, 3)
        np.testing.assert_array_equal(
            cached, prior.sample_codes(noise, labels, method="naive", **options)
        )


def test_levels_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    prior = PixelCNNPrior(7, (3, 4), num_hiddens=8, num_layers=2, num_levels=3)
    assert prior.level_context.compute_dtype == "bfloat16"
    assert prior(_codes((2, 3, 4, 3), 7)).dtype == tf.float32
    noise = tf.random.stateless_uniform((2, 3, 4, 3, 7), seed=(3, 4))
    np.testing.assert_array_equal(
        prior.sample_codes(noise), prior.sample_codes(noise, method="naive")
    )


def test_levels_bad_input():
    with pytest.raises(ValueError) as error:
        PixelCNNPrior(**{**TINY, "num_levels": 0})
    assert str(error.value) == (
        "`num_levels` must be a positive integer. "
        "Received: num_levels=0 (of type int)."
    )
    prior = PixelCNNPrior(**{**TINY, "num_levels": 3}, name="levels")
    with pytest.raises(ValueError) as error:
        prior(_codes((2, 5, 6), 7))
    assert str(error.value) == (
        "`levels` expects codes of shape (batch, 5, 6, 3) "
        "(grid_shape, num_levels). Received: codes.shape=(2, 5, 6)"
    )
    with pytest.raises(ValueError) as error:
        prior.sample_codes(tf.zeros((2, 5, 6, 7)))
    assert str(error.value) == (
        "`noise` must have shape (n, 5, 6, 3, 7) (n, H, W, level, "
        "num_embeddings). Received: noise.shape=(2, 5, 6, 7)"
    )


# -------------------------------------------------------------- bad input
def test_invalid_prior_arguments():
    for kwargs, message in [
        (
            dict(grid_shape=(8,)),
            "`grid_shape` must be a pair of positive integers (height, "
            "width). Received: grid_shape=(8,) (of type tuple).",
        ),
        (
            dict(grid_shape=(8, 0)),
            "`grid_shape` must be a pair of positive integers (height, "
            "width). Received: grid_shape=(8, 0) (of type tuple).",
        ),
        (
            dict(num_layers=1.5),
            "`num_layers` must be a positive integer. "
            "Received: num_layers=1.5 (of type float).",
        ),
        (
            dict(kernel_size=4),
            "`kernel_size` must be an odd integer >= 3. "
            "Received: kernel_size=4 (of type int).",
        ),
        (
            dict(kernel_size=1),
            "`kernel_size` must be an odd integer >= 3. "
            "Received: kernel_size=1 (of type int).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            PixelCNNPrior(**{**TINY, **kwargs})
        assert str(error.value) == message


def test_invalid_masked_conv_arguments():
    for kwargs, message in [
        (
            dict(stack="diagonal"),
            "`stack` must be 'vertical' or 'horizontal'. "
            "Received: stack='diagonal' (of type str).",
        ),
        (
            dict(mask_type="C"),
            "`mask_type` must be 'A' or 'B'. "
            "Received: mask_type='C' (of type str).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            MaskedConv2D(4, **kwargs)
        assert str(error.value) == message


def test_wrong_codes_shape():
    prior = PixelCNNPrior(**TINY)
    with pytest.raises(ValueError) as error:
        prior(_codes((2, 5, 5), 7))
    assert str(error.value) == (
        "`pixel_cnn_prior` expects codes of shape (batch, 5, 6) (grid_shape). "
        "Received: codes.shape=(2, 5, 5)"
    )


def test_invalid_sampling_arguments():
    prior = PixelCNNPrior(**TINY)
    for kwargs, message in [
        (
            dict(temperature=0.0),
            "`temperature` must be a positive finite number. "
            "Received: temperature=0.0 (of type float).",
        ),
        (
            dict(top_k=8),
            "`top_k` must be None or an integer in [1, 7] (num_embeddings). "
            "Received: top_k=8 (of type int).",
        ),
        (
            dict(method="fast"),
            "`method` must be 'cached' or 'naive'. "
            "Received: method='fast' (of type str).",
        ),
        (
            dict(labels=[0, 1]),
            "`labels` must be given exactly when the prior is class "
            "conditional (num_classes=None). "
            "Received: labels=[0, 1] (of type list).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            prior.sample_codes(_noise(2, prior), **kwargs)
        assert str(error.value) == message


def test_wrong_noise_shape():
    prior = PixelCNNPrior(**TINY)
    with pytest.raises(ValueError) as error:
        prior.sample_codes(tf.zeros((2, 5, 6)))
    assert str(error.value) == (
        "`noise` must have shape (n, 5, 6, 7) (n, H, W, num_embeddings). "
        "Received: noise.shape=(2, 5, 6)"
    )


def test_noise_must_be_floating_point():
    prior = PixelCNNPrior(**TINY)
    with pytest.raises(TypeError) as error:
        prior.sample_codes(np.zeros((2, 5, 6, 7), "int32"))
    assert str(error.value) == (
        "`noise` must be floating point uniform noise in [0, 1). "
        "Received: noise.dtype=int32"
    )


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_sampling_loops_run_no_checks(method):
    # The inputs are checked once, before the loop over positions: the
    # naive sampler's calls of the network skip the checks of `call`.
    prior = PixelCNNPrior(**TINY, num_classes=2)
    sample = tf.function(
        lambda noise, labels: prior.sample_codes(noise, labels, method=method)
    )
    graph = sample.get_concrete_function(
        tf.TensorSpec([None, 5, 6, 7]), tf.TensorSpec([None], tf.int32)
    ).graph.as_graph_def()
    assert [node.op for node in graph.node].count("Assert") == 2  # labels
    bodies = [f for f in graph.library.function if "body" in f.signature.name]
    assert bodies
    for body in bodies:
        assert "Assert" not in [node.op for node in body.node_def]
    noise = _noise(2, prior)
    labels = tf.constant([0, 1])
    np.testing.assert_array_equal(
        sample(noise, labels), prior.sample_codes(noise, labels, method=method)
    )
