"""The multi-resolution STFT loss and the log-mel front end against float64
numpy references."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import numpy_log_mel, run_layer_test
from tf_vqvae.spectral import LogMelFrames, multi_resolution_stft_loss


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


# ------------------------------------------------------------ LogMelFrames


def _centred(x, hop, frame_length):
    """The zero padding that centres frame i on sample i * hop + hop / 2."""
    left = frame_length // 2 - hop // 2
    return np.pad(x, (left, frame_length - hop - left))


def test_log_mel_frames_match_numpy():
    """Frame i is the log-mel of the window centred on code i's centre:
    the independent float64 reference on the zero-padded waveform."""
    rng = np.random.default_rng(3)
    t = np.arange(2000) / 16000
    x = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1700 * t)
    x = (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    got = LogMelFrames(hop=40)(x[None, :, None]).numpy()[0]
    expected = numpy_log_mel(
        _centred(x.astype(np.float64), 40, 400),
        16000, 400, 40, 512, 40, 20.0, 8000.0,
    )  # fmt: skip
    assert got.shape == (50, 40) == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=0)

    small = LogMelFrames(
        hop=64,
        frame_length=128,
        fft_length=256,
        num_mel_bins=8,
        lower_edge_hertz=100.0,
        upper_edge_hertz=6000.0,
    )(x[None, :1984, None]).numpy()[0]
    expected = numpy_log_mel(
        _centred(x[:1984].astype(np.float64), 64, 128),
        16000, 128, 64, 256, 8, 100.0, 6000.0,
    )  # fmt: skip
    assert small.shape == (31, 8)
    np.testing.assert_allclose(small, expected, atol=2e-4, rtol=0)


def test_log_mel_frames_are_centred_on_the_codes():
    """A click at the centre of code i is loudest in frame i, and frames
    symmetric around it are equally loud (the window is centred)."""
    hop, frames = 32, 24
    for i in (0, 5, 23):
        x = np.zeros((1, hop * frames, 1), np.float32)
        x[0, i * hop + hop // 2, 0] = 1.0
        energy = LogMelFrames(hop=hop, frame_length=128, fft_length=128)(x)
        energy = np.asarray(energy)[0].mean(axis=1)
        assert int(np.argmax(energy)) == i
        for d in (1, 2):
            if 0 <= i - d and i + d < frames:
                np.testing.assert_allclose(
                    energy[i - d], energy[i + d], rtol=1e-4
                )


def test_log_mel_frames_layer_conformance():
    run_layer_test(
        LogMelFrames,
        dict(hop=16, frame_length=64, fft_length=64, num_mel_bins=6),
        np.random.default_rng(0).uniform(-1, 1, (2, 128, 1)).astype("f4"),
        expected_output_shape=(2, 8, 6),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        run_training_check=False,
    )


def test_log_mel_frames_stay_float32_under_mixed_precision():
    x = np.zeros((1, 64, 1), np.float32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = LogMelFrames(hop=32, frame_length=64, fft_length=64)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    out = layer(x)
    assert out.dtype == tf.float32
    # Silence sits at the floor log(1e-6).
    np.testing.assert_allclose(out, np.log(1e-6), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hop=0), "`hop` must be a positive integer"),
        (
            dict(hop=32, frame_length=16),
            "`LogMelFrames` needs hop <= frame_length <= fft_length. "
            "Received: hop=32, frame_length=16, fft_length=512",
        ),
        (
            dict(hop=32, upper_edge_hertz=9000.0),
            "`LogMelFrames` needs 0 <= lower_edge_hertz < upper_edge_hertz "
            "<= sample_rate / 2. Received: lower_edge_hertz=20.0, "
            "upper_edge_hertz=9000.0, sample_rate=16000",
        ),
        (dict(hop=32, log_offset=0.0), "`log_offset` must be > 0"),
    ],
)
def test_log_mel_frames_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LogMelFrames(**kwargs)


def test_log_mel_frames_bad_inputs():
    layer = LogMelFrames(hop=32)
    with pytest.raises(ValueError, match=r"divisible by hop=32"):
        layer(np.zeros((1, 100, 1), np.float32))
    with pytest.raises(ValueError, match=r"expects waveforms \(batch"):
        LogMelFrames(hop=32)(np.zeros((1, 64, 2), np.float32))
