"""An offline speech corpus: English sentences spoken by eSpeak NG voices.

`--dataset speech` is real (synthetic) speech that needs nothing but pip:
the `espeakng-loader` wheel ships eSpeak NG 1.52's `libespeak-ng.so` and its
voice data, called here through ctypes. The text is CPython's own reference
documentation (`pydoc_data.topics`, shipped with every Python), cut into
plain prose sentences of 5 to 16 words (letters, commas and semicolons
only, ending in a full stop; see `corpus_sentences`).

Each sentence is spoken by several voices, accents of English with voice
variants (`TRAIN_VOICES`, e.g. `"en-us+m3"`: American English, male
variant 3), synthesised at 22,050 Hz and resampled to 16 kHz. eSpeak reports
every phoneme with its sample position, so each utterance comes with a
phoneme alignment. The corpus is laid out as an `audio-folder:` dataset:

    ROOT/corpus.json                     what was built, by which versions
    ROOT/SPLIT/VOICE/0007.wav            16 kHz mono PCM16
    ROOT/SPLIT/VOICE/0007.json           {"text", "speaker", "speaker_id",
                                          "sample_rate", "alignment":
                                          [[start, end, phoneme], ...]}

Splits: `train` (training voices x training sentences), `test` (training
voices x held-out sentences) and `test_voices` (held-out voices x held-out
sentences). File `n` is the same sentence for every voice of a split.

The build is deterministic: the same `CorpusConfig`, espeakng-loader
version and Python version (the text) give byte-identical files. eSpeak
keeps synthesis state in library globals that carry over from one utterance
to the next (the same text comes out a few samples longer or shorter the
second time), so the library is loaded, initialised and unloaded for every
utterance, under a process-wide lock. `corpus_dir` builds the corpus once
into the cache (`$TF_VQVAE_CACHE_DIR`, else `$XDG_CACHE_HOME/tf-vqvae`,
default `~/.cache/tf-vqvae`), under a file lock and into a staging
directory renamed into place, so two processes never see half a corpus.

    root = corpus_dir()                  # builds DEFAULT_CORPUS once
    utterances = tf_vqvae.data.load_audio("speech", "train")
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import random
import re
import sys
import threading

import numpy as np

from tf_vqvae import audio
from tf_vqvae.arg_checks import check_int, describe

ESPEAK_SAMPLE_RATE = 22_050
# Bumped whenever the files a build writes change for the same inputs.
CORPUS_FORMAT = 1
TRAIN_VOICES = (
    "en-us+m3",
    "en-us+f2",
    "en+m1",
    "en-gb-scotland+f3",
    "en-029+m2",
    "en-us-nyc+f1",
    "en-gb-x-rp+m4",
    "en-gb-x-gbclan+f4",
)
TEST_VOICES = ("en-gb-x-gbcwmd+m6", "en-us+f5", "en-gb-scotland+m7")
SPLITS = ("train", "test", "test_voices")
_STRESS_MARKS = "',"

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """What a speech corpus holds; its size is the number of sentences.

    Attributes:
        num_train_sentences: sentences of the `train` split.
        num_test_sentences: held-out sentences (`test` and `test_voices`).
        train_voices: eSpeak voices of `train` and `test` (one name alone,
            e.g. `"en-us+m3"`, is one voice).
        test_voices: held-out voices, speaking only the held-out sentences
            (one name alone is one voice).
        seed: picks the sentences and seeds eSpeak's noise.
    """

    num_train_sentences: int = 120
    num_test_sentences: int = 30
    train_voices: tuple[str, ...] = TRAIN_VOICES
    test_voices: tuple[str, ...] = TEST_VOICES
    seed: int = 0

    def __post_init__(self):
        for name in ("num_train_sentences", "num_test_sentences"):
            check_int(name, getattr(self, name))
        for name in ("train_voices", "test_voices"):
            value = getattr(self, name)
            # A bare string would otherwise be split into one-letter voices.
            voices = (value,) if isinstance(value, str) else value
            try:
                voices = tuple(voices)
            except TypeError:
                voices = None
            if voices is None or not all(
                isinstance(v, str) and v for v in voices
            ):
                raise ValueError(
                    f"`{name}` must be eSpeak voice names, e.g. "
                    f"('en-us+m3', 'en+m1'). {describe(name, value)}"
                )
            object.__setattr__(self, name, voices)
        voices = (*self.train_voices, *self.test_voices)
        if not self.train_voices or len(set(voices)) != len(voices):
            raise ValueError(
                "`train_voices` must be non-empty and no voice may appear "
                f"twice. Received: train_voices={self.train_voices!r}, "
                f"test_voices={self.test_voices!r}"
            )


DEFAULT_CORPUS = CorpusConfig()


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """One synthesised utterance at 16 kHz.

    Attributes:
        waveform: float32 `(samples,)` in [-1, 1].
        alignment: `(start_sample, end_sample, phoneme)` per phoneme, in
            order, non-empty and non-overlapping; eSpeak's ASCII phoneme
            mnemonics without stress marks (`"aI"`, `"n"`, `"_:"` for a
            pause).
    """

    waveform: np.ndarray
    alignment: tuple[tuple[int, int, str], ...]


# --------------------------------------------------------------- synthesis
_LOCK = threading.Lock()


class _Id(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_short),
    ctypes.c_int,
    ctypes.POINTER(_Event),
)


def _library_path() -> str:
    import espeakng_loader

    return espeakng_loader.get_library_path()


def _library_is_loaded(path: str) -> bool:
    """Whether `path` is mapped into this process (Linux; else False)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            return os.path.realpath(path) in maps.read()
    except OSError:
        return False


@contextlib.contextmanager
def _fresh_espeak():
    """eSpeak NG loaded and initialised for phoneme events, unloaded after.

    Unloading resets the library's globals, which is what makes each
    utterance independent of the ones before it.
    """
    import _ctypes

    import espeakng_loader

    path = _library_path()
    if _library_is_loaded(path):
        raise RuntimeError(
            f"{path} is already loaded in this process (by another module), "
            "so eSpeak's state cannot be reset between utterances and the "
            "corpus would not be reproducible; build it in a fresh process."
        )
    lib = ctypes.CDLL(path)
    try:
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            espeakng_loader.get_data_path().encode(),
            _INITIALIZE_PHONEME_EVENTS,
        )
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(
                f"eSpeak NG failed to start or runs at {rate} Hz, not "
                f"{ESPEAK_SAMPLE_RATE} Hz ({path})."
            )
        try:
            yield lib
        finally:
            lib.espeak_Terminate()
    finally:
        dlclose = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary
        dlclose(lib._handle)


def espeak_version() -> str:
    """The eSpeak NG version of the installed library, e.g. `"1.52.0"`."""
    with _LOCK, _fresh_espeak() as lib:
        lib.espeak_Info.restype = ctypes.c_char_p
        return lib.espeak_Info(None).decode().split()[0]


def synthesize(text: str, voice: str, seed: int = 0) -> Synthesis:
    """Speaks `text` with an eSpeak NG voice, at 16 kHz, with phonemes.

    Args:
        text: what to say.
        voice: an eSpeak voice name with an optional variant, e.g.
            `"en-us+m3"`, `"en"` (British English), `"en-gb-scotland+f3"`.
        seed: seeds eSpeak's noise generator.

    Returns:
        `Synthesis`: the waveform (resampled from 22,050 Hz) and the
        phoneme alignment at 16 kHz. Phonemes eSpeak gives no duration are
        left out.

    Raises:
        ValueError: for a voice eSpeak does not know.
    """
    chunks: list[np.ndarray] = []
    events: list[tuple[str, int]] = []

    @_CALLBACK
    def callback(samples, count, event):
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        i = 0
        while event[i].type != _EVENT_LIST_TERMINATED:
            if event[i].type == _EVENT_PHONEME:
                name = event[i].id.string.decode("ascii", "replace")
                events.append((name.strip(_STRESS_MARKS), event[i].sample))
            i += 1
        return 0

    with _LOCK, _fresh_espeak() as lib:
        lib.espeak_SetSynthCallback(callback)
        lib.espeak_ng_SetRandSeed(ctypes.c_long(int(seed)))
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(
                "`voice` must be an eSpeak NG voice, e.g. 'en-us+m3'. "
                f"Received: voice={voice!r}"
            )
        encoded = text.encode("utf-8")
        status = lib.espeak_Synth(
            ctypes.c_char_p(encoded),
            ctypes.c_size_t(len(encoded) + 1),
            0,
            _POS_CHARACTER,
            0,
            _CHARS_UTF8,
            None,
            None,
        )
        if status != 0:
            raise RuntimeError(f"eSpeak NG failed to speak {text!r}.")
    raw = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    waveform = audio.resample(raw.astype(np.float32) / 32768.0, 22_050)
    return Synthesis(waveform, _alignment(events, len(waveform)))


def _alignment(
    events: list[tuple[str, int]], length: int
) -> tuple[tuple[int, int, str], ...]:
    """Phoneme events (name, start at 22,050 Hz) as 16 kHz intervals."""
    scale = audio.SAMPLE_RATE / ESPEAK_SAMPLE_RATE
    starts = [min(round(sample * scale), length) for _, sample in events]
    ends = [*starts[1:], length]
    return tuple(
        (start, end, name)
        for (name, _), start, end in zip(events, starts, ends)
        if end > start and name
    )


# -------------------------------------------------------------------- text
def corpus_sentences() -> tuple[str, ...]:
    """Plain English sentences from CPython's reference documentation.

    From `pydoc_data.topics` (the text of `help()` topics, shipped with
    Python): paragraphs that are not indented code, split after full stops;
    kept are sentences of 5 to 16 words made of letters (with hyphens and
    apostrophes), commas and semicolons, starting with a capital, ending in
    a lower-case word and a full stop, whose second word is not capitalised
    (that drops headings run into the first sentence). Sorted, unique:
    about 380 sentences on Python 3.11.
    """
    from pydoc_data import topics

    pattern = re.compile(r"[A-Z][a-z]*(?:[ ,;]+[A-Za-z][a-z'\-]*)*[a-z]\.")
    found = set()
    for key in sorted(topics.topics):
        for paragraph in re.split(r"\n\s*\n", topics.topics[key]):
            lines = paragraph.split("\n")
            if any(line.startswith("    ") for line in lines):
                continue
            text = " ".join(line.strip() for line in lines)
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                words = sentence.split()
                if (
                    pattern.fullmatch(sentence)
                    and 5 <= len(words) <= 16
                    and not words[1][0].isupper()
                    and words[-1] != "etc."
                ):
                    found.add(sentence)
    return tuple(sorted(found))


def _split_sentences(config: CorpusConfig) -> dict[str, tuple[str, ...]]:
    sentences = list(corpus_sentences())
    needed = config.num_train_sentences + config.num_test_sentences
    if needed > len(sentences):
        raise ValueError(
            f"The speech corpus has {len(sentences)} sentences; "
            "`num_train_sentences + num_test_sentences` must be at most "
            f"that. Received: {needed}"
        )
    random.Random(config.seed).shuffle(sentences)
    train = tuple(sentences[: config.num_train_sentences])
    test = tuple(sentences[config.num_train_sentences : needed])
    return {"train": train, "test": test, "test_voices": test}


# ------------------------------------------------------------------- build
def build_corpus(root: str | os.PathLike, config: CorpusConfig) -> str:
    """Synthesises the corpus `config` describes into the new folder `root`.

    Built in a staging directory beside `root` and renamed into place
    (`tf_vqvae.atomic.staged_directory`): `root` appears complete or not at
    all. A leading `~` in `root` is expanded.

    Returns:
        `root`, `~` expanded.

    Raises:
        FileExistsError: if `root` exists.
    """
    from tf_vqvae import atomic

    root = os.path.expanduser(os.fspath(root))
    splits = _split_sentences(config)
    voices = {
        "train": config.train_voices,
        "test": config.train_voices,
        "test_voices": config.test_voices,
    }
    speakers = sorted((*config.train_voices, *config.test_voices))
    speaker_ids = {name: i for i, name in enumerate(speakers)}
    phonemes = set()
    with atomic.staged_directory(root) as staging:
        for split in SPLITS:
            for voice in voices[split]:
                folder = os.path.join(staging, split, voice)
                os.makedirs(folder)
                for n, text in enumerate(splits[split]):
                    seed = _utterance_seed(config.seed, split, voice, n)
                    spoken = synthesize(text, voice, seed)
                    phonemes.update(name for _, _, name in spoken.alignment)
                    stem = os.path.join(folder, f"{n:04d}")
                    with open(f"{stem}.wav", "wb") as file:
                        file.write(audio.wav_bytes(spoken.waveform))
                    sidecar = {
                        "text": text,
                        "speaker": voice,
                        "speaker_id": speaker_ids[voice],
                        "sample_rate": audio.SAMPLE_RATE,
                        "alignment": [list(a) for a in spoken.alignment],
                    }
                    with open(f"{stem}.json", "w", encoding="utf-8") as file:
                        json.dump(sidecar, file, sort_keys=True)
        manifest = {
            **_identity(config),
            "speakers": speakers,
            "phonemes": sorted(phonemes),
            "splits": {
                split: {"voices": list(voices[split]), "sentences": len(s)}
                for split, s in splits.items()
            },
        }
        with open(
            os.path.join(staging, "corpus.json"), "w", encoding="utf-8"
        ) as file:
            json.dump(manifest, file, indent=1, sort_keys=True)
    return root


def _utterance_seed(seed: int, split: str, voice: str, n: int) -> int:
    key = f"{seed}/{split}/{voice}/{n}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def _identity(config: CorpusConfig) -> dict:
    """Everything the corpus' bytes depend on."""
    from importlib import metadata

    sentences = "\n".join(corpus_sentences()).encode()
    return {
        "format": CORPUS_FORMAT,
        "config": dataclasses.asdict(config),
        "espeak_ng": espeak_version(),
        "espeakng_loader": metadata.version("espeakng-loader"),
        "text_source": (
            f"CPython {sys.version_info.major}.{sys.version_info.minor} "
            "pydoc_data.topics"
        ),
        "sentences_sha256": hashlib.sha256(sentences).hexdigest(),
        "sample_rate": audio.SAMPLE_RATE,
    }


def cache_dir() -> str:
    """`$TF_VQVAE_CACHE_DIR` (a leading `~` expanded), else
    `$XDG_CACHE_HOME/tf-vqvae` (default `~/.cache/tf-vqvae`)."""
    explicit = os.environ.get("TF_VQVAE_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tf-vqvae")


def corpus_dir(
    config: CorpusConfig = DEFAULT_CORPUS, cache: str | None = None
) -> str:
    """The folder of the corpus `config` describes, built on first use.

    The folder is `CACHE/speech/v{CORPUS_FORMAT}-HASH`, `HASH` covering
    everything the files depend on (`config`, the eSpeak and
    espeakng-loader versions, the sentences). A process that finds it
    missing builds it under an exclusive lock on `HASH.lock`, so
    concurrent processes wait for one build instead of repeating it.

    Args:
        config: the corpus.
        cache: the cache folder (default `cache_dir()`); a leading `~` is
            expanded.

    Returns:
        The corpus folder.
    """
    identity = json.dumps(_identity(config), sort_keys=True).encode()
    key = f"v{CORPUS_FORMAT}-{hashlib.sha256(identity).hexdigest()[:16]}"
    cache = os.path.expanduser(os.fspath(cache)) if cache else cache_dir()
    parent = os.path.join(cache, "speech")
    root = os.path.join(parent, key)
    if os.path.isfile(os.path.join(root, "corpus.json")):
        return root
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f"{key}.lock"), "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:
            pass  # No flock (Windows): the staged rename still protects.
        if not os.path.isfile(os.path.join(root, "corpus.json")):
            build_corpus(root, config)
    return root
