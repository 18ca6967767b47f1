"""Discretized logistic (mixture) and Gaussian pixel likelihoods vs numpy."""

import numpy as np
import pytest
from scipy import special

from tf_vqvae.likelihoods import (
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    discretized_logistic_mixture_log_prob,
    logistic_mixture_mean,
    num_logistic_params,
    pixel_values,
    split_logistic_params,
)

VALUES = np.array([0, 1, 17, 128, 200, 254, 255])


def _numpy_bin_probability(values, cdf):
    """P(v) = F(upper edge) - F(lower edge), edges at +-inf for 0 and 255.

    `cdf(t, upper_tail)` returns F(t), or 1 - F(t) when `upper_tail`: above
    the mean the difference is taken between survival values, so it does
    not cancel to zero in float64.
    """
    x = values / 255.0
    upper = np.where(values == 255, np.inf, x + 0.5 / 255)
    lower = np.where(values == 0, -np.inf, x - 0.5 / 255)
    below = cdf(upper, False) - cdf(lower, False)
    above = cdf(lower, True) - cdf(upper, True)
    return np.where(cdf(x, False) < 0.5, below, above)


def _logistic_cdf(loc, scale):
    def cdf(t, upper_tail):
        z = (t - loc) / scale
        return special.expit(-z if upper_tail else z)

    return cdf


def _gaussian_cdf(loc, scale):
    def cdf(t, upper_tail):
        z = (t - loc) / scale
        return special.ndtr(-z if upper_tail else z)

    return cdf


def test_discretized_logistic_matches_numpy():
    images = (VALUES / 255.0).astype("float32")
    for loc in (0.0, 0.3, 0.5, 1.0):
        for log_scale in (-4.0, -2.0, 0.0):
            cdf = _logistic_cdf(loc, np.exp(log_scale))
            expected = np.log(_numpy_bin_probability(VALUES, cdf))
            actual = discretized_logistic_log_prob(images, loc, log_scale)
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
            # uint8 input gives the same numbers.
            np.testing.assert_array_equal(
                discretized_logistic_log_prob(
                    VALUES.astype("uint8"), loc, log_scale
                ),
                actual,
            )


def test_discretized_gaussian_matches_numpy():
    for loc in (0.2, 0.7):
        for scale in (0.01, 0.1, 1.0):
            cdf = _gaussian_cdf(loc, scale)
            with np.errstate(divide="ignore"):
                expected = np.log(_numpy_bin_probability(VALUES, cdf))
            actual = discretized_gaussian_log_prob(VALUES / 255.0, loc, scale)
            actual = actual.numpy()
            # Far in the tails float64 underflows to -inf; float32 log space
            # does not, and stays far below any representable probability.
            finite = np.isfinite(expected)
            np.testing.assert_allclose(
                actual[finite], expected[finite], rtol=1e-4, atol=1e-4
            )
            assert np.isfinite(actual).all()
            assert (actual[~finite] < -700).all()


@pytest.mark.parametrize(
    "log_prob",
    [
        lambda v, loc, s: discretized_logistic_log_prob(v, loc, np.log(s)),
        discretized_gaussian_log_prob,
    ],
    ids=["logistic", "gaussian"],
)
def test_probabilities_sum_to_one(log_prob):
    values = np.arange(256) / 255.0
    for scale in (1e-3, 0.02, 3.0):
        for loc in (-0.2, 0.0, 0.42, 1.3):
            total = np.exp(log_prob(values, loc, scale).numpy()).sum()
            np.testing.assert_allclose(total, 1.0, rtol=2e-3)


def test_tiny_scale_does_not_underflow():
    # s = e^-7: the bin two steps away holds ~e^-21 of mass; no -inf, and
    # the mass of the pixel at the mean is close to one.
    at_mean = discretized_logistic_log_prob(
        0.5 + 0.5 / 255, 0.5 + 0.5 / 255, -7
    )
    assert -0.5 < float(at_mean) <= 0.0
    far = discretized_logistic_log_prob(0.9, 0.1, -7.0)
    assert np.isfinite(far) and far < -50


def test_mixture_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 3, 3)).astype("uint8")
    logits = rng.normal(size=(2, 3, 3, 4))
    locs = rng.uniform(size=(2, 3, 3, 4))
    scales = np.exp(rng.uniform(-4, -1, size=(2, 3, 3, 4)))
    weights = special.softmax(logits, axis=-1)
    probability = np.zeros(images.shape)
    for m in range(4):
        cdf = _logistic_cdf(locs[..., m], scales[..., m])
        probability += weights[..., m] * _numpy_bin_probability(
            images.astype("int64"), cdf
        )
    actual = discretized_logistic_mixture_log_prob(
        images, logits, locs, np.log(scales)
    )
    np.testing.assert_allclose(actual, np.log(probability), rtol=1e-4)


def test_split_params_and_mean():
    rng = np.random.default_rng(1)
    channels = 3
    single = rng.normal(size=(2, 4, 4, channels * num_logistic_params(1)))
    logits, locs, log_scales = split_logistic_params(single, channels)
    assert locs.shape == (2, 4, 4, 3, 1)
    np.testing.assert_allclose(locs[..., 0], single[..., :3] + 0.5, rtol=1e-6)
    np.testing.assert_allclose(log_scales[..., 0], single[..., 3:], rtol=1e-6)
    np.testing.assert_allclose(
        logistic_mixture_mean(logits, locs),
        np.clip(single[..., :3] + 0.5, 0, 1),
        rtol=1e-6,
    )

    mixture = rng.normal(size=(2, 4, 4, channels * num_logistic_params(2)))
    logits, locs, _ = split_logistic_params(mixture, channels, 2)
    assert num_logistic_params(2) == 6
    np.testing.assert_allclose(
        logits, mixture[..., :6].reshape(2, 4, 4, 3, 2), rtol=1e-6
    )
    expected = np.clip(
        (
            special.softmax(mixture[..., :6].reshape(2, 4, 4, 3, 2), -1)
            * (mixture[..., 6:12].reshape(2, 4, 4, 3, 2) + 0.5)
        ).sum(-1),
        0,
        1,
    )
    np.testing.assert_allclose(
        logistic_mixture_mean(logits, locs), expected, rtol=1e-5, atol=1e-6
    )


def test_pixel_values_round_to_the_8_bit_grid():
    np.testing.assert_allclose(
        pixel_values(np.array([0.0, 0.5, 1.0, 1.2, -0.1, 0.0019], "float32")),
        np.array([0, 128, 255, 255, 0, 0]) / 255.0,
        rtol=1e-6,
    )
