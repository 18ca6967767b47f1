"""The training side of the CLI on audio: `vqvae train` on an audio
dataset (artifacts, TensorBoard clips, resume), `vqvae reconstruct`,
`vqvae convert`, `vqvae export` of an audio run, and the one-line
errors."""

import io
import json
import os
import wave

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from tf_vqvae import sampling
from tf_vqvae.audio import read_wav, resample, write_wav
from tf_vqvae.training import artifacts, cli, commands
from tf_vqvae.training.config import TrainConfig, audio_train_config

SEGMENT = 512
# A tiny audio model: 64 samples per code, 8 codes per segment.
TINY = [
    "--segment-length",
    str(SEGMENT),
    "--global-batch-size",
    "4",
    "--num-embeddings",
    "16",
    "--embedding-dim",
    "4",
    "--num-hiddens",
    "8",
    "--num-residual-hiddens",
    "4",
    "--num-residual-blocks",
    "1",
]
SPEAKERS = ("alice", "bob")


def _tone(length, frequency, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000
    wave_ = 0.5 * np.sin(2 * np.pi * frequency * t)
    return (wave_ + 0.05 * rng.standard_normal(length)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """`audio-folder:` of two speakers: 3 training, 1 test tone each."""
    root = tmp_path_factory.mktemp("corpus")
    for split, count in (("train", 3), ("test", 1)):
        for s, (name, base) in enumerate(zip(SPEAKERS, (220.0, 140.0))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                write_wav(
                    folder / f"u{i}.wav",
                    _tone(2000 + 300 * i, base + 40 * i, 10 * s + i),
                )
    return f"audio-folder:{root}"


def _train(model_dir, dataset, *flags):
    argv = ["train", "--model-dir", str(model_dir), "--dataset", dataset]
    return cli.main([*argv, *TINY, *flags])


@pytest.fixture(scope="module")
def speaker_run(corpus, tmp_path_factory):
    """One epoch of a tiny speaker-conditioned audio VQ-VAE."""
    keras.backend.clear_session()
    model_dir = tmp_path_factory.mktemp("run") / "speech"
    flags = ["--epochs", "1", "--steps-per-epoch", "3"]
    assert _train(model_dir, corpus, "--speaker-conditioning", *flags) == 0
    return model_dir


def _accumulator(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return acc


def _wav_samples(content: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(content)) as file:
        rate = file.getframerate()
        frames = file.readframes(file.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float64) / 32767, rate


def test_train_audio_run(speaker_run, corpus):
    config = json.loads((speaker_run / "config.json").read_text())
    # The audio defaults, under the flags given.
    assert config["likelihood"] == "mu_law"
    assert config["num_downsamples"] == 6
    assert config["segment_length"] == SEGMENT
    assert config["speaker_conditioning"] is True
    names = json.loads((speaker_run / "speakers.json").read_text())
    assert names == {
        "dataset": corpus,
        "speaker_names": list(SPEAKERS),
        "trained_speakers": list(SPEAKERS),
    }
    model, _ = artifacts.load_vqvae(str(speaker_run))
    assert model.modality == "audio" and model.num_speakers == 2
    assert model.example_shape == (SEGMENT, 1)
    calibration = np.load(speaker_run / "calibration.npy")
    assert calibration.dtype == np.float32
    assert calibration.shape[1:] == (SEGMENT, 1)

    # reconstructions.wav: each test segment, 0.25 s, its reconstruction,
    # 0.75 s; the test split (2 utterances of 2000 samples) has 8 segments.
    waves, speakers = artifacts.audio_segments(
        artifacts.load_audio_split(corpus, "test"), SEGMENT, 4
    )
    recon = model.decode(model.encode(waves), speaker=speakers).numpy()
    pieces = []
    for original, reconstruction in zip(waves[..., 0], recon[..., 0]):
        pieces += [original, np.zeros(4000), reconstruction, np.zeros(12000)]
    expected = np.round(np.clip(np.concatenate(pieces), -1, 1) * 32767)
    written, rate = read_wav(speaker_run / "reconstructions.wav")
    assert rate == 16000
    np.testing.assert_allclose(written * 32768, expected, atol=1)

    # TensorBoard: the clips at 16 kHz; the reconstructions are the model's.
    acc = _accumulator(speaker_run / "logs" / "audio")
    assert sorted(acc.Tags()["tensors"]) == ["originals", "reconstructions"]
    (event,) = acc.Tensors("reconstructions")
    clips = event.tensor_proto.string_val[::2]
    assert len(clips) == 4
    for clip, reconstruction in zip(clips, recon[..., 0]):
        samples, clip_rate = _wav_samples(clip)
        assert clip_rate == 16000
        np.testing.assert_allclose(
            samples, np.clip(reconstruction, -1, 1), atol=1.5 / 32767
        )
    (event,) = acc.Tensors("originals")
    samples, _ = _wav_samples(event.tensor_proto.string_val[0])
    np.testing.assert_allclose(samples, waves[0, :, 0], atol=1.5 / 32767)
    # CodebookHealth judged the audio epoch as it does images.
    health = json.loads((speaker_run / "codebook_health.json").read_text())
    assert len(health["epochs"]) == 1


def _checkpoint_tensors(path):
    reader = tf.train.load_checkpoint(path)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if not name.startswith("save_counter")
        and name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def test_audio_resume_is_bit_identical(corpus, tmp_path):
    flags = ["--steps-per-epoch", "3", "--on-collapse", "none"]
    flags += ["--data-init", "kmeans++", "--dead-code-restart-steps", "2"]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert _train(reference, corpus, "--epochs", "2", *flags) == 0
    assert _train(resumed, corpus, "--epochs", "1", *flags) == 0
    assert _train(resumed, corpus, "--epochs", "2", *flags) == 0
    expected = _checkpoint_tensors(str(reference / "checkpoints" / "ckpt-6"))
    actual = _checkpoint_tensors(str(resumed / "checkpoints" / "ckpt-6"))
    assert sorted(actual) == sorted(expected)
    assert any("quantizer/embeddings" in name for name in expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_audio_batches_do_not_depend_on_the_start_step(corpus):
    from tf_vqvae.training.runs import AudioSegments, training_batches

    data = AudioSegments(artifacts.load_audio_split(corpus), SEGMENT)
    assert data.num_examples == (3 * 2000 + 3 * 300) * 2 // SEGMENT
    whole = list(training_batches(data, 4, seed=3, end_step=5))
    assert len(whole) == 5
    tail = list(training_batches(data, 4, seed=3, start_step=2, end_step=5))
    for a, b in zip(whole[2:], tail):
        np.testing.assert_array_equal(a["audio"], b["audio"])
        np.testing.assert_array_equal(a["speaker"], b["speaker"])


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--likelihood", "mse"],
            "vqvae train: error: `likelihood` 'mse' is for images, and "
            "'{dataset}' holds audio; use 'mu_law' or 'mu_law_logistic' (the "
            "audio defaults: "
            "`audio_train_config()`, or `vqvae train --dataset speech` "
            "without --config). Received: likelihood='mse'",
        ),
        (
            ["--segment-length", "1000"],
            "vqvae train: error: `segment_length` must be a multiple of "
            "2**num_downsamples=64. Received: segment_length=1000",
        ),
        (
            ["--spectral-loss-weight", "-1"],
            "vqvae train: error: `spectral_loss_weight` must be a "
            "non-negative number. Received: spectral_loss_weight=-1.0",
        ),
    ],
    ids=["image-likelihood", "segment-length", "spectral-loss-weight"],
)
def test_train_audio_usage_errors(corpus, tmp_path, capsys, flags, message):
    assert _train(tmp_path / "run", corpus, *flags) == 2
    assert _error(capsys) == message.format(dataset=corpus)
    assert not (tmp_path / "run").exists()


def test_audio_option_on_images(tmp_path, capsys):
    argv = ["train", "--model-dir", str(tmp_path / "run"), "--dataset"]
    assert cli.main([*argv, "photos", "--speaker-conditioning"]) == 2
    assert _error(capsys) == (
        "vqvae train: error: `speaker_conditioning` is an option of audio "
        "datasets, and 'photos' holds images; leave it out. "
        "Received: speaker_conditioning=True"
    )
    assert cli.main([*argv, "photos", "--spectral-loss-weight", "2"]) == 2
    assert _error(capsys) == (
        "vqvae train: error: `spectral_loss_weight` is an option of audio "
        "datasets, and 'photos' holds images; leave it out. "
        "Received: spectral_loss_weight=2.0"
    )
    assert not (tmp_path / "run").exists()


def test_spectral_loss_weight_reaches_the_model():
    from tf_vqvae import VQVAE

    config = audio_train_config(spectral_loss_weight=2.5)
    assert config.modality_errors("audio") is None
    assert VQVAE(**config.model_kwargs("audio")).spectral_loss_weight == 2.5
    assert audio_train_config(
        spectral_loss_weight=1.0, decoder="wavenet"
    ).modality_errors("audio") == (
        "`spectral_loss_weight` is for the parallel decoder (the WaveNet "
        "decoder's output is teacher forced). Received: "
        "spectral_loss_weight=1.0, decoder='wavenet'"
    )
    # Off by default, and image configs pass None (their models unchanged).
    assert (
        audio_train_config().model_kwargs("audio")["spectral_loss_weight"]
        is None
    )
    assert TrainConfig().model_kwargs()["spectral_loss_weight"] is None


def test_bad_audio_file(corpus, tmp_path, capsys):
    root = tmp_path / "bad"
    (root / "train" / "carol").mkdir(parents=True)
    (root / "train" / "carol" / "x.wav").write_bytes(b"")
    assert _train(tmp_path / "run", f"audio-folder:{root}") == 2
    error = _error(capsys)
    assert error.startswith("vqvae train: error: ")
    assert str(root / "train" / "carol" / "x.wav") in error
    assert not (tmp_path / "run").exists()


def test_reconstruct_any_wav(speaker_run, tmp_path, capsys):
    # 22.05 kHz stereo, 16-bit: down-mixed and resampled to 16 kHz.
    left, right = _tone(2205, 300, 1), _tone(2205, 500, 2)
    stereo = np.round(np.stack([left, right], 1) * 32767).astype("<i2")
    source = tmp_path / "in.wav"
    with wave.open(str(source), "wb") as file:
        file.setnchannels(2)
        file.setsampwidth(2)
        file.setframerate(22050)
        file.writeframes(stereo.tobytes())
    output = tmp_path / "out.wav"
    argv = ["reconstruct", "--model-dir", str(speaker_run)]
    assert cli.main([*argv, str(source), str(output), "--speaker", "bob"]) == 0
    assert "(SNR " in capsys.readouterr().out
    mono, rate = read_wav(source)
    np.testing.assert_allclose(mono, stereo.mean(1) / 32768, atol=1e-7)
    mono = resample(mono, rate)
    assert len(mono) == 1600
    model, _ = artifacts.load_vqvae(str(speaker_run))
    padded = np.pad(np.clip(mono, -1, 1), (0, 64 - 1600 % 64))
    codes = model.encode(padded[None, :, None].astype(np.float32))
    decoded = model.decode(codes, speaker=np.array([1], np.int32)).numpy()
    expected = np.round(np.clip(decoded[0, :1600, 0], -1, 1) * 32767)
    written, rate = read_wav(output)
    assert rate == 16000 and len(written) == 1600
    # PCM16 rounding, and float32 noise of a separate call to the model.
    np.testing.assert_allclose(written * 32768, expected, atol=3)
    # The same speaker by id.
    again = tmp_path / "again.wav"
    assert cli.main([*argv, str(source), str(again), "--speaker", "1"]) == 0
    assert again.read_bytes() == output.read_bytes()


def test_reconstruct_errors(speaker_run, tmp_path, capsys):
    source = tmp_path / "in.wav"
    write_wav(source, _tone(1000, 200, 0))
    argv = ["reconstruct", "--model-dir", str(speaker_run)]
    out = str(tmp_path / "out.wav")
    assert cli.main([*argv, str(source), out, "--speaker", "carol"]) == 2
    assert _error(capsys) == (
        "vqvae reconstruct: error: `speaker` must be a speaker name of "
        f"{str(speaker_run)!r} (alice, bob) or an id in [0, 2). "
        "Received: speaker='carol'"
    )
    assert cli.main([*argv, str(source), out]) == 2
    assert _error(capsys).startswith(
        "vqvae reconstruct: error: `speaker` is needed:"
    )
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    assert cli.main([*argv, str(bad), out, "--speaker", "0"]) == 2
    assert _error(capsys).startswith(
        f"vqvae reconstruct: error: `input` must be a readable WAV file: "
        f"{bad}: "
    )
    assert not os.path.exists(out)

    # An image run.
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "config.json").write_text(TrainConfig().to_json())
    image_model = commands.VQVAE(
        num_embeddings=8,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_hiddens=4,
        num_residual_blocks=1,
    )
    image_model(np.zeros((1, 8, 8, 3), np.float32))
    image_model.save(image_dir / "model.keras")
    argv = ["reconstruct", "--model-dir", str(image_dir), str(source), out]
    assert cli.main(argv) == 2
    assert _error(capsys) == (
        f"vqvae reconstruct: error: `model_dir` {str(image_dir)!r} holds an "
        "image model; `vqvae reconstruct` takes a run trained on audio "
        f"(e.g. --dataset speech). Received: model_dir={str(image_dir)!r}"
    )


def test_convert_any_length(speaker_run, tmp_path, capsys):
    """`vqvae convert` is `VQVAE.convert_voice`: alice's tone (1000
    samples, not a multiple of 64) said by bob; as its own speaker it is
    the reconstruction."""
    source = tmp_path / "in.wav"
    write_wav(source, _tone(1000, 220, 0))
    argv = ["convert", "--model-dir", str(speaker_run), str(source)]
    bob, alice = tmp_path / "bob.wav", tmp_path / "alice.wav"
    assert cli.main([*argv, str(bob), "--speaker", "bob"]) == 0
    assert capsys.readouterr().out == (
        f"vqvae: 0.06 s (16 codes) converted to speaker bob in {bob}\n"
    )
    assert cli.main([*argv, str(alice), "--speaker", "0"]) == 0
    model, _ = artifacts.load_vqvae(str(speaker_run))
    mono, _ = read_wav(source)
    # The numpy reference of padding and cropping: 1000 -> 1024 samples.
    padded = np.pad(mono, (0, 24))[None, :, None]
    codes = model.encode(padded)
    converted = {}
    for path, speaker in ((bob, 1), (alice, 0)):
        expected = model.decode(codes, speaker=np.array([speaker], "int32"))
        expected = np.clip(np.asarray(expected)[0, :1000, 0], -1, 1)
        written, rate = read_wav(path)
        assert rate == 16000 and written.shape == (1000,)
        np.testing.assert_allclose(written, expected, atol=3 / 32768)
        converted[speaker] = np.asarray(model.convert_voice(mono, speaker))
        np.testing.assert_allclose(converted[speaker], expected, atol=1e-6)
    # The speaker embedding reaches the output (a barely trained model's
    # outputs are all near 0, hence the small margin).
    assert np.max(np.abs(converted[1] - converted[0])) > 1e-5
    # As its own speaker: `vqvae reconstruct`'s output, byte for byte.
    again = tmp_path / "again.wav"
    reconstruct = ["reconstruct", "--model-dir", str(speaker_run), str(source)]
    assert cli.main([*reconstruct, str(again), "--speaker", "0"]) == 0
    assert again.read_bytes() == alice.read_bytes()


def test_held_out_speakers_are_refused(corpus, tmp_path, capsys):
    """A speaker of the test split only (a held-out voice) has an id, but
    its embedding never trains: convert and reconstruct refuse it."""
    root = tmp_path / "corpus"
    for split in ("train", "test"):
        for name in SPEAKERS:
            folder = root / split / name
            folder.mkdir(parents=True)
            write_wav(folder / "u0.wav", _tone(2000, 200, len(name)))
    (root / "test" / "carol").mkdir()
    write_wav(root / "test" / "carol" / "u0.wav", _tone(2000, 300, 7))
    model_dir = tmp_path / "run"
    flags = ["--epochs", "1", "--steps-per-epoch", "1"]
    dataset = f"audio-folder:{root}"
    assert _train(model_dir, dataset, "--speaker-conditioning", *flags) == 0
    assert json.loads((model_dir / "speakers.json").read_text()) == {
        "dataset": dataset,
        "speaker_names": ["alice", "bob", "carol"],
        "trained_speakers": ["alice", "bob"],
    }
    assert artifacts.trained_speaker_ids(str(model_dir)) == (0, 1)
    # A prior's TensorBoard samples are of the trained speakers only.
    vqvae, _ = artifacts.load_vqvae(str(model_dir))
    for names in (None, ("alice", "bob", "carol")):
        np.testing.assert_array_equal(
            commands._sample_speakers(str(model_dir), vqvae, names), [0, 1]
        )
    capsys.readouterr()
    source = tmp_path / "in.wav"
    write_wav(source, _tone(1000, 200, 0))
    out = tmp_path / "out.wav"
    for command in ("convert", "reconstruct"):
        argv = [command, "--model-dir", str(model_dir), str(source), str(out)]
        for speaker in ("carol", "2"):
            assert cli.main([*argv, "--speaker", speaker]) == 2
            assert _error(capsys) == (
                f"vqvae {command}: error: `speaker` 'carol' is not among the "
                f"speakers of {str(model_dir)!r}'s training split, so its "
                "embedding never trained (a dataset's speaker table also "
                "holds its held-out voices); pass one of the 2 trained "
                f"speakers (alice, bob). Received: speaker={speaker!r}"
            )
        assert not out.exists()
        assert cli.main([*argv, "--speaker", "bob"]) == 0
        out.unlink()


def test_inspect_refuses_an_audio_model(speaker_run, capsys):
    run = str(speaker_run)
    assert cli.main(["inspect", "--model-dir", run]) == 2
    assert _error(capsys) == (
        "vqvae inspect: error: `vqvae inspect` draws the image patches of "
        f"each code, and {run!r} holds an audio model (`vqvae evaluate` "
        f"reports its code usage). Received: model_dir={run!r}"
    )
    assert (
        cli.main(["evaluate", "--model-dir", run, "--dataset", "photos"]) == 2
    )
    assert _error(capsys) == (
        f"vqvae evaluate: error: `dataset` 'photos' holds images, and {run!r} "
        "holds an audio model; evaluate it on audio data (default: its "
        "training dataset). Received: dataset='photos'"
    )


def test_convert_errors(speaker_run, tmp_path, capsys):
    source = tmp_path / "in.wav"
    write_wav(source, _tone(1000, 200, 0))
    out = str(tmp_path / "out.wav")
    argv = ["convert", "--model-dir", str(speaker_run), str(source), out]
    for speaker in ("carol", "2", "-1"):
        assert cli.main([*argv, "--speaker", speaker]) == 2
        assert _error(capsys) == (
            "vqvae convert: error: `speaker` must be a speaker name of "
            f"{str(speaker_run)!r} (alice, bob) or an id in [0, 2). "
            f"Received: speaker={speaker!r}"
        )
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    bad_argv = ["convert", "--model-dir", str(speaker_run), str(bad), out]
    assert cli.main([*bad_argv, "--speaker", "0"]) == 2
    assert _error(capsys).startswith(
        f"vqvae convert: error: `input` must be a readable WAV file: {bad}: "
    )
    assert not os.path.exists(out)

    # A run without speakers, and an image run.
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    config = audio_train_config(dataset="speech", segment_length=SEGMENT)
    (plain_dir / "config.json").write_text(config.to_json())
    plain = commands.VQVAE(
        modality="audio",
        spatial_dims=1,
        num_downsamples=6,
        num_embeddings=8,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_hiddens=4,
        num_residual_blocks=1,
    )
    plain(np.zeros((1, SEGMENT, 1), np.float32))
    plain.save(plain_dir / "model.keras")
    argv = ["convert", "--model-dir", str(plain_dir), str(source), out]
    assert cli.main([*argv, "--speaker", "0"]) == 2
    assert _error(capsys) == (
        "vqvae convert: error: `vqvae convert` needs a speaker-conditioned "
        f"model, and {str(plain_dir)!r}'s decoder has no speakers (train "
        "with --speaker-conditioning; `vqvae reconstruct` decodes without "
        f"one). Received: model_dir={str(plain_dir)!r}"
    )
    with pytest.raises(ValueError) as info:
        plain.convert_voice(np.zeros(100, np.float32), 0)
    assert str(info.value) == (
        "`convert_voice` needs a speaker-conditioned model, and "
        f"`{plain.name}` has no speaker embedding (num_speakers=None; train "
        "with num_speakers / --speaker-conditioning)."
    )

    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "config.json").write_text(TrainConfig().to_json())
    image_model = commands.VQVAE(
        num_embeddings=8,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_hiddens=4,
        num_residual_blocks=1,
    )
    image_model(np.zeros((1, 8, 8, 3), np.float32))
    image_model.save(image_dir / "model.keras")
    argv = ["convert", "--model-dir", str(image_dir), str(source), out]
    assert cli.main([*argv, "--speaker", "0"]) == 2
    assert _error(capsys) == (
        f"vqvae convert: error: `model_dir` {str(image_dir)!r} holds an "
        "image model; `vqvae convert` takes a run trained on audio "
        f"(e.g. --dataset speech). Received: model_dir={str(image_dir)!r}"
    )
    with pytest.raises(ValueError) as info:
        image_model.convert_voice(np.zeros(100, np.float32), 0)
    assert str(info.value) == (
        f"`convert_voice` takes an audio model; `{image_model.name}` has "
        "modality='image'."
    )
    assert not os.path.exists(out)


def _export(model_dir, out, tflite):
    return commands.export(
        str(model_dir),
        out_dir=str(out),
        tflite=tflite,
        quantization=("float32", "int8"),
    )


def test_audio_calibration_data(speaker_run, corpus):
    saved = np.load(speaker_run / "calibration.npy")
    found = artifacts.calibration_images(str(speaker_run), None, (SEGMENT, 1))
    np.testing.assert_array_equal(found, saved)
    # A dataset string: segments of its training split.
    waves, _ = artifacts.audio_segments(
        artifacts.load_audio_split(corpus), SEGMENT, 256
    )
    found = artifacts.calibration_images(str(speaker_run), corpus, (SEGMENT, 1))
    np.testing.assert_array_equal(found, waves)
    with pytest.raises(commands.UsageError) as raised:
        artifacts.calibration_images(str(speaker_run), None, (1024, 1))
    assert str(raised.value) == (
        "`calibration_data` must hold waveforms of the model's shape "
        f"(n, 1024, 1). Received: calibration_data="
        f"{str(speaker_run / 'calibration.npy')!r} of shape {saved.shape}"
    )


def test_export_audio_run(speaker_run, tmp_path):
    exported = _export(speaker_run, tmp_path / "export", tflite=False)
    model, _ = artifacts.load_vqvae(str(speaker_run))
    waves = np.load(speaker_run / "calibration.npy")[:3]
    speaker = np.array([0, 1, 1], np.int32)
    codes = model.encode(waves).numpy()
    decoded = model.decode(codes, speaker=speaker).numpy()[..., 0]

    loaded = tf.saved_model.load(exported["saved_model"])
    encoded = loaded.signatures["encode"](waveforms=tf.constant(waves[..., 0]))
    np.testing.assert_array_equal(encoded["codes"].numpy(), codes)
    served = loaded.signatures["decode"](
        codes=tf.constant(codes), speaker=tf.constant(speaker)
    )
    np.testing.assert_allclose(served["waveforms"].numpy(), decoded, atol=1e-5)


@pytest.mark.slow
def test_export_audio_run_tflite(speaker_run, tmp_path):
    """int8 calibrated on the run's calibration.npy waveforms."""
    from ai_edge_litert.interpreter import Interpreter

    exported = _export(speaker_run, tmp_path / "export", tflite=True)
    model, _ = artifacts.load_vqvae(str(speaker_run))
    waves = np.load(speaker_run / "calibration.npy")[:1]
    speaker = np.array([1], np.int32)
    codes = model.encode(waves).numpy()
    decoded = model.decode(codes, speaker=speaker).numpy()[..., 0]
    files = sorted(os.listdir(exported["tflite"]))
    assert "decoder_int8.tflite" in files and "encoder_float32.tflite" in files
    interpreter = Interpreter(
        os.path.join(exported["tflite"], "decoder_float32.tflite")
    )
    runner = interpreter.get_signature_runner()
    result = runner(codes=codes, speaker=speaker)
    np.testing.assert_allclose(result["waveforms"], decoded, atol=1e-5)
    encoder = Interpreter(
        os.path.join(exported["tflite"], "encoder_float32.tflite")
    ).get_signature_runner()
    np.testing.assert_array_equal(
        encoder(waveforms=waves[..., 0])["codes"], codes
    )


def test_audio_train_config_defaults():
    config = audio_train_config()
    assert config.modality_errors("audio") is None
    assert "num_speakers" not in config.model_kwargs("audio", 8)
    conditioned = audio_train_config(speaker_conditioning=True)
    kwargs = conditioned.model_kwargs("audio", 8)
    assert kwargs["num_speakers"] == 8
    assert kwargs["modality"] == "audio" and kwargs["spatial_dims"] == 1
    assert (config.num_downsamples, config.num_embeddings) == (6, 512)
    # Image defaults are untouched.
    assert TrainConfig().model_kwargs() == TrainConfig()._arguments()
    assert TrainConfig().likelihood == "mse"
    assert TrainConfig().segment_length is None


def test_reconstruction_audio_callback(tmp_path):
    from tf_vqvae import VQVAE
    from tf_vqvae.training.callbacks import ReconstructionAudio

    model = VQVAE(
        modality="audio",
        spatial_dims=1,
        num_downsamples=6,
        num_embeddings=8,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_blocks=1,
        num_residual_hiddens=4,
    )
    waves = np.stack([_tone(256, 300, 0), _tone(256, 500, 1)])[..., None]
    model(waves)
    callback = ReconstructionAudio(str(tmp_path), waves, model=model)
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    callback.on_train_end()
    acc = _accumulator(tmp_path / "audio")
    assert [e.step for e in acc.Tensors("originals")] == [0]
    events = acc.Tensors("reconstructions")
    assert [e.step for e in events] == [0, 1]
    expected = np.clip(model.decode(model.encode(waves)).numpy(), -1, 1)
    clips = events[-1].tensor_proto.string_val[::2]
    for clip, reconstruction in zip(clips, expected[..., 0]):
        samples, rate = _wav_samples(clip)
        assert rate == 16000
        np.testing.assert_allclose(samples, reconstruction, atol=1.5 / 32767)
    with pytest.raises(ValueError) as raised:
        ReconstructionAudio(str(tmp_path), np.zeros((2, 256), np.float32))
    assert str(raised.value) == (
        "`waveforms` must be a non-empty float batch of shape (batch, "
        "samples, 1). Received: waveforms.shape=(2, 256), dtype=float32"
    )


def test_demo_presets():
    from tf_vqvae.training.config import PRESETS

    for name in ("speech-demo", "speech"):
        train = PRESETS[name].train
        assert train.modality_errors("audio") is None
        # The presets' recipe: log-mel frames in, 32 samples per code,
        # K=2048, STFT loss on, k-means++ codebook seeding.
        assert train.num_downsamples == 5 and train.spectral_loss_weight
        assert train.encoder_input == "log_mel"
        assert train.num_embeddings == 2048
        assert train.data_init == "kmeans++"
        assert train.segment_length % 2**train.num_downsamples == 0
    assert PRESETS["demo"].train.modality_errors("image") is None
    # The WaveNet preset: the same encoder and codes, the paper's decoder
    # and its categorical, no STFT loss (the config refuses one with it).
    wavenet, speech = PRESETS["speech-wavenet"].train, PRESETS["speech"].train
    assert wavenet.modality_errors("audio") is None
    assert (wavenet.decoder, wavenet.likelihood) == ("wavenet", "mu_law")
    assert not wavenet.spectral_loss_weight
    for field in ("encoder_input", "num_embeddings", "num_downsamples"):
        assert getattr(wavenet, field) == getattr(speech, field)
    assert wavenet.segment_length % 2**wavenet.num_downsamples == 0
    with pytest.raises(commands.UsageError) as raised:
        commands.demo(dataset="cifar")
    assert str(raised.value) == (
        "`dataset` of the demo must be one of ['photos', 'speech']. "
        "Received: dataset='cifar'"
    )


def test_damaged_audio_model_is_rebuilt(speaker_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(speaker_run, copy, ignore=shutil.ignore_patterns("LOCK"))
    model_file = copy / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    rebuilt, _ = artifacts.load_vqvae(str(copy), fallback=True)
    assert "is damaged" in capsys.readouterr().err
    original, _ = artifacts.load_vqvae(str(speaker_run))
    assert (rebuilt.modality, rebuilt.num_speakers) == ("audio", 2)
    waves = np.load(speaker_run / "calibration.npy")[:2]
    speaker = np.array([1, 0], np.int32)
    codes = original.encode(waves).numpy()
    np.testing.assert_array_equal(rebuilt.encode(waves).numpy(), codes)
    np.testing.assert_array_equal(
        rebuilt.decode(codes, speaker=speaker).numpy(),
        original.decode(codes, speaker=speaker).numpy(),
    )


@pytest.mark.slow
def test_audio_mirrored_matches_one_device(corpus, tmp_path):
    # 2 replicas train on the one-device batches (an audio pipeline that
    # reshuffled on each iteration gave `fit` under MirroredStrategy other
    # batches: weights apart by about lr per step), with the EMA codebook's
    # k-means++ init and restarts, and speaker embeddings.
    import dataclasses

    from conftest import REPLICA_DEVICES

    config = audio_train_config(
        dataset=corpus,
        segment_length=SEGMENT,
        global_batch_size=4,
        num_embeddings=16,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_hiddens=4,
        num_residual_blocks=1,
        speaker_conditioning=True,
        epochs=1,
        steps_per_epoch=3,
        learning_rate=1e-4,
        on_collapse="none",
        data_init="kmeans++",
        dead_code_restart_steps=2,
    )
    single = commands.train(config, str(tmp_path / "single"), verbose=0)
    mirrored = commands.train(
        dataclasses.replace(
            config, strategy="mirrored", devices=tuple(REPLICA_DEVICES)
        ),
        str(tmp_path / "mirrored"),
        verbose=0,
    )
    assert mirrored.step == single.step == 3
    # Paths without the model's name (`vqvae`, `vqvae_1`).
    expected = {
        v.path.split("/", 1)[-1]: np.asarray(v) for v in single.model.variables
    }
    actual = {
        v.path.split("/", 1)[-1]: np.asarray(v)
        for v in mirrored.model.variables
    }
    assert sorted(actual) == sorted(expected)
    for path, value in expected.items():
        np.testing.assert_allclose(
            actual[path], value, rtol=0, atol=1e-5, err_msg=path
        )


def test_logistic_likelihood_options(corpus, tmp_path, capsys):
    from tf_vqvae import VQVAE

    config = audio_train_config(
        likelihood="mu_law_logistic", num_mixtures=3, encoder_input="linear"
    )
    assert config.modality_errors("audio") is None
    model = VQVAE(**config.model_kwargs("audio"))
    assert (model.likelihood, model.num_mixtures) == ("mu_law_logistic", 3)
    assert model.encoder_input == "linear"
    assert _train(tmp_path / "run", corpus, "--num-mixtures", "2") == 2
    assert _error(capsys) == (
        "vqvae train: error: `num_mixtures` is an option of --likelihood "
        "mu_law_logistic. Received: num_mixtures=2 with likelihood='mu_law'"
    )
    assert not (tmp_path / "run").exists()


def test_encoder_input_flag(corpus, tmp_path, capsys):
    """`--encoder-input` takes the library's choices (`log_mel` too) and
    argparse refuses others (exit 2), before anything is written."""
    from tf_vqvae.training.config import ConfigError

    config = audio_train_config(encoder_input="log_mel")
    assert config.model_kwargs("audio")["encoder_input"] == "log_mel"
    with pytest.raises(ConfigError, match="`encoder_input` must be one of"):
        audio_train_config(encoder_input="mel")
    with pytest.raises(SystemExit) as raised:
        _train(tmp_path / "run", corpus, "--encoder-input", "mel")
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "vqvae train: error: argument --encoder-input: invalid choice: 'mel' "
        "(choose from 'mu_law', 'linear', 'log_mel') (see vqvae train "
        "--help)\n"
    )
    assert not (tmp_path / "run").exists()


# ---------------------------------------------- --decoder wavenet (issue 16)
WAVENET = [
    "--decoder",
    "wavenet",
    "--decoder-num-layers",
    "2",
    "--decoder-residual-channels",
    "4",
    "--decoder-skip-channels",
    "4",
    "--decoder-condition-channels",
    "4",
    "--decoder-dilation-cycle",
    "2",
]
WAVENET_OPTIONS = dict(
    residual_channels=4,
    skip_channels=4,
    condition_channels=4,
    num_layers=2,
    dilation_cycle=2,
    kernel_size=2,
)
WAVENET_PRIOR = [
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--global-batch-size",
    "4",
    "--num-layers",
    "2",
    "--residual-channels",
    "4",
    "--skip-channels",
    "4",
    "--dilation-cycle",
    "2",
]


@pytest.fixture(scope="module")
def wavenet_run(corpus, tmp_path_factory):
    """2 steps of a tiny WaveNet-decoder audio VQ-VAE, and its prior (about
    25 s: generating the TensorBoard clips compiles the sampler; its tests
    are slow)."""
    keras.backend.clear_session()
    model_dir = tmp_path_factory.mktemp("wavenet") / "run"
    flags = ["--epochs", "1", "--steps-per-epoch", "2", *WAVENET]
    assert _train(model_dir, corpus, *flags) == 0
    argv = ["train-prior", "--model-dir", str(model_dir), *WAVENET_PRIOR]
    assert cli.main(argv) == 0
    return model_dir


@pytest.mark.slow
def test_train_wavenet_decoder_run(wavenet_run, corpus, tmp_path, capsys):
    config = json.loads((wavenet_run / "config.json").read_text())
    assert config["decoder"] == "wavenet"
    assert config["decoder_options"] == WAVENET_OPTIONS
    model, _ = artifacts.load_vqvae(str(wavenet_run))
    assert model.generative_decoder
    assert model.decoder_options == WAVENET_OPTIONS
    assert len(model.decoder.blocks) == 2
    # A parallel run's config keeps decoder="parallel" and no options.
    parallel = audio_train_config()
    assert (parallel.decoder, parallel.decoder_options) == ("parallel", {})
    # The saved decoder is part of the run: another one is refused.
    argv = ["train", "--model-dir", str(wavenet_run), "--decoder", "parallel"]
    assert cli.main(argv) == 2
    assert "decoder" in _error(capsys)
    argv = ["train", "--model-dir", str(wavenet_run)]
    assert cli.main([*argv, "--decoder-num-layers", "3"]) == 2
    assert "decoder_options" in _error(capsys)
    # export refuses a generative decoder with the library's one line.
    out = tmp_path / "export"
    argv = ["export", "--model-dir", str(wavenet_run), "--out", str(out)]
    assert cli.main(argv) == 2
    assert _error(capsys) == (
        "vqvae export: error: This export supports one-pass decoders; this "
        "model's decoder generates sample by sample (decoder='wavenet'), "
        "which export does not trace yet. "
        "Received: model.generative_decoder=True"
    )
    assert not out.exists()


@pytest.mark.slow
def test_wavenet_decoder_resumes_exactly(corpus, tmp_path):
    flags = ["--steps-per-epoch", "2", "--on-collapse", "none", *WAVENET]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert _train(reference, corpus, "--epochs", "2", *flags) == 0
    assert _train(resumed, corpus, "--epochs", "1", *flags) == 0
    # Resumed without the decoder flags: config.json has them.
    assert _train(resumed, corpus, "--epochs", "2") == 0
    expected = _checkpoint_tensors(str(reference / "checkpoints" / "ckpt-4"))
    actual = _checkpoint_tensors(str(resumed / "checkpoints" / "ckpt-4"))
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)
    models = [artifacts.load_vqvae(str(run))[0] for run in (reference, resumed)]
    assert models[1].decoder_options == WAVENET_OPTIONS
    assert len(models[0].decoder.blocks) == 2
    for a, b in zip(models[0].weights, models[1].weights, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=a.path)


@pytest.mark.slow
def test_wavenet_decoder_evaluate_is_teacher_forced(wavenet_run, corpus):
    from tf_vqvae import evaluation

    metrics = commands.evaluate(str(wavenet_run))
    model, _ = artifacts.load_vqvae(str(wavenet_run))
    utterances = artifacts.load_audio_split(corpus, "test")
    batches = list(
        commands.audio_pipeline(
            utterances, SEGMENT, 256, seed=0, training=False
        ).as_numpy_iterator()
    )
    # Exact bits of the teacher-forced logits, recomputed in numpy.
    nats, count = 0.0, 0
    for batch in batches:
        x = batch["audio"]
        logits = model.decoder_outputs(model.encode(x), waveforms=x).numpy()
        y = np.sign(x[..., 0]) * np.log1p(255 * np.abs(x[..., 0]))
        classes = np.clip(np.floor((y / np.log1p(255) + 1) * 128), 0, 255)
        z = logits.astype(np.float64)
        z -= z.max(-1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
        picked = np.take_along_axis(
            log_probs, classes.astype(int)[..., None], -1
        )
        nats -= picked.sum()
        count += classes.size
    assert metrics["reconstruction_bits_per_sample"] == pytest.approx(
        nats / count / np.log(2), rel=1e-5
    )
    assert metrics["reconstruction_bits_per_sample"] == pytest.approx(
        evaluation.reconstruction_bits_per_sample(
            model, np.concatenate([b["audio"] for b in batches])
        ),
        rel=1e-5,
    )
    # The generated waveforms' MSE/SNR: the same on every run.
    again = commands.evaluate(str(wavenet_run))
    for name in ("mse", "snr_db"):
        assert again[name] == metrics[name]


@pytest.mark.slow
def test_wavenet_decoder_sample_and_reconstruct_follow_the_seed(
    wavenet_run, tmp_path, capsys
):
    def sample(name, seed):
        output = tmp_path / name / "s.wav"
        output.parent.mkdir()
        argv = ["sample", "--model-dir", str(wavenet_run), "--n", "2"]
        argv += ["--seed", str(seed), "--output", str(output)]
        assert cli.main(argv) == 0
        return [
            (tmp_path / name / f"s-{i:03d}.wav").read_bytes() for i in range(2)
        ]

    first, again, other = sample("a", 5), sample("b", 5), sample("c", 6)
    assert first == again
    assert first[0] != first[1]
    assert all(a != b for a, b in zip(first, other))

    source = tmp_path / "in.wav"
    write_wav(source, _tone(700, 200, 0))

    def reconstruct(name, seed):
        output = tmp_path / name
        argv = ["reconstruct", "--model-dir", str(wavenet_run)]
        argv += [str(source), str(output), "--seed", str(seed)]
        assert cli.main(argv) == 0
        return output.read_bytes()

    first = reconstruct("r1.wav", 3)
    assert first == reconstruct("r2.wav", 3)
    assert first != reconstruct("r3.wav", 4)
    written, rate = read_wav(tmp_path / "r1.wav")
    assert rate == 16000 and len(written) == 700
    # The library call the command makes, from example seed 0 of 3.
    model, _ = artifacts.load_vqvae(str(wavenet_run))
    mono, _ = read_wav(source)
    padded = np.pad(mono, (0, -700 % 64))[None, :, None].astype(np.float32)
    decoded = model.decode(
        model.encode(padded), seed=sampling.example_seeds(3, 0, 1)
    ).numpy()[0, :700, 0]
    np.testing.assert_allclose(
        written * 32768, np.round(np.clip(decoded, -1, 1) * 32767), atol=1
    )


@pytest.mark.parametrize(
    "dataset, flags, message",
    [
        (
            "photos",
            ["--decoder", "wavenet"],
            "vqvae train: error: `decoder` is an option of audio datasets, "
            "and 'photos' holds images; leave it out. "
            "Received: decoder='wavenet'",
        ),
        (
            None,
            ["--decoder", "wavenet", "--decoder-num-layers", "0"],
            "vqvae train: error: `decoder_options['num_layers']` must be an "
            "integer >= 1. "
            "Received: num_layers=0 (of type int).",
        ),
        (
            None,
            ["--decoder", "wavenet", "--decoder-kernel-size", "1"],
            "vqvae train: error: `decoder_options['kernel_size']` must be an "
            "integer >= 2. "
            "Received: kernel_size=1 (of type int).",
        ),
        (
            None,
            ["--decoder-num-layers", "3"],
            "vqvae train: error: --decoder-num-layers is an option of "
            "--decoder wavenet, not of 'parallel'. Received: num_layers=3",
        ),
        (
            None,
            ["--decoder", "wavenet", "--likelihood", "mu_law_logistic"],
            "vqvae train: error: `decoder` 'wavenet' models the 8-bit mu-law "
            "classes: use --likelihood mu_law. Received: decoder='wavenet', "
            "likelihood='mu_law_logistic'",
        ),
    ],
    ids=["images", "layers", "kernel", "without-wavenet", "likelihood"],
)
def test_wavenet_decoder_usage_errors(
    corpus, tmp_path, capsys, dataset, flags, message
):
    assert _train(tmp_path / "run", dataset or corpus, *flags) == 2
    assert _error(capsys) == message
    assert not (tmp_path / "run").exists()
