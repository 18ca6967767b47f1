"""Write files and directories so that no reader ever sees half of one.

Everything is written under a hidden staging name beside its final place (so
on the same file system) and renamed into place, which is atomic:

    write_text(path, text)          a text file
    write_bytes(path, data)         a binary file
    write_file(path, save)          a file written by `save(staging_path)`,
                                    e.g. `lambda p: model.save(p)`
    with staged_directory(path) as staging:
        ...                         a whole directory, e.g. an export

A staging name records the host and process that made it
(`.tmp-LABEL@HOST@PID@TOKEN[.ext]`): a process killed mid-write leaves it
behind, and the next write into the same directory removes such leftovers of
processes that no longer run on this host (`remove_stale`). Entries of live
processes and of other hosts are left alone, and so are `.old-` directories
(a replaced directory parked for deletion): a kill between the two renames of
`staged_directory(..., overwrite=True)` leaves the previous version only
there.

Every path may start with `~` (the user's home, `os.path.expanduser`): the
writers expand it, so `write_text("~/notes.txt", ...)` writes into the home
directory, not into a folder named `~`.

Files and directories are created with the permissions a plain `open` or
`mkdir` gives under the user's umask (`0o666` / `0o777` minus the umask), not
`tempfile`'s owner-only `0o600` / `0o700`: a server running as another user
can read the result when the umask allows it.

Standard library only (the CLI imports it before TensorFlow).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator

# `.tmp-` (being written) or `.old-` (replaced, awaiting deletion), a label,
# then `@HOST@PID@TOKEN` and, for files, the final name's extension.
_PATTERN = re.compile(
    r"^\.(?P<kind>tmp|old)-.*@(?P<host>[^@]*)@(?P<pid>\d+)@[A-Za-z0-9_]+"
    r"(\.[A-Za-z0-9_]+)?$"
)
_KINDS = ("tmp", "old")


def _host() -> str:
    # Hostnames never hold "@" or "/", but keep the name a single path part.
    return socket.gethostname().replace("@", "_").replace(os.sep, "_")


def process_exists(pid: int) -> bool:
    """Whether process `pid` runs on this host (any user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_stale(parent: str | os.PathLike) -> list[str]:
    """Removes `.tmp-` staging entries in `parent` of dead local processes.

    Files and directories alike; entries of live processes, of other hosts,
    `.old-` directories and names of any other form are kept.

    Returns:
        The paths removed.
    """
    parent = os.path.expanduser(os.fspath(parent))
    removed = []
    try:
        names = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    host = _host()
    for name in sorted(names):
        match = _PATTERN.match(name)
        if match is None or match["kind"] != "tmp" or match["host"] != host:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or process_exists(pid):
            continue
        path = os.path.join(parent, name)
        _remove(path)
        removed.append(path)
    return removed


def staging_name(kind: str, label: str, suffix: str = "") -> str:
    """A new hidden name `.{kind}-{label}@HOST@PID@TOKEN{suffix}`.

    Args:
        kind: `"tmp"` (being written) or `"old"` (replaced, to delete).
        label: what it stands for, usually the final name.
        suffix: kept at the end, e.g. `".keras"` for writers that check the
            extension.
    """
    if kind not in _KINDS:
        raise ValueError(
            f"`kind` must be 'tmp' or 'old'. Received: kind={kind!r}"
        )
    token = secrets.token_hex(4)
    return f".{kind}-{label}@{_host()}@{os.getpid()}@{token}{suffix}"


def make_staging_dir(parent: str | os.PathLike, kind: str, label: str) -> str:
    """Creates a new, empty hidden staging directory in `parent`.

    Named by `staging_name(kind, label)`; made with `mkdir` (the user's
    umask decides its permissions). Stale staging entries of dead processes
    in `parent` are removed first.

    Returns:
        The directory's path.
    """
    parent = os.path.expanduser(os.fspath(parent))
    remove_stale(parent)
    while True:
        path = os.path.join(parent, staging_name(kind, label))
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path


def _staging_file(path: str) -> str:
    """A new staging path beside `path`, with `path`'s extension."""
    directory, name = os.path.split(path)
    remove_stale(directory or ".")
    suffix = os.path.splitext(name)[1]
    if not re.fullmatch(r"(\.[A-Za-z0-9_]+)?", suffix):
        suffix = ""
    return os.path.join(directory, staging_name("tmp", name, suffix))


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike, save: Callable[[str], object]) -> str:
    """Writes `path` by calling `save(staging_path)`, then renames it in.

    `save` creates the file at the path it is given (which keeps `path`'s
    extension, for writers such as `keras.Model.save` that check it). If
    `save` raises (or the process is interrupted), `path` is untouched and
    the staging file is removed.

    Args:
        path: the final file (a leading `~` is expanded); its directory
            must exist.
        save: writes the file, e.g. `lambda p: model.save(p)`.

    Returns:
        `path`, `~` expanded.
    """
    path = os.path.expanduser(os.fspath(path))
    tmp = _staging_file(path)
    try:
        save(tmp)
        if not os.path.isfile(tmp):
            raise FileNotFoundError(
                f"`save` wrote no file at the path it was given: {tmp!r}"
            )
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Writes `data` to `path` through a staging file and a rename.

    Returns:
        `path`, `~` expanded.
    """

    def save(tmp: str) -> None:
        # O_EXCL on a fresh name; mode 0o666 minus the umask, like `open`.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as file:
            file.write(data)

    return write_file(path, save)


def write_text(
    path: str | os.PathLike, text: str, encoding: str = "utf-8"
) -> str:
    """Writes `text` to `path` through a staging file and a rename.

    Returns:
        `path`, `~` expanded.
    """
    return write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def staged_directory(
    path: str | os.PathLike, overwrite: bool = False
) -> Iterator[str]:
    """Builds a directory under a staging name and renames it to `path`.

    Yields a new, empty staging directory beside `path` (its parents are
    created). When the block ends normally the staging directory becomes
    `path`; when it raises (or the process is interrupted) it is removed and
    `path` is untouched.

    With `overwrite`, an existing `path` is first parked in an `.old-`
    directory, the new one renamed in, then the old one deleted: readers
    see the old or the new directory, never a mix. If the rename fails the
    old directory is put back.

    Args:
        path: the final directory (a leading `~` is expanded).
        overwrite: replace an existing `path`.

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False (checked
            again at the rename, for a directory created meanwhile).
    """
    given = os.fspath(path)
    path = os.path.abspath(os.path.expanduser(given))
    if os.path.exists(path) and not overwrite:
        raise _exists_error(given)
    parent = os.path.dirname(path)
    created = _make_parents(parent)
    try:
        try:
            tmp = make_staging_dir(parent, "tmp", os.path.basename(path))
        except FileNotFoundError:
            # Another writer's failure removed the empty parent it had
            # just created (`_remove_empty`): make it again, once.
            created += _make_parents(parent)
            tmp = make_staging_dir(parent, "tmp", os.path.basename(path))
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield tmp
        if os.path.exists(path) and not overwrite:
            raise _exists_error(given)
        _rename_into_place(tmp, path)
    except BaseException:
        _remove(tmp)
        _remove_empty(created)
        raise


def _make_parents(directory: str) -> list[str]:
    """`os.makedirs(directory)`; returns the directories it created,
    deepest first."""
    created = []
    while not os.path.exists(directory):
        created.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    os.makedirs(created[0] if created else directory, exist_ok=True)
    return created


def _remove_empty(directories: list[str]) -> None:
    """Removes `directories` (deepest first) while they are empty: a failed
    or interrupted build leaves no empty parents it created behind."""
    for directory in directories:
        try:
            os.rmdir(directory)
        except OSError:
            return


def _exists_error(path: str) -> FileExistsError:
    return FileExistsError(
        f"{path!r} already exists. Pass `overwrite=True` to replace it."
    )


def _rename_into_place(tmp: str, path: str) -> None:
    if not os.path.exists(path):
        os.rename(tmp, path)
        return
    parent, label = os.path.split(path)
    old = make_staging_dir(parent, "old", label)
    parked = os.path.join(old, label)
    os.rename(path, parked)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(parked, path)
        raise
    finally:
        if os.path.exists(path):
            _remove(old)
