"""Waveforms: WAV files in and out, resampling, 8-bit mu-law companding.

A waveform is float32 in [-1, 1], 1-D for one clip and `(batch, samples, 1)`
in a batch; the library works at `SAMPLE_RATE` (16,000 Hz) throughout:

    waveform, rate = read_wav("clip.wav")       # any PCM or float WAV
    waveform = resample(waveform, rate)         # to 16 kHz
    codes = mu_law_encode(waveform)             # int32 in [0, 255]
    write_wav("out.wav", mu_law_decode(codes))  # PCM16, written atomically

`read_wav` parses the RIFF container itself (numpy only): 8-bit unsigned,
16/24/32-bit signed PCM and 32/64-bit float, plain or
`WAVE_FORMAT_EXTENSIBLE`, any number of channels (averaged to mono). A file
it cannot use raises `AudioFileError` with one line saying why.
"""

from __future__ import annotations

import io
import math
import os
import struct
import wave

import numpy as np

from tf_vqvae.arg_checks import check_int

SAMPLE_RATE = 16_000
MU_LAW_CLASSES = 256
MU = MU_LAW_CLASSES - 1

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


class AudioFileError(ValueError):
    """A WAV file that cannot be read, with `path` and `reason`."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Reads a WAV file as a mono float32 waveform in [-1, 1].

    Integer PCM is scaled by its full range (8-bit unsigned around 128,
    16/24/32-bit signed: `x / 2**(bits - 1)`); float data is kept as is
    (not clipped). Several channels are averaged.

    Args:
        path: the file (a leading `~` is expanded).

    Returns:
        `(waveform, sample_rate)`: float32 `(samples,)` and the file's rate.

    Raises:
        AudioFileError: unreadable, not a RIFF/WAVE file, truncated, an
            unsupported encoding (e.g. A-law, 12-bit PCM), or no samples'
            chunk.
    """
    path = os.path.expanduser(os.fspath(path))
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        raise AudioFileError(
            path, f"cannot be read ({error.strerror or error})"
        ) from None
    return _parse_wav(path, content)


def _parse_wav(path: str, content: bytes) -> tuple[np.ndarray, int]:
    if len(content) == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    if len(content) < 12 or content[:4] != b"RIFF" or content[8:12] != b"WAVE":
        raise AudioFileError(
            path, f"not a WAV file (its first bytes: {content[:12]!r})"
        )
    fmt = None
    data = None
    position = 12
    while position + 8 <= len(content):
        chunk_id = content[position : position + 4]
        (size,) = struct.unpack("<I", content[position + 4 : position + 8])
        body = content[position + 8 : position + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if len(body) < size:
                raise AudioFileError(
                    path,
                    f"truncated: its data chunk declares {size} bytes but "
                    f"{len(body)} follow",
                )
            data = body
            if fmt is not None:
                break
        position += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise AudioFileError(path, "no valid 'fmt ' chunk")
    if data is None:
        raise AudioFileError(path, "no 'data' chunk (no samples)")
    tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        # The sub-format GUID starts with the plain format tag.
        (tag,) = struct.unpack("<H", fmt[24:26])
    if channels < 1 or rate < 1:
        raise AudioFileError(
            path, f"invalid header: {channels} channels at {rate} Hz"
        )
    width = bits // 8
    kinds = {(_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32)}
    kinds |= {(_FLOAT, 32), (_FLOAT, 64)}
    if (tag, bits) not in kinds or block != channels * width:
        encoding = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format {tag}")
        raise AudioFileError(
            path,
            f"unsupported encoding: {bits}-bit {encoding} (readable: 8, 16, "
            "24 or 32-bit PCM and 32 or 64-bit float)",
        )
    frames = len(data) // block
    raw = np.frombuffer(data[: frames * block], np.uint8)
    if tag == _FLOAT:
        samples = raw.view("<f4" if bits == 32 else "<f8").astype(np.float64)
    elif bits == 8:
        samples = (raw.astype(np.float64) - 128.0) / 128.0
    elif bits == 24:
        triples = raw.reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value / float(1 << 23)
    else:
        samples = raw.view(f"<i{width}").astype(np.float64) / 2.0 ** (bits - 1)
    waveform = samples.reshape(frames, channels).mean(axis=1)
    return waveform.astype(np.float32), int(rate)


def _checked_int(name: str, value, minimum: int = 1) -> int:
    """`value` as an int after `check_int` (numpy integers accepted)."""
    if isinstance(value, np.integer):
        value = int(value)
    check_int(name, value, minimum)
    return value


def wav_bytes(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit PCM WAV file's bytes for `waveform`.

    A float waveform is clipped to [-1, 1], scaled by 32767 and rounded;
    an int16 one is taken as 16-bit PCM and written unchanged.

    Raises:
        ValueError: `waveform` is not 1-D, not float or int16, or holds NaN
            or infinity; `sample_rate` is not a positive integer.
    """
    sample_rate = _checked_int("sample_rate", sample_rate)
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(
            "`waveform` must be 1-D (samples,). "
            f"Received: waveform.shape={waveform.shape}"
        )
    if waveform.dtype == np.int16:
        samples = waveform
    elif waveform.dtype.kind == "f":
        finite = np.isfinite(waveform)
        if not finite.all():
            index = int(np.argmin(finite))
            raise ValueError(
                "`waveform` samples must be finite (not NaN or infinity). "
                f"Received: waveform[{index}]={float(waveform[index])!r}."
            )
        samples = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0)
    else:
        # Other integers have no one meaning (8-bit PCM? 32-bit? indices?).
        raise ValueError(
            "`waveform` must be float in [-1, 1] or int16 (16-bit PCM). "
            f"Received: waveform.dtype={waveform.dtype.name}."
        )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(sample_rate)
        file.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def write_wav(
    path: str | os.PathLike,
    waveform: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
) -> str:
    """Writes `waveform` (1-D) as a mono PCM16 WAV file.

    `waveform` is float in [-1, 1] (clipped to it, scaled by 32767) or
    int16 PCM (written unchanged); see `wav_bytes`. Written through
    `tf_vqvae.atomic` (a staging file and a rename), so a reader never sees
    half a file; a leading `~` in `path` is expanded.

    Returns:
        `path` (`~` expanded).

    Raises:
        ValueError: as `wav_bytes`.
    """
    from tf_vqvae import atomic

    return atomic.write_bytes(path, wav_bytes(waveform, sample_rate))


def resample(
    waveform: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """`waveform` at `rate` Hz resampled to `target_rate` Hz (float32).

    Polyphase filtering (`scipy.signal.resample_poly`, its default Kaiser
    window) by `target_rate / rate` in lowest terms; the output has
    `ceil(len * target_rate / rate)` samples and is clipped to [-1, 1]:
    the filter rings past a sharp full-scale edge (a full-scale 1 kHz
    square wave at 48 kHz comes out at 1.16), an artefact, not the signal.
    Returned unchanged (as float32) when the rates are equal.

    Raises:
        ValueError: `rate` or `target_rate` is not a positive integer.
    """
    rate = _checked_int("rate", rate)
    target_rate = _checked_int("target_rate", target_rate)
    waveform = np.asarray(waveform, np.float32)
    if rate == target_rate:
        return waveform
    from scipy import signal

    divisor = math.gcd(rate, target_rate)
    up, down = target_rate // divisor, rate // divisor
    resampled = signal.resample_poly(waveform, up, down)
    return np.clip(resampled, -1.0, 1.0).astype(np.float32)


def mu_law_encode(waveform: np.ndarray) -> np.ndarray:
    """8-bit mu-law codes of a waveform (WaveNet's companding, mu = 255).

    `y = sign(x) ln(1 + mu |x|) / ln(1 + mu)` for `x` clipped to [-1, 1],
    then `y` falls in one of 256 equal bins over [-1, 1]:
    `q = min(floor((y + 1) * 128), 255)`.

    Returns:
        int32 codes in `[0, 255]`, the shape of `waveform`.
    """
    x = np.clip(np.asarray(waveform, np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    codes = np.floor((y + 1.0) * (MU_LAW_CLASSES / 2))
    return np.clip(codes, 0, MU).astype(np.int32)


def mu_law_decode(codes: np.ndarray) -> np.ndarray:
    """The waveform at the centre of each mu-law code's bin.

    `y = (q + 0.5) / 128 - 1`, `x = sign(y) ((1 + mu)^|y| - 1) / mu`;
    `mu_law_encode(mu_law_decode(q)) == q` for every `q` in `[0, 255]`.

    Returns:
        float32 in [-1, 1], the shape of `codes`.
    """
    y = (np.asarray(codes, np.float64) + 0.5) / (MU_LAW_CLASSES / 2) - 1.0
    x = np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU
    return x.astype(np.float32)
