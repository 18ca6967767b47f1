"""Nothing lost, every failure one line (issue 12): one command per model dir
(a lock), checkpoints found without their index, a lost config.json
recovered from the checkpoints, Ctrl-C, and a model dir below a file, on a
read-only file system or on a full disk."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from tests.testing import TINY_MODEL_FLAGS
from tf_vqvae.training import cli, commands
from tf_vqvae.training.config import load_config
from tf_vqvae.training.locking import DirectoryLock, LockedError

TINY = [
    "--epochs",
    "1",
    "--steps-per-epoch",
    "3",
    *TINY_MODEL_FLAGS,
    "--checkpoint-steps",
    "2",
]
# TensorFlow's C++ start-up lines, which are not ours.
_TF_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")


def _train(model_dir, *flags):
    return cli.main(["train", "--model-dir", str(model_dir), *TINY, *flags])


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return env


def _cli(*argv):
    return [sys.executable, "-m", "tf_vqvae.training.cli", *map(str, argv)]


def _our_lines(stderr):
    return [line for line in stderr.splitlines() if not _TF_LOG.match(line)]


def _wait_for(path, process, seconds=300):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        assert process.poll() is None, f"exited with {process.returncode}"
        assert time.time() < deadline, f"no {path}"
        time.sleep(0.01)


def _listing(directory):
    """Every file under `directory` with its size and modification time."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            info = os.stat(path)
            found[os.path.relpath(path, directory)] = (
                info.st_size,
                info.st_mtime_ns,
            )
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained VQ-VAE (3 steps); tests copy it."""
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    assert _train(model_dir) == 0
    return model_dir


# ------------------------------------------------------------------ 1. lock
def test_second_train_on_a_running_model_dir_exits_2(tmp_path, capsys):
    model_dir = tmp_path / "run"
    flags = [*TINY_MODEL_FLAGS, "--epochs", "1", "--steps-per-epoch", "5000"]
    first = subprocess.Popen(
        _cli(
            "train", "--model-dir", model_dir, *flags, "--learning-rate", 1e-3
        ),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(model_dir / "checkpoints" / "ckpt-0.index", first)
        argv = ["train", "--model-dir", str(model_dir), *flags]
        assert cli.main([*argv, "--learning-rate", "2e-3"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, err
        host = socket.gethostname()
        pattern = (
            rf"vqvae train: error: `model_dir` '{re.escape(str(model_dir))}' "
            rf"is in use by process {first.pid} on {re.escape(host)} "
            rf"\(vqvae train --model-dir {re.escape(str(model_dir))} .*"
            r"--learning-rate 0\.001, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
            r".*\); wait for it to end or stop it, or pass another "
            rf"directory\. Received: '{re.escape(str(model_dir))}'"
        )
        assert re.fullmatch(pattern, err[0]), err[0]
        assert load_config(str(model_dir / "config.json")).learning_rate == 1e-3
    finally:
        first.kill()
        first.wait()
    # SIGKILL leaves the LOCK file but no lock: the next command takes it
    # over with a line naming the dead holder.
    assert (model_dir / "LOCK").exists()
    with DirectoryLock(str(model_dir)):
        pass
    err = capsys.readouterr().err
    assert err.startswith(
        f"vqvae: taking over the lock of {model_dir} left by process "
        f"{first.pid} on {host} (vqvae train --model-dir {model_dir} "
    )
    assert err.endswith("), which no longer runs.\n")
    assert not (model_dir / "LOCK").exists()


def test_dead_holder_is_taken_over_and_the_lock_released(
    trained, tmp_path, capsys
):
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {
        "pid": dead.pid,
        "host": socket.gethostname(),
        "command": "vqvae train --model-dir x",
        "since": "2026-01-01 00:00:00 UTC",
    }
    (model_dir / "LOCK").write_text(json.dumps(holder))
    assert cli.main(["train", "--model-dir", str(model_dir)]) == 0
    captured = capsys.readouterr()
    assert f"{model_dir} is already trained (3 steps)" in captured.out
    assert captured.err.splitlines() == [
        f"vqvae: taking over the lock of {model_dir} left by process "
        f"{dead.pid} on {socket.gethostname()} (vqvae train --model-dir x, "
        "since 2026-01-01 00:00:00 UTC), which no longer runs."
    ]
    assert not (model_dir / "LOCK").exists()
    # Released: this process (a second open file) can take it at once.
    with DirectoryLock(str(model_dir)):
        pass
    assert capsys.readouterr().err == ""


def test_lock_of_another_host_is_refused(tmp_path):
    holder = {"pid": 1, "host": "elsewhere", "command": "c", "since": "s"}
    (tmp_path / "LOCK").write_text(json.dumps(holder))
    with pytest.raises(LockedError) as info:
        DirectoryLock(str(tmp_path), what="`model_dir`").acquire()
    assert str(info.value) == (
        f"`model_dir` {str(tmp_path)!r} is in use by process 1 on elsewhere "
        "(c, since s); wait for it to end or stop it, or pass another "
        f"directory. Received: {str(tmp_path)!r}; if it no longer runs, "
        f"delete {tmp_path / 'LOCK'}"
    )
    assert json.loads((tmp_path / "LOCK").read_text()) == holder


def test_train_prior_and_export_are_locked_too(trained, tmp_path, capsys):
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    out = tmp_path / "served"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from tf_vqvae.training.locking import DirectoryLock\n"
            "for d in sys.argv[1:]: DirectoryLock(d).acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
            str(model_dir / "prior"),
            str(out),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        argv = ["train-prior", "--model-dir", str(model_dir)]
        assert cli.main([*argv, "--global-batch-size", "8"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(
            f"vqvae train-prior: error: `model_dir` "
            f"'{model_dir / 'prior'}' is in use by process {holder.pid} on "
        )
        argv = ["export", "--model-dir", str(model_dir), "--out", str(out)]
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(
            f"vqvae export: error: export directory (--out) '{out}' is in "
            f"use by process {holder.pid} on "
        )
        assert sorted(os.listdir(out)) == ["LOCK"]
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------- 2. checkpoint index
def test_lost_or_garbled_index_resumes_from_newest_on_disk(
    trained, tmp_path, capsys
):
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    checkpoints = model_dir / "checkpoints"
    index = checkpoints / "checkpoint"
    saved = {
        name: (checkpoints / name).read_bytes()
        for name in os.listdir(checkpoints)
        if name.startswith("ckpt-")
    }
    assert sorted(saved)[-2:] == ["ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    damages = {
        "missing": lambda: os.remove(index),
        "empty": lambda: index.write_text(""),
        "garbled": lambda: index.write_bytes(b"\x00\xff not { a proto"),
    }
    for case, damage in damages.items():
        damage()
        # The saved config: the run is complete, so it only restores.
        assert cli.main(["train", "--model-dir", str(model_dir)]) == 0, case
        captured = capsys.readouterr()
        assert f"{model_dir} is already trained (3 steps)" in captured.out
        problem = "missing" if case == "missing" else "unreadable"
        assert captured.err.splitlines() == [
            f"vqvae: the checkpoint index {index} is {problem}; restored "
            f"{checkpoints}/ckpt-3, the newest readable checkpoint on disk "
            "(older ones are kept)."
        ], case
        if problem == "unreadable":
            assert (checkpoints / "checkpoint.unreadable").is_file()
        # Nothing pruned nor overwritten.
        for name, content in saved.items():
            assert (checkpoints / name).read_bytes() == content, (case, name)


# ------------------------------------------------------------- 3. config
def test_lost_config_is_refused_then_recovered(trained, tmp_path, capsys):
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    config_path = model_dir / "config.json"
    original = load_config(str(config_path))
    os.remove(config_path)
    before = _listing(model_dir)
    # Default options, as a user who deleted config.json would rerun.
    assert cli.main(["train", "--model-dir", str(model_dir)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"vqvae train: error: `model_dir` {str(model_dir)!r} holds "
        f"checkpoints but no {config_path}; write it back from the newest "
        f"checkpoint with `vqvae train --model-dir {model_dir} "
        "--recover-config`, then run again. "
        f"Received: model_dir={str(model_dir)!r}"
    ]
    assert _listing(model_dir) == before

    argv = ["train", "--model-dir", str(model_dir), "--recover-config"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"vqvae: wrote {config_path} from {model_dir}/checkpoints/ckpt-3; "
        f"resume with: vqvae train --model-dir {model_dir}"
    ]
    assert load_config(str(config_path)) == original
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"vqvae train: error: `model_dir` {str(model_dir)!r} holds "
        f"{config_path}: nothing to recover. "
        f"Received: model_dir={str(model_dir)!r}"
    ]
    assert cli.main(["train", "--model-dir", str(model_dir)]) == 0
    captured = capsys.readouterr()
    assert f"{model_dir} is already trained (3 steps)" in captured.out
    assert captured.err == ""


def test_recover_config_of_a_prior_without_checkpoints(trained):
    with pytest.raises(commands.UsageError) as info:
        commands.recover_config(str(trained), prior=True)
    directory = trained / "prior" / "checkpoints"
    assert str(info.value) == (
        f"`model_dir` {str(trained)!r} holds no checkpoint in {directory} to "
        f"recover a config from. Received: model_dir={str(trained)!r}"
    )


# ------------------------------------------------------------- 6. Ctrl-C
def _interrupted_train(model_dir, *flags):
    """Starts `vqvae train` (4 steps per epoch, checkpoint each epoch) and
    returns it once it is inside `fit` (after the step 4 checkpoint)."""
    process = subprocess.Popen(
        _cli("train", "--model-dir", model_dir, *TINY_MODEL_FLAGS, *flags),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(model_dir / "checkpoints" / "ckpt-4.index", process)
    return process


_EPOCHS = ["--epochs", "50", "--steps-per-epoch", "4"]
_EPOCHS += ["--checkpoint-steps", "1000"]


def test_ctrl_c_in_process_checkpoints_and_exits_130(tmp_path, capsys):
    # A real SIGINT to this process once `fit` runs (the step 4 checkpoint
    # is written at the end of its first epoch); the subprocess test below
    # (slow) does the same from outside.
    model_dir = tmp_path / "run"
    checkpoints = model_dir / "checkpoints"

    def interrupt():
        while not (checkpoints / "ckpt-4.index").exists():
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    # What was installed before (Python's default_int_handler, or SIG_IGN
    # when the test runner was started in the background by a shell).
    handler_before = signal.getsignal(signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    argv = ["train", "--model-dir", str(model_dir), *TINY_MODEL_FLAGS]
    assert cli.main([*argv, *_EPOCHS]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    match = re.fullmatch(
        rf"vqvae train: interrupted at step (\d+) of 200; saved "
        rf"{re.escape(str(checkpoints))}/ckpt-(\d+); resume with: vqvae "
        rf"train --model-dir {re.escape(str(model_dir))}",
        err[0],
    )
    assert match and match[1] == match[2], err[0]
    step = int(match[1])
    assert step >= 4
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith(f"-{step}")
    assert not (model_dir / "LOCK").exists()
    # The previous handler is back once the command ended.
    assert signal.getsignal(signal.SIGINT) is handler_before
    epochs = step // 4 + 1
    assert cli.main([*argv, "--epochs", str(epochs)]) == 0
    out = capsys.readouterr().out
    assert f"resuming {model_dir} at step {step} of {4 * epochs}" in out


def test_ctrl_c_seen_as_pybind11_error_says_how_to_resume(
    tmp_path, capsys, monkeypatch
):
    """SIGINT landing while TensorFlow's C++ code translates an error it
    raises and catches itself (tracing does, for every missing op
    attribute) reaches Python as pybind11's RuntimeError: still Ctrl-C."""
    from tf_vqvae.training import runs

    def fit(self, *args, **kwargs):
        raise RuntimeError(
            "pybind11::error_already_set: MISMATCH of original and "
            "normalized active exception types: ORIGINAL InvalidArgumentError "
            "REPLACED BY KeyboardInterrupt: <EMPTY MESSAGE>"
        )

    monkeypatch.setattr(runs.Run, "fit", fit)
    model_dir = tmp_path / "run"
    argv = ["train", "--model-dir", str(model_dir), *TINY_MODEL_FLAGS]
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == (
        f"vqvae train: interrupted; {model_dir}/checkpoints/ckpt-0 is kept "
        "as the newest checkpoint; resume with: vqvae train --model-dir "
        f"{model_dir}\n"
    )
    assert not (model_dir / "LOCK").exists()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, capsys):
    model_dir = tmp_path / "run"
    checkpoints = model_dir / "checkpoints"
    process = _interrupted_train(model_dir, *_EPOCHS)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    lines = _our_lines(stderr)
    assert len(lines) == 1, stderr
    match = re.fullmatch(
        rf"vqvae train: interrupted at step (\d+) of 200; saved "
        rf"{re.escape(str(checkpoints))}/ckpt-(\d+); resume with: vqvae "
        rf"train --model-dir {re.escape(str(model_dir))}",
        lines[0],
    )
    assert match and match[1] == match[2], lines[0]
    step = int(match[1])
    assert step >= 4
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith(f"-{step}")
    assert not (model_dir / "LOCK").exists()

    epochs = step // 4 + 1
    argv = ["train", "--model-dir", str(model_dir), "--epochs", str(epochs)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"resuming {model_dir} at step {step} of {4 * epochs}" in out


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once(tmp_path):
    model_dir = tmp_path / "run"
    checkpoints = model_dir / "checkpoints"
    process = _interrupted_train(model_dir, *_EPOCHS)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    started = time.time()
    stderr = process.communicate(timeout=120)[1]
    # Killed by the second SIGINT, or done already with the first one's
    # checkpoint; never a traceback, never a damaged newest checkpoint.
    assert process.returncode in (-signal.SIGINT, cli.EXIT_INTERRUPTED)
    assert time.time() - started < 30
    assert "Traceback" not in stderr
    latest = tf.train.latest_checkpoint(str(checkpoints))
    reader = tf.train.load_checkpoint(latest)
    step = reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert latest.endswith(f"ckpt-{step}") and step >= 4


# --------------------------------------------- 10. where the files go
def test_model_dir_below_a_file(trained, tmp_path, capsys):
    below = tmp_path / "file" / "run"
    (tmp_path / "file").write_text("not a directory")
    assert _train(below) == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"vqvae train: error: `model_dir` must be a directory path; "
        f"{str(below)!r} is below {str(tmp_path / 'file')!r}, which is a "
        f"file. Received: model_dir={str(below)!r}"
    ]
    argv = ["export", "--model-dir", str(trained), "--out", str(below)]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"vqvae export: error: export directory (--out) {str(below)!r} is "
        f"below {str(tmp_path / 'file')!r}, which is a file; pass a "
        f"directory path. Received: {str(below)!r}"
    ]
    assert os.listdir(tmp_path) == ["file"]


@contextlib.contextmanager
def _tmpfs(path, size):
    """A tmpfs of `size` mounted at `path` (needs root), or `None`."""
    os.makedirs(path)
    if os.geteuid() != 0:
        yield None
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
    )
    if mounted.returncode:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_read_only_model_dir(trained, tmp_path, capsys):
    with _tmpfs(tmp_path / "fs", "16m") as mount:
        model_dir = (mount or tmp_path / "fs") / "run"
        shutil.copytree(trained, model_dir)
        if mount is not None:
            subprocess.run(
                ["mount", "-o", "remount,ro", str(mount)], check=True
            )
        elif os.geteuid() == 0:
            pytest.skip("running as root without mount: no read-only dir")
        else:
            for root, directories, _ in os.walk(model_dir):
                for name in [".", *directories]:
                    os.chmod(os.path.join(root, name), 0o555)
        before = _listing(model_dir)
        reason = "Read-only file system" if mount else "Permission denied"
        for path in (model_dir, model_dir / "new"):
            assert _train(path, "--epochs", "2") == cli.EXIT_USAGE
            assert capsys.readouterr().err.splitlines() == [
                f"vqvae train: error: `model_dir` {str(path)!r} cannot be "
                f"written ({reason}); pass a writable directory. "
                f"Received: {str(path)!r}"
            ]
        assert _listing(model_dir) == before
        if mount is None:
            for root, directories, _ in os.walk(model_dir):
                for name in [".", *directories]:
                    os.chmod(os.path.join(root, name), 0o755)


def test_disk_full_mid_run_keeps_the_previous_checkpoint(
    trained, tmp_path, capsys, monkeypatch
):
    with _tmpfs(tmp_path / "fs", "8m") as mount:
        model_dir = (mount or tmp_path / "fs") / "run"
        checkpoints = model_dir / "checkpoints"
        shutil.copytree(trained, model_dir)
        filler = (mount or tmp_path) / "filler"
        if mount is not None:
            # Room for config.json and logs, not for a checkpoint (~70 kB).
            info = os.statvfs(mount)
            filler.write_bytes(b"\0" * (info.f_bavail * info.f_frsize - 32768))
        else:
            # Without root the disk cannot be filled: the checkpoint write
            # fails the way TensorFlow's file system reports a full disk.
            def full(*args, **kwargs):
                raise tf.errors.ResourceExhaustedError(
                    None, None, "ckpt-4_temp; No space left on device"
                )

            monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
        argv = ["--epochs", "2", "--checkpoint-steps", "1"]
        assert _train(model_dir, *argv) == cli.EXIT_FAILED
        assert capsys.readouterr().err.splitlines() == [
            f"vqvae train: error: could not write checkpoint "
            f"{checkpoints}/ckpt-4 (No space left on device); "
            f"{checkpoints}/ckpt-3 is kept as the newest: free space (or fix "
            "the file system) and run the same command again to resume from "
            "it."
        ]
        assert not [n for n in os.listdir(checkpoints) if "ckpt-4" in n]
        latest = tf.train.latest_checkpoint(str(checkpoints))
        assert latest == f"{checkpoints}/ckpt-3"
        assert not (model_dir / "LOCK").exists()
        reader = tf.train.load_checkpoint(latest)
        assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 3
