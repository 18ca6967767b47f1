"""Phoneme discovery, the speaker classifier and the conversion scores of
issue 16 (`tf_vqvae.speech_metrics`), against hand-worked numbers and numpy
references."""

import os
import re
import tempfile
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import numpy_log_mel
from tf_vqvae import speech_metrics as sm

# ------------------------------------------------------------ code_phonemes


def test_code_phonemes_takes_the_phoneme_at_each_code_centre():
    # 4 samples per code: centres 2, 6, 10, 14, 18, 22. Rows cover
    # [start, end): 2 precedes the first phoneme, 10 is the end of [9, 10)
    # (excluded), 14 the start of [14, 20) (included), 22 is past the end.
    alignment = np.array([[3, 9, 5], [9, 10, 2], [14, 20, 7]], np.int32)
    phonemes = sm.code_phonemes(alignment, 6, samples_per_code=4)
    np.testing.assert_array_equal(phonemes, [-1, 5, -1, 7, 7, -1])
    assert phonemes.dtype == np.int32


def test_code_phonemes_default_is_64_samples_per_code():
    # Centres 32, 96, 160, 224.
    alignment = np.array([[0, 100, 3], [100, 200, 1]])
    np.testing.assert_array_equal(sm.code_phonemes(alignment, 4), [3, 3, 1, -1])


def test_code_phonemes_of_an_empty_alignment_and_no_codes():
    empty = np.zeros((0, 3), np.int32)
    np.testing.assert_array_equal(sm.code_phonemes(empty, 3), [-1, -1, -1])
    assert sm.code_phonemes([[0, 64, 1]], 0).shape == (0,)


def test_code_phonemes_matches_a_brute_force_scan():
    rng = np.random.default_rng(0)
    for _ in range(20):
        bounds = np.sort(rng.choice(2000, size=2 * 12, replace=False))
        starts, ends = bounds[0::2], bounds[1::2]
        ids = rng.integers(0, 9, size=12)
        alignment = np.stack([starts, ends, ids], axis=1)
        num_codes = int(rng.integers(1, 40))
        expected = []
        for i in range(num_codes):
            centre = i * 64 + 32
            covering = [p for s, e, p in alignment if s <= centre < e]
            expected.append(covering[0] if covering else -1)
        np.testing.assert_array_equal(
            sm.code_phonemes(alignment, num_codes), expected
        )


def test_phonemes_per_code_follows_each_utterances_code_count():
    alignments = [np.array([[0, 100, 3]]), np.array([[64, 128, 2]])]
    codes = [np.zeros(3, np.int32), np.zeros((2, 4), np.int32)]
    result = sm.phonemes_per_code(alignments, codes)
    np.testing.assert_array_equal(result[0], [3, 3, -1])
    np.testing.assert_array_equal(result[1], [-1, 2])
    message = (
        "`alignments` and `codes_list` must have one array per utterance "
        "each. Received: 2 and 1 arrays."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        sm.phonemes_per_code(alignments, codes[:1])


@pytest.mark.parametrize(
    "alignment, error, message",
    [
        (
            np.zeros((2, 2), np.int32),
            ValueError,
            "`alignment` must have shape (num_phonemes, 3): start_sample, "
            "end_sample, phoneme_id. Received: shape=(2, 2).",
        ),
        (
            np.array([[0.0, 10.0, 1.0]]),
            TypeError,
            "`alignment` must be an integer array. Received: dtype=float64.",
        ),
        (
            np.array([[10, 5, 1]]),
            ValueError,
            "`alignment` rows must satisfy 0 <= start_sample <= end_sample "
            "and phoneme_id >= 0.",
        ),
        (
            np.array([[0, 5, -1]]),
            ValueError,
            "`alignment` rows must satisfy 0 <= start_sample <= end_sample "
            "and phoneme_id >= 0.",
        ),
        (
            np.array([[0, 10, 1], [5, 20, 2]]),
            ValueError,
            "`alignment` rows must be sorted and must not overlap: "
            "start_sample of each row >= end_sample of the row before.",
        ),
    ],
    ids=["shape", "float", "reversed", "negative_id", "overlap"],
)
def test_code_phonemes_rejects_bad_alignments(alignment, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        sm.code_phonemes(alignment, 4)


def test_code_phonemes_rejects_bad_counts():
    for name, kwargs in [
        ("num_codes", {"num_codes": -1}),
        ("samples_per_code", {"num_codes": 2, "samples_per_code": 0}),
    ]:
        value = kwargs[name]
        kind = "non-negative" if name == "num_codes" else "positive"
        message = (
            f"`{name}` must be a {kind} integer. Received: {name}={value} "
            "(of type int)."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sm.code_phonemes([[0, 64, 1]], **kwargs)


# ------------------------------------------------- mapping and its accuracy

# Training utterances worked by hand. Scored (code, phoneme) pairs:
#   A: (0,1) (0,1) (1,2) (2,3) (0,2)         -- (2,-1) is not scored
#   B (two levels, the first used): (1,2) (2,1) (0,1) (1,3)
# code 0: phoneme 1 x3, 2 x1 -> 1;  code 1: 2 x2, 3 x1 -> 2;
# code 2: 3 x1, 1 x1 -> tie, the smaller id 1;
# code 3: never seen -> the most frequent phoneme overall
#   (1 x4, 2 x3, 3 x2) -> 1.
TRAIN_CODES = [
    np.array([0, 0, 1, 2, 2, 0]),
    np.array([[1, 3], [2, 0], [0, 1], [1, 1]]),
]
TRAIN_PHONEMES = [
    np.array([1, 1, 2, 3, -1, 2]),
    np.array([2, 1, 1, 3]),
]
MAPPING = [1, 2, 1, 1]


def test_fit_code_to_phoneme_by_hand():
    mapping = sm.fit_code_to_phoneme(TRAIN_CODES, TRAIN_PHONEMES, 4)
    np.testing.assert_array_equal(mapping, MAPPING)
    assert mapping.dtype == np.int32


def test_fit_uses_the_first_level_of_multi_level_codes():
    # Only utterance B, whose second level would give another mapping.
    first = sm.fit_code_to_phoneme(TRAIN_CODES[1:], TRAIN_PHONEMES[1:], 4)
    only_first = sm.fit_code_to_phoneme(
        [TRAIN_CODES[1][:, 0]], TRAIN_PHONEMES[1:], 4
    )
    second = sm.fit_code_to_phoneme(
        [TRAIN_CODES[1][:, 1]], TRAIN_PHONEMES[1:], 4
    )
    np.testing.assert_array_equal(first, only_first)
    assert not np.array_equal(first, second)


def test_unseen_codes_take_the_smallest_of_tied_frequent_phonemes():
    mapping = sm.fit_code_to_phoneme([np.array([0, 1])], [[4, 2]], 3)
    np.testing.assert_array_equal(mapping, [4, 2, 2])


def test_phoneme_accuracy_by_hand():
    # Predictions through MAPPING = [1, 2, 1, 1], scored pairs:
    #   (0,1) ok, (1,1) no, (2,3) no, (3,1) ok, (1,2) ok  | (1,2) ok, (0,3) no
    # 4 of 7 right; phonemes 1,1,3,1,2,2,3: the most frequent (1) is 3 of 7.
    codes = [np.array([0, 1, 2, 3, 3, 1]), np.array([[1, 0], [0, 2]])]
    phonemes = [np.array([1, 1, 3, 1, -1, 2]), np.array([2, 3])]
    result = sm.phoneme_accuracy(MAPPING, codes, phonemes)
    assert result == sm.PhonemeAccuracy(
        accuracy=4 / 7, baseline_accuracy=3 / 7, num_classes=3, num_scored=7
    )
    assert result.ratio == pytest.approx(4 / 3)


def test_mapping_and_accuracy_match_a_brute_force_recount():
    rng = np.random.default_rng(1)
    num_embeddings, num_phonemes = 12, 7
    lengths = rng.integers(5, 30, size=9)
    codes = [rng.integers(0, num_embeddings, size=n) for n in lengths]
    phonemes = [rng.integers(-1, num_phonemes, size=n) for n in lengths]
    mapping = sm.fit_code_to_phoneme(codes, phonemes, num_embeddings)

    pairs = [
        (int(c), int(p))
        for cs, ps in zip(codes, phonemes)
        for c, p in zip(cs, ps)
        if p != -1
    ]
    overall = {}
    for _, p in pairs:
        overall[p] = overall.get(p, 0) + 1
    fallback = min(overall, key=lambda p: (-overall[p], p))
    for k in range(num_embeddings):
        counts = {}
        for c, p in pairs:
            if c == k:
                counts[p] = counts.get(p, 0) + 1
        expected = (
            min(counts, key=lambda p: (-counts[p], p)) if counts else fallback
        )
        assert mapping[k] == expected, k

    result = sm.phoneme_accuracy(mapping, codes, phonemes)
    correct = sum(mapping[c] == p for c, p in pairs)
    assert result.num_scored == len(pairs)
    assert result.accuracy == correct / len(pairs)
    assert result.baseline_accuracy == max(overall.values()) / len(pairs)
    assert result.num_classes == len(overall)
    # On its own training data the mapping beats the constant guess.
    assert result.accuracy >= result.baseline_accuracy


@pytest.mark.parametrize(
    "codes, phonemes, message",
    [
        (
            [np.array([0, 1])],
            [],
            "`codes_list` and `phoneme_list` must have one array per "
            "utterance each. Received: 1 and 0 arrays.",
        ),
        (
            [np.array([0, 1])],
            [np.array([1, 1, 1])],
            "Utterance 0: the phoneme ids must have shape (2,), one per "
            "code. Received: shape=(3,).",
        ),
        (
            [np.zeros((2, 2, 2), np.int32)],
            [np.array([1, 1])],
            "Each of `codes_list` must have shape (num_codes,) or "
            "(num_codes, num_levels). Received: shape=(2, 2, 2).",
        ),
        (
            [np.array([0, 4])],
            [np.array([1, 1])],
            "`codes_list` must lie in [0, 4). Received: codes from 0 to 4.",
        ),
        (
            [np.array([0, 1])],
            [np.array([1, -2])],
            "Utterance 0: phoneme ids must be >= 0, or -1 where no phoneme "
            "covers the code.",
        ),
        (
            [np.array([0, 1])],
            [np.array([-1, -1])],
            "`phoneme_list` has no scored position (every id is -1): "
            "nothing to fit the mapping on.",
        ),
    ],
    ids=["count", "length", "rank", "range", "negative", "unscored"],
)
def test_fit_rejects_bad_inputs(codes, phonemes, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        sm.fit_code_to_phoneme(codes, phonemes, 4)


def test_phoneme_accuracy_rejects_bad_inputs():
    cases = [
        (
            np.zeros((2, 2), np.int32),
            [np.array([0])],
            [np.array([1])],
            "`mapping` must have shape (num_embeddings,). Received: "
            "shape=(2, 2).",
        ),
        (
            MAPPING,
            [np.array([0, 1])],
            [np.array([-1, -1])],
            "`phoneme_list` has no scored position (every id is -1): "
            "nothing to score.",
        ),
        (
            MAPPING,
            [np.array([5])],
            [np.array([1])],
            "`codes_list` must lie in [0, 4). Received: codes from 5 to 5.",
        ),
    ]
    for mapping, codes, phonemes, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sm.phoneme_accuracy(mapping, codes, phonemes)
    with pytest.raises(TypeError, match="must hold integer codes"):
        sm.phoneme_accuracy(MAPPING, [np.array([0.5])], [np.array([1])])


def test_mapping_recovers_phonemes_from_codes_of_aligned_speech():
    """End to end on alignments: codes that are a noisy function of the
    phoneme under them are mapped back to it."""
    rng = np.random.default_rng(2)
    code_of = {0: [0, 1], 1: [2], 2: [3, 4, 5]}  # phoneme -> its codes

    def utterance():
        bounds = np.cumsum(rng.integers(64, 400, size=10))
        starts = np.concatenate([[100], bounds[:-1] + 100])
        ids = rng.integers(0, 3, size=10)
        alignment = np.stack([starts, bounds + 100, ids], axis=1)
        num_codes = int(bounds[-1] + 300) // 64
        phonemes = sm.code_phonemes(alignment, num_codes)
        codes = np.array(
            [rng.choice(code_of[p]) if p >= 0 else 6 for p in phonemes]
        )
        return codes, phonemes

    train = [utterance() for _ in range(5)]
    test = [utterance() for _ in range(5)]
    mapping = sm.fit_code_to_phoneme(*zip(*train), num_embeddings=8)
    np.testing.assert_array_equal(mapping[:6], [0, 0, 1, 2, 2, 2])
    result = sm.phoneme_accuracy(mapping, *zip(*test))
    assert result.accuracy == 1.0
    assert result.num_classes == 3
    assert result.baseline_accuracy < 0.6


# ------------------------------------------------------------------ log-mel


def test_log_mel_spectrogram_matches_numpy():
    rng = np.random.default_rng(3)
    t = np.arange(2000) / 16000
    x = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1700 * t)
    x = (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    got = sm.log_mel_spectrogram(x).numpy()
    expected = numpy_log_mel(
        x.astype(np.float64), 16000, 400, 160, 512, 40, 20.0, 8000.0
    )
    assert got.shape == (1 + (2000 - 400) // 160, 40) == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=0)

    small = sm.log_mel_spectrogram(
        x[:600],
        frame_length=128,
        frame_step=64,
        fft_length=256,
        num_mel_bins=8,
        lower_edge_hertz=100.0,
        upper_edge_hertz=6000.0,
    ).numpy()
    expected = numpy_log_mel(
        x[:600].astype(np.float64), 16000, 128, 64, 256, 8, 100.0, 6000.0
    )
    np.testing.assert_allclose(small, expected, atol=2e-4, rtol=0)


def test_log_mel_spectrogram_shapes():
    x = np.zeros((2, 1200, 1), np.float32)
    assert sm.log_mel_spectrogram(x).shape == (2, 6, 40)
    assert sm.log_mel_spectrogram(x[..., 0]).shape == (2, 6, 40)
    assert sm.log_mel_spectrogram(x[0, :, 0]).shape == (6, 40)
    # Silence sits at the floor log(1e-6).
    np.testing.assert_allclose(
        sm.log_mel_spectrogram(x[0, :, 0]), np.log(1e-6), rtol=1e-6
    )
    for bad, message in [
        (
            np.zeros((2, 1200, 2), np.float32),
            "`waveform` must be mono: (batch, samples, 1). Received: "
            "shape=(2, 1200, 2).",
        ),
        (
            np.zeros((1, 2, 1200, 1), np.float32),
            "`waveform` must have shape (samples,), (batch, samples) or "
            "(batch, samples, 1). Received: shape=(1, 2, 1200, 1).",
        ),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sm.log_mel_spectrogram(bad)


# ------------------------------------------------------- speaker classifier

# Synthetic "speakers": voiced syllables (harmonics of a wobbling
# fundamental under two formant peaks) whose fundamental and formant scale
# (vocal tract length) depend on the speaker, the vowel on the syllable.
VOWELS = [(300, 2300), (700, 1200), (500, 1500), (350, 800), (600, 1800)]
FUNDAMENTALS = [110.0, 150.0, 200.0, 260.0]
FORMANT_SCALES = [0.85, 1.0, 1.15, 1.3]


def synthetic_utterance(speaker: int, rng, sample_rate=16000) -> np.ndarray:
    pieces, phase = [], 0.0
    for _ in range(rng.integers(3, 6)):
        length = int(rng.integers(1600, 3200))
        f1, f2 = np.array(VOWELS[rng.integers(len(VOWELS))])
        f1, f2 = f1 * FORMANT_SCALES[speaker], f2 * FORMANT_SCALES[speaker]
        f0 = FUNDAMENTALS[speaker] * (1 + 0.05 * rng.standard_normal())
        t = np.arange(length) / sample_rate
        wobble = 0.03 * np.sin(2 * np.pi * rng.uniform(2, 6) * t)
        angle = phase + 2 * np.pi * np.cumsum(f0 * (1 + wobble)) / sample_rate
        phase = angle[-1]
        x = np.zeros(length)
        for h in range(1, int(4000 / f0)):
            amplitude = (
                np.exp(-(((h * f0 - f1) / 120) ** 2))
                + 0.6 * np.exp(-(((h * f0 - f2) / 180) ** 2))
                + 0.02
            )
            x += amplitude * np.sin(h * angle)
        pieces.append(x * np.hanning(length))
    x = np.concatenate(pieces)
    x = x / np.abs(x).max() * rng.uniform(0.3, 0.8)
    x += 0.003 * rng.standard_normal(len(x))
    return x.astype(np.float32)


def synthetic_speakers(per_speaker: int, seed: int):
    rng = np.random.default_rng(seed)
    speakers = np.repeat(np.arange(len(FUNDAMENTALS)), per_speaker)
    return [synthetic_utterance(s, rng) for s in speakers], speakers


def test_speaker_classifier_shapes_config_and_save_reload():
    classifier = sm.SpeakerClassifier(
        3, num_mel_bins=16, num_hiddens=8, num_layers=1, name="speakers"
    )
    x = np.random.default_rng(4).uniform(-0.5, 0.5, (2, 1600))
    logits = classifier(x.astype(np.float32))
    assert logits.shape == (2, 3)
    # (batch, samples, 1) is the same waveform.
    np.testing.assert_array_equal(classifier(x[..., None]), logits)
    # normalize (gamma, beta), conv (kernel, bias), logits (kernel, bias).
    assert len(classifier.trainable_weights) == 6
    config = classifier.get_config()
    assert config["num_speakers"] == 3 and config["num_mel_bins"] == 16
    clone = sm.SpeakerClassifier.from_config(config)
    assert clone.get_config() == config
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speakers.keras")
        classifier.save(path)
        restored = keras.saving.load_model(path)
    assert isinstance(restored, sm.SpeakerClassifier)
    np.testing.assert_array_equal(restored(x), logits)
    assert keras.saving.get_registered_name(sm.SpeakerClassifier) == (
        "tf_vqvae>SpeakerClassifier"
    )


def test_speaker_classifier_is_the_mean_of_per_frame_logits():
    classifier = sm.SpeakerClassifier(
        2, num_mel_bins=8, num_hiddens=4, num_layers=1
    )
    x = np.random.default_rng(5).uniform(-0.5, 0.5, (1, 2400))
    logits = classifier(x.astype(np.float32)).numpy()
    # The same network by hand, per frame, from its weights.
    features = sm.log_mel_spectrogram(
        x, frame_length=400, frame_step=160, fft_length=512, num_mel_bins=8
    ).numpy()[0]
    gamma, beta = (w.numpy() for w in classifier.normalize.weights)
    mean = features.mean(-1, keepdims=True)
    var = features.var(-1, keepdims=True)
    normed = (features - mean) / np.sqrt(var + 1e-3) * gamma + beta
    kernel, bias = (w.numpy() for w in classifier.convs[0].weights)
    padded = np.pad(normed, [(1, 1), (0, 0)])
    hidden = np.stack(
        [
            np.einsum("kc,kcd->d", padded[t : t + 3], kernel) + bias
            for t in range(len(normed))
        ]
    )
    hidden = np.maximum(hidden, 0)
    dense_kernel, dense_bias = (w.numpy() for w in classifier.logits.weights)
    per_frame = hidden @ dense_kernel + dense_bias
    np.testing.assert_allclose(logits[0], per_frame.mean(0), atol=1e-4)


def test_speaker_classifier_rejects_bad_arguments():
    for kwargs, message in [
        (
            {"num_speakers": 0},
            "`num_speakers` must be a positive integer. Received: "
            "num_speakers=0 (of type int).",
        ),
        (
            {"num_speakers": 2, "num_layers": 1.5},
            "`num_layers` must be a positive integer. Received: "
            "num_layers=1.5 (of type float).",
        ),
        (
            {"num_speakers": 2, "fft_length": 256},
            "`fft_length` must be at least `frame_length` (400). Received: "
            "fft_length=256 (of type int).",
        ),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sm.SpeakerClassifier(**kwargs)
    classifier = sm.SpeakerClassifier(2)
    message = (
        "Each waveform must be 1-D with at least 400 samples. Received: "
        "waveform 1 of shape (300,)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        classifier.predict_speakers([np.zeros(800), np.zeros(300)])


@pytest.fixture(scope="module")
def trained_classifier():
    """A classifier trained on synthetic speakers (about 7 s), with its
    held-out utterances."""
    waveforms, speakers = synthetic_speakers(10, seed=0)
    test_waveforms, test_speakers = synthetic_speakers(5, seed=1)
    start = time.perf_counter()
    result = sm.train_speaker_classifier(
        waveforms,
        speakers,
        num_speakers=4,
        test_waveforms=test_waveforms,
        test_speakers=test_speakers,
        segment_length=6400,
        epochs=10,
        batch_size=8,
        num_hiddens=32,
    )
    seconds = time.perf_counter() - start
    return result, test_waveforms, test_speakers, seconds


def test_train_speaker_classifier_separates_synthetic_speakers(
    trained_classifier,
):
    (model, accuracy, num_test), test_waveforms, test_speakers, seconds = (
        trained_classifier
    )
    assert seconds < 30
    assert num_test == 20
    assert accuracy >= 0.95
    # The reported accuracy is predict_speakers' on the held-out utterances.
    predicted = model.predict_speakers(test_waveforms)
    assert predicted.dtype == np.int32
    assert np.mean(predicted == test_speakers) == accuracy


def test_train_speaker_classifier_holds_out_a_share_of_each_speaker():
    waveforms, speakers = synthetic_speakers(5, seed=2)

    def train():
        return sm.train_speaker_classifier(
            waveforms,
            speakers,
            num_speakers=4,
            test_fraction=0.4,
            segment_length=3200,
            epochs=1,
            batch_size=8,
            num_hiddens=4,
            num_layers=1,
        )

    result = train()
    assert result.num_test == 4 * 2
    assert 0.0 <= result.accuracy <= 1.0
    # The same seed gives the same split, crops and weights.
    again = train()
    assert again.accuracy == result.accuracy
    for a, b in zip(result.model.weights, again.model.weights):
        np.testing.assert_array_equal(a, b)


def test_train_speaker_classifier_rejects_bad_inputs():
    waveforms = [np.zeros(800, np.float32)] * 3
    cases = [
        (
            {"speakers": [0, 1]},
            "`speakers` must have one id per waveform: shape (3,). "
            "Received: shape=(2,).",
        ),
        (
            {"speakers": [0, 1, 2]},
            "`speakers` must be integer ids in [0, 2).",
        ),
        (
            {"speakers": [0, 1, 1], "test_fraction": 1.0},
            "`test_fraction` must lie in (0, 1). Received: "
            "test_fraction=1.0 (of type float).",
        ),
        (
            {"speakers": [0, 0, 1], "test_waveforms": waveforms},
            "`test_speakers` must be given with `test_waveforms`.",
        ),
        (
            {"speakers": [0, 1, 1], "test_waveforms": [], "test_speakers": []},
            "No held-out utterance: pass `test_waveforms` or give some "
            "speaker at least two utterances.",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sm.train_speaker_classifier(waveforms, num_speakers=2, **kwargs)


# --------------------------------------------------------------- conversion


def test_conversion_scores_by_hand():
    # 4 samples per code, centres 2, 6, 10, 14: source 0's phonemes are
    # [1, 1, 2, -1] (nothing covers sample 14), source 1's [3, 3, 3].
    alignments = [
        np.array([[0, 8, 1], [8, 12, 2]]),
        np.array([[0, 12, 3]]),
    ]
    mapping = np.array([1, 2, 3, 0])  # code k -> phoneme mapping[k]
    # Converted, mapped: [1, 2, 2, 0] -> 2 of 3 scored right, [3, 3, 0]
    # -> 2 of 3: 4 of 6.
    converted = [np.array([0, 1, 1, 3]), np.array([2, 2, 3])]
    # Reconstruction, two levels of which the first counts, mapped:
    # [1, 1, 2, 3] -> 3 of 3, [3, 3, 2] -> 2 of 3: 5 of 6.
    reconstruction = [
        np.array([[0, 3], [0, 3], [1, 3], [2, 3]]),
        np.array([[2, 0], [2, 0], [1, 0]]),
    ]
    scores = sm.conversion_scores(
        alignments,
        converted,
        reconstruction,
        mapping,
        predicted_speakers=[4, 2],
        target_speakers=[4, 5],
        samples_per_code=4,
    )
    assert scores == sm.ConversionScores(
        target_voice_accuracy=0.5,
        converted_phoneme_accuracy=4 / 6,
        reconstruction_phoneme_accuracy=5 / 6,
        content_ratio=(4 / 6) / (5 / 6),
        num_utterances=2,
    )


def test_conversion_scores_content_ratio_is_nan_without_agreement():
    alignments = [np.array([[0, 64, 1]])]
    scores = sm.conversion_scores(alignments, [[0]], [[0]], [2, 1], [0], [0])
    assert scores.reconstruction_phoneme_accuracy == 0.0
    assert np.isnan(scores.content_ratio)
    assert scores.target_voice_accuracy == 1.0


def test_conversion_scores_rejects_mismatched_inputs():
    alignments = [np.array([[0, 64, 1]])]
    cases = [
        (
            ([], [], [], [1], [], []),
            "`source_alignments` must hold at least one utterance.",
        ),
        (
            (alignments, [], [[0]], [1], [0], [0]),
            "`converted_codes` must have one entry per source utterance "
            "(1). Received: 0.",
        ),
        (
            (alignments, [[0]], [[0]], [1], [0], [0, 1]),
            "`target_speakers` must have one entry per source utterance "
            "(1). Received: 2.",
        ),
        (
            (alignments, [[0]], [[0]], [1], [[0]], [0]),
            "`predicted_speakers` and `target_speakers` must be 1-D speaker "
            "ids. Received: shapes (1, 1) and (1,).",
        ),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sm.conversion_scores(*args)


def test_classifier_verdicts_feed_conversion_scores(trained_classifier):
    """The pieces together: a trained classifier's verdicts on utterances
    of the target speakers score as the target voice."""
    model = trained_classifier[0].model
    rng = np.random.default_rng(4)
    targets = np.array([1, 3, 0, 2])
    converted = [synthetic_utterance(int(t), rng) for t in targets]
    alignments = [np.array([[0, len(w), 0]]) for w in converted]
    codes = [np.zeros(len(w) // 64, np.int32) for w in converted]
    scores = sm.conversion_scores(
        alignments,
        codes,
        codes,
        np.array([0]),
        model.predict_speakers(converted),
        targets,
    )
    assert scores.target_voice_accuracy == 1.0
    assert scores.content_ratio == 1.0


def test_log_mel_distance_matches_numpy():
    rng = np.random.default_rng(4)
    t = np.arange(1200) / 16000
    x = 0.4 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(
        (2, 1200)
    )
    y = 0.2 * np.sin(2 * np.pi * 900 * t) + 0.05 * rng.standard_normal(
        (2, 1200)
    )
    x, y = x.astype(np.float32), y.astype(np.float32)
    got = sm.log_mel_distance(x, y).numpy()
    expected = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64)):
        args = (16000, 400, 160, 512, 40, 20.0, 8000.0)
        diff_db = (10 / np.log(10)) * (
            numpy_log_mel(a, *args) - numpy_log_mel(b, *args)
        )
        expected.append(np.mean(np.sqrt(np.mean(diff_db**2, axis=-1))))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # Per waveform the same; identical waveforms are 0 dB apart.
    np.testing.assert_allclose(
        sm.log_mel_distance(x[1], y[1]), expected[1], rtol=1e-4
    )
    same = x[..., None]
    np.testing.assert_allclose(sm.log_mel_distance(same, same), 0)
    # Half the amplitude: every band 6.02 dB down.
    np.testing.assert_allclose(
        sm.log_mel_distance(x, 0.5 * x), 20 * np.log10(2), rtol=1e-3
    )
    with pytest.raises(ValueError, match="must have the same shape"):
        sm.log_mel_distance(x, y[:1])


def test_log_mel_distance_of_bfloat16_waveforms():
    """bfloat16 waveforms (mixed_bfloat16 outputs) are cast to float32."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.5, 0.5, (2, 1200)).astype(np.float32)
    y = rng.uniform(-0.5, 0.5, (2, 1200)).astype(np.float32)
    x16, y16 = tf.cast(x, tf.bfloat16), tf.cast(y, tf.bfloat16)
    expected = sm.log_mel_distance(
        tf.cast(x16, tf.float32), tf.cast(y16, tf.float32)
    )
    for a, b in [(x16, y16), (x16, y16.numpy().astype(np.float32))]:
        got = sm.log_mel_distance(a, b)
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6)


# ------------------------------------------------------------- periodicity
def _numpy_frame_periodicity(x, frame, hop, lags, floor_db):
    """Frame by frame, lag by lag, with plain loops."""
    starts = range(0, len(x) - frame + 1, hop)
    energies = [
        float(np.dot(x[s : s + frame], x[s : s + frame])) for s in starts
    ]
    peaks = []
    for s, energy in zip(starts, energies):
        if energy < max(energies) * 10 ** (-floor_db / 10):
            continue
        f = x[s : s + frame]
        values = []
        for lag in lags:
            a, b = f[: frame - lag], f[lag:]
            values.append(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
        peaks.append(max(values))
    return np.array(peaks)


def test_periodicity_matches_numpy_loops():
    rng = np.random.default_rng(3)
    x = rng.normal(size=3000) * np.repeat([1, 1e-3, 0.5, 1e-3, 1, 0.2], 500)
    got = sm.frame_periodicity(
        x, sample_rate=1000, frame_length=200, hop=50, min_hz=10, max_hz=40
    )
    want = _numpy_frame_periodicity(x, 200, 50, range(25, 101), 30.0)
    assert 0 < len(want) < 57  # some frames are below the floor
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_periodicity_tells_pitch_from_noise():
    def periodicity(x):
        return float(np.mean(sm.frame_periodicity(x)))

    rate = 16000
    t = np.arange(rate) / rate
    # A 150 Hz "vowel": harmonics under a decaying envelope.
    vowel = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    noise = np.random.default_rng(0).normal(size=rate)
    assert periodicity(vowel) > 0.95
    assert periodicity(noise) < 0.3
    # Quiet frames are left out: silence around the vowel only adds the
    # few frames that straddle its edges, while noise at -20 dB (within
    # the 30 dB floor) counts.
    padded = np.concatenate([np.zeros(8000), vowel, np.zeros(8000)])
    assert periodicity(padded) == pytest.approx(periodicity(vowel), abs=0.02)
    mixed = np.concatenate([vowel, 0.1 * noise])
    assert periodicity(mixed) < periodicity(vowel) - 0.2


@pytest.mark.parametrize(
    "waveform, options, match",
    [
        (np.zeros((2, 1000)), {}, "1-D"),
        (np.ones(100), {}, "at least"),
        (np.zeros(1000), {}, "all zeros"),
        (np.ones(1000), {"min_hz": 20.0}, "pitch range"),
        (np.ones(1000), {"min_hz": 300.0, "max_hz": 200.0}, "pitch range"),
    ],
)
def test_periodicity_refuses_bad_input(waveform, options, match):
    with pytest.raises(ValueError, match=match):
        sm.frame_periodicity(waveform, **options)
