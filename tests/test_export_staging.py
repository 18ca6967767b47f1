"""Staging directories of exports, and the removal of a killed export's."""

import os
import subprocess
import sys

from tf_vqvae.export import staging


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_staging_dirs_of_dead_local_processes_are_removed(tmp_path):
    host = staging._host()
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
        removed = staging.remove_stale(str(tmp_path))
        assert removed == [str(tmp_path / names["stale"])]
        assert sorted(os.listdir(tmp_path)) == sorted(
            name for key, name in names.items() if key != "stale"
        )
    finally:
        sleeper.kill()
        sleeper.wait()


def test_staging_dir_names_its_process_and_is_hidden(tmp_path):
    path = staging.make_staging_dir(str(tmp_path), "tmp", "7")
    name = os.path.basename(path)
    assert name.startswith(f".tmp-7@{staging._host()}@{os.getpid()}@")
    assert staging._PATTERN.match(name)
    # This process is alive: its own directory is never removed.
    assert staging.remove_stale(str(tmp_path)) == []
    assert os.path.isdir(path)
