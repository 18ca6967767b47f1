"""Tests for the audio part of `tf_vqvae.data`: sources and the pipeline."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from scipy.io import wavfile

from tf_vqvae import audio, data, speech, vqvae

TINY = speech.CorpusConfig(
    num_train_sentences=2,
    num_test_sentences=1,
    train_voices=("en-us+m3", "en-us+f2"),
    test_voices=("en+m1",),
    seed=1,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny speech corpus, loaded split by split."""
    cache = str(tmp_path_factory.mktemp("cache"))
    return {
        split: data.load_audio(f"speech:{split}", corpus=TINY, cache_dir=cache)
        for split in speech.SPLITS
    }


def _utterances(lengths, speakers=None):
    rng = np.random.default_rng(0)
    waveforms = [
        rng.uniform(-1, 1, length).astype(np.float32) for length in lengths
    ]
    speakers = speakers or [i % 2 for i in range(len(lengths))]
    return data.Utterances(
        name="test",
        split="train",
        waveforms=waveforms,
        speakers=np.asarray(speakers, "int32"),
        speaker_names=("a", "b"),
    )


# --------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "dataset, parsed, modality",
    [
        ("speech", ("speech", "speech", None), "audio"),
        ("speech:test_voices", ("speech", "speech", "test_voices"), "audio"),
        ("audio-folder:/d", ("audio-folder", "/d", None), "audio"),
        ("tfds:speech_commands", ("tfds", "speech_commands", None), "audio"),
        ("tfds:mnist:test", ("tfds", "mnist", "test"), "image"),
        ("photos", ("photos", "photos", None), "image"),
        ("folder:/d", ("folder", "/d", None), "image"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_parse_dataset_and_modality(dataset, parsed, modality):
    assert data.parse_dataset(dataset) == parsed
    assert data.dataset_modality(dataset) == modality


def test_folder_paths_expand_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for kind in ("folder", "audio-folder"):
        assert data.parse_dataset(f"{kind}:~/wavs") == (
            kind,
            str(tmp_path / "wavs"),
            None,
        )


def test_image_and_audio_loaders_refuse_each_other():
    with pytest.raises(data.DatasetError) as info:
        data.load_images("speech")
    assert str(info.value) == (
        "`dataset` 'speech' holds audio, not images; load it with "
        "`load_audio`. Received: dataset='speech'"
    )
    with pytest.raises(data.DatasetError) as info:
        data.load_audio("photos")
    assert str(info.value) == (
        "`dataset` 'photos' holds images, not audio; give an audio dataset "
        "('speech', 'audio-folder:PATH' or a tfds dataset with an Audio "
        "feature). Received: dataset='photos'"
    )
    with pytest.raises(data.DatasetError) as info:
        data.load_audio("speech:dev")
    assert str(info.value) == (
        "The 'speech' dataset has splits 'train', 'test' and 'test_voices'. "
        "Received: split='dev'"
    )


# ---------------------------------------------------------------- speech
def test_speech_splits_share_tables_and_hold_out_voices(corpus):
    train, test, held_out = (
        corpus["train"],
        corpus["test"],
        corpus["test_voices"],
    )
    names = ("en+m1", "en-us+f2", "en-us+m3")
    for split in corpus.values():
        assert split.speaker_names == names
        assert split.phonemes == train.phonemes
        assert split.sample_rate == audio.SAMPLE_RATE
        assert len(split.texts) == len(split.alignments) == len(split)
    assert len(train) == 4 and len(test) == 2 and len(held_out) == 1
    assert sorted(set(train.speakers.tolist())) == [1, 2]
    assert held_out.speakers.tolist() == [0]
    assert not set(train.texts) & set(test.texts)
    assert held_out.texts == test.texts[:1]
    # The same sentence for each voice, in speaker order.
    assert train.texts[:2] == train.texts[2:]
    assert 1.0 < train.seconds() / len(train) < 8.0


def test_speech_alignments_match_the_audio(corpus):
    utterances = corpus["train"]
    pause = utterances.phonemes.index("_:")
    for waveform, alignment in zip(utterances.waveforms, utterances.alignments):
        assert alignment.dtype == np.int32 and alignment.shape[1] == 3
        starts, ends, ids = alignment.T
        assert ends[-1] == len(waveform)
        assert np.all(ends > starts) and np.all(starts[1:] == ends[:-1])
        assert ids.min() >= 0 and ids.max() < len(utterances.phonemes)
        voiced = [
            np.sqrt(np.mean(waveform[s:e] ** 2))
            for s, e, i in alignment
            if utterances.phonemes[i][0] in "aeiouAEIOUV@03"
        ]
        assert np.median(voiced) > 0.05
        for s, e, i in alignment:
            if i == pause and e - s > 800:
                assert np.sqrt(np.mean(waveform[s:e] ** 2)) < 0.01


# ---------------------------------------------------------- audio-folder
def _write_folder(root):
    """train/alice: a stereo 44.1 kHz PCM16 file with a sidecar; train/bob:
    an 8-bit 8 kHz file with a sidecar; test/carol: a 16 kHz float file."""
    rng = np.random.default_rng(0)
    stereo = (rng.uniform(-0.5, 0.5, (4410, 2)) * 32767).astype(np.int16)
    u8 = rng.integers(0, 256, 800).astype(np.uint8)
    for folder in ("train/alice", "train/bob", "test/carol"):
        os.makedirs(root / folder)
    wavfile.write(root / "train/alice/a.wav", 44_100, stereo)
    wavfile.write(root / "train/bob/b.wav", 8_000, u8)
    wavfile.write(root / "test/carol/c.wav", 16_000, np.zeros(160, "f4"))
    (root / "train/alice/a.json").write_text(
        json.dumps(
            {"text": "hi", "alignment": [[0, 2205, "h"], [2205, 4410, "i"]]}
        )
    )
    (root / "train/bob/b.json").write_text(
        json.dumps({"text": "yo", "alignment": [[100, 800, "o"]]})
    )
    return stereo, u8


def test_audio_folder_downmixes_resamples_and_reads_sidecars(tmp_path):
    stereo, u8 = _write_folder(tmp_path)
    utterances = data.load_audio(f"audio-folder:{tmp_path}")
    assert utterances.speaker_names == ("alice", "bob", "carol")
    assert utterances.speakers.tolist() == [0, 1]
    expected_a = audio.resample((stereo / 32768.0).mean(axis=1), 44_100)
    expected_b = audio.resample((u8 - 128.0) / 128.0, 8_000)
    np.testing.assert_allclose(utterances.waveforms[0], expected_a, atol=1e-6)
    np.testing.assert_allclose(utterances.waveforms[1], expected_b, atol=1e-6)
    assert len(utterances.waveforms[0]) == 1600
    assert len(utterances.waveforms[1]) == 1600
    assert utterances.texts == ["hi", "yo"]
    assert utterances.phonemes == ("h", "i", "o")
    # Sidecar sample positions are the WAV's: 44.1 kHz and 8 kHz -> 16 kHz.
    assert utterances.alignments[0].tolist() == [[0, 800, 0], [800, 1600, 1]]
    assert utterances.alignments[1].tolist() == [[200, 1600, 2]]
    test = data.load_audio(f"audio-folder:{tmp_path}", "test")
    assert test.speakers.tolist() == [2] and test.texts is None
    assert test.alignments is None and test.phonemes is None


def test_audio_folder_bad_files(tmp_path):
    _write_folder(tmp_path)
    broken = tmp_path / "train/bob/broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(data.BadAudioFileError) as info:
        data.load_audio(f"audio-folder:{tmp_path}")
    assert isinstance(info.value, data.DatasetError)
    assert info.value.path == str(broken)
    assert str(info.value) == (
        f"`dataset` file {str(broken)!r} is not usable audio: no valid "
        "'fmt ' chunk. Fix or remove it, or pass --skip-bad-files "
        f"(skip_bad_files=True). Received: dataset='audio-folder:{tmp_path}'"
    )
    (tmp_path / "train/alice/a.json").write_text("{not json")
    utterances = data.load_audio(
        f"audio-folder:{tmp_path}", skip_bad_files=True
    )
    assert len(utterances) == 1 and utterances.speakers.tolist() == [1]
    assert [path for path, _ in utterances.skipped] == [
        str(tmp_path / "train/alice/a.json"),
        str(broken),
    ]
    assert utterances.skipped_summary().startswith(
        f"Skipped 2 bad audio files of 'audio-folder:{tmp_path}' split "
        f"'train' (first: {tmp_path / 'train/alice/a.json'}: unreadable JSON"
    )


def _bad_file_message(path, reason, dataset):
    return (
        f"`dataset` file {str(path)!r} is not usable audio: {reason}. Fix or "
        "remove it, or pass --skip-bad-files (skip_bad_files=True). "
        f"Received: dataset={dataset!r}"
    )


def test_audio_folder_waveforms_are_in_range(tmp_path):
    """A float WAV beyond [-1, 1] is a bad file; a full-scale PCM file
    resampled (the filter overshoots) is clipped back to [-1, 1]."""
    t = np.arange(9600) / 48_000
    square = np.sign(np.sin(2 * np.pi * 1000 * t)) * 32767
    os.makedirs(tmp_path / "train/s")
    os.makedirs(tmp_path / "train/t")
    wavfile.write(tmp_path / "train/t/square.wav", 48_000, square.astype("i2"))
    loud = 1.8 * np.sin(2 * np.pi * 300 * np.arange(2000) / 16_000)
    loud_path = tmp_path / "train/s/loud.wav"
    wavfile.write(loud_path, 16_000, loud.astype("f4"))
    nan_path = tmp_path / "train/s/nan.wav"
    wavfile.write(nan_path, 16_000, np.array([0.1, np.nan, 0.2], "f4"))
    dataset = f"audio-folder:{tmp_path}"
    with pytest.raises(data.BadAudioFileError) as info:
        data.load_audio(dataset)
    reason = "samples outside [-1, 1] (peak 1.8)"
    assert info.value.path == str(loud_path) and info.value.reason == reason
    assert str(info.value) == (
        f"`dataset` file {str(loud_path)!r} is not usable audio: {reason} "
        "(2 bad files in all). Fix or remove them, or pass --skip-bad-files "
        f"(skip_bad_files=True). Received: dataset={dataset!r}"
    )
    utterances = data.load_audio(dataset, skip_bad_files=True)
    assert utterances.skipped == (
        (str(loud_path), reason),
        (str(nan_path), "samples that are not finite (sample 1 is nan)"),
    )
    (waveform,) = utterances.waveforms
    assert len(waveform) == 3200 and np.abs(waveform).max() == 1.0
    # What `fit` checks on every batch.
    batch = next(iter(data.audio_pipeline(utterances, 512, 2, seed=0)))
    vqvae.as_waveforms(batch["audio"])


@pytest.mark.parametrize("rate", [0, -8000, "16000", 16000.0, True, None])
def test_audio_folder_sidecar_sample_rate_must_be_a_positive_integer(
    tmp_path, rate
):
    os.makedirs(tmp_path / "train/s")
    audio.write_wav(tmp_path / "train/s/a.wav", np.zeros(1600, np.float32))
    audio.write_wav(tmp_path / "train/s/b.wav", np.zeros(800, np.float32))
    sidecar = tmp_path / "train/s/a.json"
    sidecar.write_text(
        json.dumps({"alignment": [[0, 1600, "a"]], "sample_rate": rate})
    )
    dataset = f"audio-folder:{tmp_path}"
    reason = f"sidecar 'sample_rate' is not a positive integer ({rate!r})"
    with pytest.raises(data.BadAudioFileError) as info:
        data.load_audio(dataset)
    assert info.value.path == str(sidecar)
    assert str(info.value) == _bad_file_message(sidecar, reason, dataset)
    utterances = data.load_audio(dataset, skip_bad_files=True)
    assert utterances.skipped == ((str(sidecar), reason),)
    assert [len(w) for w in utterances.waveforms] == [800]


def test_speech_cache_dir_expands_the_home_directory(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    one = speech.CorpusConfig(
        num_train_sentences=1,
        num_test_sentences=1,
        train_voices="en-us+m3",  # one voice, as a tuple of one
        test_voices=(),
    )
    utterances = data.load_audio("speech", corpus=one, cache_dir="~/cache")
    assert utterances.speaker_names == ("en-us+m3",) and len(utterances) == 1
    assert os.listdir(home / "cache") == ["speech"]
    assert os.listdir(work) == []  # no literal "~" folder
    assert np.abs(utterances.waveforms[0]).max() <= 1.0


def test_audio_folder_missing_or_empty(tmp_path):
    with pytest.raises(data.DatasetError) as info:
        data.load_audio(f"audio-folder:{tmp_path / 'nope'}")
    assert "does not exist" in str(info.value)
    (tmp_path / "train/x").mkdir(parents=True)
    with pytest.raises(data.DatasetError) as info:
        data.load_audio(f"audio-folder:{tmp_path}")
    assert str(info.value) == (
        f"`dataset` folder {str(tmp_path)!r} has no .wav files in "
        f"{tmp_path}/train/SPEAKER/; lay it out as {tmp_path}/train/SPEAKER/"
        f"*.wav. Received: dataset='audio-folder:{tmp_path}'"
    )


# ------------------------------------------------------------------ tfds
def test_tfds_audio_with_mock_data():
    with tfds.testing.mock_data(num_examples=3):
        utterances = data.load_audio("tfds:speech_commands:test")
    assert len(utterances) == 3 and utterances.split == "test"
    assert utterances.speaker_names == ("all",)
    assert utterances.speakers.tolist() == [0, 0, 0]
    assert utterances.texts is None and utterances.alignments is None
    for waveform in utterances.waveforms:
        assert waveform.dtype == np.float32 and waveform.ndim == 1
        assert np.abs(waveform).max() <= 1.0 and len(waveform) > 0
    with pytest.raises(data.DatasetError, match="holds images, not audio"):
        data.load_audio("tfds:mnist")


# -------------------------------------------------------------- pipeline
def test_training_pipeline_crops_are_seeded_pieces_of_utterances():
    utterances = _utterances([50, 300, 130, 20, 64])
    batches = list(
        data.audio_pipeline(utterances, 64, 4, seed=7)
        .take(10)
        .as_numpy_iterator()
    )
    again = list(
        data.audio_pipeline(utterances, 64, 4, seed=7)
        .take(10)
        .as_numpy_iterator()
    )
    other = list(
        data.audio_pipeline(utterances, 64, 4, seed=8)
        .take(10)
        .as_numpy_iterator()
    )
    seen = []
    for batch, same in zip(batches, again):
        assert batch["audio"].shape == (4, 64, 1)
        assert batch["audio"].dtype == np.float32
        assert batch["speaker"].dtype == np.int32
        np.testing.assert_array_equal(batch["audio"], same["audio"])
        for crop, speaker in zip(batch["audio"][..., 0], batch["speaker"]):
            match = [
                i
                for i, w in enumerate(utterances.waveforms)
                if _is_crop(crop, w)
            ]
            assert len(match) == 1
            assert speaker == utterances.speakers[match[0]]
            seen.append(match[0])
    assert not all(
        np.array_equal(a["audio"], b["audio"]) for a, b in zip(batches, other)
    )
    # Epoch e visits every utterance once (5 crops), in the order of its
    # stateless keys seeded by (seed, -1 - e).
    for epoch in range(len(seen) // 5):
        keys = tf.random.stateless_uniform([5], seed=[7, -1 - epoch])
        order = np.argsort(keys.numpy(), kind="stable")
        assert seen[epoch * 5 : epoch * 5 + 5] == list(order)


def test_training_pipeline_is_the_same_on_every_iteration():
    # `fit` under MirroredStrategy iterates the dataset once more than on
    # one device: a second iterator must see the same batches.
    utterances = _utterances([50, 300, 130, 20, 64])
    stream = data.audio_pipeline(utterances, 64, 4, seed=7).take(6)
    first = list(stream.as_numpy_iterator())
    second = list(stream.as_numpy_iterator())
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["audio"], b["audio"])
        np.testing.assert_array_equal(a["speaker"], b["speaker"])


def _is_crop(crop, waveform):
    length = len(crop)
    if len(waveform) <= length:
        padded = np.pad(waveform, (0, length - len(waveform)))
        return np.array_equal(crop, padded)
    return any(
        np.array_equal(crop, waveform[o : o + length])
        for o in range(len(waveform) - length + 1)
    )


def test_evaluation_pipeline_covers_every_sample_once():
    utterances = _utterances([50, 300, 130, 64])
    batches = list(
        data.audio_pipeline(
            utterances, 64, 3, seed=0, training=False
        ).as_numpy_iterator()
    )
    segments = np.concatenate([b["audio"][..., 0] for b in batches])
    speakers = np.concatenate([b["speaker"] for b in batches])
    counts = [-(-len(w) // 64) for w in utterances.waveforms]
    assert len(segments) == sum(counts) == 1 + 5 + 3 + 1
    assert [len(b["audio"]) for b in batches] == [3, 3, 3, 1]
    first = 0
    for waveform, count, speaker in zip(
        utterances.waveforms, counts, utterances.speakers
    ):
        joined = segments[first : first + count].reshape(-1)
        np.testing.assert_array_equal(joined[: len(waveform)], waveform)
        assert not joined[len(waveform) :].any()
        assert np.all(speakers[first : first + count] == speaker)
        first += count


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"segment_length": 0},
            "`segment_length` must be a positive integer. "
            "Received: segment_length=0 (of type int).",
        ),
        (
            {"global_batch_size": 2.5},
            "`global_batch_size` must be a positive integer. "
            "Received: global_batch_size=2.5 (of type float).",
        ),
        (
            {"global_batch_size": "2"},
            "`global_batch_size` must be a positive integer. "
            "Received: global_batch_size='2' (of type str).",
        ),
        (
            {"global_batch_size": True},
            "`global_batch_size` must be a positive integer. "
            "Received: global_batch_size=True (of type bool).",
        ),
        (
            {"seed": None},
            "`seed` must be a non-negative integer. "
            "Received: seed=None (of type NoneType).",
        ),
        (
            {"seed": -1},
            "`seed` must be a non-negative integer. "
            "Received: seed=-1 (of type int).",
        ),
    ],
    ids=["segment", "batch", "batch-str", "batch-bool", "seed", "seed-neg"],
)
def test_pipeline_bad_arguments(kwargs, message):
    arguments = {"segment_length": 8, "global_batch_size": 2, "seed": 0}
    with pytest.raises(ValueError) as info:
        data.audio_pipeline(_utterances([10]), **{**arguments, **kwargs})
    assert str(info.value) == message


def test_pipeline_takes_numpy_integers_and_ignores_the_seed_for_evaluation():
    utterances = _utterances([50, 30])
    batches = data.audio_pipeline(
        utterances, np.int64(16), np.int32(2), seed=np.int64(7)
    ).take(3)
    plain = data.audio_pipeline(utterances, 16, 2, seed=7).take(3)
    for a, b in zip(batches, plain, strict=True):
        np.testing.assert_array_equal(a["audio"], b["audio"])
    evaluation = data.audio_pipeline(
        utterances, 16, 2, seed=None, training=False
    )
    assert sum(len(b["audio"]) for b in evaluation) == 4 + 2


def test_speech_pipeline_feeds_a_batch(corpus):
    dataset = data.audio_pipeline(corpus["train"], 4096, 2, seed=0)
    batch = next(iter(dataset))
    assert batch["audio"].shape == (2, 4096, 1)
    assert dataset.element_spec["speaker"] == tf.TensorSpec((2,), tf.int32)
    assert float(tf.reduce_max(tf.abs(batch["audio"]))) > 0.05
