"""Fault tolerance of `vqvae train` and `vqvae train-prior`: SIGKILL
mid-epoch, damaged checkpoints."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import TINY_MODEL_FLAGS
from tf_vqvae.training import cli

# Tiny model, EMA codebook with k-means++ init and dead-code restarts, so the
# quantizer's stateless random choices are part of what must resume exactly.
FLAGS = [
    *TINY_MODEL_FLAGS,
    "--data-init",
    "kmeans++",
    "--dead-code-restart-steps",
    "3",
    "--seed",
    "5",
]


# A tiny prior, for `train-prior` on a tiny VQ-VAE.
PRIOR_FLAGS = ["--global-batch-size", "8", "--num-hiddens", "8"]
PRIOR_FLAGS += ["--num-layers", "2", "--seed", "5"]


def _command(command, model_dir, *flags):
    return [
        sys.executable,
        "-m",
        "tf_vqvae.training.cli",
        command,
        "--model-dir",
        str(model_dir),
        *flags,
    ]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return env


def _checkpoint_tensors(path):
    reader = tf.train.load_checkpoint(path)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if not name.startswith("save_counter")
        and name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


@pytest.mark.parametrize(
    "command, precision",
    [
        ("train", "float32"),
        pytest.param("train", "bfloat16", marks=pytest.mark.slow),
        pytest.param("train", "float16", marks=pytest.mark.slow),
        pytest.param("train-prior", "float32", marks=pytest.mark.slow),
        pytest.param("train-prior", "bfloat16", marks=pytest.mark.slow),
    ],
    ids=[
        "train-float32",
        "train-bfloat16",
        "train-float16",
        "prior-float32",
        "prior-bfloat16",
    ],
)
def test_sigkill_mid_epoch_resumes_bit_identically(
    tmp_path, command, precision
):
    # The prior's epoch ends with slow sampling (TensorBoard pictures): one
    # epoch, resumed in its middle, is enough for it.
    epochs, steps_per_epoch = (2, 30) if command == "train" else (1, 40)
    flags = ["--epochs", str(epochs), "--steps-per-epoch", str(steps_per_epoch)]
    flags += ["--checkpoint-steps", "4", "--precision", precision]
    reference = tmp_path / "reference"
    killed = tmp_path / "killed"
    if command == "train":
        flags += FLAGS
        reference_dir, killed_dir = reference, killed
        model_file, weights_name = "model.keras", "quantizer/embeddings"
    else:
        # Both prior runs start from copies of one trained VQ-VAE.
        argv = ["train", "--model-dir", str(reference), *FLAGS]
        assert cli.main([*argv, "--epochs", "1", "--steps-per-epoch", "4"]) == 0
        shutil.copytree(reference, killed)
        flags += PRIOR_FLAGS
        reference_dir, killed_dir = reference / "prior", killed / "prior"
        model_file, weights_name = "prior.keras", "model/"
    # The uninterrupted run trains alongside the one to be killed.
    uninterrupted = subprocess.Popen(
        _command(command, reference, *flags),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process = subprocess.Popen(
        _command(command, killed, *flags),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = killed_dir / "checkpoints" / "ckpt-8.index"
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None:
        assert time.time() < deadline, "no checkpoint at step 8"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed_dir / model_file).exists()
    latest = tf.train.latest_checkpoint(str(killed_dir / "checkpoints"))
    indexed = int(latest.rsplit("-", 1)[-1])

    output = uninterrupted.communicate(timeout=300)[0]
    assert uninterrupted.returncode == 0, output[-3000:]
    resumed = subprocess.run(
        _command(command, killed, *flags),
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    total = epochs * steps_per_epoch
    # ckpt-8 may be on disk but not yet in the `checkpoint` index (which is
    # only a hint): the run resumes from the newest readable checkpoint on
    # disk, at least the index's, in the middle of the first epoch.
    resuming = re.search(
        rf"resuming {re.escape(str(killed_dir))} at step (\d+) of {total}\.",
        resumed.stdout,
    )
    assert resuming, resumed.stdout
    step = int(resuming[1])
    assert indexed <= step < steps_per_epoch, "killed mid-epoch"
    # The kernel released the dead run's lock; its LOCK file was taken over.
    assert "which no longer runs." in resumed.stderr

    final = f"ckpt-{total}"
    expected = _checkpoint_tensors(str(reference_dir / "checkpoints" / final))
    actual = _checkpoint_tensors(str(killed_dir / "checkpoints" / final))
    assert sorted(actual) == sorted(expected)
    assert any(weights_name in name for name in expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)
    weights = [
        keras.saving.load_model(str(d / model_file)).get_weights()
        for d in (reference_dir, killed_dir)
    ]
    assert len(weights[0]) > 0
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)


def _damage(prefix, how):
    path = f"{prefix}.data-00000-of-00001"
    content = bytearray(open(path, "rb").read())
    if how == "truncate":
        content = content[: len(content) // 2]
    else:
        content[len(content) // 2] ^= 0xFF
    with open(path, "wb") as file:
        file.write(content)


def test_damaged_latest_checkpoint_falls_back(tmp_path, capsys):
    model_dir = tmp_path / "run"
    flags = ["--steps-per-epoch", "6", "--checkpoint-steps", "2"]
    argv = ["train", "--model-dir", str(model_dir), *FLAGS, *flags]
    assert cli.main([*argv, "--epochs", "1"]) == 0
    checkpoints = model_dir / "checkpoints"
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-6")
    capsys.readouterr()

    _damage(checkpoints / "ckpt-6", "truncate")
    _damage(checkpoints / "ckpt-4", "flip")
    assert cli.main([*argv, "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    unreadable = [line for line in lines if "is unreadable" in line]
    assert len(unreadable) == 2, captured.err
    assert unreadable[0].startswith(
        f"vqvae: checkpoint {checkpoints}/ckpt-6 is unreadable ("
    )
    assert unreadable[0].endswith(f"); falling back to {checkpoints}/ckpt-4.")
    assert unreadable[1].startswith(
        f"vqvae: checkpoint {checkpoints}/ckpt-4 is unreadable ("
    )
    assert unreadable[1].endswith(f"); falling back to {checkpoints}/ckpt-2.")
    assert f"resuming {model_dir} at step 2 of 12" in captured.out
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-12")

    # Every checkpoint damaged: a clear error, exit code 2.
    for step in (8, 10, 12):
        _damage(checkpoints / f"ckpt-{step}", "truncate")
    assert cli.main([*argv, "--epochs", "3"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    paths = [f"{checkpoints}/ckpt-{step}" for step in (8, 10, 12)]
    assert err[-1] == (
        f"vqvae train: error: `model_dir` holds no readable checkpoint in "
        f"{checkpoints}; move the model dir away and train again. "
        f"Received: checkpoints={paths}"
    )
