"""`vqvae demo` wall time per precision: float32 against `auto`.

    python benchmarks/bench_demo.py --out demo.json

Each run is `vqvae demo --precision P` in a fresh interpreter and a fresh
model directory, as on a fresh clone after the install: it trains the
VQ-VAE and its prior, samples, evaluates and exports. Reported per
precision: the wall time of the whole process (TensorFlow's import
included), the demo's own VQ-VAE and prior training times, the precision
`auto` resolved to, and the held-out metrics of `evaluation.json`, so a
faster precision is seen to cost nothing. With `--repeats N` the
precisions alternate N times, in alternating order (the median is
reported).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import common

DONE = re.compile(
    r"vqvae demo: done in (\d+) s \(VQ-VAE (\d+) s, prior (\d+) s\)"
)
PRECISION = re.compile(r"vqvae: precision (\w+) \(")
# The demo's `evaluation.json` fields worth showing next to the time.
METRICS = ("mse", "psnr", "perplexity", "bits_per_dim_pixelcnn_prior")
TINY_FLAGS = ("--epochs", "1", "--prior-epochs", "1", "--steps-per-epoch", "2")


def run_demo(precision: str, model_dir: str, tiny: bool) -> dict:
    """One `vqvae demo` in a child process: seconds, precision, metrics."""
    command = [
        sys.executable,
        "-c",
        "import sys; from tf_vqvae.training.cli import main; "
        "sys.exit(main(sys.argv[1:]))",
        "demo",
        "--model-dir",
        model_dir,
        "--precision",
        precision,
        *(TINY_FLAGS if tiny else ()),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"vqvae demo --precision {precision} failed")
    stages = DONE.search(done.stdout)
    chosen = PRECISION.findall(done.stdout)
    if stages is None or not chosen:
        sys.stderr.write(done.stdout[-4000:])
        raise SystemExit(
            f"vqvae demo --precision {precision}: no 'done in' or "
            "'precision' line in its output"
        )
    with open(os.path.join(model_dir, "evaluation.json")) as f:
        evaluation = json.load(f)
    return {
        "seconds": seconds,
        "train_s": float(stages.group(2)),
        "train_prior_s": float(stages.group(3)),
        # One line per model (VQ-VAE, prior); both take `--precision`.
        "resolved": sorted(set(chosen)),
        "metrics": {
            name: evaluation[name] for name in METRICS if name in evaluation
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--precisions",
        default="float32,auto",
        help="comma-separated `--precision` values (default: float32,auto)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smoke test: 1 epoch of 2 steps for each model",
    )
    parser.set_defaults(repeats=1)
    args = parser.parse_args(argv)
    precisions = args.precisions.split(",")
    runs = {p: [] for p in precisions}
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        for round_ in range(args.repeats):
            # The order alternates, so no precision always pays the first
            # run's cold caches.
            order = precisions if round_ % 2 == 0 else precisions[::-1]
            for p in order:
                model_dir = os.path.join(tmp, f"{p}_{round_}")
                runs[p].append(run_demo(p, model_dir, args.tiny))
    results = {}
    for p, each in runs.items():
        ordered = sorted(each, key=lambda r: r["seconds"])
        results[p] = {
            # The lower median with an even number of runs.
            **ordered[(len(ordered) - 1) // 2],
            "seconds_all": [r["seconds"] for r in ordered],
        }
    result = {
        "benchmark": "demo",
        "tiny": args.tiny,
        "results": results,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    common.emit(result, args.out)
    return result


if __name__ == "__main__":
    common.run_main(main)
