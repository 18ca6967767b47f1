"""Tests of tf_vqvae.sampling: seeds, noise, Gumbel-max, options."""

import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import sampling


def _logits_and_noise(shape, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape).astype("float32")
    noise = rng.uniform(size=shape).astype("float32")
    return logits, noise


def _numpy_gumbel_argmax(logits, noise, temperature=1.0, top_k=None):
    """argmax(log softmax(l / T) - log(-log u)), float64, top-k masked."""
    scaled = logits.astype("float64") / temperature
    if top_k is not None:
        kth = np.sort(scaled, axis=-1)[..., -top_k][..., None]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    shifted = scaled - scaled.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    gumbel = -np.log(-np.log(noise.astype("float64")))
    return (log_softmax + gumbel).argmax(-1)


# ------------------------------------------------------------- Gumbel-max
@pytest.mark.parametrize(
    "temperature, top_k",
    [(1.0, None), (0.5, None), (2.0, None), (1.0, 3), (0.7, 2), (1.0, 1)],
    ids=["plain", "cold", "hot", "top3", "cold-top2", "top1"],
)
def test_gumbel_argmax_matches_numpy(temperature, top_k):
    logits, noise = _logits_and_noise((4, 50, 6))
    codes = sampling.gumbel_argmax(logits, noise, temperature, top_k)
    assert codes.dtype == tf.int32 and codes.shape == (4, 50)
    np.testing.assert_array_equal(
        codes, _numpy_gumbel_argmax(logits, noise, temperature, top_k)
    )


def test_gumbel_argmax_clips_noise_at_zero_and_one():
    # u = 0 and u = 1 would give g = -inf and +inf; clipped, both are
    # finite, and u near 1 picks its category.
    logits = np.zeros((2, 3), "float32")
    noise = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.0]], "float32")
    np.testing.assert_array_equal(sampling.gumbel_argmax(logits, noise), [2, 0])


def test_gumbel_argmax_frequencies_match_softmax():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4], "float32"))
    noise = tf.random.stateless_uniform((20000, 4), seed=(0, 1))
    codes = sampling.gumbel_argmax(np.tile(logits, (20000, 1)), noise).numpy()
    frequencies = np.bincount(codes, minlength=4) / 20000
    # 4 standard errors of a proportion near 0.4 with n = 20000: 0.014.
    np.testing.assert_allclose(frequencies, [0.1, 0.2, 0.3, 0.4], atol=0.014)


def test_gumbel_argmax_top_k_and_temperature():
    logits = np.array([[0.0, 3.0, 1.0, 2.0]], "float32")
    noise = tf.random.stateless_uniform((1000, 4), seed=(0, 2))
    tiled = np.tile(logits, (1000, 1))
    assert set(sampling.gumbel_argmax(tiled, noise, top_k=2).numpy()) == {1, 3}
    np.testing.assert_array_equal(
        sampling.gumbel_argmax(tiled, noise, top_k=1).numpy(), 1
    )
    # A tiny temperature makes the draw the argmax.
    np.testing.assert_array_equal(
        sampling.gumbel_argmax(tiled, noise, temperature=1e-3).numpy(), 1
    )


# ---------------------------------------------------------- adjust_logits
@pytest.mark.parametrize("top_k", [1, 2, 4, 5], ids=lambda k: f"top{k}")
def test_adjust_logits_top_k_mask_matches_numpy(top_k):
    logits, _ = _logits_and_noise((3, 7, 5), seed=1)
    adjusted = sampling.adjust_logits(logits, 0.5, top_k).numpy()
    scaled = logits / np.float32(0.5)
    kth = np.sort(scaled, axis=-1)[..., -top_k][..., None]
    keep = scaled >= kth
    assert (keep.sum(-1) == top_k).all()
    np.testing.assert_array_equal(np.isneginf(adjusted), ~keep)
    np.testing.assert_array_equal(adjusted[keep], scaled[keep])


def test_adjust_logits_keeps_ties_with_the_kth():
    logits = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], "float32")
    np.testing.assert_array_equal(
        sampling.adjust_logits(logits, top_k=2),
        [[-np.inf, 3.0, 3.0, -np.inf, 3.0]],
    )


def test_adjust_logits_defaults_are_the_identity():
    logits, _ = _logits_and_noise((2, 4), seed=2)
    adjusted = sampling.adjust_logits(logits.astype("float16"))
    assert adjusted.dtype == tf.float32
    np.testing.assert_array_equal(adjusted, logits.astype("float16"))


# ------------------------------------------------------------ seed, noise
def test_stateless_seed_of_an_integer_is_s_and_zero():
    for seed in (0, 7, 2**31 - 1, tf.constant(7), np.int64(7)):
        expected = [int(seed), 0]
        result = sampling.stateless_seed(seed)
        assert result.dtype == tf.int32
        np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(sampling.stateless_seed([3, 4]), [3, 4])
    np.testing.assert_array_equal(
        sampling.stateless_seed(tf.constant([3, 4], tf.int64)), [3, 4]
    )


def test_stateless_seed_none_draws_a_fresh_seed():
    a, b = sampling.stateless_seed(None), sampling.stateless_seed(None)
    assert a.shape == (2,) and a.dtype == tf.int32
    assert not np.array_equal(a, b)


def test_stateless_seed_rejects_bad_seeds():
    for seed, error, message in [
        (
            True,
            TypeError,
            "`seed` must be None, an integer or a [2] integer tensor. "
            "Received: seed=True (of type bool).",
        ),
        (
            1.5,
            TypeError,
            "`seed` must be None, an integer or a [2] integer tensor. "
            "Received: seed of dtype float32",
        ),
        (
            [1, 2, 3],
            ValueError,
            "`seed` must be None, an integer or a [2] integer tensor. "
            "Received: seed.shape=(3,)",
        ),
    ]:
        with pytest.raises(error) as raised:
            sampling.stateless_seed(seed)
        assert str(raised.value) == message


def test_uniform_noise_is_stateless_uniform_of_s_and_zero():
    # The mapping every exported sampler relies on: seed s -> [s, 0].
    shape = (2, 3, 4, 5)
    noise = sampling.uniform_noise(shape, 9)
    assert noise.dtype == tf.float32 and noise.shape == shape
    np.testing.assert_array_equal(
        noise, tf.random.stateless_uniform(shape, seed=[9, 0])
    )
    np.testing.assert_array_equal(noise, sampling.uniform_noise(shape, 9))
    assert not np.array_equal(noise, sampling.uniform_noise(shape, 10))
    assert 0.0 <= noise.numpy().min() and noise.numpy().max() < 1.0


def test_seed_to_noise_is_the_same_eagerly_and_in_a_graph():
    class Prior:
        grid_shape = (3, 4)
        num_embeddings = 5

    eager = sampling.prior_noise(Prior, 2, 123)
    assert eager.shape == (2, 3, 4, 5)

    @tf.function(
        input_signature=[
            tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.int32),
        ]
    )
    def traced(num, seed):
        return sampling.prior_noise(Prior, num, seed)

    assert traced.get_concrete_function().output_shapes == (None, 3, 4, 5)
    np.testing.assert_array_equal(traced(2, 123), eager)
    np.testing.assert_array_equal(
        tf.function(lambda: sampling.prior_noise(Prior, 2, 123))(), eager
    )


# ---------------------------------------------------------------- options
def test_check_sampling_options():
    sampling.check_sampling_options(0.5, None, 4)
    sampling.check_sampling_options(2, 4, 4)
    for temperature, top_k, message in [
        (
            0.0,
            None,
            "`temperature` must be a positive finite number. "
            "Received: temperature=0.0 (of type float).",
        ),
        (
            float("inf"),
            None,
            "`temperature` must be a positive finite number. "
            "Received: temperature=inf (of type float).",
        ),
        (
            True,
            None,
            "`temperature` must be a positive finite number. "
            "Received: temperature=True (of type bool).",
        ),
        (
            "1",
            None,
            "`temperature` must be a positive finite number. "
            "Received: temperature='1' (of type str).",
        ),
        (
            1.0,
            0,
            "`top_k` must be None or an integer in [1, 4] (num_embeddings). "
            "Received: top_k=0 (of type int).",
        ),
        (
            1.0,
            5,
            "`top_k` must be None or an integer in [1, 4] (num_embeddings). "
            "Received: top_k=5 (of type int).",
        ),
        (
            1.0,
            2.0,
            "`top_k` must be None or an integer in [1, 4] (num_embeddings). "
            "Received: top_k=2.0 (of type float).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            sampling.check_sampling_options(temperature, top_k, 4)
        assert str(error.value) == message


def test_check_method():
    for method in sampling.METHODS:
        sampling.check_method(method)
    for method in ("fast", None):
        with pytest.raises(ValueError) as error:
            sampling.check_method(method)
        assert str(error.value) == (
            "`method` must be 'cached' or 'naive'. "
            f"Received: method={method!r} (of type {type(method).__name__})."
        )


def test_check_labels():
    sampling.check_labels(None, None)
    sampling.check_labels([0, 1], 3)
    for labels, num_classes in [([0], None), (None, 3)]:
        with pytest.raises(ValueError) as error:
            sampling.check_labels(labels, num_classes)
        assert str(error.value) == (
            "`labels` must be given exactly when the prior is class "
            f"conditional (num_classes={num_classes}). "
            f"Received: labels={labels!r} (of type {type(labels).__name__})."
        )


# ------------------------------------------------- per-example seeds, noise
def test_example_seeds_fold_the_index_into_the_seed():
    seeds = sampling.example_seeds(7, 3, 4)
    assert seeds.shape == (4, 2) and seeds.dtype == tf.int32
    for row, index in zip(seeds.numpy(), range(3, 7)):
        expected = tf.random.experimental.stateless_fold_in([7, 0], index)
        np.testing.assert_array_equal(row, expected)
    # An example's seed does not depend on the batch it is drawn in.
    np.testing.assert_array_equal(sampling.example_seeds(7, 0, 7)[3:], seeds)
    assert len({tuple(row) for row in seeds.numpy()}) == 4
    assert not np.array_equal(sampling.example_seeds(8, 3, 4), seeds)
    # Not the `[s, i]` seeds `vqvae sample` gives the prior's batches.
    assert not any(
        np.array_equal(row, [7, i]) for i, row in enumerate(seeds.numpy())
    )
    assert sampling.example_seeds(7, 0, 0).shape == (0, 2)


def test_example_seeds_reject_bad_arguments():
    for kwargs, message in [
        (
            dict(seed=None, start=0, count=1),
            "`seed` must be an integer or a [2] integer tensor; per-example "
            "seeds repeat a run. Received: seed=None",
        ),
        (
            dict(seed=1, start=-1, count=1),
            "`start` must be a non-negative integer. "
            "Received: start=-1 (of type int).",
        ),
        (
            dict(seed=1, start=0, count=2.0),
            "`count` must be a non-negative integer. "
            "Received: count=2.0 (of type float).",
        ),
    ]:
        with pytest.raises(ValueError) as raised:
            sampling.example_seeds(**kwargs)
        assert str(raised.value) == message


def test_example_noise_rows_are_each_seeds_uniform_noise():
    seeds = sampling.example_seeds(5, 0, 3)
    noise = sampling.example_noise(seeds, (4, 6))
    assert noise.shape == (3, 4, 6) and noise.dtype == tf.float32
    for row, seed in zip(noise.numpy(), seeds):
        np.testing.assert_array_equal(
            row, tf.random.stateless_uniform((4, 6), seed=seed)
        )
    np.testing.assert_array_equal(
        sampling.example_noise(seeds[1:], (4, 6)), noise[1:]
    )
    with pytest.raises(ValueError) as raised:
        sampling.example_noise([1, 2], (4,))
    assert str(raised.value) == (
        "`seeds` must be integer stateless seeds of shape (n, 2). "
        "Received: seeds.shape=(2,), dtype=int32"
    )


def test_decode_seed_only_for_generative_decoders():
    class OnePass:
        generative_decoder = False

    class Generative:
        generative_decoder = True

    assert sampling.decode_seed(OnePass(), 3, 0, 2) == {}
    assert sampling.decode_seed(object(), 3, 0, 2) == {}
    seeds = sampling.decode_seed(Generative(), 3, 4, 2)
    assert list(seeds) == ["seed"]
    np.testing.assert_array_equal(
        seeds["seed"], sampling.example_seeds(3, 4, 2)
    )
