"""Tests of the WaveNet prior: layers, numpy reference, causality, sampling
(what every autoregressive prior shares: test_autoregressive.py)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import run_layer_test
from tf_vqvae import precision
from tf_vqvae.wavenet import CausalConv1D, WaveNetBlock, WaveNetPrior

TINY = dict(
    num_embeddings=7,
    length=12,
    residual_channels=8,
    skip_channels=6,
    num_layers=4,
    dilation_cycle=3,
)


def _codes(shape, num_embeddings=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_embeddings, size=shape).astype("int32")


def _noise(n, prior, seed=0):
    shape = (n,) + prior.event_shape + (prior.num_embeddings,)
    return tf.random.stateless_uniform(shape, seed=(seed, 7))


def _inputs(codes, labels):
    return codes if labels is None else {"codes": codes, "labels": labels}


def _set_random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [
            0.5 * rng.normal(size=w.shape).astype("float32")
            for w in layer.weights
        ]
    )


# ------------------------------------------------------ numpy reference
def _causal_conv(x, kernel, bias, dilation):
    """`y[t] = sum_j x[t - (k - 1 - j) d] @ kernel[j] + bias`, float64."""
    k = kernel.shape[0]
    length = x.shape[1]
    out = np.zeros(x.shape[:2] + (kernel.shape[-1],))
    for t in range(length):
        for j in range(k):
            source = t - (k - 1 - j) * dilation
            if source >= 0:
                out[:, t] += x[:, source] @ kernel[j]
    return out + bias


def _gate(z):
    a, b = np.split(z, 2, axis=-1)
    return np.tanh(a) / (1.0 + np.exp(-b))


def _numpy_logits(prior, codes, labels=None):
    """The prior's logits recomputed from its weights, float64."""
    w = {v.path: v.numpy().astype("float64") for v in prior.weights}

    def dense(x, name):
        return x @ w[f"{name}/kernel"][0] + w[f"{name}/bias"]

    name = prior.name
    table = w[f"{name}/embedding/embeddings"]
    k, levels = prior.num_embeddings, prior.num_levels
    if levels == 1:
        x = table[codes]
    else:  # one embedding per level, summed
        x = sum(table[m * k + codes[..., m]] for m in range(levels))
    x = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    skip = 0.0
    for i, dilation in enumerate(prior.dilations):
        block = f"{name}/block{i}"
        pre = _causal_conv(
            x, w[f"{block}/conv/kernel"], w[f"{block}/conv/bias"], dilation
        )
        if labels is not None:
            table = w[f"{name}/class_embedding{i}/embeddings"]
            pre = pre + table[labels][:, None, :]
        g = _gate(pre)
        skip = skip + dense(g, f"{block}/skip_output")
        if i < prior.num_layers - 1:
            x = x + dense(g, f"{block}/residual_output")
    hidden = dense(np.maximum(skip, 0.0), f"{name}/head_hidden")
    if levels == 1:
        return dense(np.maximum(hidden, 0.0), f"{name}/head_logits")
    # The depth head: level l adds b_l and e_m[z_m] of the levels m < l.
    context = w[f"{name}/level_context/embeddings"]
    bias = w[f"{name}/level_bias/embeddings"]
    assert context.shape[0] == (levels - 1) * k  # the last level's unread
    logits = []
    for level in range(levels):
        c = bias[level] + sum(
            context[m * k + codes[..., m]] for m in range(level)
        )
        logits.append(dense(np.maximum(hidden + c, 0.0), f"{name}/head_logits"))
    return np.stack(logits, axis=-2)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ------------------------------------------------------------- layers
def test_causal_conv_layer():
    run_layer_test(
        CausalConv1D,
        init_kwargs=dict(filters=4, kernel_size=3, dilation_rate=2),
        input_data=np.random.default_rng(0).normal(size=(2, 9, 3)),
        expected_output_shape=(2, 9, 4),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize(
    "kernel_size, dilation",
    [(2, 1), (2, 4), (3, 2)],
    ids=["k2d1", "k2d4", "k3d2"],
)
def test_causal_conv_matches_numpy(kernel_size, dilation):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 10, 3)).astype("float32")
    layer = CausalConv1D(5, kernel_size, dilation)
    layer.build(x.shape)
    _set_random_weights(layer, 2)
    kernel, bias = (v.numpy().astype("float64") for v in layer.weights)
    np.testing.assert_allclose(
        layer(x), _causal_conv(x, kernel, bias, dilation), rtol=1e-5, atol=1e-5
    )
    assert layer.history == (kernel_size - 1) * dilation


@pytest.mark.parametrize("use_residual", [True, False], ids=["res", "last"])
def test_wavenet_block_layer(use_residual):
    run_layer_test(
        WaveNetBlock,
        init_kwargs=dict(
            residual_channels=4,
            skip_channels=3,
            dilation_rate=2,
            use_residual=use_residual,
        ),
        input_data=np.random.default_rng(0).normal(size=(2, 8, 4)),
        expected_output_shape=(2, 8, 7),
        # conv, skip (and residual) 1x1: kernel + bias each.
        expected_num_trainable_weights=6 if use_residual else 4,
        expected_num_non_trainable_weights=0,
    )


def test_wavenet_block_matches_numpy():
    rng = np.random.default_rng(3)
    block = WaveNetBlock(2, 3, dilation_rate=2, kernel_size=3)
    x = rng.normal(size=(2, 7, 2)).astype("float32")
    condition = rng.normal(size=(2, 4)).astype("float32")
    block.build(x.shape)
    _set_random_weights(block, 4)
    ck, cb, sk, sb, rk, rb = (
        v.numpy().astype("float64") for v in block.weights
    )
    g = _gate(_causal_conv(x, ck, cb, 2) + condition[:, None])
    expected = np.concatenate([x + g @ rk[0] + rb, g @ sk[0] + sb], axis=-1)
    np.testing.assert_allclose(
        block(x, condition=condition), expected, rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------- log_prob
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(kernel_size=3, num_classes=3),
        dict(num_levels=3, num_classes=3),
    ],
    ids=["k2", "k3-classes", "levels-classes"],
)
def test_log_prob_matches_numpy(kwargs):
    keras.utils.set_random_seed(0)
    prior = WaveNetPrior(**{**TINY, **kwargs})
    codes = _codes((3,) + prior.event_shape, seed=1)
    labels = None if prior.num_classes is None else np.array([0, 2, 1])
    prior(_inputs(codes, labels))
    _set_random_weights(prior, 5)

    logits = _numpy_logits(prior, codes, labels)
    np.testing.assert_allclose(
        prior(_inputs(codes, labels)), logits, rtol=1e-4, atol=1e-4
    )
    picked = np.take_along_axis(_log_softmax(logits), codes[..., None], -1)
    expected = picked.reshape(3, -1).sum(-1)
    dist = prior.distribution(labels=labels)
    log_prob = dist.log_prob(codes)
    assert log_prob.shape == (3,)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-4)
    # Tempered and top-k restricted: the same recomputation.
    adjusted = logits / 2.0
    kth = np.sort(adjusted, -1)[..., -3:-2]
    adjusted = np.where(adjusted < kth, -np.inf, adjusted)
    picked = np.take_along_axis(_log_softmax(adjusted), codes[..., None], -1)
    np.testing.assert_allclose(
        prior.distribution(labels=labels, temperature=2.0, top_k=3).log_prob(
            codes
        ),
        picked.reshape(3, -1).sum(-1),
        rtol=1e-5,
        atol=1e-4,
    )


# ------------------------------------------------- causality and field
def _dependent_positions(dilations, kernel_size, length, position):
    """Positions whose logits can depend on the code at `position`: the
    shifted input at `position + 1` reaches t through any choice of one
    tap per layer (residual paths skip layers)."""
    reach = {position + 1}
    field = set()
    for dilation in dilations:
        reach = {r + j * dilation for r in reach for j in range(kernel_size)}
        field |= reach
    return np.array([t in field for t in range(length)])


@pytest.mark.parametrize(
    "kwargs, position",
    [
        (dict(), 3),
        (dict(), 0),
        (dict(), 11),
        (dict(kernel_size=3, num_layers=3, dilation_cycle=2), 2),
        (dict(num_layers=6, dilation_cycle=2, length=24), 1),
    ],
    ids=["k2", "k2-first", "k2-last", "k3", "cycle2"],
)
def test_causality_and_receptive_field(kwargs, position):
    # 32 channels: with few, every ReLU unit of the head can be off at a
    # position, which then cannot change although it is in the field.
    keras.utils.set_random_seed(0)
    prior = WaveNetPrior(
        **{**TINY, "residual_channels": 32, "skip_channels": 32, **kwargs}
    )
    length = prior.length
    codes = _codes((1, length))
    changed = codes.copy()
    changed[0, position] = (codes[0, position] + 1) % 7
    diff = np.abs(prior(changed) - prior(codes)).max(axis=-1)[0] > 0

    # Nothing at or before `position` changes; after it, exactly the
    # documented receptive field: positions t with
    # t - receptive_field <= position < t.
    assert not diff[: position + 1].any()
    t = np.arange(length)
    documented = (t > position) & (t - prior.receptive_field <= position)
    np.testing.assert_array_equal(diff, documented)
    np.testing.assert_array_equal(
        documented,
        _dependent_positions(
            prior.dilations, prior.kernel_size, length, position
        ),
    )


@pytest.mark.parametrize("position", [(3, 0), (3, 1), (0, 2), (11, 0)])
def test_levels_dependency_structure(position):
    # The code at (t, m) changes the logits of the same position's later
    # levels (l > m) and of every level of the positions whose receptive
    # field holds t, and nothing at or before (t, m).
    keras.utils.set_random_seed(0)
    prior = WaveNetPrior(
        **{**TINY, "residual_channels": 32, "skip_channels": 32},
        num_levels=3,
    )
    codes = _codes((1, 12, 3))
    changed = codes.copy()
    changed[(0,) + position] = (codes[(0,) + position] + 1) % 7
    diff = np.abs(prior(changed) - prior(codes)).max(axis=-1)[0] > 0

    t, m = position
    expected = np.repeat(
        _dependent_positions(prior.dilations, prior.kernel_size, 12, t)[
            :, None
        ],
        3,
        axis=1,
    )
    expected[t, m + 1 :] = True
    np.testing.assert_array_equal(diff, expected)
    order = np.arange(12 * 3).reshape(12, 3)
    assert not (diff & (order <= order[position])).any()


def test_dilations_and_receptive_field_of_the_defaults():
    prior = WaveNetPrior(512, 4096)
    assert prior.dilations == tuple(2**i for i in range(10))
    assert prior.receptive_field == 1024
    prior = WaveNetPrior(512, 64, num_layers=5, dilation_cycle=2, kernel_size=3)
    assert prior.dilations == (1, 2, 1, 2, 1)
    assert prior.receptive_field == 1 + 2 * 7


# ------------------------------------------------------------- model
def test_prior_output_shape_and_dtype():
    prior = WaveNetPrior(**TINY)
    logits = prior(_codes((2, 12)))
    assert logits.shape == (2, 12, 7)
    assert logits.dtype == tf.float32
    assert prior.compute_output_shape((2, 12)) == (2, 12, 7)
    assert prior.grid_shape == (12,)


def test_fit_reports_bits_per_code_and_every_weight_trains():
    keras.utils.set_random_seed(0)
    prior = WaveNetPrior(**TINY, num_classes=2)
    prior.compile(optimizer=keras.optimizers.Adam(1e-2))
    codes = np.tile(np.arange(12, dtype="int32") % 7, (16, 1))
    codes[8:] = (codes[8:] + 3) % 7
    labels = (np.arange(16) >= 8).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"codes": codes, "labels": labels}
    ).batch(16)
    prior.build({"codes": (None, 12), "labels": (None,)})
    before = [w.numpy() for w in prior.trainable_weights]
    history = prior.fit(dataset, epochs=5, verbose=0).history
    np.testing.assert_allclose(
        history["bits_per_code"],
        np.array(history["loss"]) / math.log(2),
        rtol=1e-5,
    )
    assert history["loss"][-1] < history["loss"][0]
    # Every weight gets a gradient: the last block has no residual
    # convolution that nothing would read.
    for weight, start in zip(prior.trainable_weights, before, strict=True):
        assert not np.array_equal(weight.numpy(), start), weight.path


# ------------------------------------------------------------ sampling
@pytest.mark.parametrize(
    "kwargs, options",
    [
        (dict(), dict()),
        (dict(kernel_size=3), dict(temperature=0.5, top_k=3)),
        (dict(num_classes=3), dict(temperature=2.0, top_k=2)),
        (dict(num_levels=3, num_classes=3), dict(temperature=0.5, top_k=3)),
    ],
    ids=[
        "k2",
        "k3-tempered-top_k",
        "classes-tempered-top_k",
        "levels-classes-tempered-top_k",
    ],
)
def test_cached_sampler_equals_naive_sampler(kwargs, options):
    # One option set per case: every (method, temperature, top_k) compiles
    # its own sampler (the cached one with XLA, seconds each).
    prior = WaveNetPrior(**{**TINY, **kwargs})
    noise = _noise(3, prior)
    labels = None if prior.num_classes is None else np.array([0, 2, 1])
    naive = prior.sample_codes(noise, labels, method="naive", **options)
    cached = prior.sample_codes(noise, labels, **options)
    assert cached.dtype == tf.int32 and cached.shape == (3,) + prior.event_shape
    np.testing.assert_array_equal(cached, naive)


def test_mixed_bfloat16_logits_and_samplers():
    prior = WaveNetPrior(**TINY, dtype="mixed_bfloat16")
    logits = prior(_codes((2, 12)))
    assert logits.dtype == tf.float32
    assert prior.blocks[0].conv.compute_dtype == "bfloat16"
    assert prior.blocks[0].conv.kernel.dtype == "float32"
    noise = _noise(2, prior, seed=4)
    np.testing.assert_array_equal(
        prior.sample_codes(noise), prior.sample_codes(noise, method="naive")
    )
    # The float32 copy that TFLite export converts: same weights.
    copy = precision.float32_copy(prior)
    assert copy.blocks[0].conv.compute_dtype == "float32"
    for a, b in zip(copy.weights, prior.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ------------------------------------------------------------ bad input
def test_invalid_prior_arguments():
    for kwargs, message in [
        (
            dict(length=0),
            "`length` must be a positive integer. "
            "Received: length=0 (of type int).",
        ),
        (
            dict(residual_channels=2.0),
            "`residual_channels` must be a positive integer. "
            "Received: residual_channels=2.0 (of type float).",
        ),
        (
            dict(skip_channels=-1),
            "`skip_channels` must be a positive integer. "
            "Received: skip_channels=-1 (of type int).",
        ),
        (
            dict(num_layers=0),
            "`num_layers` must be a positive integer. "
            "Received: num_layers=0 (of type int).",
        ),
        (
            dict(dilation_cycle=True),
            "`dilation_cycle` must be a positive integer. "
            "Received: dilation_cycle=True (of type bool).",
        ),
        (
            dict(kernel_size=1),
            "`kernel_size` must be an integer >= 2. "
            "Received: kernel_size=1 (of type int).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            WaveNetPrior(**{**TINY, **kwargs})
        assert str(error.value) == message


def test_wrong_input_shapes():
    prior = WaveNetPrior(**TINY)
    with pytest.raises(ValueError) as error:
        prior(_codes((2, 11)))
    assert str(error.value) == (
        "`wave_net_prior` expects codes of shape (batch, 12) (grid_shape). "
        "Received: codes.shape=(2, 11)"
    )
    with pytest.raises(ValueError) as error:
        prior.sample_codes(tf.zeros((2, 12)))
    assert str(error.value) == (
        "`noise` must have shape (n, 12, 7) (n, length, num_embeddings). "
        "Received: noise.shape=(2, 12)"
    )
    conditional = WaveNetPrior(**TINY, num_classes=2)
    with pytest.raises(ValueError) as error:
        conditional(_codes((2, 12)))
    assert str(error.value) == (
        "`wave_net_prior_1` (num_classes=2) expects a dict input "
        "{'codes': (batch, length), 'labels': (batch,)}. "
        "Received: inputs.shape=(2, 12)"
    )
    with pytest.raises(ValueError) as error:
        prior.sample_codes(_noise(2, prior), labels=[0, 1])
    assert str(error.value) == (
        "`labels` must be given exactly when the prior is class "
        "conditional (num_classes=None). "
        "Received: labels=[0, 1] (of type list)."
    )


def test_levels_wrong_input_shapes():
    prior = WaveNetPrior(**TINY, num_levels=3, name="levels")
    with pytest.raises(ValueError) as error:
        prior(_codes((2, 12)))
    assert str(error.value) == (
        "`levels` expects codes of shape (batch, 12, 3) "
        "(grid_shape, num_levels). Received: codes.shape=(2, 12)"
    )
    with pytest.raises(ValueError) as error:
        prior.sample_codes(tf.zeros((2, 12, 7)))
    assert str(error.value) == (
        "`noise` must have shape (n, 12, 3, 7) (n, length, level, "
        "num_embeddings). Received: noise.shape=(2, 12, 7)"
    )
    with pytest.raises(ValueError) as error:
        WaveNetPrior(**TINY, num_levels=0)
    assert str(error.value) == (
        "`num_levels` must be a positive integer. "
        "Received: num_levels=0 (of type int)."
    )
