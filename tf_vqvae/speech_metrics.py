"""Measurements of the paper's speech results (issue 16, section 4.3 of [1]).

Phoneme discovery: each code of a 1D VQ-VAE covers `samples_per_code`
waveform samples (64 for the paper's six stride-2 convolutions). A code is
labelled with the phoneme covering its centre sample, every code value is
mapped to the phoneme it most often lands on in the training split, and the
accuracy of that mapping on held-out speech is compared with the
most-frequent-phoneme baseline (the paper: 49.3% against 7.2%, 41 classes).

    code_phonemes(alignment, num_codes)      -> phoneme id per code (-1: none)
    phonemes_per_code(alignments, codes)     -> the same per utterance
    fit_code_to_phoneme(codes, phonemes, K)  -> mapping: code -> phoneme id
    phoneme_accuracy(mapping, codes, phonemes) -> PhonemeAccuracy

Voice conversion: a small speaker classifier on log-mel features
(`SpeakerClassifier`, trained by `train_speaker_classifier`) says whose
voice a converted utterance has; `conversion_scores` combines its
predictions with the phoneme agreement of the converted audio's codes
(re-encoded) against the source's alignment, relative to the unconverted
reconstruction's agreement. `frame_periodicity` says whether decoded speech
has a pitch where it is loud.

Multi-level codes (residual VQ, `(num_codes, num_levels)` per utterance)
are scored on their first level: it carries the coarse content the later
levels refine, and it is the level whose codebook the mapping indexes.

The functions take numpy arrays (one array per utterance), not datasets, so
they work with any corpus that has per-phoneme alignments `(num_phonemes, 3)`
int `start_sample, end_sample, phoneme_id` (`tf_vqvae.data.load_audio`'s
`Utterances.alignments`).

References:
    [1] van den Oord et al., 2017. Neural Discrete Representation Learning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from tf_vqvae.arg_checks import check_int, describe

# `code_phonemes`' label for a code whose centre sample no phoneme covers;
# such positions are left out of every score.
NO_PHONEME = -1


# ----------------------------------------------------------------- phonemes
def _check_alignment(alignment) -> np.ndarray:
    alignment = np.asarray(alignment)
    if alignment.ndim != 2 or alignment.shape[1] != 3:
        raise ValueError(
            "`alignment` must have shape (num_phonemes, 3): start_sample, "
            f"end_sample, phoneme_id. Received: shape={alignment.shape}."
        )
    if alignment.size and not np.issubdtype(alignment.dtype, np.integer):
        raise TypeError(
            "`alignment` must be an integer array. Received: "
            f"dtype={alignment.dtype}."
        )
    alignment = alignment.astype(np.int64)
    starts, ends, ids = alignment.T
    if np.any(starts < 0) or np.any(ends < starts) or np.any(ids < 0):
        raise ValueError(
            "`alignment` rows must satisfy 0 <= start_sample <= end_sample "
            "and phoneme_id >= 0."
        )
    if np.any(starts[1:] < ends[:-1]):
        raise ValueError(
            "`alignment` rows must be sorted and must not overlap: "
            "start_sample of each row >= end_sample of the row before."
        )
    return alignment


def code_phonemes(
    alignment: ArrayLike, num_codes: int, samples_per_code: int = 64
) -> np.ndarray:
    """The phoneme id at the centre of each code: int32 `(num_codes,)`.

    Code `i` covers samples `[i * s, (i + 1) * s)` for `s =
    samples_per_code`; its centre is sample `i * s + s // 2`. A phoneme row
    `(start, end, id)` covers samples `start <= n < end`. Codes whose centre
    no phoneme covers (silence before the first phoneme, gaps, audio past
    the last one) get `NO_PHONEME` (-1).

    Args:
        alignment: int `(num_phonemes, 3)`: `start_sample, end_sample,
            phoneme_id`, rows sorted and not overlapping (touching is fine).
        num_codes: the number of codes of the utterance (its code grid
            length).
        samples_per_code: waveform samples per code (64 for the paper's
            encoder).

    Returns:
        int32 `(num_codes,)`: phoneme ids, or -1.

    Raises:
        ValueError: for a malformed alignment or a non-positive count.
        TypeError: for a non-integer alignment.
    """
    check_int("num_codes", num_codes, minimum=0)
    check_int("samples_per_code", samples_per_code)
    alignment = _check_alignment(alignment)
    centres = (
        np.arange(num_codes, dtype=np.int64) * samples_per_code
        + samples_per_code // 2
    )
    starts, ends, ids = alignment.T
    # The last row starting at or before the centre is the only candidate:
    # rows are sorted and do not overlap.
    row = np.searchsorted(starts, centres, side="right") - 1
    found = row >= 0
    row = np.maximum(row, 0)
    covered = found & (centres < ends[row]) if len(starts) else found
    result = np.full(num_codes, NO_PHONEME, np.int32)
    result[covered] = ids[row[covered]]
    return result


def phonemes_per_code(
    alignments: Sequence, codes_list: Sequence, samples_per_code: int = 64
) -> list[np.ndarray]:
    """`code_phonemes` of each utterance, as long as its codes.

    Args:
        alignments: per utterance, int `(num_phonemes, 3)`.
        codes_list: per utterance, its codes `(num_codes,)` or
            `(num_codes, num_levels)`; only their number is used.
        samples_per_code: waveform samples per code.

    Returns:
        Per utterance, int32 `(num_codes,)`: the `phoneme_list` that
        `fit_code_to_phoneme` and `phoneme_accuracy` take.

    Raises:
        ValueError: when the two lists differ in length, or as
            `code_phonemes`.
    """
    if len(alignments) != len(codes_list):
        raise ValueError(
            "`alignments` and `codes_list` must have one array per "
            f"utterance each. Received: {len(alignments)} and "
            f"{len(codes_list)} arrays."
        )
    return [
        code_phonemes(alignment, len(np.asarray(codes)), samples_per_code)
        for alignment, codes in zip(alignments, codes_list)
    ]


def _first_level(codes, name: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim == 2:
        codes = codes[:, 0]
    if codes.ndim != 1:
        raise ValueError(
            f"Each of `{name}` must have shape (num_codes,) or (num_codes, "
            f"num_levels). Received: shape={np.shape(codes)}."
        )
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(
            f"`{name}` must hold integer codes. Received: dtype={codes.dtype}."
        )
    return codes.astype(np.int64)


def _scored_pairs(
    codes_list: Sequence, phoneme_list: Sequence, codes_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated first-level codes and phoneme ids where a phoneme is."""
    if len(codes_list) != len(phoneme_list):
        raise ValueError(
            f"`{codes_name}` and `phoneme_list` must have one array per "
            f"utterance each. Received: {len(codes_list)} and "
            f"{len(phoneme_list)} arrays."
        )
    all_codes, all_phonemes = [], []
    for index, (codes, phonemes) in enumerate(zip(codes_list, phoneme_list)):
        codes = _first_level(codes, codes_name)
        phonemes = np.asarray(phonemes)
        if phonemes.ndim != 1 or len(phonemes) != len(codes):
            raise ValueError(
                f"Utterance {index}: the phoneme ids must have shape "
                f"({len(codes)},), one per code. Received: "
                f"shape={phonemes.shape}."
            )
        if phonemes.size and not np.issubdtype(phonemes.dtype, np.integer):
            raise TypeError(
                "`phoneme_list` must hold integer ids. Received: "
                f"dtype={phonemes.dtype}."
            )
        if np.any(phonemes < NO_PHONEME):
            raise ValueError(
                f"Utterance {index}: phoneme ids must be >= 0, or -1 where "
                "no phoneme covers the code."
            )
        keep = phonemes != NO_PHONEME
        all_codes.append(codes[keep])
        all_phonemes.append(phonemes[keep].astype(np.int64))
    if not all_codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(all_codes), np.concatenate(all_phonemes)


def _check_code_range(codes: np.ndarray, num_embeddings: int, name: str):
    if codes.size and (codes.min() < 0 or codes.max() >= num_embeddings):
        raise ValueError(
            f"`{name}` must lie in [0, {num_embeddings}). Received: codes "
            f"from {codes.min()} to {codes.max()}."
        )


def fit_code_to_phoneme(
    codes_list: Sequence, phoneme_list: Sequence, num_embeddings: int
) -> np.ndarray:
    """Maps each code to the phoneme it most often covers: int32 `(K,)`.

    Counts, over the scored positions (phoneme id != -1) of all utterances,
    how often code `k` lands on phoneme `p`, and maps `k` to the `p` with
    the highest count (ties: the smallest phoneme id). Codes that never land
    on a phoneme map to the most frequent phoneme overall (ties: the
    smallest id), the best guess without evidence.

    Args:
        codes_list: per utterance, int codes `(num_codes,)`, or
            `(num_codes, num_levels)` of which the first level is used.
        phoneme_list: per utterance, `code_phonemes(...)` of it: int
            `(num_codes,)`, -1 where no phoneme covers the code.
        num_embeddings: K, the codebook size (codes lie in `[0, K)`).

    Returns:
        int32 `(num_embeddings,)`: the phoneme id of each code.

    Raises:
        ValueError: for mismatched lengths, codes outside `[0, K)`, or no
            scored position at all.
    """
    check_int("num_embeddings", num_embeddings)
    codes, phonemes = _scored_pairs(codes_list, phoneme_list, "codes_list")
    if codes.size == 0:
        raise ValueError(
            "`phoneme_list` has no scored position (every id is -1): "
            "nothing to fit the mapping on."
        )
    _check_code_range(codes, num_embeddings, "codes_list")
    num_phonemes = int(phonemes.max()) + 1
    counts = np.bincount(
        codes * num_phonemes + phonemes,
        minlength=num_embeddings * num_phonemes,
    ).reshape(num_embeddings, num_phonemes)
    # argmax returns the first maximum: ties go to the smallest phoneme id.
    mapping = np.argmax(counts, axis=1)
    unseen = counts.sum(axis=1) == 0
    mapping[unseen] = np.argmax(counts.sum(axis=0))
    return mapping.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class PhonemeAccuracy:
    """How well codes, mapped to phonemes, predict the aligned phonemes.

    Attributes:
        accuracy: the fraction of scored positions where
            `mapping[code] == phoneme`.
        baseline_accuracy: the fraction of scored positions labelled with
            the most frequent phoneme of the scored data itself (the best
            constant guess; the paper's "most frequent class" baseline).
        num_classes: the number of distinct phonemes at scored positions.
        num_scored: the number of scored positions (codes with a phoneme).
    """

    accuracy: float
    baseline_accuracy: float
    num_classes: int
    num_scored: int

    @property
    def ratio(self) -> float:
        """`accuracy / baseline_accuracy` (the paper: 49.3 / 7.2 = 6.8)."""
        return self.accuracy / self.baseline_accuracy


def phoneme_accuracy(
    mapping: ArrayLike, codes_list: Sequence, phoneme_list: Sequence
) -> PhonemeAccuracy:
    """Scores a code -> phoneme mapping against aligned phonemes.

    Args:
        mapping: int `(num_embeddings,)` from `fit_code_to_phoneme` (fitted
            on the training split; score held-out utterances with it).
        codes_list: per utterance, int codes `(num_codes,)`, or
            `(num_codes, num_levels)` of which the first level is used.
        phoneme_list: per utterance, `code_phonemes(...)` of it: int
            `(num_codes,)`, -1 where no phoneme covers the code (left out).

    Returns:
        `PhonemeAccuracy`: accuracy, the most-frequent-phoneme baseline,
        the number of phoneme classes present and of scored positions.

    Raises:
        ValueError: for mismatched lengths, codes outside the mapping, or no
            scored position at all.
    """
    mapping = np.asarray(mapping)
    if mapping.ndim != 1 or mapping.size == 0:
        raise ValueError(
            "`mapping` must have shape (num_embeddings,). Received: "
            f"shape={mapping.shape}."
        )
    codes, phonemes = _scored_pairs(codes_list, phoneme_list, "codes_list")
    if codes.size == 0:
        raise ValueError(
            "`phoneme_list` has no scored position (every id is -1): "
            "nothing to score."
        )
    _check_code_range(codes, len(mapping), "codes_list")
    correct = int(np.sum(mapping[codes] == phonemes))
    classes = np.bincount(phonemes)
    return PhonemeAccuracy(
        accuracy=correct / len(codes),
        baseline_accuracy=int(classes.max()) / len(codes),
        num_classes=int(np.count_nonzero(classes)),
        num_scored=len(codes),
    )


# ------------------------------------------------------------------ log-mel
def log_mel_spectrogram(
    waveform: ArrayLike | tf.Tensor,
    sample_rate: int = 16_000,
    frame_length: int = 400,
    frame_step: int = 160,
    fft_length: int = 512,
    num_mel_bins: int = 40,
    lower_edge_hertz: float = 20.0,
    upper_edge_hertz: float | None = None,
    log_offset: float = 1e-6,
) -> tf.Tensor:
    """Log mel-filterbank energies of a waveform, in TensorFlow ops.

    `log(M |STFT(x)|^2 + log_offset)`: a periodic Hann window of
    `frame_length` samples every `frame_step` samples, no end padding (so
    `frames = 1 + (samples - frame_length) // frame_step`), an
    `fft_length`-point real FFT, and `M` the HTK-mel triangular filterbank
    of `tf.signal.linear_to_mel_weight_matrix` (the DC bin excluded). The
    defaults are 25 ms windows every 10 ms at 16 kHz, 40 bands from 20 Hz
    to the Nyquist frequency.

    Args:
        waveform: float `(samples,)`, `(batch, samples)` or
            `(batch, samples, 1)`, in [-1, 1].
        sample_rate: in Hz.
        frame_length: window length in samples.
        frame_step: hop in samples.
        fft_length: FFT size (>= `frame_length`).
        num_mel_bins: the number of mel bands.
        lower_edge_hertz: the lowest band edge.
        upper_edge_hertz: the highest band edge (default: `sample_rate / 2`).
        log_offset: added before the log (the floor of silent bands).

    Returns:
        float32 `(frames, num_mel_bins)` for a 1-D waveform, else
        `(batch, frames, num_mel_bins)`.

    Raises:
        ValueError: for a waveform of another rank or channel count.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    if waveform.shape.rank == 3:
        if waveform.shape[-1] != 1:
            raise ValueError(
                "`waveform` must be mono: (batch, samples, 1). Received: "
                f"shape={tuple(waveform.shape)}."
            )
        waveform = waveform[..., 0]
    if waveform.shape.rank not in (1, 2):
        raise ValueError(
            "`waveform` must have shape (samples,), (batch, samples) or "
            f"(batch, samples, 1). Received: shape={tuple(waveform.shape)}."
        )
    stft = tf.signal.stft(
        waveform,
        frame_length=frame_length,
        frame_step=frame_step,
        fft_length=fft_length,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    power = tf.math.square(tf.math.abs(stft))
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=num_mel_bins,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=sample_rate,
        lower_edge_hertz=lower_edge_hertz,
        upper_edge_hertz=(
            sample_rate / 2 if upper_edge_hertz is None else upper_edge_hertz
        ),
    )
    return tf.math.log(tf.tensordot(power, weights, 1) + log_offset)


# Natural-log power to decibels.
_DB_PER_NEPER = 10.0 / math.log(10.0)


def log_mel_distance(
    reference: tf.Tensor, estimate: tf.Tensor, **mel_options
) -> tf.Tensor:
    """The log-mel spectral distance of `estimate` from `reference`, in dB.

    Per frame, the root mean square over mel bands of the difference of
    `log_mel_spectrogram`s converted to decibels (`10 log10` of the band
    powers), then averaged over frames: the log-spectral distance on a mel
    scale. It ignores the phase, which a waveform SNR punishes: a decoder
    that gets the spectrum right with another phase scores near 0 dB SNR
    but a small distance here. 0 for identical waveforms.

    Args:
        reference: float waveforms `(samples,)`, `(batch, samples)` or
            `(batch, samples, 1)`.
        estimate: float, the same shape.
        **mel_options: `log_mel_spectrogram` arguments (frame sizes, bands,
            `log_offset`: the floor that keeps silence finite).

    Returns:
        float32: a scalar for 1-D waveforms, else `(batch,)`.

    Raises:
        ValueError: for waveforms of different shapes (or as
            `log_mel_spectrogram`).
    """
    # Cast: `convert_to_tensor(..., tf.float32)` refuses bfloat16 tensors.
    reference = tf.cast(reference, tf.float32)
    estimate = tf.cast(estimate, tf.float32)
    if reference.shape != estimate.shape:
        raise ValueError(
            "`reference` and `estimate` must have the same shape. Received: "
            f"{tuple(reference.shape)} and {tuple(estimate.shape)}."
        )
    difference = log_mel_spectrogram(
        reference, **mel_options
    ) - log_mel_spectrogram(estimate, **mel_options)
    per_frame = _DB_PER_NEPER * tf.sqrt(
        tf.reduce_mean(tf.square(difference), axis=-1)
    )
    return tf.reduce_mean(per_frame, axis=-1)


def frame_periodicity(
    waveform: ArrayLike,
    sample_rate: int = 16000,
    frame_length: int = 640,
    hop: int = 160,
    min_hz: float = 60.0,
    max_hz: float = 400.0,
    floor_db: float = 30.0,
) -> np.ndarray:
    """How periodic a waveform is where it is loud, frame by frame: voiced
    speech has a pitch, noise does not.

    For each frame (`frame_length` samples every `hop`), the largest
    normalised autocorrelation over the lags of one pitch period between
    `1 / max_hz` and `1 / min_hz`,
    `r(t) = sum x[n] x[n+t] / sqrt(sum x[n]^2 sum x[n+t]^2)` with n over
    the frame's first `frame_length - t` samples, for the frames whose
    energy is within `floor_db` of the loudest frame's. About 1 for a sung
    vowel or a pulse train, near 0.1-0.2 for white noise: the mean, or the
    fraction of frames above 0.8, tells a decoder that renders harmonics
    from one that renders the spectral envelope with noise, which a log-mel
    distance at 25 ms resolution does not.

    Args:
        waveform: float `(samples,)`, at least `frame_length` samples.
        sample_rate: Hz.
        frame_length: samples per frame; longer than `sample_rate / min_hz`.
        hop: samples between frame starts.
        min_hz: the lowest pitch considered.
        max_hz: the highest pitch considered.
        floor_db: frames quieter than the loudest by more than this are
            left out (silence and pauses).

    Returns:
        float64 `(loud_frames,)`, each in [-1, 1] (0 for a frame whose
        lagged halves are silent).

    Raises:
        ValueError: for a waveform that is not 1-D, shorter than a frame, or
            all zeros, or a pitch range a frame cannot hold.
    """
    x = np.asarray(waveform, np.float64)
    if x.ndim != 1 or len(x) < frame_length:
        raise ValueError(
            "`waveform` must be 1-D with at least `frame_length` samples. "
            f"Received: shape={x.shape}, frame_length={frame_length}"
        )
    shortest = int(math.floor(sample_rate / max_hz))
    longest = int(math.ceil(sample_rate / min_hz))
    if not 0 < min_hz < max_hz or longest >= frame_length or shortest < 1:
        raise ValueError(
            "The pitch range must satisfy 0 < min_hz < max_hz with a period "
            "of `sample_rate / min_hz` shorter than `frame_length`. Received: "
            f"min_hz={min_hz}, max_hz={max_hz}, frame_length={frame_length}"
        )
    count = 1 + (len(x) - frame_length) // hop
    index = np.arange(frame_length)[None, :] + hop * np.arange(count)[:, None]
    frames = x[index]
    energy = np.sum(frames**2, axis=1)
    if not np.any(energy > 0):
        raise ValueError("`waveform` is all zeros: it has no loud frames.")
    loud = frames[energy >= energy.max() * 10 ** (-floor_db / 10)]
    best = np.full(len(loud), -1.0)
    for lag in range(shortest, longest + 1):
        head, tail = loud[:, :-lag], loud[:, lag:]
        norm = np.sqrt(np.sum(head**2, axis=1) * np.sum(tail**2, axis=1))
        r = np.sum(head * tail, axis=1) / np.maximum(norm, 1e-30)
        best = np.maximum(best, r)
    return best


# --------------------------------------------------------- speaker classifier
@keras.saving.register_keras_serializable(package="tf_vqvae")
class SpeakerClassifier(keras.Model):
    """Says which speaker an utterance is, from its log-mel features.

    The measuring instrument of voice conversion (issue 16): trained on the
    corpus' clean utterances, it tells whether a converted utterance has the
    target speaker's voice. `log_mel_spectrogram` -> layer normalisation
    of each frame over its mel bands -> `num_layers` x
    (`Conv1D(num_hiddens, kernel_size)` over frames, ReLU) -> the mean over
    frames -> `Dense(num_speakers)`. Normalising each frame removes its
    loudness and keeps the spectral shape that tells voices apart; unlike
    batch normalisation it has no moving statistics that lag a short
    training run.
    The dense layer is linear, so the logits are the mean of per-frame
    logits: any utterance length works, and a whole utterance is
    classified at once (`predict_speakers`).

    Args:
        num_speakers: the number of speakers (ids in `[0, num_speakers)`).
        sample_rate: of the input waveforms, in Hz.
        num_mel_bins: mel bands of the features.
        num_hiddens: channels of each convolution.
        num_layers: the number of convolutions.
        kernel_size: frames each convolution spans.
        frame_length: STFT window in samples (25 ms at 16 kHz).
        frame_step: STFT hop in samples (10 ms at 16 kHz).
        fft_length: FFT size.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float waveforms `(batch, samples)` or `(batch, samples, 1)`
            in [-1, 1], at least `frame_length` samples long.
        training: unused (no dropout or batch statistics).

    Returns:
        Logits `(batch, num_speakers)`, float32.

    Raises:
        ValueError: for invalid arguments.

    Example:

    >>> classifier, accuracy = train_speaker_classifier(
    ...     waveforms, speakers, num_speakers=8)
    >>> classifier.predict_speakers(converted_waveforms)  # int32 (n,)
    """

    def __init__(
        self,
        num_speakers: int,
        sample_rate: int = 16_000,
        num_mel_bins: int = 40,
        num_hiddens: int = 64,
        num_layers: int = 2,
        kernel_size: int = 3,
        frame_length: int = 400,
        frame_step: int = 160,
        fft_length: int = 512,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("num_speakers", num_speakers),
            ("sample_rate", sample_rate),
            ("num_mel_bins", num_mel_bins),
            ("num_hiddens", num_hiddens),
            ("num_layers", num_layers),
            ("kernel_size", kernel_size),
            ("frame_length", frame_length),
            ("frame_step", frame_step),
            ("fft_length", fft_length),
        ):
            check_int(name, value)
        if fft_length < frame_length:
            raise ValueError(
                "`fft_length` must be at least `frame_length` "
                f"({frame_length}). {describe('fft_length', fft_length)}"
            )
        self.num_speakers = num_speakers
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.num_hiddens = num_hiddens
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.fft_length = fft_length
        self.normalize = keras.layers.LayerNormalization(name="normalize")
        self.convs = [
            keras.layers.Conv1D(
                num_hiddens,
                kernel_size,
                padding="same",
                activation="relu",
                name=f"conv{i}",
            )
            for i in range(num_layers)
        ]
        self.logits = keras.layers.Dense(num_speakers, name="logits")
        # A compiled one-utterance classifier (any length) for
        # `predict_speakers`, set past Keras' tracking: not state to save.
        object.__setattr__(self, "_predict_one", None)

    def features(self, waveforms: ArrayLike | tf.Tensor) -> tf.Tensor:
        """`log_mel_spectrogram` with this model's settings:
        `(batch, frames, num_mel_bins)`."""
        return log_mel_spectrogram(
            waveforms,
            sample_rate=self.sample_rate,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            num_mel_bins=self.num_mel_bins,
        )

    def build(self, input_shape):
        frames_shape = (None, None, self.num_mel_bins)
        self.normalize.build(frames_shape)
        shape = frames_shape
        for conv in self.convs:
            conv.build(shape)
            shape = (None, None, self.num_hiddens)
        self.logits.build((None, self.num_hiddens))
        self.built = True

    def call(self, inputs, training=None):
        x = self.normalize(self.features(inputs))
        for conv in self.convs:
            x = conv(x)
        return self.logits(tf.reduce_mean(x, axis=1))

    def predict_speakers(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """The most likely speaker of each utterance: int32 `(n,)`.

        Args:
            waveforms: 1-D float waveforms in [-1, 1] of any lengths (each
                at least `frame_length` samples), classified one by one.

        Raises:
            ValueError: for a waveform that is not 1-D or too short.
        """
        if self._predict_one is None:
            signature = [tf.TensorSpec([None], tf.float32)]

            def predict_one(waveform):
                logits = self(waveform[tf.newaxis], training=False)
                return tf.argmax(logits[0], output_type=tf.int32)

            object.__setattr__(
                self,
                "_predict_one",
                tf.function(predict_one, input_signature=signature),
            )
        speakers = []
        for index, waveform in enumerate(waveforms):
            waveform = np.asarray(waveform, np.float32)
            if waveform.ndim != 1 or len(waveform) < self.frame_length:
                raise ValueError(
                    "Each waveform must be 1-D with at least "
                    f"{self.frame_length} samples. Received: waveform "
                    f"{index} of shape "
                    f"{waveform.shape}."
                )
            speakers.append(int(self._predict_one(waveform)))
        return np.asarray(speakers, np.int32)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_speakers=self.num_speakers,
            sample_rate=self.sample_rate,
            num_mel_bins=self.num_mel_bins,
            num_hiddens=self.num_hiddens,
            num_layers=self.num_layers,
            kernel_size=self.kernel_size,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
        )
        return config


class TrainedSpeakerClassifier(NamedTuple):
    """`train_speaker_classifier`'s result (unpacks as `model, accuracy`)."""

    model: SpeakerClassifier
    accuracy: float
    num_test: int


def _speaker_ids(speakers, count: int, num_speakers: int, name: str):
    speakers = np.asarray(speakers)
    if speakers.shape != (count,):
        raise ValueError(
            f"`{name}` must have one id per waveform: shape ({count},). "
            f"Received: shape={speakers.shape}."
        )
    if count and (
        not np.issubdtype(speakers.dtype, np.integer)
        or speakers.min() < 0
        or speakers.max() >= num_speakers
    ):
        raise ValueError(
            f"`{name}` must be integer ids in [0, {num_speakers})."
        )
    return speakers.astype(np.int32)


def _held_out(speakers: np.ndarray, fraction: float, rng) -> np.ndarray:
    """Indices of a seeded held-out set, the same fraction of each
    speaker's utterances (at least one of a speaker with two or more)."""
    held = []
    for speaker in np.unique(speakers):
        members = rng.permutation(np.flatnonzero(speakers == speaker))
        if len(members) >= 2:
            count = round(fraction * len(members))
            count = min(max(count, 1), len(members) - 1)
            held.extend(members[:count].tolist())
    return np.sort(np.asarray(held, np.int64))


def _crops(waveforms, order, segment_length: int, rng) -> np.ndarray:
    """One random `segment_length` crop of each waveform in `order`
    (zero-padded at the end when shorter)."""
    batch = np.zeros((len(order), segment_length), np.float32)
    for row, index in enumerate(order):
        waveform = waveforms[index]
        start = rng.integers(0, max(len(waveform) - segment_length, 0) + 1)
        piece = waveform[start : start + segment_length]
        batch[row, : len(piece)] = piece
    return batch


def train_speaker_classifier(
    waveforms: Sequence[np.ndarray],
    speakers: ArrayLike,
    num_speakers: int,
    *,
    test_waveforms: Sequence[np.ndarray] | None = None,
    test_speakers: ArrayLike | None = None,
    test_fraction: float = 0.2,
    segment_length: int = 16_000,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    **model_kwargs,
) -> TrainedSpeakerClassifier:
    """Trains a `SpeakerClassifier` and measures it on held-out utterances.

    Each epoch draws one random `segment_length` crop of every training
    utterance (zero-padded when shorter), in a seeded order, and takes
    Adam steps of `batch_size` crops on the softmax cross-entropy. The
    accuracy is that of `predict_speakers` on whole held-out utterances:
    `test_waveforms` if given (for the speech corpus: the `test` split,
    training voices saying held-out sentences), else a seeded
    `test_fraction` of each speaker's utterances, kept out of training.
    `keras.utils.set_random_seed(seed)` seeds the weights (and the global
    RNGs, as `vqvae train` does).

    Args:
        waveforms: 1-D float32 waveforms in [-1, 1], at the model's
            `sample_rate` (16 kHz by default).
        speakers: int `(len(waveforms),)`: the speaker of each.
        num_speakers: the number of speakers.
        test_waveforms: held-out utterances of the same speakers.
        test_speakers: their speakers (required with `test_waveforms`).
        test_fraction: the share of each speaker's utterances held out
            when `test_waveforms` is `None`.
        segment_length: samples per training crop.
        epochs: passes over the training utterances.
        batch_size: crops per step.
        learning_rate: Adam's step size.
        seed: seeds the held-out split, the crops and the weights.
        **model_kwargs: further `SpeakerClassifier` arguments.

    Returns:
        `TrainedSpeakerClassifier(model, accuracy, num_test)`.

    Raises:
        ValueError: for mismatched speakers, bad arguments, or no held-out
            utterance.
    """
    check_int("num_speakers", num_speakers)
    check_int("segment_length", segment_length)
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    waveforms = [np.asarray(w, np.float32) for w in waveforms]
    speakers = _speaker_ids(speakers, len(waveforms), num_speakers, "speakers")
    rng = np.random.default_rng(seed)
    if test_waveforms is None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(
                "`test_fraction` must lie in (0, 1). "
                f"{describe('test_fraction', test_fraction)}"
            )
        held = _held_out(speakers, test_fraction, rng)
        test_waveforms = [waveforms[i] for i in held]
        test_speakers = speakers[held]
        kept = np.setdiff1d(np.arange(len(waveforms)), held)
        waveforms = [waveforms[i] for i in kept]
        speakers = speakers[kept]
    else:
        if test_speakers is None:
            raise ValueError(
                "`test_speakers` must be given with `test_waveforms`."
            )
        test_waveforms = [np.asarray(w, np.float32) for w in test_waveforms]
        test_speakers = _speaker_ids(
            test_speakers, len(test_waveforms), num_speakers, "test_speakers"
        )
    if not test_waveforms:
        raise ValueError(
            "No held-out utterance: pass `test_waveforms` or give some "
            "speaker at least two utterances."
        )
    if not waveforms:
        raise ValueError("`waveforms` must hold at least one utterance.")

    keras.utils.set_random_seed(seed)
    model = SpeakerClassifier(num_speakers, **model_kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    for _ in range(epochs):
        order = rng.permutation(len(waveforms))
        crops = _crops(waveforms, order, segment_length, rng)
        model.fit(
            crops,
            speakers[order],
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
    predicted = model.predict_speakers(test_waveforms)
    accuracy = float(np.mean(predicted == test_speakers))
    return TrainedSpeakerClassifier(model, accuracy, len(test_waveforms))


# --------------------------------------------------------------- conversion
@dataclasses.dataclass(frozen=True)
class ConversionScores:
    """Issue 16's measure of voice conversion (its item 4).

    Attributes:
        target_voice_accuracy: the fraction of converted utterances the
            speaker classifier assigns to their target speaker (goal:
            >= 0.8).
        converted_phoneme_accuracy: phoneme agreement of the converted
            audio's re-encoded codes, mapped to phonemes, with the source's
            alignment.
        reconstruction_phoneme_accuracy: the same for the unconverted
            reconstruction (decoded with the source speaker), re-encoded.
        content_ratio: `converted_phoneme_accuracy /
            reconstruction_phoneme_accuracy` (goal: >= 0.8); NaN when the
            reconstruction agrees nowhere.
        num_utterances: the number of converted utterances.
    """

    target_voice_accuracy: float
    converted_phoneme_accuracy: float
    reconstruction_phoneme_accuracy: float
    content_ratio: float
    num_utterances: int


def conversion_scores(
    source_alignments: Sequence,
    converted_codes: Sequence,
    reconstruction_codes: Sequence,
    mapping: ArrayLike,
    predicted_speakers: ArrayLike,
    target_speakers: ArrayLike,
    samples_per_code: int = 64,
) -> ConversionScores:
    """Scores voice conversion: the target voice, and the content kept.

    For each source utterance `i`, converted to speaker
    `target_speakers[i]` (which should differ from its own speaker):
    `converted_codes[i]` are the codes of the converted audio encoded
    again, `reconstruction_codes[i]` those of the unconverted
    reconstruction encoded again (so both went through the decoder and the
    encoder once more), and `predicted_speakers[i]` is the speaker
    classifier's verdict on the converted audio. Both code sets are scored
    against the source's phonemes (`code_phonemes` of
    `source_alignments[i]`) through `mapping`; `content_ratio` says how
    much of the reconstruction's phoneme agreement survives conversion.

    Args:
        source_alignments: per utterance, int `(num_phonemes, 3)`:
            `start_sample, end_sample, phoneme_id` of the source.
        converted_codes: per utterance, int `(num_codes,)` or `(num_codes,
            num_levels)` (first level used).
        reconstruction_codes: the same for the reconstruction.
        mapping: int `(num_embeddings,)` from `fit_code_to_phoneme`.
        predicted_speakers: int `(n,)`, e.g.
            `SpeakerClassifier.predict_speakers(converted_waveforms)`.
        target_speakers: int `(n,)`: the speaker each utterance was
            converted to.
        samples_per_code: waveform samples per code.

    Returns:
        `ConversionScores`.

    Raises:
        ValueError: for inputs of mismatched lengths, or no utterance.
    """
    count = len(source_alignments)
    if count == 0:
        raise ValueError(
            "`source_alignments` must hold at least one utterance."
        )
    for name, values in (
        ("converted_codes", converted_codes),
        ("reconstruction_codes", reconstruction_codes),
        ("predicted_speakers", predicted_speakers),
        ("target_speakers", target_speakers),
    ):
        if len(values) != count:
            raise ValueError(
                f"`{name}` must have one entry per source utterance "
                f"({count}). Received: {len(values)}."
            )
    predicted = np.asarray(predicted_speakers)
    targets = np.asarray(target_speakers)
    if predicted.shape != (count,) or targets.shape != (count,):
        raise ValueError(
            "`predicted_speakers` and `target_speakers` must be 1-D "
            f"speaker ids. Received: shapes {predicted.shape} and "
            f"{targets.shape}."
        )

    def agreement(codes_list) -> float:
        phonemes = phonemes_per_code(
            source_alignments, codes_list, samples_per_code
        )
        return phoneme_accuracy(mapping, codes_list, phonemes).accuracy

    converted = agreement(converted_codes)
    reconstruction = agreement(reconstruction_codes)
    return ConversionScores(
        target_voice_accuracy=float(np.mean(predicted == targets)),
        converted_phoneme_accuracy=converted,
        reconstruction_phoneme_accuracy=reconstruction,
        content_ratio=(
            converted / reconstruction if reconstruction > 0 else math.nan
        ),
        num_utterances=count,
    )
