"""Importing TensorFlow for the CLI without its start-up log lines.

`import tensorflow` prints, before absl's logging is initialised and so
whatever `TF_CPP_MIN_LOG_LEVEL` says, lines like these (twice: two of its
shared libraries each carry absl):

    WARNING: All log messages before absl::InitializeLog() is called are ...
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers on ...

and on GPU machines `E... Unable to register cuDNN factory: ...` (the same
for cuFFT and cuBLAS), which are harmless; listing the GPUs on a machine
without a CUDA driver adds `E... failed call to cuInit: ...`.
`import_commands` imports TensorFlow and lists the GPUs with file
descriptor 2 (stderr) going through a pipe that drops those lines, at the
level `TF_CPP_MIN_LOG_LEVEL` asks for (the CLI's default, 2, drops info and
warning lines, as TensorFlow does after start-up), and passes every other
line on at once: errors, fatal messages and anything Python prints still
reach the terminal. `TF_CPP_MIN_LOG_LEVEL=0` shows them all.

Importing this module imports no TensorFlow (`vqvae --help` does not
need it).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator

# The CLI's default `TF_CPP_MIN_LOG_LEVEL`: errors only.
DEFAULT_LOG_LEVEL = "2"
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] (.*)")
_BEFORE_INIT = "WARNING: All log messages before absl::InitializeLog()"
_FACTORY = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory")
_NO_CUDA_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT_FAILED = "failed call to cuInit"
# absl's severities in the order of TF_CPP_MIN_LOG_LEVEL's levels.
_LEVELS = "IWEF"


def log_level() -> int:
    """`TF_CPP_MIN_LOG_LEVEL` as an int (0 when it is not a number)."""
    value = os.environ.get("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    try:
        return int(value)
    except ValueError:
        return 0


class StartupNoise:
    """Says whether a line of stderr is TensorFlow start-up noise that
    `level` (as in `TF_CPP_MIN_LOG_LEVEL`) hides.

    Hidden: absl's pre-initialisation banner, info (level >= 1) and warning
    (level >= 2) lines; at level >= 2 also the duplicate CUDA factory
    registrations, and the failed `cuInit` once TensorFlow has said that
    the machine has no CUDA driver (with a driver, that failure is a real
    error and is shown).
    """

    def __init__(self, level: int):
        self.level = level
        self.no_cuda_driver = False

    def __call__(self, line: str) -> bool:
        if self.level < 1:
            return False
        if line.startswith(_BEFORE_INIT):
            return True
        match = _ABSL_LINE.match(line)
        if match is None:
            return False
        message = match.group(2)
        if message.startswith(_NO_CUDA_DRIVER):
            self.no_cuda_driver = True
        if _LEVELS.index(match.group(1)) < self.level:
            return True
        if self.level < 2:
            return False
        if self.no_cuda_driver and message.startswith(_CUINIT_FAILED):
            return True
        return bool(_FACTORY.search(message))


@contextlib.contextmanager
def filtered_stderr(drop: Callable[[str], bool]) -> Iterator[None]:
    """Sends the process' file descriptor 2 through a pipe that drops the
    lines `drop` says and forwards the others as they come.

    At the file-descriptor level, so it also filters what C++ libraries
    write. Restored on exit.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # No stderr (e.g. closed by a daemon): nothing to filter.
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not drop(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        # The pipe's last write end closes here, so `forward` sees its end.
        os.dup2(saved, 2)
        thread.join(timeout=10)
        os.close(saved)


def import_commands():
    """`tf_vqvae.training.commands`, imported (with TensorFlow) and its
    devices listed without the start-up lines `TF_CPP_MIN_LOG_LEVEL`
    (default 2) hides."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    with filtered_stderr(StartupNoise(log_level())):
        import tensorflow as tf

        from tf_vqvae.training import commands

        # Looking for GPUs initialises CUDA, which logs when it fails.
        tf.config.list_physical_devices("GPU")
    return commands
