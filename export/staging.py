"""Staging directories for exports: written beside the target, renamed in.

An export is written to a hidden directory next to its final place and
renamed into place, so a reader never sees half an export. The name records
the host and process that made it (`.tmp-LABEL@HOST@PID@XXXX`); a process
killed mid-export leaves its directory behind, and the next export into the
same place removes such leftovers of processes that no longer run on this
host. Directories of live processes and of other hosts are left alone, and so
are `.old-` directories (a replaced export parked for deletion): a kill between
the two renames leaves the previous export only there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile

_PATTERN = re.compile(r"^\.tmp-.*@(?P<host>[^@]*)@(?P<pid>\d+)@[A-Za-z0-9_]+$")


def _host() -> str:
    # Hostnames never hold "@" or "/", but keep the name a single path part.
    return socket.gethostname().replace("@", "_").replace(os.sep, "_")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(parent: str) -> list[str]:
    """Removes `.tmp-` staging directories in `parent` of dead local processes.

    Returns the paths removed.
    """
    removed = []
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return removed
    host = _host()
    for name in names:
        match = _PATTERN.match(name)
        if match is None or match["host"] != host:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_exists(pid):
            continue
        path = os.path.join(parent, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def make_staging_dir(parent: str, kind: str, label: str) -> str:
    """A new hidden directory `.{kind}-{label}@HOST@PID@XXXX` in `parent`.

    `kind` is "tmp" (an export being written) or "old" (a replaced export
    awaiting deletion). Stale directories of dead processes are removed
    first.
    """
    if kind not in ("tmp", "old"):
        raise ValueError(f"`kind` must be 'tmp' or 'old'. Received: {kind!r}")
    remove_stale(parent)
    prefix = f".{kind}-{label}@{_host()}@{os.getpid()}@"
    return tempfile.mkdtemp(prefix=prefix, dir=parent)
