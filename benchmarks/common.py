"""Helpers shared by the benchmark scripts: timing, memory, JSON results.

Every benchmark script runs in its own subprocess (possibly in a peer's venv,
which has neither tf_vqvae nor pytest), so this module imports only the
standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

# A time budget (`bench_vq_layer.py --max-seconds`) never cuts a timing
# below this many rounds.
MIN_TIMED_ROUNDS = 5


def run_main(main: Callable[[], object]) -> None:
    """Runs a benchmark script's `main`: Ctrl-C ends it with one line (no
    traceback, exit status 130); an integer `main` returns is the exit
    status."""
    try:
        status = main()
    except KeyboardInterrupt:
        print(f"{os.path.basename(sys.argv[0])}: interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(status, int):
        sys.exit(status)


def quiet_tensorflow() -> None:
    """Silences TensorFlow's C++ start-up logging (set before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (from /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (Linux >= 4.0), if allowed.

    After a reset, `peak_rss_mb` no longer shows the peak, so the scripts
    read `/proc/self/status` `VmHWM` through `hwm_mb` instead.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    """`VmHWM` (peak RSS since the last `reset_peak_rss`), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mb()


def time_repeats(
    fn: Callable[[], object], warmup: int, repeats: int
) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn` after `warmup` calls.

    `fn` must block until its work is done (return a host value).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def rates(times: list[float], work: float) -> dict:
    """min/median/max of `work / time` (the min rate is the slowest run)."""
    values = sorted(work / t for t in times)
    return {
        "min": values[0],
        "median": statistics.median(values),
        "max": values[-1],
        "runs": len(values),
    }


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    return parser


def add_impl_argument(
    parser: argparse.ArgumentParser, impls: tuple, how: str, **kwargs
) -> None:
    """`--impl a,b,...`: a comma-separated subset of `impls`."""

    def parse(value: str) -> list[str]:
        chosen = value.split(",")
        unknown = [impl for impl in chosen if impl not in impls]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {unknown}; choose from {impls}"
            )
        return chosen

    parser.add_argument(
        "--impl", type=parse, help=f"comma-separated, {how}: {impls}", **kwargs
    )


def emit(result: dict, out: str | None) -> None:
    """Writes `result` as JSON to `out` (or stdout)."""
    text = json.dumps(result, indent=1, sort_keys=True)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")


def configure_tf_threads(tf, threads: int) -> None:
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
