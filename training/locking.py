"""One writer per directory: an exclusive lock held for a command's life.

    with DirectoryLock("runs/cifar", what="`model_dir`"):
        ...                       # train, or export into the directory

The lock is `fcntl.flock` on `DIRECTORY/LOCK`, which names its holder (pid,
host, command, since when) so that a second command can say who holds it.
The kernel releases a `flock` when its process ends, however it ends, so a
run killed with SIGKILL leaves no lock behind: only the `LOCK` file, which
the next command takes over with a message. A `LOCK` file naming another
host is refused while that host may still run (a file system that does not
share `flock` between hosts cannot tell); deleting the file takes it over.

Standard library only; Linux and macOS (`fcntl`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time

from tf_vqvae.atomic import process_exists
from tf_vqvae.training.layout import LOCK_FILE


class LockedError(RuntimeError):
    """The directory is locked by another command: exit code 2."""


class NotWritableError(RuntimeError):
    """The directory cannot be created or written: exit code 2."""


def this_command() -> str:
    """The command line of this process, as a user would type it."""
    program = os.path.basename(sys.argv[0]) if sys.argv else "python"
    if program in ("cli.py", "__main__.py"):
        program = "vqvae"
    text = shlex.join([program, *sys.argv[1:]])
    return text if len(text) <= 300 else text[:297] + "..."


def writable_error(path: str, error: OSError, what: str) -> NotWritableError:
    """A one-line `NotWritableError` for an `OSError` writing `path`."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        parent = path
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent == path and not os.path.isdir(path):
            return NotWritableError(
                f"{what} {path!r} is a file; pass a directory path. "
                f"Received: {path!r}",
            )
        if parent and not os.path.isdir(parent):
            return NotWritableError(
                f"{what} {path!r} is below {parent!r}, which is a file; "
                f"pass a directory path. Received: {path!r}",
            )
    return NotWritableError(
        f"{what} {path!r} cannot be written ({reason}); pass a writable "
        f"directory. Received: {path!r}",
    )


class DirectoryLock:
    """An exclusive, non-blocking lock on a directory (created if needed).

    Args:
        directory: the directory to lock; `directory/LOCK` holds the lock.
        what: how messages name the directory (e.g. "`model_dir`").
        command: the holder's command line, written into `LOCK`
            (default: this process's).

    Raises (from `acquire`):
        LockedError: another live command holds the lock.
        NotWritableError: the directory cannot be created or written.
    """

    def __init__(
        self,
        directory: str,
        what: str = "directory",
        command: str | None = None,
    ):
        self.directory = directory
        self.what = what
        self.command = command or this_command()
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock; a `LOCK` left by a dead process is taken over
        with a line on stderr."""
        if self._fd is not None:
            return
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as error:
            raise writable_error(self.directory, error, self.what) from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise writable_error(self.directory, error, self.what) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LockedError(self._locked_message(holder)) from None
            # The holder may have removed the file between our open and our
            # flock: then we hold a lock on a deleted file; open it again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            self._check_left_over(_read_holder(fd))
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except BaseException as error:
            os.close(fd)
            if isinstance(error, OSError):
                raise writable_error(self.directory, error, self.what) from None
            raise
        self._fd = fd

    def _check_left_over(self, holder: dict | None) -> None:
        if not holder or holder.get("pid") == os.getpid():
            return
        host = holder.get("host")
        if host not in (None, socket.gethostname()):
            raise LockedError(
                self._locked_message(holder)
                + f"; if it no longer runs, delete {self.path}"
            )
        pid = holder.get("pid")
        state = (
            "which no longer runs"
            if not isinstance(pid, int) or not process_exists(pid)
            else "which no longer holds it"
        )
        print(
            f"vqvae: taking over the lock of {self.directory} left by "
            f"{_describe(holder)}, {state}.",
            file=sys.stderr,
            flush=True,
        )

    def _locked_message(self, holder: dict | None) -> str:
        return (
            f"{self.what} {self.directory!r} is in use by "
            f"{_describe(holder)}; wait for it to end or stop it, or pass "
            f"another directory. Received: {self.directory!r}"
        )

    def release(self) -> None:
        """Removes `LOCK` and releases the lock (no-op if not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                os.remove(self.path)
        os.close(fd)

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _read_holder(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data.decode())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process (it has not yet said which)"
    return (
        f"process {holder.get('pid')} on {holder.get('host')} "
        f"({holder.get('command')}, since {holder.get('since')})"
    )
