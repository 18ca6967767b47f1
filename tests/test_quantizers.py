"""VectorQuantizer / VectorQuantizerEMA against numpy references, and the
input checks every quantizer kind shares."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import run_layer_test, tflite_encode
from tf_vqvae import (
    FiniteScalarQuantizer,
    LookupFreeQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
    VectorQuantizerEMA,
    codebook_ops,
)

K, D = 6, 3


def _codebook(seed=0, k=K, d=D):
    return np.random.default_rng(seed).normal(size=(k, d)).astype("float32")


def _inputs(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _nearest(flat, codebook):
    d = ((flat[:, None, :] - codebook[None]) ** 2).sum(-1)
    return d.argmin(1)


def _make(cls, codebook, **kwargs):
    """A layer holding `codebook`; no data init or restarts unless asked
    (the default data init would replace the codebook at the first step)."""
    kwargs = {"data_init": None, "dead_code_restart_steps": None, **kwargs}
    layer = cls(codebook.shape[0], codebook.shape[1], **kwargs)
    layer.build((None, codebook.shape[1]))
    layer.embeddings.assign(codebook)
    return layer


QUANTIZERS = [
    pytest.param(VectorQuantizer, id="vq"),
    pytest.param(VectorQuantizerEMA, id="ema"),
]


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_layer_conformance(cls):
    # update_count, steps_since_used (+ EMA: cluster sizes, sums, codebook)
    non_trainable = {VectorQuantizer: 2, VectorQuantizerEMA: 5}[cls]
    trainable = {VectorQuantizer: 1, VectorQuantizerEMA: 0}[cls]
    run_layer_test(
        cls,
        init_kwargs={"num_embeddings": 8, "embedding_dim": 4},
        input_data=_inputs((2, 3, 3, 4)),
        expected_output_shape=(2, 3, 3, 4),
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=non_trainable,
    )


@pytest.mark.parametrize("cls", QUANTIZERS)
@pytest.mark.parametrize(
    "shape",
    [(4, 7, D), (2, 5, 4, D), (2, 3, 2, 4, D)],
    ids=["1d", "2d", "3d"],
)
def test_forward_is_nearest_code_any_rank(cls, shape):
    codebook = _codebook()
    layer = _make(cls, codebook)
    z = _inputs(shape)
    codes = _nearest(z.reshape(-1, D), codebook).reshape(shape[:-1])

    np.testing.assert_array_equal(layer.encode(z), codes)
    z_q = layer(z, training=False)
    np.testing.assert_array_equal(z_q, codebook[codes])
    np.testing.assert_array_equal(layer.lookup(codes), codebook[codes])
    assert layer.encode(z).dtype == tf.int32


def test_squared_distances_match_numpy():
    codebook = _codebook()
    layer = _make(VectorQuantizer, codebook)
    z = _inputs((2, 5, D))
    expected = ((z[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_allclose(layer.distances(z), expected, rtol=1e-5)


def test_gradients_match_numpy_reference():
    """Straight-through identity; codebook loss trains only the codebook;
    commitment gradient is scaled by commitment_cost."""
    beta = 0.25
    codebook = _codebook()
    layer = _make(VectorQuantizer, codebook, commitment_cost=beta)
    z = tf.constant(_inputs((5, D)))
    upstream = _inputs((5, D), seed=7)
    with tf.GradientTape() as tape:
        tape.watch(z)
        z_q = layer(z, training=True)
        total = tf.reduce_sum(z_q * upstream) + tf.add_n(layer.losses)
    grad_z, grad_e = tape.gradient(total, [z, layer.embeddings])
    grad_e = tf.convert_to_tensor(grad_e)  # IndexedSlices from the gather

    flat = z.numpy()
    codes = _nearest(flat, codebook)
    e_q = codebook[codes]
    numel = flat.size
    # d/dz: straight-through upstream + beta * d mean((z - sg e)^2)
    expected_z = upstream + beta * 2.0 * (flat - e_q) / numel
    # d/dE: only the codebook term mean((sg z - e)^2)
    expected_e = np.zeros_like(codebook)
    np.add.at(expected_e, codes, 2.0 * (e_q - flat) / numel)
    np.testing.assert_allclose(grad_z, expected_z, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad_e, expected_e, rtol=1e-5, atol=1e-7)

    codebook_loss = ((flat - e_q) ** 2).mean()
    np.testing.assert_allclose(
        tf.add_n(layer.losses), (1 + beta) * codebook_loss, rtol=1e-5
    )


def test_codebook_gets_no_gradient_through_output():
    layer = _make(VectorQuantizer, _codebook())
    z = tf.constant(_inputs((5, D)))
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(z, training=True))
    assert tape.gradient(out, layer.embeddings) is None


def _ema_reference(flat, codebook, cluster, sums, decay, eps):
    codes = _nearest(flat, codebook)
    k = codebook.shape[0]
    counts = np.bincount(codes, minlength=k).astype("float64")
    batch_sums = np.zeros(codebook.shape, "float64")
    np.add.at(batch_sums, codes, flat)
    cluster = decay * cluster + (1 - decay) * counts
    sums = decay * sums + (1 - decay) * batch_sums
    total = cluster.sum()
    smoothed = (cluster + eps) / (total + k * eps) * total
    new = np.where(
        (cluster >= eps)[:, None], sums / smoothed[:, None], codebook
    )
    return new, cluster, sums


def test_ema_update_matches_appendix_a1_step_by_step():
    decay, eps, beta = 0.9, 1e-5, 0.25
    codebook = _codebook()
    layer = _make(
        VectorQuantizerEMA,
        codebook,
        decay=decay,
        epsilon=eps,
        commitment_cost=beta,
    )
    assert layer.trainable_weights == []
    ref_e = codebook.astype("float64")
    ref_n = np.zeros(K)
    ref_m = np.zeros((K, D))
    for step in range(4):
        z = _inputs((2, 4, D), seed=10 + step)
        flat = z.reshape(-1, D)
        expected_codes = _nearest(flat, ref_e)
        z_q = layer(z, training=True)
        np.testing.assert_allclose(
            z_q.numpy().reshape(-1, D), ref_e[expected_codes], rtol=1e-5
        )
        commitment = beta * ((flat - ref_e[expected_codes]) ** 2).mean()
        np.testing.assert_allclose(
            tf.add_n(layer.losses), commitment, rtol=1e-5
        )
        ref_e, ref_n, ref_m = _ema_reference(
            flat, ref_e, ref_n, ref_m, decay, eps
        )
        np.testing.assert_allclose(layer.ema_cluster_size, ref_n, rtol=1e-5)
        np.testing.assert_allclose(layer.ema_sum, ref_m, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            layer.embeddings, ref_e, rtol=1e-4, atol=1e-6
        )


def test_ema_never_picked_code_keeps_its_vector():
    codebook = _codebook()
    codebook[5] = 100.0  # far from every input: never picked
    layer = _make(VectorQuantizerEMA, codebook)
    for step in range(3):
        layer(_inputs((16, D), seed=step), training=True)
    np.testing.assert_array_equal(layer.embeddings[5], codebook[5])


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_inference_never_moves_state(cls):
    layer = _make(
        cls, _codebook(), data_init="random", dead_code_restart_steps=1
    )
    before = [w.numpy().copy() for w in layer.weights]
    for training in (False, None):
        layer(_inputs((8, D)), training=training)
        layer.encode(_inputs((8, D)))
    for w, b in zip(layer.weights, before):
        np.testing.assert_array_equal(w, b)


def test_chunked_search_equals_unchunked():
    codebook = _codebook(k=300, d=8)
    flat = tf.constant(_inputs((1001, 8)))
    whole = codebook_ops.nearest_codes(flat, codebook, 10**9)
    np.testing.assert_array_equal(whole, _nearest(flat.numpy(), codebook))
    for max_elements in (300, 300 * 7, 300 * 1000):
        chunked = codebook_ops.nearest_codes(flat, codebook, max_elements)
        np.testing.assert_array_equal(chunked, whole)

    graph_fn = tf.function(
        lambda x: codebook_ops.nearest_codes(x, codebook, 300 * 64),
        input_signature=[tf.TensorSpec([None, 8])],
    )
    np.testing.assert_array_equal(graph_fn(flat), whole)
    np.testing.assert_array_equal(graph_fn(flat[:10]), whole[:10])
    # Blocks of 64 rows: exactly one and two blocks, and an empty batch.
    for n in (0, 64, 128, 129):
        np.testing.assert_array_equal(graph_fn(flat[:n]), whole[:n])


def test_large_codebook_runs_in_chunks():
    k, d = 65536, 16
    layer = VectorQuantizer(k, d, max_distance_elements=2**22)
    z = _inputs((2, 16, 16, d))
    codes = layer.encode(z)
    flat = z.reshape(-1, d)
    # Check a sample of rows against brute force.
    e = layer.embeddings.numpy()
    rows = np.arange(0, flat.shape[0], 37)
    expected = _nearest(flat[rows], e)
    np.testing.assert_array_equal(codes.numpy().reshape(-1)[rows], expected)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_zero_size_batch(cls):
    layer = _make(cls, _codebook())
    out = layer(np.zeros((0, 4, D), "float32"), training=False)
    assert tuple(out.shape) == (0, 4, D)
    assert tuple(layer.encode(np.zeros((0, 4, D), "float32")).shape) == (0, 4)


@pytest.mark.parametrize("method", ["random", "kmeans++"])
def test_data_init_picks_encoder_outputs(method):
    layer = VectorQuantizer(K, D, data_init=method, seed=3)
    z = _inputs((40, D))
    layer(z, training=True)
    codebook = layer.embeddings.numpy()
    # Every code is one of the inputs, and they are distinct.
    d = ((codebook[:, None] - z[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d.min(1), 0.0, atol=1e-10)
    assert len({tuple(r) for r in codebook}) == K
    # Only the first training batch initialises.
    layer(_inputs((40, D), seed=9), training=True)
    np.testing.assert_allclose(layer.embeddings, codebook)


def test_kmeans_plus_plus_spreads_codes_over_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], "float32")
    z = centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 2)) * 0.1
    codebook = codebook_ops.kmeans_plus_plus(
        tf.constant(z.astype("float32")), 4, tf.constant([1, 2], "int64")
    ).numpy()
    assert sorted(_nearest(codebook, centres).tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_dead_codes_restart_from_encoder_outputs(cls):
    codebook = _codebook()
    codebook[4:] = 50.0  # codes 4, 5 are never picked
    layer = _make(cls, codebook, dead_code_restart_steps=2, seed=1)
    z = _inputs((32, D))
    layer(z, training=True)
    np.testing.assert_array_equal(layer.embeddings[4:], codebook[4:])
    layer(z, training=True)  # second unused step: restart
    restarted = layer.embeddings.numpy()[4:]
    d = ((restarted[:, None] - z[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d.min(1), 0.0, atol=1e-10)
    np.testing.assert_array_equal(layer.steps_since_used.numpy()[4:], 0)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_defaults_draw_the_codebook_from_the_first_batch(cls):
    layer = cls(K, D)
    assert (layer.data_init, layer.dead_code_restart_steps) == ("random", 100)
    z = _inputs((32, D))
    layer(z, training=True)
    # Each code is one of the first batch's vectors, so each picks at least
    # that vector: the whole codebook is in use from the first step.
    assert float(layer.usage.result()["codebook_usage"]) == 1.0
    if cls is VectorQuantizer:  # EMA has moved codes to their cluster means
        d = ((layer.embeddings.numpy()[:, None] - z[None]) ** 2).sum(-1)
        np.testing.assert_allclose(d.min(1), 0.0, atol=1e-10)
    assert int(layer.update_count.numpy()) == 1


def test_codebook_usage_metric_matches_numpy():
    codebook = _codebook()
    layer = _make(VectorQuantizer, codebook)
    batches = [_inputs((20, D), seed=s) for s in range(3)]
    for z in batches:
        layer(z, training=False)
    result = {k: float(v) for k, v in layer.usage.result().items()}

    def perplexity(counts):
        p = counts / counts.sum()
        p = p[p > 0]
        return np.exp(-(p * np.log(p)).sum())

    per_batch = [
        np.bincount(_nearest(z, codebook), minlength=K) for z in batches
    ]
    pooled = np.sum(per_batch, axis=0)
    np.testing.assert_allclose(
        result["perplexity"],
        np.mean([perplexity(c) for c in per_batch]),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        result["codebook_usage"],
        np.mean([(c > 0).mean() for c in per_batch]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        result["epoch_perplexity"], perplexity(pooled), rtol=1e-5
    )
    assert result["dead_codes"] == float((pooled == 0).sum())


@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
@pytest.mark.parametrize("cls", QUANTIZERS)
def test_mixed_precision_keeps_codebook_float32(cls, compute):
    keras.mixed_precision.set_global_policy(f"mixed_{compute}")
    layer = cls(K, D, data_init="kmeans++", dead_code_restart_steps=1)
    inputs = _inputs((4, 5, D))
    z = tf.constant(inputs, compute)
    out = layer(z, training=True)
    assert out.dtype == compute
    assert layer.embeddings.dtype == "float32"
    for w in layer.non_trainable_weights:
        assert w.dtype in ("float32", "int64")
    assert layer.distances(z).dtype == tf.float32
    loss = tf.add_n(layer.losses)
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
    assert np.all(np.isfinite(layer.embeddings.numpy()))
    # The search runs in float32 on the low-precision inputs: the numpy
    # nearest codes of the rounded vectors.
    rounded = z.numpy().astype("float64")
    table = layer.embeddings.numpy().astype("float64")
    expected = ((rounded[..., None, :] - table) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(layer.encode(z).numpy(), expected)


def test_check_finite_rejects_nan():
    layer = VectorQuantizer(K, D, check_finite=True)
    z = _inputs((4, D))
    z[1, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        layer(z)


@pytest.mark.parametrize(
    "shape, message",
    [
        (
            (2, 5, 4),
            "`vq` expects inputs of shape (batch, ..., 3): the last "
            "dimension must equal embedding_dim=3. "
            "Received: inputs.shape=(2, 5, 4)",
        ),
        (
            (3,),
            "`vq` expects inputs of shape (batch, ..., 3) with rank >= 2. "
            "Received: inputs.shape=(3,)",
        ),
    ],
    ids=["last-dim", "rank"],
)
def test_bad_input_shape_message(shape, message):
    layer = VectorQuantizer(K, D, name="vq")
    with pytest.raises(ValueError) as error:
        layer(np.zeros(shape, "float32"))
    assert str(error.value) == message
    built = _make(VectorQuantizer, _codebook(), name="vq")
    with pytest.raises(ValueError) as error:
        built.encode(np.zeros(shape, "float32"))
    assert str(error.value) == message


# A layer of every kind: 16 codes (per level) of 4 channels.
EVERY_KIND = {
    "vq": lambda: VectorQuantizer(16, 4, name="q"),
    "ema": lambda: VectorQuantizerEMA(16, 4, name="q"),
    "rvq": lambda: ResidualVectorQuantizer(2, 16, 4, name="q"),
    "fsq": lambda: FiniteScalarQuantizer((4, 4), embedding_dim=4, name="q"),
    "lfq": lambda: LookupFreeQuantizer(16, embedding_dim=4, name="q"),
}


@pytest.mark.parametrize("kind", sorted(EVERY_KIND))
def test_every_kind_refuses_non_float_inputs_and_non_integer_codes(kind):
    """Integer inputs used to be quantized as latents (or give int zeros),
    float codes truncated to another code: each is refused, statically,
    naming the argument; every float dtype still quantizes as float32."""
    bad_inputs = (
        "`inputs` of `q` must be a float tensor (batch, ..., "
        "embedding_dim=4). Received: inputs of dtype int32 and shape "
        "(2, 3, 4)."
    )
    unbuilt = EVERY_KIND[kind]()
    with pytest.raises(TypeError) as error:
        unbuilt.encode(np.ones((2, 3, 4), "int32"))
    assert str(error.value) == bad_inputs
    assert not unbuilt.built
    with pytest.raises(TypeError) as error:
        unbuilt(tf.ones((2, 3, 4), "int32"))
    # Keras adds the call's arguments around the message.
    assert bad_inputs in str(error.value)

    layer = EVERY_KIND[kind]()
    z = _inputs((2, 3, 4))
    layer(z)
    with pytest.raises(TypeError) as error:
        tf.function(layer.encode)(tf.ones((2, 3, 4), "int64"))
    assert bad_inputs.replace("int32", "int64") in str(error.value)
    for codes in (np.array([[1.7]], "float32"), np.array([[True]])):
        with pytest.raises(TypeError) as error:
            layer.lookup(codes)
        assert str(error.value) == (
            "`codes` of `q` must be an integer tensor, values in "
            "[0, num_embeddings=16). Received: codes of dtype "
            f"{tf.as_dtype(codes.dtype).name} and shape (1, 1)."
        )
    wrong_dim = (
        "`q` expects inputs of shape (batch, ..., 4): the last dimension "
        "must equal embedding_dim=4. Received: inputs.shape=(2, 3, 5)"
    )
    with pytest.raises(ValueError) as error:
        layer.encode(np.zeros((2, 3, 5), "float32"))
    assert str(error.value) == wrong_dim

    codes = layer.encode(z)
    expected = layer(z, training=False)
    for dtype in ("float16", "bfloat16", "float64"):
        low = tf.cast(z, dtype)
        as_float32 = tf.cast(low, "float32")
        np.testing.assert_array_equal(
            layer.encode(low), layer.encode(as_float32)
        )
        np.testing.assert_array_equal(
            layer(low, training=False), layer(as_float32, training=False)
        )
    np.testing.assert_array_equal(layer.encode(tf.cast(z, "float64")), codes)
    for dtype in ("int32", "int64", "uint8"):
        np.testing.assert_allclose(
            layer.lookup(tf.cast(codes, dtype)), expected, atol=1e-6
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"num_embeddings": 0},
            "`num_embeddings` must be a positive integer. "
            "Received: num_embeddings=0 (of type int).",
        ),
        (
            {"embedding_dim": 2.0},
            "`embedding_dim` must be a positive integer. "
            "Received: embedding_dim=2.0 (of type float).",
        ),
        (
            {"commitment_cost": -1},
            "`commitment_cost` must be a non-negative finite number. "
            "Received: commitment_cost=-1 (of type int).",
        ),
        (
            {"data_init": "kmeans"},
            "`data_init` must be one of None, 'random' or 'kmeans++'. "
            "Received: data_init='kmeans' (of type str).",
        ),
        (
            {"dead_code_restart_steps": 0},
            "`dead_code_restart_steps` must be a positive integer. "
            "Received: dead_code_restart_steps=0 (of type int).",
        ),
        (
            {"decay": 1.0},
            "`decay` must be a number in [0, 1). "
            "Received: decay=1.0 (of type float).",
        ),
        (
            {"epsilon": 0},
            "`epsilon` must be a positive number. "
            "Received: epsilon=0 (of type int).",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_arguments_message(kwargs, message):
    args = {"num_embeddings": K, "embedding_dim": D, **kwargs}
    with pytest.raises(ValueError) as error:
        VectorQuantizerEMA(**args)
    assert str(error.value) == message


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_codebook_initialised_on_the_scale_of_one_over_sqrt_d(cls):
    """U(-sqrt(3/D), sqrt(3/D)), Sonnet's codebook initialisation."""
    layer = cls(4096, 64, seed=1)
    layer.build((None, 64))
    e = layer.embeddings.numpy()
    limit = np.sqrt(3.0 / 64)
    assert np.abs(e).max() <= limit
    np.testing.assert_allclose(e.std(), limit / np.sqrt(3.0), rtol=0.02)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_codebook_is_the_embeddings(cls):
    codebook = _codebook()
    layer = _make(cls, codebook)
    out = layer.codebook()
    assert out.dtype == tf.float32 and tuple(out.shape) == (K, D)
    np.testing.assert_array_equal(out, codebook)
    np.testing.assert_array_equal(layer.lookup(np.arange(K)), codebook)


# ---------------------------------------------------------------- options
OPTIONS = [
    pytest.param({"rotation_trick": True}, id="rotation"),
    pytest.param({"distance": "cosine"}, id="cosine"),
    pytest.param({"codebook_dim": 2}, id="codebook-dim"),
    pytest.param(
        {"codebook_dim": 2, "distance": "cosine", "rotation_trick": True},
        id="all",
    ),
]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


ALL_OPTIONS = OPTIONS[-1].values[0]
# Each option on VectorQuantizer, all of them on both classes.
CONFORMANCE = [
    *(
        pytest.param(VectorQuantizer, *p.values, id=f"vq-{p.id}")
        for p in OPTIONS[:-1]
    ),
    pytest.param(VectorQuantizerEMA, ALL_OPTIONS, id="ema-all"),
]


@pytest.mark.parametrize("cls, options", CONFORMANCE)
def test_layer_conformance_with_options(cls, options):
    projections = 4 if "codebook_dim" in options else 0
    non_trainable = {VectorQuantizer: 2, VectorQuantizerEMA: 5}[cls]
    trainable = {VectorQuantizer: 1, VectorQuantizerEMA: 0}[cls]
    layer = run_layer_test(
        cls,
        init_kwargs={"num_embeddings": 8, "embedding_dim": 4, **options},
        input_data=_inputs((2, 3, 3, 4)),
        expected_output_shape=(2, 3, 3, 4),
        expected_num_trainable_weights=trainable + projections,
        expected_num_non_trainable_weights=non_trainable,
    )
    for key, value in options.items():
        assert layer.get_config()[key] == value


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_rotation_trick_gradient_matches_householder_construction(cls):
    """Forward: plain VQ. Backward: `(lambda R)^T g` with the explicit
    `D x D` matrix `R = I - 2 r r^T + 2 q e^T` built in numpy (float64)."""
    d = 5
    codebook = _codebook(k=7, d=d)
    plain = _make(cls, codebook)
    rotated = _make(cls, codebook, rotation_trick=True)
    z = tf.constant(_inputs((3, 4, d), seed=2))
    upstream = _inputs((3, 4, d), seed=3)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = rotated(z, training=False)
        total = tf.reduce_sum(out * upstream)
    grad = tape.gradient(total, z).numpy().reshape(-1, d)
    np.testing.assert_array_equal(out, plain(z, training=False))

    flat = z.numpy().reshape(-1, d).astype("float64")
    q = codebook[_nearest(flat, codebook)].astype("float64")
    g = upstream.reshape(-1, d).astype("float64")
    np.testing.assert_array_equal(out.numpy().reshape(-1, d), q)
    for e_i, q_i, g_i, got in zip(flat, q, g, grad):
        e_hat, q_hat = _unit(e_i), _unit(q_i)
        r = _unit(e_hat + q_hat)
        rotation = np.eye(d) - 2 * np.outer(r, r) + 2 * np.outer(q_hat, e_hat)
        np.testing.assert_allclose(rotation @ e_hat, q_hat, atol=1e-12)
        matrix = np.linalg.norm(q_i) / np.linalg.norm(e_i) * rotation
        np.testing.assert_allclose(got, matrix.T @ g_i, rtol=0, atol=1e-6)
    # The codebook still gets no gradient through the output.
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(rotated(z, training=True))
    assert tape.gradient(out, rotated.trainable_weights) in ([], [None])


def test_rotation_trick_passes_zero_inputs_straight_through():
    codebook = np.array([[1.0, 0.0], [0.0, 3.0]], "float32")
    layer = _make(VectorQuantizer, codebook, rotation_trick=True)
    z = tf.constant([[0.0, 0.0], [2.0, 0.0]], "float32")
    upstream = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(layer(z, training=False) * upstream)
    grad = tape.gradient(total, z).numpy()
    np.testing.assert_array_equal(grad[0], upstream[0])
    # Same direction as its code: a pure rescaling by ||q|| / ||e||.
    np.testing.assert_allclose(grad[1], upstream[1] / 2.0, rtol=1e-6)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_cosine_distance_picks_largest_cosine_similarity(cls):
    codebook = _codebook(k=9, d=4) * np.arange(1, 10, dtype="float32")[:, None]
    layer = _make(cls, codebook, distance="cosine")
    z = _inputs((6, 5, 4), seed=4) * 3.0
    similarity = _unit(z) @ _unit(codebook).T
    expected = similarity.argmax(-1)
    codes = layer.encode(z)
    np.testing.assert_array_equal(codes, expected)
    # Different from L2 here (scaled codes), so the test is not vacuous.
    assert not np.array_equal(
        expected.reshape(-1), _nearest(z.reshape(-1, 4), codebook)
    )
    np.testing.assert_allclose(
        layer(z, training=False), _unit(codebook)[expected], rtol=1e-6
    )
    np.testing.assert_allclose(layer.codebook(), _unit(codebook), rtol=1e-6)
    np.testing.assert_allclose(
        layer.distances(z),
        ((_unit(z)[..., None, :] - _unit(codebook)) ** 2).sum(-1),
        atol=1e-5,
    )


def test_cosine_ema_moves_towards_unit_inputs_and_looks_up_unit_codes():
    decay, eps = 0.5, 1e-5
    codebook = _codebook(k=4, d=3)
    layer = _make(VectorQuantizerEMA, codebook, distance="cosine", decay=decay)
    z = _inputs((20, 3), seed=5) * 4.0
    layer(z, training=True)
    # Appendix A.1's update on the normalised inputs and codebook.
    expected, _, _ = _ema_reference(
        _unit(z), _unit(codebook), np.zeros(4), np.zeros((4, 3)), decay, eps
    )
    np.testing.assert_allclose(layer.embeddings, expected, rtol=1e-5)
    codes = layer.encode(z)
    np.testing.assert_array_equal(
        codes, (_unit(z) @ _unit(expected).T).argmax(-1)
    )
    np.testing.assert_allclose(
        layer.lookup(codes), _unit(expected)[codes], rtol=1e-5
    )


@pytest.mark.parametrize("cls", QUANTIZERS)
@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_codebook_dim_projects_in_and_out(cls, distance):
    k, d, c = 6, 5, 2
    layer = cls(k, d, codebook_dim=c, distance=distance, seed=2)
    z = _inputs((3, 4, d), seed=6)
    layer(z, training=True)  # data init in the C space
    assert tuple(layer.embeddings.shape) == (k, c)
    assert tuple(layer.codebook().shape) == (k, c)
    w_in, b_in = (np.asarray(w) for w in layer.project_in.weights)
    w_out, b_out = (np.asarray(w) for w in layer.project_out.weights)
    low = z.reshape(-1, d) @ w_in + b_in
    codebook = layer.embeddings.numpy()
    if distance == "cosine":
        low, codebook = _unit(low), _unit(codebook)
    codes = _nearest(low, codebook).reshape(3, 4)
    np.testing.assert_array_equal(layer.encode(z), codes)
    expected = codebook[codes] @ w_out + b_out
    # atol: outputs near 0 come from cancelling terms (seen: 6.9e-4 off by
    # 4e-8, matmul kernels differing between CPUs).
    np.testing.assert_allclose(
        layer.lookup(codes), expected, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        layer(z, training=False), layer.lookup(layer.encode(z)), rtol=1e-6
    )
    assert tuple(layer.lookup(codes).shape) == (3, 4, d)
    # Data init drew the codebook from the projected inputs.
    if cls is VectorQuantizer:
        picked = ((codebook[:, None] - low[None]) ** 2).sum(-1).min(1)
        np.testing.assert_allclose(picked, 0.0, atol=1e-10)


def test_codebook_dim_losses_live_in_the_low_dim_space():
    beta = 0.5
    layer = VectorQuantizer(4, 6, codebook_dim=3, commitment_cost=beta)
    z = _inputs((10, 6), seed=8)
    layer(z, training=False)
    w_in, b_in = (np.asarray(w) for w in layer.project_in.weights)
    low = z @ w_in + b_in
    codebook = layer.embeddings.numpy()
    q = codebook[_nearest(low, codebook)]
    np.testing.assert_allclose(
        tf.add_n(layer.losses), (1 + beta) * ((low - q) ** 2).mean(), rtol=1e-5
    )
    # Both projections and the codebook learn.
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(z, training=True)) + tf.add_n(layer.losses)
    grads = tape.gradient(total, layer.trainable_weights)
    assert len(grads) == 5 and all(g is not None for g in grads)


@pytest.mark.parametrize("cls", QUANTIZERS)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_with_options_keeps_state_float32(cls, policy):
    keras.mixed_precision.set_global_policy(policy)
    layer = cls(K, 4, dead_code_restart_steps=1, **ALL_OPTIONS)
    z = tf.constant(
        _inputs((4, 5, 4)), keras.mixed_precision.global_policy().compute_dtype
    )
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = layer(z, training=True)
    assert out.dtype == z.dtype
    for w in layer.weights:
        assert w.dtype in ("float32", "int64"), w.path
    assert np.all(np.isfinite(tape.gradient(out, z).numpy()))
    assert np.isfinite(tf.add_n(layer.losses).numpy())
    assert layer.codebook().dtype == tf.float32


def test_encode_with_options_converts_to_tflite_builtins():
    # K x 64 distances at most: the search runs in blocks of 64 rows.
    layer = VectorQuantizerEMA(
        16, 4, max_distance_elements=16 * 64, **ALL_OPTIONS
    )
    z = _inputs((2, 8, 8, 4), seed=10)
    layer(z, training=True)
    np.testing.assert_array_equal(tflite_encode(layer, z), layer.encode(z))


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_zero_size_batch_with_options(cls):
    layer = cls(K, 4, **ALL_OPTIONS)
    layer.build((None, 4))
    out = layer(np.zeros((0, 3, 4), "float32"), training=False)
    assert tuple(out.shape) == (0, 3, 4)
    assert tuple(layer.encode(np.zeros((0, 3, 4), "float32")).shape) == (0, 3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"distance": "dot"},
            ValueError,
            "`distance` must be one of 'l2' or 'cosine'. "
            "Received: distance='dot' (of type str).",
        ),
        (
            {"codebook_dim": 0},
            ValueError,
            "`codebook_dim` must be a positive integer. "
            "Received: codebook_dim=0 (of type int).",
        ),
        (
            {"rotation_trick": 1},
            TypeError,
            "`rotation_trick` must be a boolean. "
            "Received: rotation_trick=1 (of type int).",
        ),
    ],
    ids=["distance", "codebook_dim", "rotation_trick"],
)
def test_bad_option_message(kwargs, error, message):
    with pytest.raises(error) as raised:
        VectorQuantizerEMA(K, D, **kwargs)
    assert str(raised.value) == message
