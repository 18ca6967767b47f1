"""The multi-resolution STFT loss against a float64 numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae.spectral import multi_resolution_stft_loss


def _numpy_magnitudes(x, fft_length):
    """Periodic Hann frames every fft_length / 4, no padding,
    sqrt(|rfft|^2 + 1e-7)."""
    hop = fft_length // 4
    num_frames = 1 + (len(x) - fft_length) // hop
    n = np.arange(fft_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / fft_length)
    frames = np.stack(
        [x[t * hop : t * hop + fft_length] * window for t in range(num_frames)]
    )
    return np.sqrt(np.abs(np.fft.rfft(frames)) ** 2 + 1e-7)


def _numpy_loss(x, y, fft_lengths):
    total = 0.0
    for fft_length in fft_lengths:
        s, s_hat = (
            _numpy_magnitudes(x, fft_length),
            _numpy_magnitudes(y, fft_length),
        )
        convergence = np.linalg.norm(s - s_hat) / np.linalg.norm(s)
        log_distance = np.mean(np.abs(np.log(s) - np.log(s_hat)))
        total += convergence + log_distance
    return total / len(fft_lengths)


def _signals(batch=2, samples=600, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(
        (batch, samples)
    )
    y = 0.3 * np.sin(2 * np.pi * 660 * t + 1.0) + 0.1 * rng.standard_normal(
        (batch, samples)
    )
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize(
    "fft_lengths", [(64,), (32, 64, 128)], ids=["one", "three"]
)
def test_matches_numpy(fft_lengths):
    x, y = _signals()
    got = multi_resolution_stft_loss(x, y, fft_lengths).numpy()
    expected = [
        _numpy_loss(a.astype(np.float64), b.astype(np.float64), fft_lengths)
        for a, b in zip(x, y)
    ]
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # A channel axis changes nothing.
    np.testing.assert_allclose(
        multi_resolution_stft_loss(x[..., None], y[..., None], fft_lengths),
        got,
        rtol=1e-6,
    )


def test_zero_for_identical_and_blind_to_a_time_shift_of_a_tone():
    """Identical waveforms: 0. A steady tone and its phase-shifted copy:
    almost no loss, while their waveforms differ as much as they can."""
    x, _ = _signals()
    np.testing.assert_allclose(multi_resolution_stft_loss(x, x, (64,)), 0.0)
    t = np.arange(4096) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 500 * t)[None].astype(np.float32)
    shifted = 0.5 * np.sin(2 * np.pi * 500 * t + np.pi)[None].astype(np.float32)
    assert float(np.mean((tone - shifted) ** 2)) > 0.4
    assert float(multi_resolution_stft_loss(tone, shifted)[0]) < 1e-3
    louder = multi_resolution_stft_loss(tone, 0.5 * tone)[0]
    assert float(louder) > 0.5


def test_gradient_in_silence_is_finite_and_near_silence_is_not_zero():
    """An untrained mu-law decoder's expected waveform is about 1e-6: the
    gradient must still reach it (a floor on the magnitudes would stop
    it)."""
    silence = tf.zeros((1, 512))
    estimate = tf.Variable(tf.zeros((1, 512)))
    with tf.GradientTape() as tape:
        loss = multi_resolution_stft_loss(silence, estimate, (64, 128))
    gradient = tape.gradient(loss, estimate)
    assert np.isfinite(gradient.numpy()).all()
    assert float(loss[0]) == 0.0
    x, _ = _signals(batch=1, samples=512)
    quiet = tf.Variable(
        1e-6
        * np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    )
    with tf.GradientTape() as tape:
        loss = multi_resolution_stft_loss(x, quiet, (64, 128))
    gradient = tape.gradient(loss, quiet).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).max() > 1.0


def test_bad_inputs():
    x, y = _signals()
    cases = [
        (x, y[:1], "`waveforms` and `reconstructions` must have the same"),
        (x[0], y[0], "Waveforms must have shape"),
        (x[..., None].repeat(2, -1), y[..., None].repeat(2, -1), "Waveforms"),
    ]
    for a, b, message in cases:
        with pytest.raises(ValueError, match=message):
            multi_resolution_stft_loss(a, b, (64,))
    for fft_lengths in [(1024,), (2,)]:
        with pytest.raises(
            ValueError, match=r"Each of `fft_lengths` must be in \[4, samples"
        ):
            multi_resolution_stft_loss(x, y, fft_lengths)
    with pytest.raises(ValueError, match="at least one FFT size"):
        multi_resolution_stft_loss(x, y, ())


def test_bfloat16_inputs_are_cast():
    """Targets or reconstructions in bfloat16 (mixed_bfloat16) give the
    loss of their float32 values."""
    x, y = _signals()
    x16 = tf.cast(x, tf.bfloat16)
    y16 = tf.cast(y, tf.bfloat16)
    for a, b in [(x16, y16), (x16, y), (x, y16)]:
        got = multi_resolution_stft_loss(a, b, (64,))
        assert got.dtype == tf.float32
        np.testing.assert_allclose(
            got,
            multi_resolution_stft_loss(
                tf.cast(a, tf.float32), tf.cast(b, tf.float32), (64,)
            ),
            rtol=1e-6,
        )
