"""`tf_vqvae.atomic`: staging names, stale-entry removal, atomic files and
directories with the permissions of a plain `open`/`mkdir`."""

import os
import stat
import subprocess
import sys

import pytest

from tf_vqvae import atomic


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Sets the process umask for one test, restoring it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def test_stale_staging_dirs_of_dead_local_processes_are_removed(tmp_path):
    host = atomic._host()
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    try:
        names = {
            "stale": f".tmp-1@{host}@{_dead_pid()}@abc_12",
            "live": f".tmp-1@{host}@{sleeper.pid}@def_34",
            "other_host": f".tmp-1@{host}x@{_dead_pid()}@ghi_56",
            "parked_old": f".old-1@{host}@{_dead_pid()}@jkl_78",
            "version": "1",
            "unrelated": ".tmp-something",
        }
        for name in names.values():
            (tmp_path / name).mkdir()
        stale_file = (
            tmp_path / f".tmp-model.keras@{host}@{_dead_pid()}@9f.keras"
        )
        stale_file.write_text("half")
        removed = atomic.remove_stale(str(tmp_path))
        assert removed == sorted(
            [str(tmp_path / names["stale"]), str(stale_file)]
        )
        assert sorted(os.listdir(tmp_path)) == sorted(
            name for key, name in names.items() if key != "stale"
        )
    finally:
        sleeper.kill()
        sleeper.wait()


def test_staging_dir_names_its_process_and_is_hidden(tmp_path):
    path = atomic.make_staging_dir(str(tmp_path), "tmp", "7")
    name = os.path.basename(path)
    assert name.startswith(f".tmp-7@{atomic._host()}@{os.getpid()}@")
    assert atomic._PATTERN.match(name)
    # This process is alive: its own directory is never removed.
    assert atomic.remove_stale(str(tmp_path)) == []
    assert os.path.isdir(path)


def test_staging_name_rejects_unknown_kind():
    with pytest.raises(ValueError) as info:
        atomic.staging_name("new", "x")
    assert str(info.value) == (
        "`kind` must be 'tmp' or 'old'. Received: kind='new'"
    )


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode",
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
    ids=["022", "077", "002"],
)
def test_permissions_follow_the_umask(
    tmp_path, umask, mask, file_mode, dir_mode
):
    umask(mask)
    text = atomic.write_text(tmp_path / "a.json", "{}\n")
    data = atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    saved = atomic.write_file(
        tmp_path / "c.keras", lambda p: open(p, "w").write("model")
    )
    with atomic.staged_directory(tmp_path / "out" / "1") as staging:
        with open(os.path.join(staging, "f.txt"), "w") as f:
            f.write("x")
    assert [_mode(p) for p in (text, data, saved)] == [file_mode] * 3
    assert _mode(tmp_path / "out" / "1") == dir_mode
    assert _mode(tmp_path / "out" / "1" / "f.txt") == file_mode
    if mask == 0o022:
        others = stat.S_IROTH
        assert _mode(tmp_path / "out" / "1") & others
        assert _mode(tmp_path / "out" / "1" / "f.txt") & others


def test_write_text_and_bytes_replace_and_leave_nothing_else(tmp_path):
    path = tmp_path / "config.json"
    assert atomic.write_text(path, "one") == str(path)
    atomic.write_text(path, "two é")
    assert path.read_text(encoding="utf-8") == "two é"
    atomic.write_bytes(path, b"three")
    assert path.read_bytes() == b"three"
    assert os.listdir(tmp_path) == ["config.json"]


def test_write_file_keeps_the_extension_and_the_old_file_on_failure(tmp_path):
    path = tmp_path / "model.keras"
    seen = []

    def save(staging):
        seen.append(staging)
        with open(staging, "w") as f:
            f.write("new")

    atomic.write_file(path, save)
    (staging,) = seen
    assert os.path.dirname(staging) == str(tmp_path)
    assert os.path.basename(staging).startswith(".tmp-model.keras@")
    assert staging.endswith(".keras")
    assert atomic._PATTERN.match(os.path.basename(staging))

    def fail(staging):
        with open(staging, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.write_file(path, fail)
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["model.keras"]

    with pytest.raises(FileNotFoundError) as info:
        atomic.write_file(path, lambda staging: None)
    assert "`save` wrote no file at the path it was given" in str(info.value)
    assert path.read_text() == "new"


def test_staged_directory_new_refused_and_replaced(tmp_path):
    target = tmp_path / "models" / "1"
    with atomic.staged_directory(target) as staging:
        assert os.path.basename(staging).startswith(".tmp-1@")
        assert not target.exists()
        open(os.path.join(staging, "v1"), "w").close()
    assert os.listdir(target) == ["v1"]

    with pytest.raises(FileExistsError) as info:
        with atomic.staged_directory(target):
            pass
    assert str(info.value) == (
        f"{str(target)!r} already exists. Pass `overwrite=True` to replace it."
    )

    with atomic.staged_directory(target, overwrite=True) as staging:
        open(os.path.join(staging, "v2"), "w").close()
    assert os.listdir(target) == ["v2"]
    assert os.listdir(tmp_path / "models") == ["1"]


def test_staged_directory_failure_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "1"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.staged_directory(target, overwrite=True) as staging:
            open(os.path.join(staging, "new"), "w").close()
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["1"]
    assert os.listdir(target) == ["old"]

    # The rename of the new directory fails after the old one was parked:
    # the old one is put back.
    rename = os.rename

    def failing_rename(src, dst):
        if os.path.basename(src).startswith(".tmp-"):
            raise OSError("disk on fire")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk on fire"):
        with atomic.staged_directory(target, overwrite=True) as staging:
            open(os.path.join(staging, "new"), "w").close()
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["1"]
    assert os.listdir(target) == ["old"]


def test_failure_removes_the_empty_parents_it_created(tmp_path):
    # An interrupted export to a new `out/vqvae/1` leaves no empty
    # `out/vqvae` behind; parents that existed, or that others filled
    # meanwhile, stay.
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with atomic.staged_directory(tmp_path / "kept" / "out" / "vqvae" / "1"):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["kept"]
    assert os.listdir(tmp_path / "kept") == []

    with pytest.raises(RuntimeError):
        with atomic.staged_directory(tmp_path / "out" / "vqvae" / "1"):
            (tmp_path / "out" / "other").mkdir()
            raise RuntimeError
    assert os.listdir(tmp_path / "out") == ["other"]


def test_a_parent_removed_meanwhile_is_made_again(tmp_path, monkeypatch):
    # Another writer's failure removes the empty parent it created just
    # after this one found it: the parent is made again, once.
    make = atomic.make_staging_dir
    raced = []

    def racing(parent, kind, label):
        if not raced:
            raced.append(parent)
            os.rmdir(parent)
            raise FileNotFoundError(parent)
        return make(parent, kind, label)

    monkeypatch.setattr(atomic, "make_staging_dir", racing)
    with atomic.staged_directory(tmp_path / "new" / "1") as staging:
        open(os.path.join(staging, "f"), "w").close()
    assert raced == [str(tmp_path / "new")]
    assert os.listdir(tmp_path / "new" / "1") == ["f"]


def test_directory_created_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(FileExistsError):
        with atomic.staged_directory(target) as staging:
            open(os.path.join(staging, "mine"), "w").close()
            target.mkdir()
            (target / "theirs").write_text("")
    assert os.listdir(target) == ["theirs"]
    assert os.listdir(tmp_path) == ["out"]


KILLED_WRITE = """
import os, signal, sys
from tf_vqvae import atomic

def save(path):
    with open(path, "w") as f:
        f.write("half")
    os.kill(os.getpid(), signal.SIGKILL)

atomic.write_file(os.path.join(sys.argv[1], "model.keras"), save)
"""


def test_killed_write_leaves_a_staging_file_the_next_write_removes(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr
    (name,) = os.listdir(tmp_path)
    assert name.startswith(".tmp-model.keras@") and name.endswith(".keras")
    atomic.write_text(tmp_path / "model.keras", "whole")
    assert os.listdir(tmp_path) == ["model.keras"]


def test_every_writer_expands_the_home_directory(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert atomic.write_text("~/a.txt", "a") == str(home / "a.txt")
    assert atomic.write_bytes("~/b.bin", b"b") == str(home / "b.bin")

    def save(staging):
        assert os.path.dirname(staging) == str(home)
        with open(staging, "w") as file:
            file.write("c")

    assert atomic.write_file("~/c.keras", save) == str(home / "c.keras")
    with atomic.staged_directory("~/d/1") as staging:
        assert os.path.dirname(staging) == str(home / "d")
        open(os.path.join(staging, "f"), "w").close()
    with pytest.raises(FileExistsError) as info:
        with atomic.staged_directory("~/d/1"):
            pass
    assert str(info.value) == (
        "'~/d/1' already exists. Pass `overwrite=True` to replace it."
    )
    assert os.path.dirname(atomic.make_staging_dir("~", "tmp", "e")) == str(
        home
    )
    assert sorted(n for n in os.listdir(home) if n[0] != ".") == [
        "a.txt",
        "b.bin",
        "c.keras",
        "d",
    ]
    assert (home / "c.keras").read_text() == "c"
    assert os.listdir(home / "d" / "1") == ["f"]
    assert os.listdir(work) == []  # no literal "~" folder
