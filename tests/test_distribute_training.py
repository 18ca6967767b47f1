"""`vqvae train` under tf.distribute: mirrored replicas and multi-worker."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import REPLICA_DEVICES

from tests.testing import TINY_MODEL_FLAGS
from tf_vqvae import VQVAE, PixelCNNPrior
from tf_vqvae.training import commands
from tf_vqvae.training.config import PriorConfig, TrainConfig

TINY = TrainConfig(
    epochs=1,
    steps_per_epoch=4,
    global_batch_size=8,
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_hiddens=4,
    num_residual_blocks=1,
    # Adam turns the rounding noise of a near-zero gradient (a ReLU channel
    # that happens to be dead) into an update of up to lr * noise / epsilon;
    # 1e-4 keeps that well below the 1e-5 tolerance on both sides.
    learning_rate=1e-4,
    checkpoint_steps=2,
)


PRIOR_TINY = PriorConfig(
    epochs=1,
    steps_per_epoch=3,
    global_batch_size=8,
    num_hiddens=8,
    num_layers=2,
    learning_rate=1e-4,
    checkpoint_steps=2,
)


# 1 vs 2 replicas under a mixed precision: each replica rounds its own
# gradient sums (bias gradients, weight gradients of the convolutions) to
# bfloat16's 8 significant bits, and Adam turns a relative gradient error
# into an update error of up to about lr per step: the bound is
# steps * lr = 4 * 1e-4 on every weight. Measured after the 4 steps of TINY:
# bfloat16 5.0e-5 (decoder biases), float16 1.6e-5 (EMA codebook).
MIXED_PRECISION_ATOL = 2e-4


def _assert_same_variables(actual_model, expected_model, atol=1e-5):
    expected = {v.path: np.asarray(v) for v in expected_model.variables}
    actual = {v.path: np.asarray(v) for v in actual_model.variables}
    assert sorted(actual) == sorted(expected)
    for path, value in expected.items():
        np.testing.assert_allclose(
            actual[path], value, rtol=0, atol=atol, err_msg=path
        )


def _assert_same_up_to_flips(actual_model, expected_model, vectors: int):
    """Mixed precision: equal up to a few nearest-code flips.

    The per-replica and the whole-batch convolutions round differently in
    bfloat16 (8 significant bits) and float16 (11), so a vector that near to
    two codes may pick the other one on 2 replicas (measured on an AMD EPYC
    without AMX, 4 steps of 512 vectors: about 6 flips in bfloat16, 1 in
    float16; none on an Intel Xeon with AMX). A flip moves at most
    1 - decay of EMA count from one code to another and the two codes' rows
    by about |z - e| / count. So: at most 1% of the `vectors` flipped, the
    flipped codes' rows within 1e-2, everything else within
    `MIXED_PRECISION_ATOL` (a missing all-reduce would move every count by
    about half).
    """
    quantizer = expected_model.quantizer
    one_vector = 1.0 - quantizer.decay
    moved = np.abs(
        np.asarray(actual_model.quantizer.ema_cluster_size)
        - np.asarray(quantizer.ema_cluster_size)
    )
    assert moved.sum() <= 2 * one_vector * 0.01 * vectors + 1e-6, moved
    flipped = moved > 1e-6
    for actual, expected in zip(
        actual_model.variables, expected_model.variables
    ):
        assert actual.path == expected.path
        a, e = np.asarray(actual), np.asarray(expected)
        if a.shape[:1] == flipped.shape and actual.path.startswith(
            quantizer.path + "/"
        ):
            # The counts' flipped rows were checked above.
            if not actual.path.endswith("ema_cluster_size"):
                np.testing.assert_allclose(
                    a[flipped],
                    e[flipped],
                    rtol=0,
                    atol=1e-2,
                    err_msg=actual.path,
                )
            a, e = a[~flipped], e[~flipped]
        np.testing.assert_allclose(
            a, e, rtol=0, atol=MIXED_PRECISION_ATOL, err_msg=actual.path
        )


def _assert_moved(fresh, trained):
    """Training moved the weights: a comparison is not between two inits."""
    assert any(
        not np.allclose(np.asarray(before), np.asarray(after))
        for before, after in zip(
            fresh.trainable_variables, trained.trainable_variables
        )
    )


@pytest.mark.parametrize(
    "changes",
    [
        # The gradient codebook's replicas: also tests/test_distribute.py.
        pytest.param(dict(quantizer="vq"), marks=pytest.mark.slow, id="vq"),
        pytest.param(
            dict(
                quantizer="ema", data_init="kmeans++", dead_code_restart_steps=2
            ),
            id="ema-kmeans-restarts",
        ),
    ],
)
def test_mirrored_matches_one_device(tmp_path, changes, capsys):
    # Thresholds of 1: every epoch "collapses" (warn), so the verdicts
    # compared below carry the whole message with its numbers.
    config = dataclasses.replace(
        TINY, min_code_usage=1.0, min_perplexity=1.0, **changes
    )
    single = commands.train(config, str(tmp_path / "single"), verbose=0)
    keras.backend.clear_session()
    mirrored_config = dataclasses.replace(
        config, strategy="mirrored", devices=tuple(REPLICA_DEVICES)
    )
    mirrored = commands.train(
        mirrored_config, str(tmp_path / "mirrored"), verbose=0
    )
    assert mirrored.step == single.step == 4
    _assert_same_variables(mirrored.model, single.model)
    # CodebookHealth on 2 replicas: the one-device verdict, numbers, file.
    health = [
        json.loads(open(result.artifacts["codebook_health"]).read())
        for result in (single, mirrored)
    ]
    assert health[0]["epochs"][0]["message"].startswith(
        "CodebookHealth: epoch 1: codebook collapse: "
    )
    assert health[1] == health[0]
    lines = capsys.readouterr().err.splitlines()
    warnings = [line for line in lines if line.startswith("CodebookHealth")]
    assert warnings == [health[0]["epochs"][0]["message"]] * 2
    keras.utils.set_random_seed(config.seed)
    fresh = VQVAE(**config.model_kwargs())
    fresh.build((None, 32, 32, 3))
    _assert_moved(fresh, single.model)


@pytest.mark.parametrize(
    "precision", ["bfloat16", pytest.param("float16", marks=pytest.mark.slow)]
)
def test_mirrored_matches_one_device_in_mixed_precision(tmp_path, precision):
    config = dataclasses.replace(
        TINY,
        precision=precision,
        quantizer="ema",
        data_init="kmeans++",
        dead_code_restart_steps=2,
    )
    single = commands.train(config, str(tmp_path / "single"), verbose=0)
    keras.backend.clear_session()
    mirrored_config = dataclasses.replace(
        config, strategy="mirrored", devices=tuple(REPLICA_DEVICES)
    )
    mirrored = commands.train(
        mirrored_config, str(tmp_path / "mirrored"), verbose=0
    )
    assert mirrored.step == single.step == 4
    assert mirrored.model.decoder.compute_dtype == precision
    # 4 steps of 8 images of 8 x 8 latent vectors.
    _assert_same_up_to_flips(mirrored.model, single.model, vectors=4 * 8 * 64)
    np.testing.assert_allclose(
        mirrored.history["loss"], single.history["loss"], rtol=1e-4
    )
    keras.utils.set_random_seed(config.seed)
    fresh = VQVAE(**config.model_kwargs())
    fresh.build((None, 32, 32, 3))
    _assert_moved(fresh, single.model)


@pytest.mark.slow
def test_mirrored_prior_matches_one_device(tmp_path):
    base = tmp_path / "run"
    commands.train(
        dataclasses.replace(TINY, quantizer="vq"), str(base), verbose=0
    )
    config = PRIOR_TINY
    mirrored_config = dataclasses.replace(
        config, strategy="mirrored", devices=tuple(REPLICA_DEVICES)
    )
    results = {}
    for name, prior_config in (
        ("single", config),
        ("mirrored", mirrored_config),
    ):
        model_dir = tmp_path / name
        shutil.copytree(base, model_dir)
        keras.backend.clear_session()
        results[name] = commands.train_prior(
            prior_config, str(model_dir), verbose=0
        )
    single, mirrored = results["single"], results["mirrored"]
    assert mirrored.step == single.step == 3
    np.testing.assert_allclose(
        mirrored.history["loss"],
        single.history["loss"],
        rtol=1e-5,
    )
    _assert_same_variables(mirrored.model, single.model)
    keras.utils.set_random_seed(config.seed)
    fresh = PixelCNNPrior(
        num_embeddings=TINY.num_embeddings,
        grid_shape=single.model.grid_shape,
        **config.prior_kwargs(),
    )
    fresh.build((None, *single.model.grid_shape))
    _assert_moved(fresh, single.model)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _cli_flags(config):
    """The `vqvae` flags that give `config` (the fields off their default)."""
    default = type(config)()
    flags = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value != getattr(default, field.name):
            flags += ["--" + field.name.replace("_", "-"), str(value)]
    return flags


def _two_workers(command, model_dir, *flags):
    """Runs `vqvae COMMAND --strategy multi-worker` as two workers on
    127.0.0.1; returns their outputs."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    argv = [
        sys.executable,
        "-m",
        "tf_vqvae.training.cli",
        command,
        "--model-dir",
        str(model_dir),
        "--strategy",
        "multi-worker",
        *flags,
    ]
    processes = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(tf_config),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
        )
        processes.append(
            subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return outputs


def _identical_weights(chief, worker):
    """The weights of the chief's and the worker's saved models, which
    must be equal bit for bit; returns the chief's."""
    weights = [
        keras.saving.load_model(str(path)).get_weights()
        for path in (chief, worker)
    ]
    assert len(weights[0]) == len(weights[1]) > 0
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
    return weights[0]


@pytest.mark.slow
def test_multi_worker_workers_end_identical(tmp_path):
    model_dir = tmp_path / "run"
    flags = ["--epochs", "1", "--steps-per-epoch", "3", *TINY_MODEL_FLAGS]
    # Thresholds of 1: the epoch "collapses" (warn), so the verdicts
    # compared below carry the whole message with its numbers.
    flags += ["--min-code-usage", "1", "--min-perplexity", "1"]
    outputs = _two_workers(
        "train", model_dir, *flags, "--checkpoint-steps", "2"
    )
    assert "vqvae: trained 3 steps" in outputs[0]
    worker_dir = model_dir / "workers" / "worker-1"
    weights = _identical_weights(
        model_dir / "model.keras", worker_dir / "model.keras"
    )
    assert (model_dir / "checkpoints" / "ckpt-3.index").exists()

    # Each worker trained on its share of the same global batches: the
    # weights are those of one device seeing the whole batch.
    config = dataclasses.replace(
        TINY,
        steps_per_epoch=3,
        learning_rate=2e-4,
        min_code_usage=1.0,
        min_perplexity=1.0,
    )
    single = commands.train(config, str(tmp_path / "single"), verbose=0)
    for expected, actual in zip(single.model.get_weights(), weights):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)

    # CodebookHealth: the chief alone writes MODEL_DIR/codebook_health.json,
    # the other worker its own copy (like its model.keras); both hold the
    # one-device verdict on the epoch's all-reduced code counts.
    chief_file = model_dir / "codebook_health.json"
    worker_file = worker_dir / "codebook_health.json"
    assert str(chief_file) in outputs[0] and str(worker_file) in outputs[1]
    assert str(chief_file) not in outputs[1]
    expected = json.loads(open(single.artifacts["codebook_health"]).read())
    assert expected["epochs"][0]["message"].startswith(
        "CodebookHealth: epoch 1: codebook collapse: "
    )
    for path, output in ((chief_file, outputs[0]), (worker_file, outputs[1])):
        assert json.loads(path.read_text()) == expected
        assert output.count(expected["epochs"][0]["message"]) == 1


@pytest.mark.slow
def test_multi_worker_prior_workers_end_identical(tmp_path):
    model_dir = tmp_path / "run"
    commands.train(
        dataclasses.replace(TINY, quantizer="vq"), str(model_dir), verbose=0
    )
    shutil.copytree(model_dir, tmp_path / "single")
    outputs = _two_workers("train-prior", model_dir, *_cli_flags(PRIOR_TINY))
    assert "vqvae: trained the prior 3 steps" in outputs[0]
    prior_dir = model_dir / "prior"
    weights = _identical_weights(
        prior_dir / "prior.keras",
        prior_dir / "workers" / "worker-1" / "prior.keras",
    )
    assert (prior_dir / "checkpoints" / "ckpt-3.index").exists()

    keras.backend.clear_session()
    single = commands.train_prior(
        PRIOR_TINY, str(tmp_path / "single"), verbose=0
    )
    for expected, actual in zip(single.model.get_weights(), weights):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def _audio_folder(root):
    """`audio-folder:` of two speakers, 3 training and 1 test tone each."""
    from tf_vqvae.audio import write_wav

    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 1)):
        for name, base in (("alice", 220.0), ("bob", 140.0)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                t = np.arange(2000 + 300 * i) / 16000
                tone = 0.5 * np.sin(2 * np.pi * (base + 40 * i) * t)
                noise = 0.05 * rng.standard_normal(len(t))
                write_wav(folder / f"u{i}.wav", (tone + noise).astype("f4"))
    return f"audio-folder:{root}"


@pytest.mark.slow
def test_multi_worker_audio_matches_one_device(tmp_path):
    from tf_vqvae.audio import read_wav
    from tf_vqvae.training.config import audio_train_config

    # Speaker conditioning and the EMA codebook's k-means++ init and
    # restarts: every piece of state an audio run all-reduces. Thresholds
    # of 1: the epoch "collapses" (warn), so the verdicts compared below
    # carry the whole message with its numbers.
    config = audio_train_config(
        dataset=_audio_folder(tmp_path / "corpus"),
        segment_length=512,
        global_batch_size=4,
        num_embeddings=16,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_hiddens=4,
        num_residual_blocks=1,
        speaker_conditioning=True,
        epochs=1,
        steps_per_epoch=3,
        # As TINY's: Adam's update of a near-zero gradient's rounding noise
        # stays well below the tolerance.
        learning_rate=1e-4,
        checkpoint_steps=2,
        data_init="kmeans++",
        dead_code_restart_steps=2,
        min_code_usage=1.0,
        min_perplexity=1.0,
    )
    model_dir = tmp_path / "run"
    flags = ["--dataset", config.dataset, "--speaker-conditioning"]
    for name in (
        "segment_length",
        "global_batch_size",
        "num_embeddings",
        "embedding_dim",
        "num_hiddens",
        "num_residual_hiddens",
        "num_residual_blocks",
        "epochs",
        "steps_per_epoch",
        "learning_rate",
        "checkpoint_steps",
        "data_init",
        "dead_code_restart_steps",
        "min_code_usage",
        "min_perplexity",
    ):
        flags += ["--" + name.replace("_", "-"), str(getattr(config, name))]
    outputs = _two_workers("train", model_dir, *flags)
    assert "vqvae: trained 3 steps" in outputs[0]
    worker_dir = model_dir / "workers" / "worker-1"
    weights = _identical_weights(
        model_dir / "model.keras", worker_dir / "model.keras"
    )
    assert (model_dir / "checkpoints" / "ckpt-3.index").exists()

    # Each worker trained on its share of the same global batches: the
    # weights are those of one device seeing the whole batch, within 1e-5
    # (the all-reduce sums the two halves' gradients in another order than
    # one device's batch: float32 rounding, which Adam's lr 1e-4 over 3
    # steps keeps far below 1e-5; measured 7e-8).
    single = commands.train(config, str(tmp_path / "single"), verbose=0)
    assert single.model.num_speakers == 2
    # The flags gave the chief the config of the one-device run.
    saved = [
        json.loads((path / "config.json").read_text())
        for path in (model_dir, tmp_path / "single")
    ]
    assert saved[0].pop("strategy") == "multi-worker"
    assert saved[1].pop("strategy") == "default"
    assert saved[0] == saved[1]
    expected_weights = single.model.get_weights()
    assert len(expected_weights) == len(weights)
    for expected, actual in zip(expected_weights, weights):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    keras.utils.set_random_seed(config.seed)
    fresh = VQVAE(**config.model_kwargs("audio", 2))
    fresh.build({"audio": (None, 512, 1), "speaker": (None,)})
    _assert_moved(fresh, single.model)

    # The chief alone writes MODEL_DIR's artifacts; the other worker its own
    # copies in workers/worker-1, never a path of the chief's.
    for name in ("reconstructions.wav", "codebook_health.json"):
        chief_file, worker_file = model_dir / name, worker_dir / name
        assert str(chief_file) in outputs[0], name
        assert str(worker_file) in outputs[1], name
        assert str(chief_file) not in outputs[1], name
    assert str(model_dir / "model.keras") not in outputs[1]
    # Equal weights decode equal reconstructions: the worker's copy is the
    # chief's bit for bit, one device's within a PCM16 step.
    chief_wav, rate = read_wav(model_dir / "reconstructions.wav")
    worker_wav, _ = read_wav(worker_dir / "reconstructions.wav")
    single_wav, _ = read_wav(single.artifacts["reconstructions"])
    assert rate == 16000 and chief_wav.shape == single_wav.shape
    np.testing.assert_array_equal(worker_wav, chief_wav)
    np.testing.assert_allclose(chief_wav, single_wav, rtol=0, atol=2 / 32767)
    # CodebookHealth: both hold the one-device verdict on the epoch's
    # all-reduced code counts.
    expected = json.loads(open(single.artifacts["codebook_health"]).read())
    assert expected["epochs"][0]["message"].startswith(
        "CodebookHealth: epoch 1: codebook collapse: "
    )
    for directory, output in (
        (model_dir, outputs[0]),
        (worker_dir, outputs[1]),
    ):
        health = directory / "codebook_health.json"
        assert json.loads(health.read_text()) == expected
        assert output.count(expected["epochs"][0]["message"]) == 1
