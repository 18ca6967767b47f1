"""Tests of the TFP distribution over codes defined by the PixelCNN prior."""

import ast
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_vqvae import distributions, sampling
from tf_vqvae.distributions import PixelCNNCodeDistribution
from tf_vqvae.prior import PixelCNNPrior

TINY = dict(num_embeddings=5, grid_shape=(3, 4), num_hiddens=8, num_layers=2)


def _codes(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 5, size=shape, dtype="int32")


def _numpy_log_prob(logits, codes):
    """Sum over positions of log softmax(logits)[code], float64."""
    logits = logits.astype("float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_softmax, codes[..., None], -1)[..., 0]
    return picked.sum(axis=(-2, -1))


def test_distribution_properties():
    dist = PixelCNNPrior(**TINY).distribution()
    assert isinstance(dist, tfp.distributions.Distribution)
    assert isinstance(dist, PixelCNNCodeDistribution)
    assert dist.event_shape == (3, 4)
    assert dist.batch_shape == ()
    assert dist.dtype == tf.int32
    np.testing.assert_array_equal(dist.event_shape_tensor(), [3, 4])


def test_log_prob_matches_numpy_and_categorical():
    prior = PixelCNNPrior(**TINY)
    dist = prior.distribution()
    codes = _codes((4, 3, 4))
    log_prob = dist.log_prob(codes)
    assert log_prob.shape == (4,)

    logits = prior(codes).numpy()
    np.testing.assert_allclose(
        log_prob, _numpy_log_prob(logits, codes), rtol=1e-5, atol=1e-5
    )
    categorical = tfp.distributions.Categorical(logits=logits)
    expected = tf.reduce_sum(categorical.log_prob(codes), axis=[1, 2])
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6, atol=1e-5)


def test_log_prob_normalises_over_all_grids():
    # 2x2 grid, K = 2: the probabilities of the 16 grids sum to one.
    prior = PixelCNNPrior(2, (2, 2), num_hiddens=4, num_layers=2)
    grids = np.array(
        [
            [[(g >> b) & 1 for b in (0, 1)], [(g >> b) & 1 for b in (2, 3)]]
            for g in range(16)
        ],
        "int32",
    )
    total = np.exp(prior.distribution().log_prob(grids).numpy()).sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_tempered_log_prob():
    prior = PixelCNNPrior(**TINY)
    codes = _codes((2, 3, 4), seed=1)
    logits = prior(codes).numpy()
    np.testing.assert_allclose(
        prior.distribution(temperature=0.5).log_prob(codes),
        _numpy_log_prob(logits / 0.5, codes),
        rtol=1e-5,
        atol=1e-5,
    )


def test_sample_shape_dtype_and_seed():
    dist = PixelCNNPrior(**TINY).distribution()
    a = dist.sample(6, seed=0)
    assert a.shape == (6, 3, 4)
    assert a.dtype == tf.int32
    np.testing.assert_array_equal(a, dist.sample(6, seed=0))
    assert not np.array_equal(a, dist.sample(6, seed=1))
    assert dist.sample(seed=3).shape == (3, 4)
    assert dist.sample([2, 3], seed=3).shape == (2, 3, 3, 4)


def test_sample_from_given_noise():
    prior = PixelCNNPrior(**TINY)
    noise = tf.random.stateless_uniform((2, 3, 4, 5), seed=(4, 2))
    codes = prior.distribution().sample(2, noise=noise)
    np.testing.assert_array_equal(codes, prior.sample_codes(noise))
    naive = prior.distribution(method="naive").sample(2, noise=noise)
    np.testing.assert_array_equal(codes, naive)


def test_labels_give_a_batch():
    prior = PixelCNNPrior(**TINY, num_classes=3)
    labels = np.array([0, 2], "int32")
    dist = prior.distribution(labels=labels)
    assert dist.batch_shape == (2,)
    samples = dist.sample(3, seed=1)
    assert samples.shape == (3, 2, 3, 4)
    log_prob = dist.log_prob(samples)
    assert log_prob.shape == (3, 2)
    for b, label in enumerate(labels):
        single = prior.distribution(labels=label)
        assert single.batch_shape == ()
        np.testing.assert_allclose(
            log_prob[:, b], single.log_prob(samples[:, b]), rtol=1e-6
        )


def test_top_k_one_samples_the_most_likely_codes():
    # With top_k=1 every sampled code is a most likely one, and log_prob
    # keeps only the codes tied at the maximum: -log(number of ties) per
    # position (the untrained network's first position has K equal logits).
    prior = PixelCNNPrior(**TINY)
    dist = prior.distribution(top_k=1)
    codes = dist.sample(2, seed=0).numpy()
    logits = prior(codes).numpy()
    best = logits.max(-1)
    chosen = np.take_along_axis(logits, codes[..., None], -1)[..., 0]
    np.testing.assert_array_equal(chosen, best)
    ties = (logits == best[..., None]).sum(-1)
    np.testing.assert_allclose(
        dist.log_prob(codes), -np.log(ties).sum(axis=(1, 2)), rtol=1e-5
    )


def test_validate_args_rejects_out_of_range_codes():
    dist = PixelCNNPrior(**TINY).distribution(validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        dist.log_prob(np.full((1, 3, 4), 5, "int32"))
    assert error.value.message.startswith(
        "`codes` must be in [0, num_embeddings=5)"
    )


def test_log_prob_and_prob_refuse_float_codes():
    # TFP alone would truncate them to ints.
    dist = PixelCNNPrior(**TINY).distribution()
    message = (
        "`codes` must be integer codes in [0, num_embeddings=5). "
        "Received: codes.dtype=float32"
    )
    for compute in (dist.log_prob, dist.prob):
        with pytest.raises(TypeError) as error:
            compute(np.full((1, 3, 4), 1.5, "float32"))
        assert str(error.value) == message


def test_log_prob_codes_must_broadcast_against_the_labels():
    dist = PixelCNNPrior(**TINY, num_classes=3).distribution(labels=[0, 1])
    with pytest.raises(ValueError) as error:
        dist.log_prob(_codes((3, 3, 4)))
    assert str(error.value) == (
        "`codes` must have shape (..., 3, 4) with leading axes that "
        "broadcast against the distribution's batch_shape=(2,) (its "
        "labels). Received: codes.shape=(3, 3, 4)"
    )
    assert dist.log_prob(_codes((4, 1, 3, 4))).shape == (4, 2)


def test_labels_must_be_a_scalar_or_a_vector():
    prior = PixelCNNPrior(**TINY, num_classes=3)
    with pytest.raises(ValueError) as error:
        prior.distribution(labels=[[0, 1]])
    assert str(error.value) == (
        "`labels` must be a scalar or of shape (batch,). "
        "Received: labels.shape=(1, 2)"
    )


@pytest.mark.parametrize(
    "sample_shape, error_type",
    [
        (-1, ValueError),
        ([2, -1], ValueError),
        (1.5, TypeError),
        (True, TypeError),
        ("2", TypeError),
    ],
)
def test_invalid_sample_shapes(sample_shape, error_type):
    dist = PixelCNNPrior(**TINY).distribution()
    with pytest.raises(error_type) as error:
        dist.sample(sample_shape, seed=0)
    type_name = type(sample_shape).__name__
    assert str(error.value) == (
        "`sample_shape` must be a non-negative integer or a sequence of "
        f"them. Received: sample_shape={sample_shape!r} (of type "
        f"{type_name})."
    )


def test_valid_sample_shapes():
    dist = PixelCNNPrior(**TINY).distribution()
    for sample_shape, shape in [
        ((), (3, 4)),
        (0, (0, 3, 4)),
        ([2, 1], (2, 1, 3, 4)),
        (np.int64(2), (2, 3, 4)),
        (tf.constant(1), (1, 3, 4)),
    ]:
        assert dist.sample(sample_shape, seed=0).shape == shape


def test_wrong_noise_shape():
    dist = PixelCNNPrior(**TINY).distribution()
    with pytest.raises(ValueError) as error:
        dist.sample(2, noise=tf.zeros((3, 3, 4, 5)))
    assert str(error.value) == (
        "`noise` must have shape (2, 3, 4, 5) (sample, *batch, H, W, "
        "num_embeddings). Received: noise.shape=(3, 3, 4, 5)"
    )


def test_invalid_arguments():
    for kwargs, message in [
        (
            dict(labels=[1]),
            "`labels` must be given exactly when the prior is class "
            "conditional (num_classes=None). "
            "Received: labels=[1] (of type list).",
        ),
        (
            dict(method="fast"),
            "`method` must be 'cached' or 'naive'. "
            "Received: method='fast' (of type str).",
        ),
        (
            dict(temperature=-1),
            "`temperature` must be a positive finite number. "
            "Received: temperature=-1 (of type int).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            PixelCNNPrior(**TINY).distribution(**kwargs)
        assert str(error.value) == message


def test_import_tf_vqvae_does_not_import_tfp():
    code = (
        "import sys, tf_vqvae; print('tensorflow_probability' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""},
    )
    assert result.stdout.strip() == "False"


def _imported_modules(module) -> set[str]:
    with open(module.__file__) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_import_cycle_with_the_prior():
    # distributions.py and sampling.py take the prior as an argument; only
    # prior.py imports them (distributions lazily).
    for module in (distributions, sampling):
        imported = _imported_modules(module)
        assert "tf_vqvae.prior" not in imported, module.__name__
    assert "tf_vqvae.sampling" in _imported_modules(distributions)


def test_seeded_samples_use_the_sampling_noise():
    prior = PixelCNNPrior(**TINY, num_classes=3)
    labels = np.array([0, 2, 1], "int32")
    codes = prior.distribution(labels=labels).sample(2, seed=5)
    assert codes.shape == (2, 3, 3, 4)
    # Samples of a batch of 3 distributions: 6 grids, labels tiled.
    noise = sampling.uniform_noise((6, 3, 4, 5), 5)
    np.testing.assert_array_equal(
        np.reshape(codes, (6, 3, 4)),
        prior.sample_codes(noise, np.tile(labels, 2)),
    )
    np.testing.assert_array_equal(
        prior.distribution(labels=labels).sample(2, seed=[5, 0]), codes
    )
