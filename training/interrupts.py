"""Ctrl-C (SIGINT) as the `vqvae` commands see it.

TensorFlow and Keras do not always let a `KeyboardInterrupt` through: one
that lands while their C++ code translates an error they raise and catch
themselves (graph tracing does, for every missing op attribute) reaches
Python as pybind11's `RuntimeError`, and code that catches every
`Exception` (Keras' deserialization) swallows it, so the command fails
later for no reason of its input. TensorFlow-free: the CLI imports it
before TensorFlow.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# pybind11's message when SIGINT's `KeyboardInterrupt` replaced an exception
# being translated.
_REPLACED_BY_INTERRUPT = "REPLACED BY KeyboardInterrupt"


def is_interrupt(error: BaseException | None) -> bool:
    """Whether `error` is a Ctrl-C: a `KeyboardInterrupt`, or the
    `RuntimeError` ("MISMATCH of original and normalized active exception
    types: ... REPLACED BY KeyboardInterrupt") pybind11 raises when the
    interrupt lands while TensorFlow translates one of its own errors."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, RuntimeError) and _REPLACED_BY_INTERRUPT in str(error)
    )


@contextlib.contextmanager
def noting_interrupts() -> Iterator[list]:
    """A list that gets an entry for each Ctrl-C while the block runs (the
    `KeyboardInterrupt` is still raised): a command that then fails,
    whatever the error, was interrupted. Only Python's default handler is
    replaced (not a handler of the caller's, nor SIG_IGN), and only in the
    main thread (where signal handlers live)."""
    seen: list = []

    def handler(signum, frame):
        seen.append(signum)
        signal.default_int_handler(signum, frame)

    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield seen
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
