"""Tests for `tf_vqvae.audio`: WAV in and out, resampling, mu-law."""

import os
import struct

import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from tf_vqvae import audio


def _tone(rate, seconds=0.25, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(
        t.shape
    )
    return np.stack([mono * (c + 1) / channels for c in range(channels)], -1)


@pytest.mark.parametrize(
    "dtype, scale",
    [
        ("int16", 2.0**15),
        ("int32", 2.0**31),
        ("float32", 1.0),
        ("float64", 1.0),
    ],
    ids=["pcm16", "pcm32", "float32", "float64"],
)
@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
def test_read_wav_matches_scipy_written_files(tmp_path, dtype, scale, channels):
    tone = _tone(22_050, channels=channels)
    if dtype.startswith("int"):
        samples = np.round(tone * (scale - 1)).astype(dtype)
    else:
        samples = tone.astype(dtype)
    path = tmp_path / "x.wav"
    wavfile.write(path, 22_050, samples)
    waveform, rate = audio.read_wav(path)
    expected = (samples.astype(np.float64) / scale).mean(axis=1)
    assert rate == 22_050
    assert waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, expected, rtol=0, atol=1e-7)


def test_read_wav_8_bit_unsigned(tmp_path):
    u8 = np.array([0, 64, 128, 200, 255], np.uint8)
    wavfile.write(tmp_path / "u8.wav", 8000, u8)
    waveform, _ = audio.read_wav(tmp_path / "u8.wav")
    np.testing.assert_array_equal(waveform, (u8 - 128.0) / 128.0)


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "ext"])
def test_read_wav_24_bit(tmp_path, extensible):
    values = np.array([0, 1, -1, 2**23 - 1, -(2**23), 12345], np.int64)
    raw = b"".join(struct.pack("<i", int(v))[:3] for v in values)
    if extensible:
        # WAVE_FORMAT_EXTENSIBLE: cbSize 22, valid bits, channel mask, then
        # the sub-format GUID, whose first two bytes are the PCM tag 1.
        fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 16_000, 48_000, 3, 24)
        fmt += struct.pack("<HHI", 22, 24, 4) + struct.pack("<H", 1)
        fmt += bytes.fromhex("000000001000800000aa00389b71")
    else:
        fmt = struct.pack("<HHIIHH", 1, 1, 16_000, 48_000, 3, 24)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd, padded
    body += b"data" + struct.pack("<I", len(raw)) + raw
    path = tmp_path / "p24.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    waveform, rate = audio.read_wav(path)
    assert rate == 16_000
    np.testing.assert_array_equal(waveform, (values / 2.0**23).astype("f4"))


def test_write_wav_round_trip_and_pcm16_values(tmp_path):
    waveform = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0], np.float32)
    path = audio.write_wav(tmp_path / "out.wav", waveform, 16_000)
    rate, samples = wavfile.read(path)
    assert rate == 16_000 and samples.dtype == np.int16
    expected = np.round(np.clip(waveform, -1, 1) * 32767).astype(np.int16)
    np.testing.assert_array_equal(samples, expected)
    again, _ = audio.read_wav(path)
    np.testing.assert_allclose(again, np.clip(waveform, -1, 1), atol=1 / 32767)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_bad_wav_files_name_the_file_and_say_why(tmp_path):
    good = tmp_path / "good.wav"
    wavfile.write(good, 8000, np.zeros(100, np.int16))
    content = good.read_bytes()
    alaw = bytearray(content)
    alaw[20:22] = struct.pack("<H", 6)
    cases = {
        "missing.wav": (None, "cannot be read (No such file or directory)"),
        "empty.wav": (b"", "empty file (0 bytes)"),
        "text.wav": (b"hello world!!", "not a WAV file (its first bytes: "),
        "cut.wav": (content[:-50], "truncated: its data chunk declares 200"),
        "alaw.wav": (bytes(alaw), "unsupported encoding: 16-bit format 6"),
        "nodata.wav": (content[:36], "no 'data' chunk (no samples)"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(audio.AudioFileError) as info:
            audio.read_wav(path)
        assert info.value.path == str(path)
        assert str(info.value).startswith(f"{path}: {reason}"), name
        assert "\n" not in str(info.value)


def test_resample_is_scipy_resample_poly_in_lowest_terms():
    waveform = _tone(22_050)[:, 0].astype(np.float32)
    out = audio.resample(waveform, 22_050)
    expected = signal.resample_poly(waveform, 320, 441)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert len(out) == int(np.ceil(len(waveform) * 16_000 / 22_050))
    same = audio.resample(waveform, 16_000)
    np.testing.assert_array_equal(same, waveform)
    # A 440 Hz tone keeps its frequency.
    tone = audio.resample(_tone(44_100, 1.0)[:, 0], 44_100)
    spectrum = np.abs(np.fft.rfft(tone))
    assert np.argmax(spectrum) * 16_000 / len(tone) == pytest.approx(440, abs=2)


def test_mu_law_against_hand_computed_values():
    x = np.array([-1.0, -0.5, -1e-3, 0.0, 1e-3, 0.1, 0.5, 1.0, 1.5, -2.0])
    y = np.sign(x.clip(-1, 1)) * np.log(1 + 255 * np.abs(x.clip(-1, 1)))
    y /= np.log(256)
    expected = np.minimum(np.floor((y + 1) * 128), 255).astype(np.int32)
    codes = audio.mu_law_encode(x)
    np.testing.assert_array_equal(codes, expected)
    # By hand: 0 -> bin 128; 1 -> 255; -1 -> 0; 0.5 -> y = ln(128.5)/ln(256).
    assert codes[3] == 128 and codes[7] == 255 and codes[0] == 0
    assert codes[6] == int((np.log(128.5) / np.log(256) + 1) * 128)
    assert codes.dtype == np.int32


def test_mu_law_decode_bin_centres_and_round_trip():
    codes = np.arange(256)
    decoded = audio.mu_law_decode(codes)
    y = (codes + 0.5) / 128 - 1
    expected = np.sign(y) * (256.0 ** np.abs(y) - 1) / 255
    np.testing.assert_allclose(decoded, expected, rtol=1e-6, atol=1e-9)
    assert decoded.dtype == np.float32
    assert np.all(np.diff(decoded) > 0) and np.abs(decoded).max() < 1
    np.testing.assert_array_equal(audio.mu_law_encode(decoded), codes)
    # Quantisation error is at most half a bin in the companded domain.
    x = np.linspace(-1, 1, 10_001)
    back = audio.mu_law_decode(audio.mu_law_encode(x))
    y_x = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log(256)
    y_b = np.sign(back) * np.log1p(255 * np.abs(back)) / np.log(256)
    assert np.abs(y_x - y_b).max() <= 1 / 128 + 1e-6


def _square_48k(samples=4800):
    """A full-scale 1 kHz square wave at 48 kHz."""
    t = np.arange(samples) / 48_000
    return np.sign(np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_resample_clips_the_filters_overshoot():
    square = _square_48k()
    # The polyphase filter rings past each edge (Gibbs), beyond full scale.
    raw = signal.resample_poly(square, 1, 3)
    assert np.abs(raw).max() > 1.1
    out = audio.resample(square, 48_000)
    assert np.abs(out).max() == 1.0 and out.dtype == np.float32
    np.testing.assert_allclose(out, np.clip(raw, -1, 1), atol=1e-6)
    # Equal rates: unchanged, not clipped.
    loud = np.array([0.5, 1.5], np.float32)
    np.testing.assert_array_equal(audio.resample(loud, 16_000), loud)
    assert len(audio.resample(square, np.int64(48_000))) == 1600


@pytest.mark.parametrize(
    "args, name",
    [
        ((0,), "rate"),
        ((-48_000,), "rate"),
        ((44_100.5,), "rate"),
        (("16000",), "rate"),
        ((48_000, 0), "target_rate"),
    ],
    ids=["zero", "negative", "fraction", "string", "target"],
)
def test_resample_refuses_bad_rates(args, name):
    with pytest.raises(ValueError) as info:
        audio.resample(np.zeros(480, np.float32), *args)
    value = args[-1]
    assert str(info.value) == (
        f"`{name}` must be a positive integer. "
        f"Received: {name}={value!r} (of type {type(value).__name__})."
    )


def test_write_wav_takes_int16_as_pcm(tmp_path):
    tone = _tone(16_000)[:, 0]
    pcm = np.round(tone * 32767).astype(np.int16)
    path = audio.write_wav(tmp_path / "pcm.wav", pcm)
    rate, samples = wavfile.read(path)
    assert rate == 16_000
    np.testing.assert_array_equal(samples, pcm)  # not clipped to +-1
    waveform, _ = audio.read_wav(path)
    np.testing.assert_array_equal(waveform, pcm / np.float32(32768))


@pytest.mark.parametrize(
    "waveform, rate, message",
    [
        (
            np.array([0.1, np.nan, 0.2]),
            16_000,
            "`waveform` samples must be finite (not NaN or infinity). "
            "Received: waveform[1]=nan.",
        ),
        (
            np.array([0.1, 0.2, -np.inf], np.float32),
            16_000,
            "`waveform` samples must be finite (not NaN or infinity). "
            "Received: waveform[2]=-inf.",
        ),
        (
            np.array([0, 1000, -1000], np.int32),
            16_000,
            "`waveform` must be float in [-1, 1] or int16 (16-bit PCM). "
            "Received: waveform.dtype=int32.",
        ),
        (
            np.zeros(3),
            0,
            "`sample_rate` must be a positive integer. "
            "Received: sample_rate=0 (of type int).",
        ),
        (
            np.zeros(3),
            -5,
            "`sample_rate` must be a positive integer. "
            "Received: sample_rate=-5 (of type int).",
        ),
        (
            np.zeros(3),
            44_100.7,
            "`sample_rate` must be a positive integer. "
            "Received: sample_rate=44100.7 (of type float).",
        ),
    ],
    ids=["nan", "inf", "int32", "rate0", "rate-5", "rate-fraction"],
)
def test_write_wav_refuses_bad_input_with_one_line(
    tmp_path, waveform, rate, message
):
    with pytest.raises(ValueError) as info:
        audio.write_wav(tmp_path / "x.wav", waveform, rate)
    assert str(info.value) == message
    assert os.listdir(tmp_path) == []


def test_write_wav_expands_the_home_directory(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    path = audio.write_wav("~/x.wav", np.zeros(10, np.float32))
    assert path == str(home / "x.wav")
    assert os.listdir(home) == ["x.wav"] and os.listdir(work) == []
    assert audio.read_wav("~/x.wav")[1] == 16_000
