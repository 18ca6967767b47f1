"""Tests for `tf_vqvae.speech`: the eSpeak NG corpus."""

import json
import os

import numpy as np
import pytest

from tf_vqvae import audio, speech

TINY = speech.CorpusConfig(
    num_train_sentences=2,
    num_test_sentences=1,
    train_voices=("en-us+m3", "en-gb-scotland+f3"),
    test_voices=("en-us+f5",),
    seed=3,
)
# eSpeak mnemonics of vowels and diphthongs start with one of these.
_VOWEL_STARTS = set("aeiouAEIOUV@03")
SENTENCE = "In Python, all classes are themselves instances of other classes."


def _files(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, root)] = file.read()
    return found


def test_sentences_are_plain_prose_from_pydoc_topics():
    sentences = speech.corpus_sentences()
    assert len(sentences) > 300
    assert list(sentences) == sorted(set(sentences))
    for sentence in sentences:
        words = sentence.split()
        assert 5 <= len(words) <= 16 and sentence.endswith(".")
        assert not any(c.isdigit() or c in '()_=*`:"' for c in sentence)
    assert "Return the number of entries in the dictionary." in sentences


def test_synthesize_gives_16_khz_speech_with_a_sane_alignment():
    spoken = speech.synthesize(SENTENCE, "en-us+m3")
    waveform, alignment = spoken.waveform, spoken.alignment
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert 2.5 < len(waveform) / audio.SAMPLE_RATE < 5.0
    assert 0.03 < np.sqrt(np.mean(waveform**2)) < 0.5
    assert np.abs(waveform).max() <= 1.0
    starts = np.array([a[0] for a in alignment])
    ends = np.array([a[1] for a in alignment])
    # Monotone, non-empty, inside the audio, each ending where the next
    # starts (none of eSpeak's zero-length phonemes kept), the last at the
    # end of the audio.
    assert starts[0] == 0 and ends[-1] == len(waveform)
    assert np.all(ends > starts) and np.all(starts[1:] == ends[:-1])
    names = [a[2] for a in alignment]
    assert not any("'" in n or "," in n for n in names)
    # "In Python": I n p aI T @ n, then a pause after the comma.
    assert names[:8] == ["I", "n", "p", "aI", "T", "@", "n", "_:"]
    rms = {
        kind: np.median(
            [
                np.sqrt(np.mean(waveform[s:e] ** 2))
                for s, e, n in alignment
                if pick(n)
            ]
        )
        for kind, pick in {
            "vowel": lambda n: n[0] in _VOWEL_STARTS,
            "pause": lambda n: n.startswith("_"),
        }.items()
    }
    assert rms["vowel"] > 0.05 and rms["pause"] < rms["vowel"] / 20


def test_synthesis_does_not_depend_on_what_was_said_before():
    first = speech.synthesize(SENTENCE, "en-us+m3", seed=1)
    speech.synthesize("Something else entirely, said first.", "en-us+f2")
    again = speech.synthesize(SENTENCE, "en-us+m3", seed=1)
    np.testing.assert_array_equal(first.waveform, again.waveform)
    assert first.alignment == again.alignment
    other = speech.synthesize(SENTENCE, "en-us+f2", seed=1)
    assert len(other.waveform) != len(first.waveform)


def test_unknown_voice():
    with pytest.raises(ValueError) as info:
        speech.synthesize("Hello there.", "xx-nowhere")
    assert str(info.value) == (
        "`voice` must be an eSpeak NG voice, e.g. 'en-us+m3'. "
        "Received: voice='xx-nowhere'"
    )


def test_corpus_layout_splits_and_sidecars(tmp_path):
    root = speech.build_corpus(tmp_path / "corpus", TINY)
    manifest = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    speakers = sorted(TINY.train_voices + TINY.test_voices)
    assert manifest["speakers"] == speakers
    assert manifest["espeak_ng"] == "1.52.0"
    assert manifest["text_source"].endswith("pydoc_data.topics")
    expected = {
        "train": (TINY.train_voices, 2),
        "test": (TINY.train_voices, 1),
        "test_voices": (TINY.test_voices, 1),
    }
    texts = {}
    phonemes = set()
    for split, (voices, count) in expected.items():
        assert sorted(os.listdir(os.path.join(root, split))) == sorted(voices)
        for voice in voices:
            folder = os.path.join(root, split, voice)
            names = sorted(os.listdir(folder))
            assert names == sorted(
                f"{n:04d}.{ext}"
                for n in range(count)
                for ext in ("wav", "json")
            )
            for n in range(count):
                sidecar = json.loads(
                    open(os.path.join(folder, f"{n:04d}.json")).read()
                )
                waveform, rate = audio.read_wav(
                    os.path.join(folder, f"{n:04d}.wav")
                )
                assert rate == audio.SAMPLE_RATE == sidecar["sample_rate"]
                assert sidecar["speaker"] == voice
                assert sidecar["speaker_id"] == speakers.index(voice)
                assert sidecar["alignment"][-1][1] == len(waveform)
                phonemes.update(a[2] for a in sidecar["alignment"])
                # File n is the same sentence for every voice of a split.
                texts.setdefault((split, n), set()).add(sidecar["text"])
    assert all(len(t) == 1 for t in texts.values())
    train = {next(iter(t)) for (s, _), t in texts.items() if s == "train"}
    test = {next(iter(t)) for (s, _), t in texts.items() if s != "train"}
    assert len(train) == 2 and len(test) == 1 and not train & test
    assert manifest["phonemes"] == sorted(phonemes)


def test_corpus_build_is_byte_identical(tmp_path):
    first = _files(speech.build_corpus(tmp_path / "a", TINY))
    second = _files(speech.build_corpus(tmp_path / "b", TINY))
    assert len(first) == 1 + 2 * 2 * 2 + 2 * 2 + 2
    assert first == second
    reseeded = _files(
        speech.build_corpus(
            tmp_path / "c", speech.CorpusConfig(**{**vars(TINY), "seed": 4})
        )
    )
    assert reseeded != first


def test_corpus_dir_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_VQVAE_CACHE_DIR", str(tmp_path))
    root = speech.corpus_dir(TINY)
    assert os.path.dirname(root) == str(tmp_path / "speech")
    stamp = os.stat(os.path.join(root, "corpus.json")).st_mtime_ns
    assert speech.corpus_dir(TINY) == root
    assert os.stat(os.path.join(root, "corpus.json")).st_mtime_ns == stamp
    assert not [n for n in os.listdir(tmp_path / "speech") if n[0] == "."]
    bigger = speech.CorpusConfig(**{**vars(TINY), "num_test_sentences": 2})
    assert speech.corpus_dir(bigger) != root


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"num_train_sentences": 0},
            "`num_train_sentences` must be a positive integer. "
            "Received: num_train_sentences=0 (of type int).",
        ),
        (
            {"num_test_sentences": True},
            "`num_test_sentences` must be a positive integer. "
            "Received: num_test_sentences=True (of type bool).",
        ),
        (
            {"train_voices": ("en-us+m3", 7)},
            "`train_voices` must be eSpeak voice names, e.g. ('en-us+m3', "
            "'en+m1'). Received: train_voices=('en-us+m3', 7) (of type tuple).",
        ),
        (
            {"test_voices": None},
            "`test_voices` must be eSpeak voice names, e.g. ('en-us+m3', "
            "'en+m1'). Received: test_voices=None (of type NoneType).",
        ),
        (
            {"train_voices": ("en-us+m3",), "test_voices": ("en-us+m3",)},
            "`train_voices` must be non-empty and no voice may appear twice. "
            "Received: train_voices=('en-us+m3',), "
            "test_voices=('en-us+m3',)",
        ),
    ],
    ids=["sentences", "sentences-bool", "voice-int", "voices-none", "voices"],
)
def test_bad_corpus_config(kwargs, message):
    with pytest.raises(ValueError) as info:
        speech.CorpusConfig(**kwargs)
    assert str(info.value) == message


def test_one_voice_name_is_a_tuple_of_one():
    config = speech.CorpusConfig(train_voices="en-us+m3", test_voices="en+m1")
    assert config.train_voices == ("en-us+m3",)
    assert config.test_voices == ("en+m1",)
    assert config == speech.CorpusConfig(
        train_voices=["en-us+m3"], test_voices=("en+m1",)
    )


def test_cache_dir_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TF_VQVAE_CACHE_DIR", "~/cache")
    assert speech.cache_dir() == str(tmp_path / "cache")


def test_too_many_sentences(tmp_path):
    config = speech.CorpusConfig(num_train_sentences=10_000)
    with pytest.raises(ValueError, match="must be at most that"):
        speech.build_corpus(tmp_path / "x", config)
    assert not os.path.exists(tmp_path / "x")


def test_concurrent_processes_share_one_build(tmp_path):
    import subprocess
    import sys

    script = (
        "from tf_vqvae import speech\n"
        f"config = speech.CorpusConfig(**{vars(TINY)!r})\n"
        f"print(speech.corpus_dir(config, {str(tmp_path)!r}))\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    roots = {out.strip() for out, _ in outputs}
    assert len(roots) == 1
    (root,) = roots
    names = os.listdir(tmp_path / "speech")
    assert sorted(names) == sorted(
        [os.path.basename(root), os.path.basename(root) + ".lock"]
    )
    assert _files(root) == _files(speech.build_corpus(tmp_path / "b", TINY))
