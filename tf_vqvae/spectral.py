"""Spectral views of waveforms: the multi-resolution STFT loss on decoded
waveforms, and the log-mel front end an audio encoder can read
(`LogMelFrames`, `VQVAE(encoder_input="log_mel")`).

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

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import check_int

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


@keras.saving.register_keras_serializable(package="tf_vqvae")
class LogMelFrames(keras.layers.Layer):
    """Log mel-filterbank energies, one frame every `hop` samples.

    Frame `i` is the `frame_length`-sample window starting at sample
    `i * hop + hop // 2 - frame_length // 2`, so centred on sample
    `i * hop + hop / 2` for even sizes (the centre of code `i` when `hop`
    is the downsampling factor), with zeros beyond the waveform's ends, so
    `samples / hop` frames come out. Each frame is `log(M |DFT(w x)|^2 +
    log_offset)` with `w` the periodic Hann window, an `fft_length`-point
    DFT and `M` the HTK-mel filterbank of
    `tf.signal.linear_to_mel_weight_matrix`: the features of
    `tf_vqvae.speech_metrics.log_mel_spectrogram` at its defaults (25 ms
    windows, 40 bands from 20 Hz to 8 kHz at 16 kHz), centred.

    The DFT is a strided convolution with fixed cosine and sine kernels
    rather than `tf.signal.stft`, so a TFLite encoder stays builtins-only;
    there are no weights, and no gradient is needed (it reads the input).
    It computes in float32 under every dtype policy.

    Args:
        hop: samples between frames (the output's downsampling factor).
        frame_length: window length in samples (at least `hop`).
        fft_length: DFT size (at least `frame_length`).
        num_mel_bins: mel bands, the output's channels.
        sample_rate: in Hz.
        lower_edge_hertz: the lowest band edge.
        upper_edge_hertz: the highest band edge (default `sample_rate / 2`).
        log_offset: added before the log (the floor of silent bands).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: waveforms `(batch, samples, 1)`, `samples` divisible by
            `hop`.

    Returns:
        float32 `(batch, samples / hop, num_mel_bins)`.

    Example:

    >>> frames = LogMelFrames(hop=32)
    >>> frames(tf.zeros((2, 8192, 1))).shape
    TensorShape([2, 256, 40])
    """

    def __init__(
        self,
        hop: int,
        frame_length: int = 400,
        fft_length: int = 512,
        num_mel_bins: int = 40,
        sample_rate: int = 16_000,
        lower_edge_hertz: float = 20.0,
        upper_edge_hertz: float | None = None,
        log_offset: float = 1e-6,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        for name, value in (
            ("hop", hop),
            ("frame_length", frame_length),
            ("fft_length", fft_length),
            ("num_mel_bins", num_mel_bins),
            ("sample_rate", sample_rate),
        ):
            check_int(name, value, 1)
        if not hop <= frame_length <= fft_length:
            raise ValueError(
                "`LogMelFrames` needs hop <= frame_length <= fft_length. "
                f"Received: hop={hop}, frame_length={frame_length}, "
                f"fft_length={fft_length}"
            )
        upper = upper_edge_hertz
        if upper is None:
            upper = sample_rate / 2
        if not 0 <= lower_edge_hertz < upper <= sample_rate / 2:
            raise ValueError(
                "`LogMelFrames` needs 0 <= lower_edge_hertz < "
                "upper_edge_hertz <= sample_rate / 2. Received: "
                f"lower_edge_hertz={lower_edge_hertz}, "
                f"upper_edge_hertz={upper_edge_hertz}, "
                f"sample_rate={sample_rate}"
            )
        if not log_offset > 0:
            raise ValueError(
                f"`log_offset` must be > 0. Received: log_offset={log_offset}"
            )
        self.hop = hop
        self.frame_length = frame_length
        self.fft_length = fft_length
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.lower_edge_hertz = float(lower_edge_hertz)
        self.upper_edge_hertz = upper_edge_hertz
        self.log_offset = float(log_offset)
        # Centre frame i on sample i * hop + hop / 2.
        self._pad_left = frame_length // 2 - hop // 2
        self._pad_right = frame_length - hop - self._pad_left
        n = np.arange(frame_length)[:, None]
        k = np.arange(fft_length // 2 + 1)[None, :]
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / frame_length)
        angle = 2 * np.pi * n * k / fft_length
        # (frame_length, 1, 2 * bins): the windowed DFT's real, then
        # imaginary parts (the sign of the latter does not matter).
        self._dft = np.concatenate(
            [window * np.cos(angle), window * np.sin(angle)], axis=1
        )[:, None, :].astype(np.float32)
        self._mel = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins,
            fft_length // 2 + 1,
            sample_rate,
            self.lower_edge_hertz,
            upper,
        ).numpy()

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[-1] != 1:
            raise ValueError(
                f"`{self.name}` expects waveforms (batch, samples, 1). "
                f"Received: inputs.shape={shape}"
            )
        if shape[1] is not None and shape[1] % self.hop:
            raise ValueError(
                f"`{self.name}` expects a number of samples divisible by "
                f"hop={self.hop}. Received: inputs.shape={shape}"
            )

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        x = tf.pad(x, [[0, 0], [self._pad_left, self._pad_right], [0, 0]])
        parts = tf.nn.conv1d(
            x, tf.constant(self._dft), stride=self.hop, padding="VALID"
        )
        bins = self.fft_length // 2 + 1
        power = tf.square(parts[..., :bins]) + tf.square(parts[..., bins:])
        mel = tf.tensordot(power, tf.constant(self._mel), axes=1)
        return tf.math.log(mel + self.log_offset)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else samples // self.hop
        return (input_shape[0], frames, self.num_mel_bins)

    def get_config(self):
        config = super().get_config()
        config.update(
            hop=self.hop,
            frame_length=self.frame_length,
            fft_length=self.fft_length,
            num_mel_bins=self.num_mel_bins,
            sample_rate=self.sample_rate,
            lower_edge_hertz=self.lower_edge_hertz,
            upper_edge_hertz=self.upper_edge_hertz,
            log_offset=self.log_offset,
        )
        return config
