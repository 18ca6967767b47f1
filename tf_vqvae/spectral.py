"""Multi-resolution STFT loss on decoded waveforms (audio VQ-VAEs).

A per-sample likelihood (`tf_vqvae.likelihoods`) alone lets a small
parallel decoder settle on each sample's marginal: its expected waveform is
near silence even when the codes carry the speech. This loss compares the
magnitude spectra of the decoded and the true waveform at several STFT
resolutions, so the decoder is pushed to get the spectrum right while the
phase stays free (Yamamoto et al., 2020, Parallel WaveGAN, eq. 1-4; the
loss of most neural audio codecs).

For one resolution, with `S = |STFT(x)|` and `S' = |STFT(x_hat)|` (periodic
Hann window of `fft_length` samples every `fft_length / 4`, no end padding,
magnitudes `sqrt(|STFT|^2 + 1e-7)`):

    spectral convergence  L_sc  = ||S - S'||_F / ||S||_F
    log magnitude         L_mag = mean |log S - log S'|

and the loss is the mean of `L_sc + L_mag` over the resolutions (per
example, then over the batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

# FFT sizes at 16 kHz: 16, 32 and 64 ms windows (hops a quarter of them).
DEFAULT_FFT_LENGTHS = (256, 512, 1024)
# Added to the squared magnitudes so log and the gradient of sqrt stay finite
# in silence. Added, not a floor (Parallel WaveGAN clamps): an untrained
# mu-law decoder's expected waveform is about 1e-6 everywhere, below any
# floor, where a clamp passes no gradient at all.
_POWER_EPSILON = 1e-7


def _magnitudes(waveforms: tf.Tensor, fft_length: int) -> tf.Tensor:
    stft = tf.signal.stft(
        waveforms,
        frame_length=fft_length,
        frame_step=fft_length // 4,
        fft_length=fft_length,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    power = tf.square(tf.math.real(stft)) + tf.square(tf.math.imag(stft))
    return tf.sqrt(power + _POWER_EPSILON)


def _norm(spectra: tf.Tensor) -> tf.Tensor:
    """The Frobenius norm over (frames, bins), with a zero gradient where it
    is zero (`tf.norm`'s is NaN there: identical spectra)."""
    squares = tf.reduce_sum(tf.square(spectra), axis=[-2, -1])
    positive = squares > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, squares, 1.0)), 0.0)


def multi_resolution_stft_loss(
    waveforms: tf.Tensor,
    reconstructions: tf.Tensor,
    fft_lengths: Sequence[int] = DEFAULT_FFT_LENGTHS,
) -> tf.Tensor:
    """Spectral convergence plus log-magnitude distance, per example.

    Args:
        waveforms: float `(batch, samples)` or `(batch, samples, 1)`, the
            targets.
        reconstructions: float, the same shape (the decoded waveforms).
        fft_lengths: one or more FFT (and window) sizes, each at most
            `samples`; the hop is a quarter of each.

    Returns:
        float32 `(batch,)`: the mean over resolutions of `L_sc + L_mag`
        (see the module docstring); 0 for identical inputs.

    Raises:
        ValueError: for inputs of different shapes, another rank or channel
            count, no FFT size, or one longer than the waveforms or below 4.
    """
    # Cast, not converted with a dtype: bfloat16 targets (mixed_bfloat16)
    # are refused by `convert_to_tensor(..., tf.float32)`.
    waveforms = tf.cast(waveforms, tf.float32)
    reconstructions = tf.cast(reconstructions, tf.float32)
    if waveforms.shape != reconstructions.shape:
        raise ValueError(
            "`waveforms` and `reconstructions` must have the same shape. "
            f"Received: {tuple(waveforms.shape)} and "
            f"{tuple(reconstructions.shape)}."
        )
    if waveforms.shape.rank == 3 and waveforms.shape[-1] == 1:
        waveforms = waveforms[..., 0]
        reconstructions = reconstructions[..., 0]
    if waveforms.shape.rank != 2:
        raise ValueError(
            "Waveforms must have shape (batch, samples) or (batch, samples, "
            f"1). Received: shape={tuple(waveforms.shape)}."
        )
    samples = waveforms.shape[1]
    fft_lengths = tuple(fft_lengths)
    if not fft_lengths:
        raise ValueError(
            "`fft_lengths` must hold at least one FFT size. "
            "Received: fft_lengths=()"
        )
    for fft_length in fft_lengths:
        if fft_length < 4 or (samples is not None and fft_length > samples):
            raise ValueError(
                "Each of `fft_lengths` must be in [4, samples="
                f"{samples}]. Received: fft_lengths={tuple(fft_lengths)}"
            )
    losses = []
    for fft_length in fft_lengths:
        target = _magnitudes(waveforms, fft_length)
        estimate = _magnitudes(reconstructions, fft_length)
        convergence = _norm(target - estimate) / _norm(target)
        log_distance = tf.reduce_mean(
            tf.abs(tf.math.log(target) - tf.math.log(estimate)), axis=[-2, -1]
        )
        losses.append(convergence + log_distance)
    return tf.add_n(losses) / len(losses)
