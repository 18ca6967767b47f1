"""Tests for `training/startup.py`: TensorFlow's start-up lines are kept off
the terminal, every other line reaches it."""

import os
import sys

import pytest

from tf_vqvae.training.startup import StartupNoise, filtered_stderr

BANNER = (
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR"
)
ONEDNN = (
    "I0000 00:00:1796293220.074117   10140 port.cc:153] oneDNN custom "
    "operations are on. You may see slightly different numerical results "
    "due to floating-point round-off errors from different computation "
    "orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`."
)
NO_DRIVER = (
    "I0000 00:00:1796293220.074501   10140 cudart_stub.cc:31] Could not find "
    "cuda drivers on your machine, GPU will not be used."
)
CUINIT = (
    "E0000 00:00:1796293479.558375   14234 cuda_platform.cc:52] failed call "
    "to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR "
    "(303)"
)
FACTORY = (
    "E0000 00:00:1712345678.123456   12345 cuda_dnn.cc:8310] Unable to "
    "register cuDNN factory: Attempting to register factory for plugin "
    "cuDNN when one has already been registered"
)
WARNING = "W0000 00:00:1712345678.123456   12345 some.cc:1] a warning"
ERROR = "E0000 00:00:1712345678.123456   12345 some.cc:1] a real error"
FATAL = "F0000 00:00:1712345678.123456   12345 some.cc:1] a fatal error"
PYTHON = "UserWarning: something Python says"


@pytest.mark.parametrize(
    "level, shown",
    [
        (0, [BANNER, ONEDNN, NO_DRIVER, CUINIT, FACTORY, WARNING, ERROR]),
        (1, [CUINIT, FACTORY, WARNING, ERROR]),
        (2, [ERROR]),
        (3, []),
    ],
    ids=["level-0", "level-1", "level-2", "level-3"],
)
def test_startup_noise_by_level(level, shown):
    lines = [BANNER, ONEDNN, NO_DRIVER, CUINIT, FACTORY, WARNING, ERROR]
    noise = StartupNoise(level)
    kept = [line for line in lines if not noise(line)]
    assert kept == shown
    # Fatal messages and Python's own lines always pass.
    assert not noise(FATAL) and not noise(PYTHON)


def test_failed_cuinit_is_shown_when_there_is_a_driver():
    """Without the "no CUDA driver" line first, a failed cuInit is a real
    error."""
    noise = StartupNoise(2)
    assert not noise(CUINIT)
    assert noise(NO_DRIVER)
    assert noise(CUINIT)


def test_filtered_stderr_drops_noise_and_forwards_the_rest(capfd):
    with filtered_stderr(StartupNoise(2)):
        # Written to file descriptor 2 directly, as C++ libraries do.
        os.write(2, f"{BANNER}\n{ONEDNN}\n{ERROR}\n".encode())
        # One write: under capfd, Python's sys.stderr bypasses file
        # descriptor 2 and the filter's thread, so a `print` (two writes)
        # could be split by a line the thread forwards meanwhile.
        sys.stderr.write(PYTHON + "\n")
        sys.stderr.flush()
    os.write(2, b"after\n")
    # (Only the lines written to the descriptor keep their order.)
    lines = capfd.readouterr().err.splitlines()
    assert sorted(lines) == sorted([ERROR, PYTHON, "after"])
    assert lines.index(ERROR) < lines.index("after")
