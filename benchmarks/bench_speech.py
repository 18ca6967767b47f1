"""The paper's speech results (section 4.3), measured: phoneme discovery and
voice conversion on the offline eSpeak NG corpus (issue 16, items 4-5).

    python benchmarks/bench_speech.py [--preset NAME] [--steps N]
        [--docs-dir docs] [--work-dir DIR] [--out out.json]
    python benchmarks/bench_speech.py --tiny        # seconds-long smoke run
    python benchmarks/bench_speech.py --model-dir DIR [--prior-steps 0]
        [--name speech_wavenet]                 # score a trained run

Everything goes through the public machinery:

1. `vqvae train` (`commands.train`) of a speaker-conditioned audio VQ-VAE
   on `--dataset speech`, from the `--preset`'s training config (default:
   `speech` when that preset exists, else `speech-demo`; both 32 samples
   per code) with `speaker_conditioning=True` and `--steps` steps (default:
   the preset's own, 8000 for `speech`). `--model-dir DIR` scores a
   run trained before (`vqvae train --speaker-conditioning ...`, e.g.
   `--preset speech-wavenet`) instead: its `model.keras` and config.
2. Phoneme discovery (`tf_vqvae.speech_metrics`, as `vqvae evaluate`): the
   code -> phoneme mapping fitted on `train`, scored on `test` (held-out
   sentences of the training voices) and `test_voices` (held-out voices)
   beside the most-frequent-phoneme baseline. The same mapping procedure on
   k-means clusters (K = the codebook size) of log-mel frames placed at the
   codes' centres, with no model at all, says how easy the corpus is.
3. The speaker classifier (`train_speaker_classifier` on `train`, its
   accuracy on `test`).
4. Voice conversion (`VQVAE.convert_voice`) of `--convert` held-out
   utterances (`test`), each to another training voice (cycling through
   them), scored by `conversion_scores`: the classifier's verdict, and the
   phoneme agreement of the re-encoded converted audio relative to the
   re-encoded reconstruction's; the log-mel distance of the
   reconstructions, and how periodic the source, the reconstructions and
   the conversions are where they are loud (`frame_periodicity`: a decoder
   that renders the pitch against one that renders the spectral envelope
   with noise). A generative decoder (`decoder="wavenet"`) decodes from
   `--seed`.
5. A WaveNet prior (`commands.train_prior`, the preset's prior
   config, `--prior-steps` steps, default the preset's; 0: none) for one
   `vqvae sample`, and its bits per code on the `test` codes
   (`prior_test_bits`; per level for a residual VQ run).

With `--docs-dir`, writes short WAVs (16 kHz PCM16, at most 2 s each:
source, reconstruction, the same sentence in two other voices, a prior
sample) and `NAME_mels.png` (log-mel spectrograms of the source and the
two conversions, one row each) there, each file
named `NAME_...` (`--name`, default `speech`). The JSON has every number and
timing; `run.py --only speech` renders it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time

import common
import numpy as np
import tensorflow as tf

from tf_vqvae import audio, data, speech
from tf_vqvae.evaluation import utterance_codes
from tf_vqvae.speech_metrics import (
    conversion_scores,
    fit_code_to_phoneme,
    frame_periodicity,
    log_mel_distance,
    log_mel_spectrogram,
    phoneme_accuracy,
    phonemes_per_code,
    train_speaker_classifier,
)
from tf_vqvae.training import artifacts, commands
from tf_vqvae.training.config import PRESETS
from tf_vqvae.training.runs import UsageError

# The paper (VCTK, 41 phoneme classes): 49.3% against 7.2%.
PAPER = {"accuracy": 0.493, "baseline": 0.072, "ratio": 0.493 / 0.072}
# Issue 16's targets.
TARGETS = {"ratio": 6.8, "target_voice": 0.8, "content": 0.8}
TINY_CORPUS = speech.CorpusConfig(
    num_train_sentences=2,
    num_test_sentences=1,
    train_voices=("en-us+m3", "en-us+f2", "en+m1"),
    test_voices=("en-us+f5",),
    seed=1,
)
TINY_MODEL = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_hiddens=4,
    num_residual_blocks=1,
    segment_length=1024,
    global_batch_size=4,
)
TINY_PRIOR = dict(
    global_batch_size=4,
    num_layers=3,
    residual_channels=8,
    skip_channels=8,
    dilation_cycle=2,
)
# Clips written to --docs-dir: at most this many samples (2 s at 16 kHz).
MAX_CLIP = 2 * audio.SAMPLE_RATE
# log-mel frames for k-means and the PNG: 25 ms windows every 64 samples
# (one per code), the first centred on the first code's centre sample.
MEL_WINDOW = 400
MEL_OFFSET = MEL_WINDOW // 2 - 32


def default_preset() -> str:
    return "speech" if "speech" in PRESETS else "speech-demo"


def _configs(args, dataset: str):
    """The `TrainConfig` and `PriorConfig` (None: no prior) of the run."""
    preset = PRESETS[args.preset]
    train = dict(
        dataset=dataset,
        speaker_conditioning=True,
        epochs=1,
        steps_per_epoch=args.steps,
        checkpoint_steps=args.steps,
        seed=args.seed,
    )
    prior = dict(
        epochs=1,
        steps_per_epoch=args.prior_steps,
        checkpoint_steps=args.prior_steps,
        seed=args.seed,
    )
    if args.tiny:
        train.update(TINY_MODEL)
        prior.update(TINY_PRIOR)
    return (
        dataclasses.replace(preset.train, **train),
        dataclasses.replace(preset.prior, **prior)
        if args.prior_steps
        else None,
    )


# ---------------------------------------------------------------- prior
def prior_test_bits(vqvae, prior, utterances, segment: int) -> dict:
    """The prior's negative log-likelihood of `utterances`' codes, cut into
    segments as `vqvae train-prior` cuts the training split (the last one
    of each utterance zero-padded): bits per code, per level (residual VQ),
    beside each level's code entropy (what a prior without context would
    reach) and the uniform prior's `log2 K`."""
    levels, k = vqvae.quantizer.num_levels, vqvae.num_embeddings
    conditional = prior.num_classes is not None
    batches = data.audio_pipeline(
        utterances, segment, 8, seed=0, training=False
    )
    codes = commands.encode_images(vqvae, batches, with_labels=conditional)
    nats, counts = np.zeros(levels), np.zeros((levels, k))
    for batch in codes.dataset.batch(16):
        z = batch["codes"] if conditional else batch
        per_code = tf.nn.sparse_softmax_cross_entropy_with_logits(
            z, prior(batch)
        )
        nats += np.reshape(per_code.numpy(), (-1, levels)).sum(0)
        flat = np.reshape(z.numpy(), (-1, levels))
        for level in range(levels):
            counts[level] += np.bincount(flat[:, level], minlength=k)
    positions = counts[0].sum()
    p = counts / positions
    entropy = -np.sum(p * np.log2(np.where(p > 0, p, 1.0)), axis=1)
    by_level = nats / np.log(2.0) / positions
    return {
        "num_levels": levels,
        "num_codes": int(positions * levels),
        "bits_per_code": float(by_level.mean()),
        "bits_per_code_by_level": [float(b) for b in by_level],
        "entropy_by_level": [float(h) for h in entropy],
        "uniform_bits_per_code": float(np.log2(k)),
    }


# ------------------------------------------------------------- phonemes
def _scores(result) -> dict:
    return {
        "accuracy": result.accuracy,
        "baseline_accuracy": result.baseline_accuracy,
        "ratio": result.ratio,
        "num_classes": result.num_classes,
        "num_scored": result.num_scored,
    }


def phoneme_discovery(vqvae, splits: dict, segment: int) -> dict:
    """`vqvae evaluate`'s phoneme discovery: mapping fitted on `train`."""
    factor = vqvae.downsampling_factor

    def codes_and_phonemes(utterances):
        codes = utterance_codes(vqvae, utterances, segment)
        return codes, phonemes_per_code(utterances.alignments, codes, factor)

    mapping = fit_code_to_phoneme(
        *codes_and_phonemes(splits["train"]), vqvae.num_embeddings
    )
    results = {
        split: _scores(
            phoneme_accuracy(mapping, *codes_and_phonemes(splits[split]))
        )
        for split in ("test", "test_voices")
    }
    return mapping, results


def code_frames(waveform: np.ndarray, factor: int = 64) -> np.ndarray:
    """Log-mel frames `(ceil(samples / factor), 40)`, frame `i` centred on
    sample `i * factor + factor / 2` (the centre of code `i`)."""
    count = -(-len(waveform) // factor)
    total = (count - 1) * factor + MEL_WINDOW
    padded = np.zeros(total, np.float32)
    piece = waveform[: total - MEL_OFFSET]
    padded[MEL_OFFSET : MEL_OFFSET + len(piece)] = piece
    frames = log_mel_spectrogram(
        padded, frame_length=MEL_WINDOW, frame_step=factor
    ).numpy()
    assert len(frames) == count, (len(frames), count)
    return frames


def _nearest(features: np.ndarray, centres: tf.Tensor) -> np.ndarray:
    out = []
    norms = tf.reduce_sum(centres**2, axis=1)
    for start in range(0, len(features), 65536):
        x = tf.constant(features[start : start + 65536])
        scores = norms[None] - 2 * tf.matmul(x, centres, transpose_b=True)
        out.append(tf.argmin(scores, axis=1, output_type=tf.int32).numpy())
    return np.concatenate(out)


def kmeans_baseline(splits: dict, k: int, seed: int, iterations: int = 20):
    """Phoneme discovery with no model: k-means (Lloyd, k-means++-style
    seeded picks of training frames) on standardized log-mel frames at the
    codes' positions, scored exactly as the model's codes."""
    frames = {
        split: [code_frames(w) for w in utterances.waveforms]
        for split, utterances in splits.items()
    }
    train = np.concatenate(frames["train"])
    mean, std = train.mean(0), train.std(0) + 1e-6
    rng = np.random.default_rng(seed)
    fit = (train[rng.permutation(len(train))[:100_000]] - mean) / std
    centres = fit[rng.choice(len(fit), k, replace=False)]
    centres = tf.constant(centres)
    for _ in range(iterations):
        nearest = _nearest(fit, centres)
        sums = np.zeros((k, fit.shape[1]), np.float64)
        np.add.at(sums, nearest, fit)
        counts = np.bincount(nearest, minlength=k)
        new = centres.numpy().copy()
        used = counts > 0
        new[used] = (sums[used] / counts[used, None]).astype(np.float32)
        # An empty cluster restarts at a random frame.
        new[~used] = fit[rng.choice(len(fit), int((~used).sum()))]
        centres = tf.constant(new)

    def clusters(split):
        return [_nearest((f - mean) / std, centres) for f in frames[split]]

    def labels(split, codes):
        return phonemes_per_code(splits[split].alignments, codes, 64)

    train_codes = clusters("train")
    mapping = fit_code_to_phoneme(train_codes, labels("train", train_codes), k)
    results = {"k": k}
    for split in ("test", "test_voices"):
        codes = clusters(split)
        results[split] = _scores(
            phoneme_accuracy(mapping, codes, labels(split, codes))
        )
    return results


# ----------------------------------------------------------- conversion
def conversion(
    vqvae, mapping, classifier, held_out, voices, count: int, decoding: dict
):
    """Converts `count` held-out utterances (spread over the speakers) to
    other training voices (`convert_voice(..., **decoding)`);
    `conversion_scores`, the SNR and log-mel distance of the
    reconstructions, and the periodicity of the loud frames."""
    # Round-robin over speakers, so every voice is a source.
    by_speaker = {
        s: [i for i in range(len(held_out)) if held_out.speakers[i] == s]
        for s in voices
    }
    picks = []
    while len(picks) < count and any(by_speaker.values()):
        for s in voices:
            if by_speaker[s] and len(picks) < count:
                picks.append(by_speaker[s].pop(0))
    sources, targets, converted, recon = [], [], [], []
    snrs, distances = [], []
    for n, i in enumerate(picks):
        waveform = held_out.waveforms[i]
        speaker = int(held_out.speakers[i])
        others = [v for v in voices if v != speaker]
        target = others[n % len(others)]
        out = np.asarray(vqvae.convert_voice(waveform, target, **decoding))
        same = np.asarray(vqvae.convert_voice(waveform, speaker, **decoding))
        sources.append(i)
        targets.append(target)
        converted.append(np.clip(out, -1, 1))
        recon.append(np.clip(same, -1, 1))
        noise = float(np.sum((same - waveform) ** 2))
        snrs.append(10 * np.log10(float(np.sum(waveform**2)) / noise))
        distances.append(float(log_mel_distance(waveform, recon[-1])))

    def codes(waveforms):
        factor = vqvae.downsampling_factor
        result = []
        for w in waveforms:
            padded = np.pad(w, (0, -len(w) % factor))[None, :, None]
            result.append(np.asarray(vqvae.encode(padded))[0])
        return result

    predicted = classifier.predict_speakers(converted)
    scores = conversion_scores(
        [held_out.alignments[i] for i in sources],
        codes(converted),
        codes(recon),
        mapping,
        predicted,
        np.asarray(targets),
        vqvae.downsampling_factor,
    )
    # Where the conversions the classifier does not give the target go:
    # the source's own voice means the codes carry the speaker.
    source_speakers = held_out.speakers[sources]
    return {
        **dataclasses.asdict(scores),
        "assigned_source_voice": float(np.mean(predicted == source_speakers)),
        "assigned_other_voice": float(
            np.mean(
                (predicted != source_speakers)
                & (predicted != np.asarray(targets))
            )
        ),
        "reconstruction_snr_db_mean": float(np.mean(snrs)),
        "reconstruction_log_mel_distance_db_mean": float(np.mean(distances)),
        "periodicity": {
            name: _periodicity(waveforms)
            for name, waveforms in (
                ("source", [held_out.waveforms[i] for i in sources]),
                ("reconstruction", recon),
                ("converted", converted),
            )
        },
        "reconstruction_target_voice_accuracy": float(
            np.mean(
                classifier.predict_speakers(recon) == held_out.speakers[sources]
            )
        ),
    }


def _periodicity(waveforms) -> dict:
    """`frame_periodicity` pooled over the loud frames of `waveforms`: the
    mean, and the fraction of frames above 0.8 (clearly pitched)."""
    peaks = np.concatenate([frame_periodicity(w) for w in waveforms])
    return {
        "mean": float(np.mean(peaks)),
        "pitched_fraction": float(np.mean(peaks > 0.8)),
        "frames": len(peaks),
    }


# ------------------------------------------------------------ artifacts
def _colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 RGB, dark blue through red to yellow."""
    stops = np.array(
        [
            [0, 0, 40],
            [80, 20, 120],
            [200, 40, 80],
            [250, 150, 30],
            [255, 250, 180],
        ],
        np.float64,
    )
    position = np.clip(values, 0, 1) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = (position - low)[..., None]
    return (stops[low] * (1 - frac) + stops[low + 1] * frac).astype(np.uint8)


def mel_image(waveform: np.ndarray, low: float, high: float) -> np.ndarray:
    """80-band log-mel spectrogram (10 ms hop) as RGB, low bands at the
    bottom, 2 pixels per band."""
    mel = log_mel_spectrogram(waveform, num_mel_bins=80).numpy()
    scaled = (mel.T[::-1] - low) / (high - low)
    return np.repeat(_colormap(scaled), 2, axis=0)


def write_artifacts(
    docs_dir, vqvae, model_dir, held_out, voices, names, prefix, decoding, prior
):
    """The WAVs and the mel PNG of one held-out utterance (first 2 s), named
    `prefix_...`; `decoding`: `convert_voice`'s keyword arguments; `prior`:
    whether `model_dir` has a prior to sample."""
    from tf_vqvae.visualize import save_image_grid

    os.makedirs(docs_dir, exist_ok=True)
    index = int(np.argmax([len(w) for w in held_out.waveforms[:8]]))
    waveform = held_out.waveforms[index][:MAX_CLIP]
    speaker = int(held_out.speakers[index])
    others = [v for v in voices if v != speaker][:2]
    written = {}

    def wav(name, samples):
        path = os.path.join(docs_dir, f"{prefix}_{name}.wav")
        audio.write_wav(path, np.clip(samples, -1, 1))
        written[name] = path

    wav("source", waveform)
    wav(
        "reconstruction",
        np.asarray(vqvae.convert_voice(waveform, speaker, **decoding)),
    )
    converted = {}
    for target in others:
        converted[target] = np.asarray(
            vqvae.convert_voice(waveform, target, **decoding)
        )
        # Voice names hold "+" (en-us+f2): "_" keeps the file names plain.
        wav(f"converted_{names[target].replace('+', '_')}", converted[target])
    if prior:
        sample = os.path.join(model_dir, "bench_sample.wav")
        (path,) = commands.sample(
            model_dir, n=1, seed=0, output=sample, label=names[speaker]
        )
        prior_sample, _ = audio.read_wav(path)
        wav("prior_sample", prior_sample[:MAX_CLIP])

    rows = [waveform, *converted.values()]
    mels = [log_mel_spectrogram(w, num_mel_bins=80).numpy() for w in rows]
    low = float(np.percentile(np.concatenate(mels), 2))
    high = float(np.percentile(np.concatenate(mels), 99.5))
    images = np.stack([mel_image(w, low, high) for w in rows])
    labels = [f"source ({names[speaker]})"] + [
        f"converted to {names[t]}" for t in others
    ]
    png = os.path.join(docs_dir, f"{prefix}_mels.png")
    save_image_grid(png, images, ncols=1, padding=2, row_labels=labels)
    written["mels"] = png
    return {
        "utterance": index,
        "text": None if held_out.texts is None else held_out.texts[index],
        "speaker": names[speaker],
        "targets": [names[t] for t in others],
        "files": written,
    }


# ----------------------------------------------------------------- main
def run(args) -> dict:
    timings = {}
    start = time.perf_counter()
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_speech_")
    if args.model_dir:
        try:
            vqvae, train_config = artifacts.load_vqvae(args.model_dir)
        except UsageError as error:  # no or a damaged model.keras
            raise SystemExit(f"bench_speech.py: error: {error}") from None
        if vqvae.num_speakers is None:
            raise SystemExit(
                f"bench_speech.py: error: {args.model_dir} holds a model "
                "without speakers; train it with --speaker-conditioning"
            )
        dataset = train_config.dataset
    elif args.tiny:
        root = os.path.join(work, "corpus")
        if not os.path.isdir(root):
            speech.build_corpus(root, TINY_CORPUS)
        dataset = f"audio-folder:{root}"
    else:
        dataset = "speech"
    splits = {
        split: data.load_audio(dataset, split)
        for split in ("train", "test", "test_voices")
    }
    timings["corpus"] = time.perf_counter() - start
    if args.model_dir:
        _, prior_config = _configs(args, dataset)
        model_dir = args.model_dir
        args.steps = _total_steps(train_config, None)
    else:
        train_config, prior_config = _configs(args, dataset)
        model_dir = os.path.join(work, "run")
        mark = time.perf_counter()
        vqvae = commands.train(train_config, model_dir, verbose=0).model
        timings["train"] = time.perf_counter() - mark
    decoding = {"seed": args.seed} if vqvae.generative_decoder else {}
    names = artifacts.speaker_names(model_dir)
    segment = train_config.segment_length
    voices = sorted(int(s) for s in np.unique(splits["train"].speakers))

    mark = time.perf_counter()
    mapping, phonemes = phoneme_discovery(vqvae, splits, segment)
    timings["phonemes"] = time.perf_counter() - mark

    mark = time.perf_counter()
    kmeans = kmeans_baseline(
        splits, vqvae.num_embeddings, args.seed, 3 if args.tiny else 20
    )
    timings["kmeans"] = time.perf_counter() - mark

    mark = time.perf_counter()
    classifier = train_speaker_classifier(
        splits["train"].waveforms,
        splits["train"].speakers,
        len(names),
        test_waveforms=splits["test"].waveforms,
        test_speakers=splits["test"].speakers,
        epochs=args.classifier_epochs,
        seed=args.seed,
    )
    timings["classifier"] = time.perf_counter() - mark

    mark = time.perf_counter()
    converted = conversion(
        vqvae,
        mapping,
        classifier.model,
        splits["test"],
        voices,
        args.convert,
        decoding,
    )
    timings["conversion"] = time.perf_counter() - mark

    prior_test = None
    if args.prior_steps:
        mark = time.perf_counter()
        prior = commands.train_prior(prior_config, model_dir, verbose=0).model
        timings["prior"] = time.perf_counter() - mark
        prior_test = prior_test_bits(vqvae, prior, splits["test"], segment)

    files = None
    if args.docs_dir:
        mark = time.perf_counter()
        files = write_artifacts(
            args.docs_dir,
            vqvae,
            model_dir,
            splits["test"],
            voices,
            names,
            args.name,
            decoding,
            prior=bool(args.prior_steps),
        )
        timings["artifacts"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    results = {
        "preset": None if args.model_dir else args.preset,
        "model_dir": bool(args.model_dir),
        "steps": args.steps,
        "prior_steps": args.prior_steps,
        "config": json.loads(train_config.to_json()),
        "corpus": {
            split: {
                "utterances": len(u),
                "hours": sum(len(w) for w in u.waveforms) / 16000 / 3600,
                "speakers": len(np.unique(u.speakers)),
            }
            for split, u in splits.items()
        },
        "num_phonemes": len(splits["train"].phonemes or ()),
        "paper": PAPER,
        "targets": TARGETS,
        "phonemes": phonemes,
        "kmeans_logmel": kmeans,
        "classifier": {
            "accuracy": classifier.accuracy,
            "num_test": classifier.num_test,
            "epochs": args.classifier_epochs,
        },
        "conversion": converted,
        "prior_test": prior_test,
        "artifacts": files,
        "timings": timings,
    }
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _total_steps(config, fallback: int) -> int:
    """A preset's steps (epochs x steps per epoch; `fallback` when its
    epochs are whole passes over the data)."""
    if config.steps_per_epoch is None:
        return fallback
    return config.epochs * config.steps_per_epoch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run")
    parser.add_argument(
        "--preset",
        default=None,
        help="training recipe, a name of training.config.PRESETS "
        f"(default: {default_preset()!r})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="VQ-VAE steps (default: the preset's epochs x steps per epoch)",
    )
    parser.add_argument(
        "--prior-steps",
        type=int,
        default=None,
        help="prior steps (default: the preset's prior epochs x steps)",
    )
    parser.add_argument("--classifier-epochs", type=int, default=None)
    parser.add_argument(
        "--convert", type=int, default=None, help="utterances to convert"
    )
    parser.add_argument(
        "--model-dir",
        help="score this trained run (vqvae train --speaker-conditioning) "
        "instead of training one; a prior is trained into it unless "
        "--prior-steps 0",
    )
    parser.add_argument(
        "--name", default="speech", help="file name prefix in --docs-dir"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs-dir", help="write the WAVs and PNG here")
    parser.add_argument("--work-dir", help="keep the runs here")
    parser.add_argument("--out", help="write the JSON here")
    args = parser.parse_args(argv)
    args.preset = args.preset or default_preset()
    if args.preset not in PRESETS:
        parser.error(
            f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}"
        )
    preset = PRESETS[args.preset]
    defaults = (
        dict(steps=2, prior_steps=2, classifier_epochs=1, convert=3)
        if args.tiny
        else dict(
            steps=_total_steps(preset.train, 600),
            prior_steps=_total_steps(preset.prior, 300),
            classifier_epochs=20,
            convert=48,
        )
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    results = run(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return results


if __name__ == "__main__":
    common.run_main(main)
