"""LookupFreeQuantizer against numpy brute force over all 2**k codes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import mirrored_strategy
from tests.testing import run_layer_test, tflite_endpoints
from tf_vqvae import VQVAE, LookupFreeQuantizer
from tf_vqvae.contracts import Quantizer
from tf_vqvae.quantizers import lookup_free


def _inputs(shape, seed=1, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=shape)).astype("float32")


def _corners(k):
    """All 2**k codes in {-1, +1}^k, row c with bit i of c on channel i."""
    bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    return 2.0 * bits - 1.0


def _brute_force(z, temperature):
    """Per-sample code distributions softmax(-||z - c||^2 / T) over all
    codes, in float64: (mean per-sample entropy, batch entropy, sums)."""
    k = z.shape[-1]
    flat = z.reshape(-1, k).astype(np.float64)
    logits = -((flat[:, None, :] - _corners(k)[None]) ** 2).sum(-1)
    logits /= temperature
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)

    def entropy(q):
        return -np.sum(
            np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0), -1
        )

    return entropy(p).mean(), entropy(p.mean(0)), p.sum(0)


def _tf_brute_force_sums(logits):
    """`sum_n p(c | z_n)` from the `[N, K]` softmax, with TF autodiff: the
    reference for the chunked custom gradient. `logits` are per-bit
    log-odds, so the code logits are `bits @ a` (up to a per-row constant).
    """
    k = logits.shape[-1]
    bits = tf.constant((_corners(k) + 1) / 2, "float32")
    return tf.reduce_sum(
        tf.nn.softmax(tf.matmul(logits, bits, transpose_b=True)), axis=0
    )


def _factorised_entropy(logits):
    """Batch entropy for per-bit log-odds `logits` `[N, k]`, in numpy:
    `p(c | n) = prod_i sigmoid(+-a_ni)`, 50 rows at a time."""
    k = logits.shape[-1]
    bits = (_corners(k) + 1) / 2
    sums = np.zeros(2**k)
    for start in range(0, len(logits), 50):
        a = logits[start : start + 50].astype(np.float64)
        log_p = (
            -np.logaddexp(0, -a) @ bits.T - np.logaddexp(0, a) @ (1 - bits).T
        )
        sums += np.exp(log_p).sum(0)
    mean = sums / len(logits)
    return -np.sum(mean[mean > 0] * np.log(mean[mean > 0]))


@pytest.mark.parametrize(
    "embedding_dim, trainable",
    [(None, 0), (6, 4)],
    ids=["no-projection", "projections"],
)
def test_layer_conformance(embedding_dim, trainable):
    dim = embedding_dim or 4
    run_layer_test(
        LookupFreeQuantizer,
        init_kwargs={"codebook_size": 16, "embedding_dim": embedding_dim},
        input_data=_inputs((2, 3, 3, dim)),
        expected_output_shape=(2, 3, 3, dim),
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=0,
        # One `fit` step (tracing the entropy's loops) is enough.
        run_training_check=embedding_dim is not None,
    )


def test_implements_the_quantizer_contract():
    layer = LookupFreeQuantizer(2**5, embedding_dim=6)
    assert isinstance(layer, Quantizer)
    assert (layer.num_embeddings, layer.embedding_dim) == (32, 6)
    assert (layer.num_levels, layer.codebook_dim) == (1, 5)
    z = _inputs((2, 5, 6))
    codes = layer.encode(z)
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (2, 5)
    np.testing.assert_array_equal(layer.lookup(codes), layer(z, training=False))
    # The codebook as the rounding sees it: before the output projection.
    codebook = layer.codebook()
    assert codebook.dtype == tf.float32 and tuple(codebook.shape) == (32, 5)
    np.testing.assert_array_equal(
        layer.project_out(tf.gather(codebook, codes)), layer.lookup(codes)
    )
    assert LookupFreeQuantizer(2**17).codebook() is None
    assert LookupFreeQuantizer(2**16).codebook().shape == (2**16, 16)


@pytest.mark.parametrize("k", [1, 4, 6])
def test_index_and_bits_are_a_bijection(k):
    layer = LookupFreeQuantizer(2**k)
    index = np.arange(2**k)
    corners = layer.lookup(index).numpy()
    np.testing.assert_array_equal(corners, _corners(k))
    np.testing.assert_array_equal(layer.encode(corners), index)
    np.testing.assert_array_equal(layer.codebook(), _corners(k))


@pytest.mark.parametrize(
    "shape", [(40, 5), (3, 4, 5), (2, 3, 2, 2, 5)], ids=["1d", "2d", "3d"]
)
def test_forward_is_the_sign_and_index_the_bits(shape):
    layer = LookupFreeQuantizer(2**5)
    z = _inputs(shape)
    z.reshape(-1)[::7] = 0.0  # sign(0) quantizes to -1 (bit 0)
    bits = (z > 0).astype(np.int64)
    np.testing.assert_array_equal(layer(z, training=True), 2.0 * bits - 1)
    np.testing.assert_array_equal(
        layer.encode(z), (bits * 2 ** np.arange(5)).sum(-1)
    )


def test_output_gradient_is_straight_through():
    layer = LookupFreeQuantizer(2**4)
    z = tf.constant(_inputs((6, 4)))
    weights = _inputs((6, 4), seed=2)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = tf.reduce_sum(layer(z, training=True) * weights)
    np.testing.assert_array_equal(tape.gradient(out, z), weights)


@pytest.mark.parametrize(
    "k, temperature, scale",
    [
        (1, 0.5, 1.0),
        (4, 0.5, 1.0),
        (5, 1.0, 0.7),
        (6, 0.5, 1.0),
        (5, 0.01, 0.01),
    ],
    ids=["k1", "k4", "k5", "k6", "k5-default-temperature"],
)
def test_entropies_and_loss_match_numpy_brute_force(k, temperature, scale):
    layer = LookupFreeQuantizer(
        2**k,
        entropy_loss_weight=0.3,
        commitment_cost=0.2,
        diversity_gamma=0.8,
        temperature=temperature,
    )
    z = _inputs((3, 7, k), scale=scale)
    per_sample, batch, _ = _brute_force(z, temperature)
    assert batch > 0.5 and per_sample > 0.1  # not degenerate
    got = layer.entropies(z)
    np.testing.assert_allclose(got, (per_sample, batch), rtol=2e-5)

    layer(z, training=True)
    commitment = ((z - np.where(z > 0, 1.0, -1.0)) ** 2).mean()
    expected = 0.2 * commitment + 0.3 * (per_sample - 0.8 * batch)
    (loss,) = layer.losses
    np.testing.assert_allclose(loss, expected, rtol=2e-5)
    assert float(layer.per_sample_entropy_tracker.result()) == pytest.approx(
        per_sample, rel=2e-5
    )
    assert float(layer.batch_entropy_tracker.result()) == pytest.approx(
        batch, rel=2e-5
    )


def test_loss_gradient_matches_autodiff_of_the_n_by_k_formula():
    k, temperature = 5, 0.5
    layer = LookupFreeQuantizer(
        2**k, entropy_loss_weight=0.3, diversity_gamma=0.8, temperature=0.5
    )
    z = tf.constant(_inputs((3, 7, k)))
    with tf.GradientTape() as tape:
        tape.watch(z)
        layer(z, training=True)
        (loss,) = layer.losses
    corners = tf.constant(_corners(k), "float32")
    with tf.GradientTape() as tape_ref:
        tape_ref.watch(z)
        flat = tf.reshape(z, [-1, k])
        distances = tf.reduce_sum(
            tf.square(flat[:, None, :] - corners[None]), axis=-1
        )
        p = tf.nn.softmax(-distances / temperature)
        per_sample = tf.reduce_mean(-tf.reduce_sum(p * tf.math.log(p), -1))
        mean = tf.reduce_mean(p, 0)
        batch = -tf.reduce_sum(mean * tf.math.log(mean))
        commitment = tf.reduce_mean(tf.square(z - tf.stop_gradient(tf.sign(z))))
        expected = 0.25 * commitment + 0.3 * (per_sample - 0.8 * batch)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(
        tape.gradient(loss, z), tape_ref.gradient(expected, z), atol=2e-6
    )


@pytest.mark.parametrize("k", [1, 5])
def test_chunked_sums_equal_unchunked_values_and_gradients(k):
    logits = tf.constant(_inputs((37, k), scale=2.0))
    upstream = tf.constant(_inputs((2**k,), seed=3))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        reference = _tf_brute_force_sums(logits)
        total = tf.reduce_sum(reference * upstream)
    reference_grad = tape.gradient(total, logits)
    # Per-bit log-odds a give p(c) = softmax(bits . a); with T = 1 and
    # z = a / 4, numpy's softmax(-||z - c||^2) is the same distribution.
    np_sums = _brute_force(logits.numpy() / 4.0, temperature=1.0)[2]
    np.testing.assert_allclose(reference, np_sums, rtol=1e-5)
    sub_codes = 2 ** (k // 2) + 2 ** (k - k // 2)
    # One row per chunk, 7 rows (37 = 5 x 7 + 2), all rows in one chunk;
    # eagerly and in a graph with an unknown batch size.
    for max_elements, eager in (
        (1, False),
        (7 * sub_codes, True),
        (10**6, False),
    ):
        rows = lookup_free.chunk_rows(k, max_elements)
        assert rows == {1: 1, 7 * sub_codes: 7}.get(max_elements, rows)
        assert max_elements < 10**6 or rows >= 37

        def sums_of(x, max_elements=max_elements):
            return lookup_free.code_probability_sums(x, max_elements)

        if not eager:
            sums_of = tf.function(
                sums_of, input_signature=[tf.TensorSpec([None, k])]
            )
        with tf.GradientTape() as tape:
            tape.watch(logits)
            sums = sums_of(logits)
            total = tf.reduce_sum(sums * upstream)
        np.testing.assert_allclose(sums, np_sums, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            tape.gradient(total, logits), reference_grad, atol=1e-5
        )


def test_k16_batch_distribution_holds_no_n_by_k_tensor():
    """K = 2**16: in the graph of the sums and their gradient (loop bodies
    included), every batch-sized tensor has at most `rows x k` elements per
    unknown dimension, i.e. `[N, k]`-like, never `[N, K]`; every static
    tensor at most max(K, one chunk)."""
    k, max_elements = 16, 2**16
    rows = lookup_free.chunk_rows(k, max_elements)
    assert rows == 128

    @tf.function(input_signature=[tf.TensorSpec([None, k])])
    def value_and_grad(logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            sums = lookup_free.code_probability_sums(logits, max_elements)
            h = lookup_free.entropy(sums / tf.reduce_sum(sums))
        return h, tape.gradient(h, logits)

    graph = value_and_grad.get_concrete_function().graph
    graph_def = graph.as_graph_def(add_shapes=True)
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    shapes = [
        [d.size for d in shape.dim]
        for node in nodes
        if "_output_shapes" in node.attr
        for shape in node.attr["_output_shapes"].list.shape
        if not shape.unknown_rank
    ]
    assert len(shapes) > 100 and any(-1 in s for s in shapes)
    for shape in shapes:
        known = int(np.prod([d for d in shape if d >= 0]))
        if -1 in shape:
            assert known <= rows * k, shape
        else:
            assert known <= max(2**k, max_elements), shape
    # It runs, and matches numpy on a batch of several chunks.
    logits = _inputs((300, k), scale=3.0)
    h, grad = value_and_grad(logits)
    assert tuple(grad.shape) == (300, k) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(h, _factorised_entropy(logits), rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_arithmetic(policy):
    z = _inputs((4, 5, 6), scale=0.02)
    keras.mixed_precision.set_global_policy(policy)
    layer = LookupFreeQuantizer(2**5, embedding_dim=6, seed=1)
    low = tf.cast(z, layer.compute_dtype)
    out = layer(low, training=True)
    assert out.dtype == layer.compute_dtype
    assert all(w.dtype == "float32" for w in layer.weights)
    (loss,) = layer.losses
    assert loss.dtype == tf.float32
    keras.mixed_precision.set_global_policy("float32")
    reference = LookupFreeQuantizer(2**5, embedding_dim=6, seed=1)
    reference.build(z.shape)
    reference.set_weights(layer.get_weights())
    as_float32 = tf.cast(low, "float32")
    np.testing.assert_array_equal(
        layer.encode(low), reference.encode(as_float32)
    )
    reference(as_float32, training=True)
    np.testing.assert_array_equal(loss, reference.losses[0])


def test_zero_size_batch():
    layer = LookupFreeQuantizer(2**5, embedding_dim=6)
    empty = np.zeros((0, 4, 6), "float32")
    assert tuple(layer(empty, training=True).shape) == (0, 4, 6)
    (loss,) = layer.losses
    assert float(loss) == 0.0
    assert tuple(layer.encode(empty).shape) == (0, 4)
    assert tuple(layer.lookup(np.zeros((0, 4), "int32")).shape) == (0, 4, 6)
    with tf.GradientTape() as tape:
        z = tf.constant(empty)
        tape.watch(z)
        per_sample, batch = layer.entropies(z[..., :5])
    assert (float(per_sample), float(batch)) == (0.0, 0.0)
    assert tuple(tape.gradient(batch, z).shape) == (0, 4, 6)


def test_two_replicas_match_one_device():
    """The entropies and their gradients of a batch split over 2 replicas
    equal one device's: the batch distribution is all-reduced."""
    k = 6
    layer = LookupFreeQuantizer(2**k, temperature=0.5, diversity_gamma=0.8)
    z = _inputs((16, 3, k), seed=4)

    def step(z, replicas):
        with tf.GradientTape() as tape:
            tape.watch(z)
            per_sample, batch = layer.entropies(z)
            # Keras' scaling: each replica's loss is 1/replicas of its mean.
            loss = (per_sample - 0.8 * batch) / replicas
        return per_sample, batch, tape.gradient(loss, z)

    per_sample, batch, grad = step(tf.constant(z), 1)
    strategy = mirrored_strategy()
    shards = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(z[8 * ctx.replica_id_in_sync_group :][:8])
    )
    results = strategy.run(tf.function(lambda z: step(z, 2)), args=(shards,))
    per_sample_2, batch_2, grad_2 = (
        strategy.experimental_local_results(r) for r in results
    )
    np.testing.assert_allclose(np.mean(per_sample_2), per_sample, rtol=1e-5)
    np.testing.assert_allclose(batch_2, [batch, batch], rtol=1e-5)
    np.testing.assert_allclose(tf.concat(grad_2, 0), grad, atol=1e-5)
    assert np.abs(grad).max() > 1e-3


@pytest.mark.slow
def test_fit_on_two_replicas_matches_one_device():
    images = _inputs((32, 4, 4, 3), seed=4)
    targets = _inputs((32, 4, 4, 3), seed=5, scale=0.5)

    def fit(strategy, weights):
        with strategy.scope():
            model = keras.Sequential(
                [
                    keras.Input((4, 4, 3)),
                    keras.layers.Dense(8),
                    LookupFreeQuantizer(
                        2**6, embedding_dim=8, temperature=0.5, name="lfq"
                    ),
                    keras.layers.Dense(3),
                ]
            )
            if weights is not None:
                model.set_weights(weights)
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        start = model.get_weights()
        dataset = tf.data.Dataset.from_tensor_slices((images, targets))
        history = model.fit(dataset.batch(8), epochs=2, verbose=0)
        return model, start, history

    keras.utils.set_random_seed(0)
    one, start, h1 = fit(tf.distribute.get_strategy(), None)
    two, _, h2 = fit(mirrored_strategy(), start)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    for w1, w2, w0 in zip(one.weights, two.weights, start):
        np.testing.assert_allclose(w1, w2, atol=1e-5, err_msg=w1.path)
        assert not np.allclose(w1, w0), w1.path
    for key in ("perplexity", "per_sample_entropy", "batch_entropy"):
        np.testing.assert_allclose(
            h1.history[key], h2.history[key], rtol=1e-5, err_msg=key
        )


def test_encode_and_lookup_convert_to_tflite_builtins(tmp_path):
    layer = LookupFreeQuantizer(2**10, embedding_dim=6, seed=2)
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
    assert len(np.unique(codes)) > 10
    np.testing.assert_array_equal(converted["encode"](z), codes)
    np.testing.assert_allclose(
        converted["lookup"](codes), layer.lookup(codes), atol=1e-6
    )


def test_bad_arguments_message():
    cases = [
        (
            {"codebook_size": 1000},
            "`codebook_size` must be a power of two from 2 to 2**30. "
            "Received: codebook_size=1000 (of type int).",
        ),
        (
            {"codebook_size": 1},
            "`codebook_size` must be a power of two from 2 to 2**30. "
            "Received: codebook_size=1 (of type int).",
        ),
        (
            {"codebook_size": 2**31},
            "`codebook_size` must be a power of two from 2 to 2**30. "
            "Received: codebook_size=2147483648 (of type int).",
        ),
        (
            {"entropy_loss_weight": -0.1},
            "`entropy_loss_weight` must be a non-negative finite number. "
            "Received: entropy_loss_weight=-0.1 (of type float).",
        ),
        (
            {"commitment_cost": float("nan")},
            "`commitment_cost` must be a non-negative finite number. "
            "Received: commitment_cost=nan (of type float).",
        ),
        (
            {"diversity_gamma": "1"},
            "`diversity_gamma` must be a non-negative finite number. "
            "Received: diversity_gamma='1' (of type str).",
        ),
        (
            {"temperature": 0},
            "`temperature` must be a positive finite number. "
            "Received: temperature=0 (of type int).",
        ),
        (
            {"max_entropy_elements": 0},
            "`max_entropy_elements` must be a positive integer. "
            "Received: max_entropy_elements=0 (of type int).",
        ),
        (
            {"embedding_dim": -1},
            "`embedding_dim` must be a positive integer. "
            "Received: embedding_dim=-1 (of type int).",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as error:
            LookupFreeQuantizer(**kwargs)
        assert str(error.value) == message


def test_vqvae_names_its_own_argument_in_the_layers_message():
    with pytest.raises(ValueError) as error:
        VQVAE(quantizer="lfq", num_embeddings=1000)
    assert str(error.value) == (
        "`num_embeddings` (the 'lfq' quantizer's `codebook_size`) must be a "
        "power of two from 2 to 2**30. Received: codebook_size=1000 (of type "
        "int)."
    )


def test_bad_input_shape_message():
    layer = LookupFreeQuantizer(2**4, name="lfq")
    for method in (layer, layer.encode):
        with pytest.raises(ValueError) as error:
            method(np.zeros((3,), "float32"))
        assert str(error.value) == (
            "`lfq` expects inputs of shape (batch, ..., 4) with rank >= 2. "
            "Received: inputs.shape=(3,)"
        )
