"""The prior side of the `vqvae` commands on audio runs: train-prior
(a WaveNet over 1D codes, speaker-conditional), sample (WAV files),
evaluate (bits per sample, SNR, phoneme discovery)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.test_audio_model import TINY_AUDIO
from tf_vqvae import (
    VQVAE,
    WaveNetPrior,
    audio,
    data,
    speech,
    speech_metrics,
)
from tf_vqvae.training import artifacts, cli, commands
from tf_vqvae.training.config import TrainConfig, save_config

TINY_CORPUS = speech.CorpusConfig(
    num_train_sentences=2,
    num_test_sentences=1,
    train_voices=("en-us+m3", "en-us+f2"),
    test_voices=("en+m1",),
    seed=1,
)
SEGMENT = 1024  # samples per training example: 16 codes
PRIOR_TINY = [
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--global-batch-size",
    "4",
    "--num-layers",
    "3",
    "--residual-channels",
    "8",
    "--skip-channels",
    "8",
    "--dilation-cycle",
    "2",
    "--checkpoint-steps",
    "2",
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """The tiny speech corpus, as an `audio-folder:` dataset."""
    root = str(tmp_path_factory.mktemp("corpus") / "speech")
    speech.build_corpus(root, TINY_CORPUS)
    return root


def _audio_run(model_dir, corpus_dir, num_speakers=None, steps=4, **kwargs):
    """A model dir as `vqvae train` leaves it for an audio dataset: a tiny
    audio VQ-VAE (`TINY_AUDIO` and `kwargs`) trained a few steps on
    1024-sample crops, `model.keras` and `config.json`."""
    dataset = f"audio-folder:{corpus_dir}"
    utterances = data.load_audio(dataset, "train")
    model = VQVAE(num_speakers=num_speakers, **{**TINY_AUDIO, **kwargs})
    batches = data.audio_pipeline(utterances, SEGMENT, 4, seed=0)
    if num_speakers is None:
        batches = batches.map(lambda batch: batch["audio"])
    model.compile(optimizer="adam")
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, "model.keras"))
    save_config(TrainConfig(dataset=dataset), str(model_dir))
    return model


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory, corpus_dir):
    model_dir = tmp_path_factory.mktemp("audio") / "run"
    _audio_run(model_dir, corpus_dir)
    return str(model_dir)


def test_train_prior_fits_a_wavenet_on_code_sequences(
    audio_run, corpus_dir, tmp_path, capsys
):
    argv = ["train-prior", "--model-dir", audio_run, *PRIOR_TINY]
    assert cli.main(argv) == 0
    assert "vqvae: trained the prior 2 steps" in capsys.readouterr().out
    prior = artifacts.load_prior(audio_run)
    assert isinstance(prior, WaveNetPrior)
    assert prior.grid_shape == (SEGMENT // 64,)
    assert prior.num_classes is None
    assert (prior.num_layers, prior.dilations) == (3, (1, 2, 1))
    assert (prior.residual_channels, prior.skip_channels) == (8, 8)
    # Its codes: every training utterance cut into 1024-sample segments
    # (the last one zero-padded), encoded.
    vqvae, _ = artifacts.load_vqvae(audio_run)
    utterances = data.load_audio(f"audio-folder:{corpus_dir}", "train")
    expected, speakers = [], []
    for waveform, speaker in zip(utterances.waveforms, utterances.speakers):
        padded = np.pad(waveform, (0, -len(waveform) % SEGMENT))
        segments = padded.reshape(-1, SEGMENT, 1)
        expected.append(vqvae.encode(segments).numpy())
        speakers += [speaker] * len(segments)
    expected = np.concatenate(expected)
    batches = data.audio_pipeline(
        utterances, SEGMENT, 5, seed=0, training=False
    )
    codes = commands.encode_images(vqvae, batches)
    assert (codes.image_shape, codes.num_examples) == ((16,), len(expected))
    got = list(codes.dataset.as_numpy_iterator())
    np.testing.assert_array_equal([g["codes"] for g in got], expected)
    np.testing.assert_array_equal([g["labels"] for g in got], speakers)
    codes = commands.encode_images(vqvae, batches, with_labels=False)
    np.testing.assert_array_equal(list(codes.dataset), expected)
    # TensorBoard: the prior's samples as audio clips at 16 kHz.
    clips = _summaries(
        os.path.join(audio_run, "prior", "logs", "prior_samples")
    )
    assert [tag for tag, _ in clips] == ["prior_samples"]
    ((_, tensor),) = clips
    assert tensor.shape == (16, 2)  # 16 encoded WAV clips and labels
    rate, waveform = _wav(tensor[0, 0], tmp_path / "clip.wav")
    assert rate == 16000 and waveform.shape == (SEGMENT,)


def _summaries(log_dir):
    """`(tag, tensor)` of every summary in the event files of `log_dir`."""
    found = []
    for name in sorted(os.listdir(log_dir)):
        path = os.path.join(log_dir, name)
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.append((value.tag, tf.make_ndarray(value.tensor)))
    return found


def _wav(content, path):
    """`(sample_rate, float32 samples)` of WAV bytes (written to `path`)."""
    path.write_bytes(content)
    samples, rate = audio.read_wav(path)
    return rate, samples


@pytest.fixture(scope="module")
def prior_run(audio_run):
    """`audio_run` with its WaveNet prior trained (resumed if done)."""
    assert cli.main(["train-prior", "--model-dir", audio_run, *PRIOR_TINY]) == 0
    return audio_run


def _expected_waveforms(model_dir, n, seed, labels=None, speakers=None):
    """The samples `sample` must write, drawn and decoded here in one
    batch, as PCM16 stores them."""
    vqvae, _ = artifacts.load_vqvae(model_dir)
    prior = artifacts.load_prior(model_dir)
    seed = tf.constant([seed, 0])
    if labels is None:
        codes = prior.distribution().sample(n, seed=seed)
    else:
        labels = np.asarray(labels, "int32")
        codes = prior.distribution(labels=labels).sample(seed=seed)
    waveforms = np.asarray(vqvae.decode(codes, speaker=speakers))[..., 0]
    return np.round(np.clip(waveforms, -1, 1) * 32767) / 32767


def _read(path):
    samples, rate = audio.read_wav(path)
    assert rate == 16000
    return samples


@pytest.mark.slow
def test_sample_writes_one_wav_per_sample(prior_run, tmp_path, capsys):
    argv = ["sample", "--model-dir", prior_run, "--seed", "5"]
    output = str(tmp_path / "a.wav")
    assert cli.main([*argv, "--n", "3", "--output", output]) == 0
    paths = [str(tmp_path / f"a-00{i}.wav") for i in range(3)]
    assert capsys.readouterr().out == (
        f"vqvae: 3 samples in {paths[0]} ... {paths[2]} (3 WAV files)\n"
    )
    expected = _expected_waveforms(prior_run, 3, seed=5)
    for path, waveform in zip(paths, expected):
        np.testing.assert_allclose(_read(path), waveform, atol=1.5 / 32767)
    # The same seed, the same files; one sample is the output itself.
    first = open(paths[0], "rb").read()
    assert cli.main([*argv, "--n", "3", "--output", output]) == 0
    assert open(paths[0], "rb").read() == first
    assert cli.main([*argv, "--n", "1", "--output", output]) == 0
    assert open(output, "rb").read() == first
    # Default output, in the model dir.
    assert cli.main(["sample", "--model-dir", prior_run, "--n", "1"]) == 0
    assert os.path.isfile(os.path.join(prior_run, "samples.wav"))
    capsys.readouterr()

    for flags, message in (
        (
            ["--output", str(tmp_path / "a.png")],
            "`output` must be a .wav path in an existing directory (the "
            f"model in {prior_run!r} is an audio model). Received: "
            f"output={str(tmp_path / 'a.png')!r}",
        ),
        (
            ["--label", "0"],
            f"`label` needs a speaker-conditional prior or a decoder with "
            f"speakers, and {prior_run}'s prior is unconditional and its "
            "decoder has none; train one with `vqvae train-prior "
            "--class-conditional` or leave out --label. Received: label='0'",
        ),
    ):
        assert cli.main([*argv, *flags]) == cli.EXIT_USAGE
        assert capsys.readouterr().err == f"vqvae sample: error: {message}\n"


@pytest.mark.slow
def test_speaker_conditional_prior_and_decoder(tmp_path, corpus_dir, capsys):
    """`--class-conditional` on audio conditions the WaveNet on speakers
    (named in classes.json); `sample` decodes each as its speaker."""
    model_dir = str(tmp_path / "run")
    _audio_run(model_dir, corpus_dir, num_speakers=3, steps=2)
    argv = ["train-prior", "--model-dir", model_dir, "--class-conditional"]
    assert cli.main([*argv, *PRIOR_TINY]) == 0
    prior = artifacts.load_prior(model_dir)
    assert prior.num_classes == 3
    dataset = f"audio-folder:{corpus_dir}"
    names = data.load_audio(dataset).speaker_names
    assert artifacts.class_names(model_dir) == names
    capsys.readouterr()

    output = str(tmp_path / "s.wav")
    argv = ["sample", "--model-dir", model_dir, "--output", output]

    def two_of_each(ids):
        """`sample --n 2` writes two samples of each speaker in `ids`."""
        assert cli.main([*argv, "--n", "2", "--seed", "1"]) == 0
        labels = np.repeat(ids, 2)
        paths = [
            str(tmp_path / f"s-00{i}-{names[label]}.wav")
            for i, label in enumerate(labels)
        ]
        assert capsys.readouterr().out == (
            f"vqvae: 2 samples of each of {len(ids)} speakers in {paths[0]} "
            f"... {paths[-1]} ({len(paths)} WAV files)\n"
        )
        expected = _expected_waveforms(
            model_dir, len(labels), 1, labels, labels
        )
        for path, waveform in zip(paths, expected):
            np.testing.assert_allclose(_read(path), waveform, atol=1.5 / 32767)
            os.remove(path)

    # Without speakers.json's trained speakers (a run of an older
    # version): every speaker in turn.
    two_of_each([0, 1, 2])
    # As `vqvae train` writes it: the held-out voice (en+m1, id 0) is
    # left out, and refused as a label.
    trained = TINY_CORPUS.train_voices
    artifacts.write_speaker_names(names, dataset, model_dir, trained)
    assert names[0] == "en+m1"
    assert artifacts.trained_speaker_ids(model_dir) == (1, 2)
    two_of_each([1, 2])
    assert cli.main([*argv, "--label", "en+m1"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "vqvae sample: error: `label` 'en+m1' is not among the speakers of "
        f"{model_dir!r}'s training split, so its embedding never trained (a "
        "dataset's speaker table also holds its held-out voices); pass one "
        "of the 2 trained speakers (en-us+f2, en-us+m3). Received: "
        "label='en+m1'\n"
    )

    assert cli.main([*argv, "--n", "2", "--label", names[1]]) == 0
    paths = [str(tmp_path / f"s-00{i}-{names[1]}.wav") for i in range(2)]
    expected = _expected_waveforms(model_dir, 2, 0, [1, 1], [1, 1])
    for path, waveform in zip(paths, expected):
        np.testing.assert_allclose(_read(path), waveform, atol=1.5 / 32767)
    capsys.readouterr()
    assert cli.main([*argv, "--label", "nobody"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "vqvae sample: error: `label` must be a speaker name of "
        f"{model_dir}'s model ({', '.join(names)}) or an id in [0, 3). "
        "Received: label='nobody'\n"
    )


def _segments(utterances):
    """Per utterance, its 1024-sample segments (the last zero-padded)."""
    return [
        np.pad(w, (0, -len(w) % SEGMENT)).reshape(-1, SEGMENT, 1)
        for w in utterances.waveforms
    ]


def _log_softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _centre_phonemes(alignment, num_codes):
    """The phoneme id under each code's centre sample, -1 where none."""
    ids = []
    for i in range(num_codes):
        centre = i * 64 + 32
        found = [p for start, end, p in alignment if start <= centre < end]
        ids.append(found[0] if found else -1)
    return ids


def test_evaluate_reports_bits_snr_and_phoneme_discovery(
    prior_run, corpus_dir, capsys
):
    """Every number recomputed here with numpy from the model's outputs:
    bits per sample (uniform and WaveNet prior), MSE/SNR, codebook use,
    and phoneme discovery fitted on train, scored on test and
    test_voices."""
    assert cli.main(["evaluate", "--model-dir", prior_run]) == 0
    out = capsys.readouterr().out
    with open(os.path.join(prior_run, "evaluation.json")) as file:
        metrics = json.load(file)
    vqvae, _ = artifacts.load_vqvae(prior_run)
    prior = artifacts.load_prior(prior_run)
    dataset = f"audio-folder:{corpus_dir}"
    test = data.load_audio(dataset, "test")
    x = np.concatenate(_segments(test))
    codes = vqvae.encode(x).numpy()
    log_probs = _log_softmax(vqvae.decoder_outputs(codes).numpy())
    classes = audio.mu_law_encode(x[..., 0])
    nats_x = -np.take_along_axis(log_probs, classes[..., None], -1).sum()
    prior_log_probs = _log_softmax(prior(codes).numpy())
    nats_z = -np.take_along_axis(prior_log_probs, codes[..., None], -1).sum()
    bits = x.size * np.log(2)
    decoded = vqvae.decode(codes).numpy().astype(np.float64)
    error = np.sum((decoded - x) ** 2)
    counts = np.bincount(codes.ravel(), minlength=16) / codes.size
    used = counts[counts > 0]
    expected = {
        "dataset": dataset,
        "split": "test",
        "likelihood": "mu_law",
        "num_waveforms": len(x),
        "num_samples": x.size,
        "reconstruction_bits_per_sample": nats_x / bits,
        "bits_per_sample_uniform_prior": (nats_x + codes.size * np.log(16))
        / bits,
        "bits_per_sample_prior": (nats_x + nats_z) / bits,
        "mse": error / x.size,
        "snr_db": 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / error),
        # Its numpy reference is in test_speech_metrics.
        "log_mel_distance_db": float(
            np.mean(speech_metrics.log_mel_distance(x, decoded))
        ),
        "num_levels": 1,
        "bits_per_position_uniform_prior": 4.0,
        "perplexity": np.exp(-np.sum(used * np.log(used))),
        "codebook_usage": len(used) / 16,
        "dead_codes": 16 - len(used),
    }

    # Phoneme discovery: codes of whole utterances, segment by segment.
    def pairs(split):
        utterances = data.load_audio(dataset, split)
        found = []
        for segments, alignment in zip(
            _segments(utterances), utterances.alignments
        ):
            utterance_codes = vqvae.encode(segments).numpy().ravel()
            phonemes = _centre_phonemes(alignment, len(utterance_codes))
            found += [
                (int(c), p) for c, p in zip(utterance_codes, phonemes) if p >= 0
            ]
        return found

    train = pairs("train")
    overall = np.bincount([p for _, p in train])
    mapping = {}
    for code in range(16):
        seen = np.bincount([p for c, p in train if c == code])
        mapping[code] = (
            int(np.argmax(seen)) if seen.sum() else int(np.argmax(overall))
        )
    expected["phoneme_mapping_split"] = "train"
    for split in ("test", "test_voices"):
        scored = pairs(split)
        truth = np.array([p for _, p in scored])
        guess = np.array([mapping[c] for c, _ in scored])
        expected[f"phoneme_accuracy_{split}"] = np.mean(guess == truth)
        expected[f"phoneme_baseline_accuracy_{split}"] = np.bincount(
            truth
        ).max() / len(truth)
        expected[f"phoneme_num_classes_{split}"] = len(np.unique(truth))
        expected[f"phoneme_num_scored_{split}"] = len(truth)

    assert sorted(metrics) == sorted(expected)
    for name, value in expected.items():
        if isinstance(value, str):
            assert metrics[name] == value, name
        else:
            assert metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-4), (
                name
            )
        assert name in out
    assert 0 < metrics["phoneme_baseline_accuracy_test"] < 1
    assert metrics["phoneme_num_classes_test"] > 5


@pytest.fixture(scope="module")
def levels_run(tmp_path_factory, corpus_dir):
    """A residual VQ audio run (2 levels) with its WaveNet prior over the
    levels, trained by `vqvae train-prior`."""
    model_dir = str(tmp_path_factory.mktemp("rvq") / "run")
    _audio_run(
        model_dir,
        corpus_dir,
        quantizer="rvq",
        quantizer_options={"num_quantizers": 2},
    )
    assert cli.main(["train-prior", "--model-dir", model_dir, *PRIOR_TINY]) == 0
    return model_dir


def test_prior_over_levels_of_audio_codes_samples(levels_run, tmp_path):
    # train-prior fits a WaveNet over the levels; sample decodes its draws.
    prior = artifacts.load_prior(levels_run)
    assert isinstance(prior, WaveNetPrior)
    assert prior.event_shape == (SEGMENT // 64, 2)
    output = str(tmp_path / "s.wav")
    argv = ["sample", "--model-dir", levels_run, "--seed", "4"]
    assert cli.main([*argv, "--n", "2", "--output", output]) == 0
    expected = _expected_waveforms(levels_run, 2, seed=4)
    for i, waveform in enumerate(expected):
        path = str(tmp_path / f"s-00{i}.wav")
        np.testing.assert_allclose(_read(path), waveform, atol=1.5 / 32767)


@pytest.mark.slow
def test_prior_over_levels_of_audio_codes_evaluates(levels_run, corpus_dir):
    # evaluate scores the test codes under the prior (numpy: -log p summed
    # over positions and levels).
    model_dir = levels_run
    prior = artifacts.load_prior(model_dir)
    assert cli.main(["evaluate", "--model-dir", model_dir]) == 0
    with open(os.path.join(model_dir, "evaluation.json")) as file:
        metrics = json.load(file)
    vqvae, _ = artifacts.load_vqvae(model_dir)
    x = np.concatenate(
        _segments(data.load_audio(f"audio-folder:{corpus_dir}", "test"))
    )
    codes = vqvae.encode(x).numpy()
    assert codes.shape == (len(x), SEGMENT // 64, 2)
    log_probs = _log_softmax(vqvae.decoder_outputs(codes).numpy())
    classes = audio.mu_law_encode(x[..., 0])
    nats_x = -np.take_along_axis(log_probs, classes[..., None], -1).sum()
    prior_log_probs = _log_softmax(prior(codes).numpy())
    nats_z = -np.take_along_axis(prior_log_probs, codes[..., None], -1).sum()
    assert metrics["num_levels"] == 2
    assert metrics["bits_per_sample_prior"] == pytest.approx(
        (nats_x + nats_z) / (x.size * np.log(2)), rel=1e-4
    )
    assert metrics["bits_per_sample_uniform_prior"] == pytest.approx(
        (nats_x + codes.size * np.log(16)) / (x.size * np.log(2)), rel=1e-4
    )
