"""ResidualVectorQuantizer against numpy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import mirrored_strategy
from tests.testing import run_layer_test, tflite_encode
from tf_vqvae import CodebookUsage, ResidualVectorQuantizer
from tf_vqvae.contracts import Quantizer

L, K, D = 3, 5, 4


def _inputs(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _codebooks(levels=L, k=K, d=D, seed=0):
    """Codebooks on shrinking scales, as residuals shrink level by level."""
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(k, d)) * 0.5**level).astype("float32")
        for level in range(levels)
    ]


def _make(codebooks, shared=False, **kwargs):
    """An RVQ holding `codebooks`; no data init or restarts unless asked."""
    kwargs = {"data_init": None, "dead_code_restart_steps": None, **kwargs}
    k, d = codebooks[0].shape
    layer = ResidualVectorQuantizer(
        len(codebooks) if not shared else kwargs.pop("levels"),
        k,
        d,
        shared_codebook=shared,
        **kwargs,
    )
    layer.build((None, d))
    for stage, codebook in zip(layer.stages, codebooks):
        stage.embeddings.assign(codebook)
    return layer


def _reference(flat, codebooks):
    """Numpy residual VQ: codes `[N, levels]`, per-level vectors and the
    residual each level quantized."""
    residual = flat.astype("float64")
    codes, vectors, residuals = [], [], []
    for codebook in codebooks:
        d = ((residual[:, None, :] - codebook[None]) ** 2).sum(-1)
        level_codes = d.argmin(1)
        residuals.append(residual)
        vectors.append(codebook[level_codes])
        codes.append(level_codes)
        residual = residual - codebook[level_codes]
    return np.stack(codes, -1), vectors, residuals


@pytest.mark.parametrize(
    "kwargs, trainable, non_trainable",
    [
        ({}, 0, 5 * 2),
        (
            {
                "quantizer": "vq",
                "shared_codebook": True,
                "quantizer_dropout": 0.5,
                "codebook_dim": 2,
                "distance": "cosine",
                "rotation_trick": True,
            },
            1 + 4,
            2,
        ),
    ],
    ids=["ema", "vq-every-option"],
)
def test_layer_conformance(kwargs, trainable, non_trainable):
    run_layer_test(
        ResidualVectorQuantizer,
        init_kwargs={
            "num_quantizers": 2,
            "num_embeddings": 8,
            "embedding_dim": 4,
            **kwargs,
        },
        input_data=_inputs((2, 3, 3, 4)),
        expected_output_shape=(2, 3, 3, 4),
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=non_trainable,
    )


def test_implements_the_quantizer_contract():
    layer = ResidualVectorQuantizer(L, K, D)
    assert isinstance(layer, Quantizer)
    assert (layer.num_levels, layer.num_embeddings, layer.embedding_dim) == (
        L,
        K,
        D,
    )


@pytest.mark.parametrize("quantizer", ["ema", "vq"])
def test_forward_encode_lookup_match_numpy(quantizer):
    codebooks = _codebooks()
    layer = _make(codebooks, quantizer=quantizer)
    z = _inputs((2, 6, D))
    codes, vectors, _ = _reference(z.reshape(-1, D), codebooks)
    codes = codes.reshape(2, 6, L)

    got = layer.encode(z)
    assert got.dtype == tf.int32 and tuple(got.shape) == (2, 6, L)
    np.testing.assert_array_equal(got, codes)
    total = np.sum(vectors, axis=0).reshape(2, 6, D)
    np.testing.assert_allclose(layer(z, training=False), total, atol=1e-6)
    np.testing.assert_allclose(layer.lookup(codes), total, atol=1e-6)
    # Prefixes: the first n levels' codes and vectors.
    for n in range(1, L + 1):
        prefix = layer.encode(z, num_quantizers=n)
        np.testing.assert_array_equal(prefix, codes[..., :n])
        np.testing.assert_allclose(
            layer.lookup(prefix),
            np.sum(vectors[:n], axis=0).reshape(2, 6, D),
            atol=1e-6,
        )
    np.testing.assert_array_equal(layer.codebook(), np.concatenate(codebooks))


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_lookup_of_a_level_axis_of_unknown_size(shared):
    """A serving signature takes codes `(..., None)`: any prefix n gives the
    numpy sum of the first n levels' vectors, equal to the static lookup."""
    codebooks = _codebooks()
    layer = (
        _make(codebooks[:1], shared=True, levels=L)
        if shared
        else _make(codebooks)
    )
    tables = [codebooks[0] if shared else c for c in codebooks]
    lookup = tf.function(
        layer.lookup, input_signature=[tf.TensorSpec((None, 6, None), "int32")]
    )
    codes = np.random.default_rng(0).integers(0, K, (2, 6, L), dtype="int32")
    for n in range(1, L + 1):
        expected = sum(tables[level][codes[..., level]] for level in range(n))
        got = lookup(codes[..., :n])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got, layer.lookup(codes[..., :n]))


def test_losses_and_gradients_match_numpy():
    """Straight-through over the total; each level's codebook and
    commitment losses on its own residual."""
    beta = 0.25
    codebooks = _codebooks()
    layer = _make(codebooks, quantizer="vq", commitment_cost=beta)
    z = tf.constant(_inputs((7, D), seed=3))
    upstream = _inputs((7, D), seed=4)
    weights = [stage.embeddings for stage in layer.stages]
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = layer(z, training=True)
        total = tf.reduce_sum(out * upstream) + tf.add_n(layer.losses)
    grad_z, *grad_e = tape.gradient(total, [z, *weights])

    codes, vectors, residuals = _reference(z.numpy(), codebooks)
    numel = z.numpy().size
    losses = [((r - q) ** 2).mean() for r, q in zip(residuals, vectors)]
    np.testing.assert_allclose(
        tf.add_n(layer.losses), (1 + beta) * np.sum(losses), rtol=1e-5
    )
    expected_z = upstream + sum(
        beta * 2.0 * (r - q) / numel for r, q in zip(residuals, vectors)
    )
    np.testing.assert_allclose(grad_z, expected_z, rtol=1e-5, atol=1e-7)
    for level in range(L):
        expected = np.zeros_like(codebooks[level], dtype="float64")
        np.add.at(
            expected,
            codes[:, level],
            2.0 * (vectors[level] - residuals[level]) / numel,
        )
        np.testing.assert_allclose(
            tf.convert_to_tensor(grad_e[level]), expected, atol=1e-6
        )


def test_reconstruction_error_strictly_decreases_with_levels():
    levels = 4
    layer = ResidualVectorQuantizer(levels, 16, D, seed=1)
    z = _inputs((256, D), seed=5)
    for _ in range(5):
        layer(z, training=True)
    errors = [
        float(np.mean((layer.lookup(layer.encode(z, n)) - z) ** 2))
        for n in range(1, levels + 1)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0], errors


def test_shared_codebook_is_one_codebook_for_every_level():
    codebook = _codebooks(levels=1)[0]
    layer = _make([codebook], shared=True, levels=L)
    assert len(layer.stages) == 1
    z = _inputs((3, 4, D))
    codes, vectors, _ = _reference(z.reshape(-1, D), [codebook] * L)
    np.testing.assert_array_equal(layer.encode(z), codes.reshape(3, 4, L))
    np.testing.assert_allclose(
        layer(z, training=False),
        np.sum(vectors, 0).reshape(3, 4, D),
        atol=1e-6,
    )
    np.testing.assert_array_equal(layer.codebook(), codebook)


def test_shared_codebook_ema_updates_once_from_all_levels():
    decay, eps = 0.5, 1e-5
    codebook = _codebooks(levels=1)[0]
    layer = _make([codebook], shared=True, levels=2, decay=decay)
    z = _inputs((30, D), seed=6)
    layer(z, training=True)
    codes, _, residuals = _reference(z, [codebook] * 2)
    flat = np.concatenate(residuals)
    assigned = np.concatenate([codes[:, 0], codes[:, 1]])
    counts = np.bincount(assigned, minlength=K).astype("float64")
    sums = np.zeros((K, D))
    np.add.at(sums, assigned, flat)
    cluster = (1 - decay) * counts
    total = cluster.sum()
    smoothed = (cluster + eps) / (total + K * eps) * total
    expected = np.where(
        (cluster >= eps)[:, None],
        (1 - decay) * sums / smoothed[:, None],
        codebook,
    )
    np.testing.assert_allclose(layer.stages[0].embeddings, expected, rtol=1e-5)
    assert int(layer.stages[0].update_count.numpy()) == 1


def test_quantizer_dropout_uses_a_prefix_of_the_levels():
    codebooks = _codebooks(levels=4)
    z = _inputs((6, D), seed=7)
    codes, vectors, _ = _reference(z, codebooks)
    prefixes = [np.sum(vectors[:n], 0) for n in range(1, 5)]

    def levels_used(seed):
        layer = _make(codebooks, quantizer_dropout=1.0, seed=seed)
        used = []
        for _ in range(12):
            # EMA moves the codebooks: compare with this step's prefixes.
            codes = layer.encode(z).numpy()
            prefixes = [layer.lookup(codes[:, :n]).numpy() for n in range(1, 5)]
            out = layer(z, training=True).numpy()
            matches = [
                n + 1
                for n, p in enumerate(prefixes)
                if np.allclose(out, p, atol=1e-6)
            ]
            assert matches, "the output is no prefix of the levels"
            used.append(matches[0])
        # Inference uses every level.
        full = layer.lookup(layer.encode(z))
        np.testing.assert_allclose(layer(z, training=False), full, atol=1e-6)
        return used

    used = levels_used(seed=3)
    assert len(set(used)) > 1
    assert used == levels_used(seed=3)  # a function of (seed, step)
    np.testing.assert_allclose(
        _make(codebooks)(z, training=True), prefixes[-1], atol=1e-6
    )


def test_per_level_and_pooled_usage_metrics_match_numpy():
    codebooks = _codebooks()
    layer = _make(codebooks)
    z = _inputs((40, D), seed=8)
    layer(z, training=False)
    codes, _, _ = _reference(z, codebooks)
    results = {}
    for metric in layer.metrics:
        results.update({k: float(v) for k, v in metric.result().items()})
        clone = CodebookUsage.from_config(metric.get_config())
        assert (clone.name, clone.level) == (metric.name, metric.level)
    assert len(layer.metrics) == L + 1

    def perplexity(counts):
        p = counts[counts > 0] / counts.sum()
        return np.exp(-(p * np.log(p)).sum())

    per_level = [np.bincount(codes[:, i], minlength=K) for i in range(L)]
    for level, counts in enumerate(per_level):
        np.testing.assert_allclose(
            results[f"perplexity_{level}"], perplexity(counts), rtol=1e-5
        )
        assert results[f"dead_codes_{level}"] == (counts == 0).sum()
    pooled = np.concatenate(per_level)
    np.testing.assert_allclose(
        results["epoch_perplexity"], perplexity(pooled), rtol=1e-5
    )
    assert results["dead_codes"] == (pooled == 0).sum()
    np.testing.assert_allclose(
        results["codebook_usage"], (pooled > 0).mean(), rtol=1e-6
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_state_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    layer = ResidualVectorQuantizer(
        2, K, D, quantizer_dropout=0.5, codebook_dim=3, rotation_trick=True
    )
    dtype = keras.mixed_precision.global_policy().compute_dtype
    z = tf.constant(_inputs((4, 5, D)), dtype)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = layer(z, training=True)
    assert out.dtype == dtype
    assert layer.lookup(layer.encode(z)).dtype == dtype
    for w in layer.weights:
        assert w.dtype in ("float32", "int64"), w.path
    assert np.all(np.isfinite(tape.gradient(out, z).numpy()))
    assert np.isfinite(tf.add_n(layer.losses).numpy())


def test_encode_converts_to_tflite_builtins():
    # K x 64 distances at most: the search runs in blocks of 64 rows.
    layer = ResidualVectorQuantizer(
        L,
        16,
        D,
        max_distance_elements=16 * 64,
        codebook_dim=3,
        distance="cosine",
    )
    z = _inputs((2, 8, 8, D), seed=10)
    layer(z, training=True)
    codes = tflite_encode(layer, z)
    np.testing.assert_array_equal(codes, layer.encode(z))
    assert codes.shape == (2, 8, 8, L)


def test_zero_size_batch():
    layer = _make(_codebooks())
    out = layer(np.zeros((0, 3, D), "float32"), training=False)
    assert tuple(out.shape) == (0, 3, D)
    codes = layer.encode(np.zeros((0, 3, D), "float32"))
    assert tuple(codes.shape) == (0, 3, L)
    assert tuple(layer.lookup(codes).shape) == (0, 3, D)


def _fit(strategy, initial_weights, z, **kwargs):
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((3, D)),
                keras.layers.Dense(D, kernel_initializer="glorot_uniform"),
                ResidualVectorQuantizer(2, 8, D, seed=2, **kwargs),
                keras.layers.Dense(D),
            ]
        )
        if initial_weights is not None:
            model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    start = model.get_weights()
    history = model.fit(z, z, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model, start, history


# About 30 s each on 2 shared cores, mostly tracing the replicated step.
@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {
            "quantizer": "vq",
            "quantizer_dropout": 0.5,
            "codebook_dim": 3,
            "rotation_trick": True,
        },
    ],
    ids=["defaults", "vq-dropout-options"],
)
def test_two_replicas_match_one_device(kwargs):
    z = _inputs((24, 3, D), seed=9)
    one, start, h1 = _fit(tf.distribute.get_strategy(), None, z, **kwargs)
    two, _, h2 = _fit(mirrored_strategy(), start, z, **kwargs)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    for w1, w2 in zip(one.weights, two.weights):
        np.testing.assert_allclose(
            np.asarray(w1), np.asarray(w2), atol=1e-5, err_msg=w1.path
        )
    rvq = one.layers[1]
    for stage in rvq.stages:
        assert int(stage.update_count.numpy()) == 6
    for key in ("perplexity_0", "perplexity_1", "epoch_perplexity"):
        np.testing.assert_allclose(
            h1.history[key], h2.history[key], rtol=1e-4, err_msg=key
        )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"num_quantizers": 0},
            ValueError,
            "`num_quantizers` must be a positive integer. "
            "Received: num_quantizers=0 (of type int).",
        ),
        (
            {"quantizer": "rvq"},
            ValueError,
            "`quantizer` must be one of 'ema' or 'vq'. "
            "Received: quantizer='rvq' (of type str).",
        ),
        (
            {"quantizer_dropout": 1.5},
            ValueError,
            "`quantizer_dropout` must be a number in [0, 1]. "
            "Received: quantizer_dropout=1.5 (of type float).",
        ),
        (
            {"shared_codebook": "yes"},
            TypeError,
            "`shared_codebook` must be a boolean. "
            "Received: shared_codebook='yes' (of type str).",
        ),
        (
            {"distance": "dot"},
            ValueError,
            "`distance` must be one of 'l2' or 'cosine'. "
            "Received: distance='dot' (of type str).",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_arguments_message(kwargs, error, message):
    args = {"num_quantizers": L, "num_embeddings": K, "embedding_dim": D}
    with pytest.raises(error) as raised:
        ResidualVectorQuantizer(**{**args, **kwargs})
    assert str(raised.value) == message


def test_bad_levels_message():
    layer = _make(_codebooks(), name="rvq")
    z = _inputs((2, D))
    for bad in (0, L + 1, 1.0):
        with pytest.raises(ValueError) as raised:
            layer.encode(z, num_quantizers=bad)
        assert str(raised.value) == (
            f"`num_quantizers` must be an integer in [1, {L}]. "
            f"Received: num_quantizers={bad!r} "
            f"(of type {type(bad).__name__})."
        )
    with pytest.raises(ValueError) as raised:
        layer.lookup(np.zeros((2, L + 1), "int32"))
    assert str(raised.value) == (
        "`rvq` expects codes of shape (..., n) with a level axis n "
        f"in [1, {L}]. Received: codes.shape=(2, {L + 1})"
    )
    unbuilt = ResidualVectorQuantizer(L, K, D, name="rvq")
    with pytest.raises(ValueError) as raised:
        unbuilt(np.zeros((2, D + 1), "float32"))
    assert str(raised.value) == (
        f"`rvq` expects inputs of shape (batch, ..., {D}): the last "
        f"dimension must equal embedding_dim={D}. "
        f"Received: inputs.shape=(2, {D + 1})"
    )
    with pytest.raises(ValueError) as raised:
        unbuilt(np.zeros((D,), "float32"))
    assert str(raised.value) == (
        f"`rvq` expects inputs of shape (batch, ..., {D}) with rank >= 2. "
        f"Received: inputs.shape=({D},)"
    )
