"""`import tf_vqvae` on top of `import tensorflow`: seconds and memory.

    python benchmarks/bench_import.py --repeats 10 --out import.json

Each repeat is a fresh interpreter that imports TensorFlow, then tf_vqvae,
and reports the wall time and resident-memory growth of the second import
alone (TensorFlow's own import varies by more than the whole difference).
It also lists heavy modules (TFP, tfds, scikit-image, matplotlib, tf_keras)
that the second import loaded: tf_vqvae imports them only when used.

The module's package is byte-compiled first (`compileall`, as `pip install`
does for a regular install): an editable checkout under
`PYTHONDONTWRITEBYTECODE=1` would otherwise recompile every module on each
import, which is not what users' imports cost.
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import subprocess
import sys
import time

import common

HEAVY = (
    "tensorflow_probability",
    "tensorflow_datasets",
    "skimage",
    "matplotlib",
    "tf_keras",
    "PIL",
    "scipy",
)

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {bench_dir!r})
import common
t0 = time.perf_counter()
import tensorflow
t1 = time.perf_counter()
rss1 = common.rss_mb()
before = set(sys.modules)
import {module}
t2 = time.perf_counter()
rss2 = common.rss_mb()
heavy = sorted(
    {{m.split(".")[0] for m in set(sys.modules) - before}} & set({heavy!r})
)
print(json.dumps({{"tensorflow_s": t1 - t0, "module_s": t2 - t1,
    "module_mb": rss2 - rss1, "heavy": heavy}}))
"""


def measure_once(module: str) -> dict:
    code = _CHILD.format(
        bench_dir=os.path.dirname(os.path.abspath(__file__)),
        module=module,
        heavy=HEAVY,
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def compile_package(module: str) -> None:
    """Writes the `.pyc` files of `module`'s package (see the docstring)."""
    spec = importlib.util.find_spec(module.split(".")[0])
    for path in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(path, quiet=1)


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--module", default="tf_vqvae")
    parser.add_argument(
        "--tiny", action="store_true", help="smoke test: one repeat"
    )
    args = parser.parse_args(argv)
    repeats = 1 if args.tiny else args.repeats
    compile_package(args.module)
    runs = [measure_once(args.module) for _ in range(repeats)]
    seconds = [r["module_s"] for r in runs]
    memory = sorted(r["module_mb"] for r in runs)
    result = {
        "benchmark": "import",
        "module": args.module,
        "import_s": {
            "min": min(seconds),
            "median": sorted(seconds)[len(seconds) // 2],
            "max": max(seconds),
            "runs": len(seconds),
        },
        "tensorflow_s": sorted(r["tensorflow_s"] for r in runs),
        "memory_mb": {
            "min": memory[0],
            "median": memory[len(memory) // 2],
            "max": memory[-1],
        },
        "heavy_modules": sorted({m for r in runs for m in r["heavy"]}),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    common.emit(result, args.out)
    return result


if __name__ == "__main__":
    common.run_main(main)
