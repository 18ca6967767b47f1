"""Runs every benchmark against the peers and writes BENCHMARKS.md.

    python benchmarks/run.py                      # everything, over 2 hours
    python benchmarks/run.py --only vq,import     # some sections
    python benchmarks/run.py --tiny --out /tmp/B.md   # seconds-long smoke run

Peers run in their own virtual environments, created on first use under
`--venv-dir` (default `$BENCH_VENV_DIR`, else `~/.cache/tf-vqvae-bench`),
outside the repository:

- `sonnet`: dm-sonnet 2.0.2 on top of this interpreter's packages (same
  TensorFlow; a `.pth` file adds this environment's site-packages), so
  tf_vqvae, Sonnet and the keras-io design can be timed in one process.
- `torch`: torch 2.13.0 (CPU wheel) and vector-quantize-pytorch.

`--sonnet-python` / `--torch-python` point at existing interpreters instead.
Every benchmark runs in a subprocess and returns JSON (kept in
`--results-dir`, by default `benchmarks/results/`: committed with
BENCHMARKS.md, so `--resume` can write the document again, or re-run one
section by deleting its JSON; `machines.json` records the CPU of each, and
`--resume` re-runs those measured on another CPU); this script turns them
into tables with min/median/max and ratios. Pairs timed in one process
are compared round by round (the median of per-round ratios), which
cancels most of the drift of a shared machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import NamedTuple

import common

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SECTIONS = (
    "vq",
    "step",
    "import",
    "quality",
    "sampling",
    "export",
    "quantizers",
    "quantizer_quality",
    "speech",
    "demo",
)
K_VALUES = (512, 8192, 65536)
# Peers hold a dense N x K distance (and one-hot) matrix: 4 GiB each at
# K = 65536, which this shared 24 GiB machine cannot spare for them.
PEER_MAX_K = 8192
SONNET_SPEC = ("dm-sonnet==2.0.2",)
TORCH_SPEC = ("torch==2.13.0", "vector-quantize-pytorch")

NAMES = {
    "tf_vqvae": "tf_vqvae VectorQuantizer",
    "tf_vqvae_ema": "tf_vqvae VectorQuantizerEMA",
    "sonnet": "Sonnet VectorQuantizer",
    "sonnet_noppl": "Sonnet VectorQuantizer, perplexity pruned",
    "sonnet_ema": "Sonnet VectorQuantizerEMA",
    "kerasio": "keras-io example design",
    "vqtorch": "vector-quantize-pytorch (EMA)",
    "tf_vqvae_rvq": "tf_vqvae ResidualVectorQuantizer",
    "vqtorch_rvq": "vector-quantize-pytorch ResidualVQ",
    "tf_vqvae_fsq": "tf_vqvae FiniteScalarQuantizer",
    "vqtorch_fsq": "vector-quantize-pytorch FSQ",
    "tf_vqvae_lfq": "tf_vqvae LookupFreeQuantizer",
    "vqtorch_lfq": "vector-quantize-pytorch LFQ",
}
# Quantizer kind -> (tf_vqvae impl, vector-quantize-pytorch impl) of
# `bench_vq_layer.py`.
QUANTIZER_IMPLS = {
    "rvq": ("tf_vqvae_rvq", "vqtorch_rvq"),
    "fsq": ("tf_vqvae_fsq", "vqtorch_fsq"),
    "lfq": ("tf_vqvae_lfq", "vqtorch_lfq"),
}
# Issue 13's sizes for the quantizers section (N = 16384, D = 64), with
# `bench_vq_layer.py`'s flags, the `--tiny` sizes, and the speed target
# against vector-quantize-pytorch (peer time / ours).
QUANTIZER_SIZES = {
    "rvq": ("--num-quantizers", 8, "--k", 1024),
    "fsq": ("--levels", 8, 5, 5, 5),
    "lfq": ("--k", 2**14),
}
# The quantizer section times this many steps per process, so that two
# processes' medians compare (a step takes milliseconds), or as many as fit
# in `QUANTIZER_SECONDS` (at least 5: a peer's LFQ step takes 20 s).
QUANTIZER_REPEATS = 50
QUANTIZER_SECONDS = 60
TINY_QUANTIZER_SIZES = {
    "rvq": ("--num-quantizers", 3, "--k", 16),
    "fsq": ("--levels", 4, 4),
    "lfq": ("--k", 2**6),
}
QUANTIZER_TARGETS = {"rvq": 2.0, "fsq": 1.0, "lfq": 1.0}


# ------------------------------------------------------------------- venvs
def _venv_python(path: str) -> str:
    return os.path.join(path, "bin", "python")


def ensure_venv(
    venv_dir: str, name: str, packages: tuple, inherit: bool
) -> str:
    """Creates (once) a venv with `packages`; returns its interpreter."""
    path = os.path.join(venv_dir, name)
    python = _venv_python(path)
    marker = os.path.join(path, "bench-ready")
    if os.path.exists(marker):
        return python
    os.makedirs(venv_dir, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    if inherit:
        site_dir = subprocess.run(
            [
                python,
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        base = sysconfig.get_path("purelib")
        with open(os.path.join(site_dir, "tf_vqvae_bench_base.pth"), "w") as f:
            f.write(f"import site; site.addsitedir({base!r})\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", *packages], check=True
    )
    with open(marker, "w") as f:
        f.write(" ".join(packages) + "\n")
    return python


# ------------------------------------------------------------ subprocesses
# Beside the results: the CPU each one was measured on (`cpu()`), so that
# `--resume` never mixes machines in one BENCHMARKS.md.
MACHINES_FILE = "machines.json"


class Runner:
    def __init__(self, args):
        self.args = args
        self.results_dir = args.results_dir
        os.makedirs(self.results_dir, exist_ok=True)
        self.log = open(os.path.join(self.results_dir, "run.log"), "a")
        self.cpu = cpu()
        self._machines_path = os.path.join(self.results_dir, MACHINES_FILE)
        self.machines = (
            _load_json(self._machines_path)
            if os.path.exists(self._machines_path)
            else {}
        )

    def keep(self, name: str, path: str) -> bool:
        """Whether `--resume` keeps the result `name` at `path`: it exists
        and was not recorded as measured on another CPU (results from
        before the record are kept, with a note)."""
        if not (self.args.resume and os.path.exists(path)):
            return False
        stamp = f"[{time.strftime('%H:%M:%S')}] {name}"
        recorded = self.machines.get(name)
        if recorded is None:
            print(f"{stamp}: kept (its CPU was not recorded)", flush=True)
            return True
        if recorded != self.cpu:
            print(f"{stamp}: measured on {recorded}; re-running", flush=True)
            return False
        print(f"{stamp}: kept", flush=True)
        return True

    def _record(self, name: str) -> None:
        self.machines[name] = self.cpu
        with open(self._machines_path, "w") as f:
            json.dump(self.machines, f, indent=2, sort_keys=True)
            f.write("\n")

    def run(self, python: str, script: str, name: str, *script_args) -> dict:
        """Runs `script` with `--out NAME.json`; returns its JSON or None."""
        out = os.path.join(self.results_dir, f"{name}.json")
        if self.keep(name, out):
            return _load_json(out)
        cmd = [python, os.path.join(HERE, script), *map(str, script_args)]
        cmd += ["--out", out]
        return self._call(cmd, name, lambda: _load_json(out))

    def _call(self, cmd, name, load):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        self.log.write(f"$ {shlex.join(cmd)}\n")
        self.log.flush()
        proc = subprocess.run(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        if proc.returncode:
            print(f"  failed ({proc.returncode}); see run.log", flush=True)
            return None
        self._record(name)
        return load()

    def run_fragment(self, script: str, name: str, *script_args) -> str | None:
        """Another engineer's script printing a markdown fragment.

        Both `bench_sampling.py` and `bench_export.py` print their table to
        stdout and take `--json`; the fragment is kept as `NAME.md`.
        """
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            return None
        md = os.path.join(self.results_dir, f"{name}.md")
        if self.keep(name, md):
            return open(md).read()
        cmd = [sys.executable, path, *script_args]
        cmd += ["--json", os.path.join(self.results_dir, f"{name}.json")]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        self.log.write(f"$ {shlex.join(cmd)} > {md}\n")
        self.log.flush()
        # Written beside `md` and renamed on success, so an interrupted or
        # failed run leaves nothing that `--resume` would keep.
        partial = md + ".partial"
        with open(partial, "w") as stdout:
            proc = subprocess.run(
                cmd, stdout=stdout, stderr=self.log, env=env, cwd=REPO
            )
        if proc.returncode:
            os.remove(partial)
            print(f"  failed ({proc.returncode}); see run.log", flush=True)
            return None
        os.replace(partial, md)
        self._record(name)
        return open(md).read()


def _load_json(path: str):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------ tables
def _fmt(value: float, digits: int = 3) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e4:
        return f"{value / 1e3:.0f} k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _triple(stats: dict) -> str:
    return " / ".join(_fmt(stats[k]) for k in ("min", "median", "max"))


def paired_ratio(results: dict, ours: str, peer: str) -> float | None:
    """Median over rounds of peer_time / our_time (same process only)."""
    if ours not in results or peer not in results:
        return None
    pairs = zip(results[ours]["seconds"], results[peer]["seconds"])
    return statistics.median(b / a for a, b in pairs)


def _ratio(value: float | None, target: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}x"
    if target is not None:
        text += " ✅" if value >= target else " ❌"
    return text


def vq_section(vq: dict, memory: dict, torch: dict) -> list[str]:
    lines = [
        "## 1. VQ layer, forward + backward",
        "",
        "N = 16384 vectors, D = 64; straight-through estimator, codebook and "
        "commitment losses, EMA update where there is one, gradients to the "
        "inputs and to a trainable codebook (`bench_vq_layer.py`). "
        "Throughput: all TensorFlow implementations timed round-robin in one "
        "process (vectors/s min / median / max over rounds); ratios are "
        "medians of per-round ratios (higher = tf_vqvae faster). Peak memory: "
        "a separate process per implementation, peak RSS over all its steps "
        "(tracing and warm-up included) minus RSS before the first. "
        "vector-quantize-pytorch runs in its own process, so its ratio "
        "compares medians of different processes.",
        "",
        "| K | implementation | vectors/s (min / median / max) "
        "| peak extra memory | tf_vqvae ÷ it (same-type quantizer) |",
        "|---|---|---|---|---|",
    ]
    targets = []
    for k, data in vq.items():
        if not data:
            lines.append(f"| {k} | (failed) | | | |")
            continue
        results = dict(data["results"])
        if torch.get(k):
            results.update(torch[k]["results"])
        for impl, res in results.items():
            mem = memory.get((k, impl))
            mem_text = f"{mem:.0f} MiB" if mem is not None else "-"
            ours = (
                "tf_vqvae_ema"
                if impl in ("sonnet_ema", "vqtorch")
                else ("tf_vqvae")
            )
            if impl.startswith("tf_vqvae"):
                ratio_text = "-"
            elif impl == "vqtorch":
                ratio_text = _ratio(
                    data["results"]["tf_vqvae_ema"]["vectors_per_s"]["median"]
                    / res["vectors_per_s"]["median"]
                )
            else:
                ratio_text = _ratio(paired_ratio(results, ours, impl))
            lines.append(
                f"| {k} | {NAMES[impl]} | {_triple(res['vectors_per_s'])} "
                f"| {mem_text} | {ratio_text} |"
            )
        if k == 65536:
            lines.append(
                f"| {k} | peers | not run: a dense N x K float32 matrix is 4 "
                "GiB (Sonnet also builds an N x K one-hot) | | |"
            )
        for ours, peer, target in (
            ("tf_vqvae", "sonnet", 1.2 if k == 512 else 2.0),
            ("tf_vqvae", "sonnet_noppl", 1.2 if k == 512 else 2.0),
            ("tf_vqvae_ema", "sonnet_ema", 1.5),
        ):
            ratio = paired_ratio(results, ours, peer)
            if ratio is not None:
                targets.append(
                    (f"{NAMES[ours]} vs {NAMES[peer]}, K={k}", ratio, target)
                )
        for ours, peer in (
            ("tf_vqvae", "sonnet"),
            ("tf_vqvae", "sonnet_noppl"),
            ("tf_vqvae_ema", "sonnet_ema"),
        ):
            a, b = memory.get((k, ours)), memory.get((k, peer))
            if k == 8192 and a is not None and b is not None:
                targets.append(
                    (
                        f"peak memory {NAMES[ours]} <= {NAMES[peer]}, K={k}"
                        f" ({a:.0f} vs {b:.0f} MiB)",
                        b / max(a, 1e-9),
                        1.0,
                    )
                )
        if k == 65536 and memory.get((k, "tf_vqvae")) is not None:
            for ours in ("tf_vqvae", "tf_vqvae_ema"):
                mb = memory.get((k, ours))
                if mb is not None:
                    targets.append(
                        (
                            f"{NAMES[ours]} K=65536 peak extra {mb:.0f} MiB"
                            " within 2 GiB",
                            2048 / max(mb, 1e-9),
                            1.0,
                        )
                    )
    return lines + [""], targets


def _sizes(data: dict, kind: str) -> str:
    if kind == "rvq":
        return f"{data['num_quantizers']} levels x K={data['k']}"
    if kind == "fsq":
        levels = data["levels"]
        return f"levels {tuple(levels)} (K={math.prod(levels)})"
    return f"K=2**{int(data['k']).bit_length() - 1}"


def quantizer_ratio(ours: dict, peers: dict, kind: str) -> float | None:
    """Peer time / our time of one kind (medians of the two processes)."""
    mine, peer = ours.get(kind), peers.get(kind)
    if not mine or not peer:
        return None
    our_impl, peer_impl = QUANTIZER_IMPLS[kind]
    return (
        mine["results"][our_impl]["vectors_per_s"]["median"]
        / peer["results"][peer_impl]["vectors_per_s"]["median"]
    )


def quantizers_section(ours: dict, peers: dict) -> tuple[list[str], list]:
    """Section 8: residual VQ, FSQ and LFQ against vector-quantize-pytorch.

    `ours` and `peers` map a kind (`"rvq"`, `"fsq"`, `"lfq"`) to the JSON of
    `bench_vq_layer.py` with the tf_vqvae and the vector-quantize-pytorch
    implementation (each alone in its process, so each has its peak memory).
    """
    title = "## 8. Quantizers vs vector-quantize-pytorch (issue 13)"
    first = next((data for data in ours.values() if data), {})
    n, d = first.get("n", 16384), first.get("d", 64)
    lines = [
        title,
        "",
        f"`bench_vq_layer.py` at issue 13's sizes: N = {n} vectors of D = "
        f"{d}, forward + backward (training mode: straight-through gradients, "
        "losses, EMA updates and usage statistics; gradients to the inputs "
        "and every trainable weight). Residual VQ: EMA codebooks (decay "
        "0.99, commitment 0.25), straight-through gradients (tf_vqvae's "
        "default; vector-quantize-pytorch's default rotation trick is turned "
        "off); tf_vqvae with its defaults, which also draw "
        "each level's codebook from the first batch and re-seed dead codes, "
        "vector-quantize-pytorch's `ResidualVQ` with neither. FSQ and LFQ "
        f"project D = {d} to the code channels and back in both libraries; "
        "LFQ with entropy weight 0.1, commitment 0.25 and the same "
        "temperature. Each implementation runs alone in its own process "
        "(vector-quantize-pytorch in its torch venv): the ratio compares "
        "medians of two processes (each over the steps it timed: up to "
        f"{QUANTIZER_REPEATS}, or as many as fit in {QUANTIZER_SECONDS} s "
        f"and at least {common.MIN_TIMED_ROUNDS}), and the peak memory is "
        "the process's peak RSS over all steps minus its RSS before the "
        "first.",
        "",
        "| quantizer | sizes | implementation | vectors/s (min / median / "
        "max, steps) | peak extra memory | tf_vqvae ÷ it |",
        "|---|---|---|---|---|---|",
    ]
    targets = []
    for kind, (our_impl, peer_impl) in QUANTIZER_IMPLS.items():
        mine, peer = ours.get(kind), peers.get(kind)
        if not mine:
            if kind in ours:
                lines.append(f"| {kind} | | (failed) | | | |")
            continue
        sizes = _sizes(mine, kind)
        rows = [(our_impl, mine["results"][our_impl], None)]
        ratio = quantizer_ratio(ours, peers, kind)
        if ratio is not None:
            rows.append((peer_impl, peer["results"][peer_impl], ratio))
        for impl, res, row_ratio in rows:
            mem = res.get("peak_extra_mb")
            mem_text = f"{mem:.0f} MiB" if mem is not None else "-"
            lines.append(
                f"| {kind} | {sizes} | {NAMES[impl]} "
                f"| {_triple(res['vectors_per_s'])} "
                f"({res['vectors_per_s']['runs']} steps) | {mem_text} "
                f"| {_ratio(row_ratio)} |"
            )
        if kind in peers and not peer:
            lines.append(
                f"| {kind} | {sizes} | {NAMES[peer_impl]} (failed) | | | |"
            )
        if ratio is not None:
            our_mem = mine["results"][our_impl].get("peak_extra_mb")
            peer_mem = peer["results"][peer_impl].get("peak_extra_mb")
            memory = (
                f"; peak memory {our_mem:.0f} vs {peer_mem:.0f} MiB"
                if our_mem is not None and peer_mem is not None
                else ""
            )
            targets.append(
                (
                    f"{NAMES[our_impl]} vs {NAMES[peer_impl]}, {sizes}, "
                    f"forward + backward (issue 13{memory})",
                    ratio,
                    QUANTIZER_TARGETS[kind],
                )
            )
    if not peers:
        lines.append(
            "| | | vector-quantize-pytorch | not run (no torch "
            "interpreter: `--torch-python`) | | |"
        )
    return lines + [""], targets


def step_section(
    steps: dict, bf16: Bf16Timing | None = None
) -> tuple[list[str], list]:
    lines = [
        "## 2. Full training step",
        "",
        "`bench_train_step.py`: the three implementations of `models.py` "
        "(same layer shapes) in one process, timed round-robin by epochs of "
        "`steps_per_epoch` steps on in-memory images. The Keras models "
        "(tf_vqvae, keras-io) step through the train function that "
        "`model.fit` compiles and runs for each step (separate short `fit` "
        "calls cost seconds of set-up each here); Sonnet through a "
        "`tf.function` step in a Python loop, as its example does. "
        '"in one fit": tf_vqvae afterwards inside one multi-epoch '
        "`model.fit` call (not interleaved). GFLOP/s = median images/s x 3 x "
        "forward FLOPs per image; peak = best 2048^3 `tf.matmul` in the "
        "same process, fp32 (bf16 for the `_bf16` rows). `tf_vqvae_bf16`: "
        "`VQVAE` under `mixed_bfloat16` (`--precision bfloat16`); "
        "`sonnet_bf16`: Sonnet's encoder and decoder fed bfloat16 (Sonnet 2 "
        "has no mixed-precision policy, so its weights are bfloat16 too).",
        *(
            ["", f"bfloat16 rows: {bf16.reason}."]
            if bf16 is not None
            and not bf16.timed
            and not any(
                "bf16" in impl
                for data in steps.values()
                for impl in (data or {}).get("results", {})
            )
            else []
        ),
        "",
        "| config | implementation | images/s (min / median / max) "
        "| GFLOP/s | of matmul peak | tf_vqvae ÷ it |",
        "|---|---|---|---|---|---|",
    ]
    targets, misses = [], []
    for name, data in steps.items():
        if not data:
            lines.append(f"| {name} | (failed) | | | | |")
            continue
        res = data["results"]
        for impl, r in res.items():
            ratio = (
                None
                if impl == "tf_vqvae"
                else paired_ratio(res, "tf_vqvae", impl)
            )
            lines.append(
                f"| {name} | {impl} | {_triple(r['images_per_s'])} "
                f"| {r['gflops_per_s']:.0f} "
                f"| {100 * r['fraction_of_peak']:.0f}% | {_ratio(ratio)} |"
            )
            if "fit_images_per_s" in r:
                lines.append(
                    f"| {name} | {impl}, in one fit "
                    f"| {_triple(r['fit_images_per_s'])} | | | |"
                )
        # Issue 14's target is the paper config's; the small sonnet config
        # (about a quarter of the bfloat16 matmul peak) is reported.
        for ours, peer, target in (
            ("tf_vqvae_bf16", "sonnet", 2.0 if name == "paper" else None),
            ("tf_vqvae_bf16", "tf_vqvae", None),
            ("tf_vqvae_bf16", "sonnet_bf16", None),
        ):
            ratio = paired_ratio(res, ours, peer)
            if ratio is None:
                continue
            label = (
                f"full step {ours} vs {peer}, {name} config (bf16: issue 14)"
            )
            if target is not None:
                targets.append((label, ratio, target))
            else:
                misses.append(f"- `{name}`: {ours} ran at {ratio:.2f}x {peer}.")
        ratio = paired_ratio(res, "tf_vqvae", "sonnet")
        if ratio is not None:
            targets.append((f"full step vs Sonnet, {name} config", ratio, 1.0))
            rounds = [
                b / a
                for a, b in zip(
                    res["tf_vqvae"]["seconds"], res["sonnet"]["seconds"]
                )
            ]
            if min(rounds) < 1.0:
                verdict = "parity" if ratio < 1.03 else "ahead"
                misses.append(
                    f"- `{name}`: tf_vqvae ran at {ratio:.2f}x Sonnet "
                    f"({verdict}); single rounds ranged {min(rounds):.2f}-"
                    f"{max(rounds):.2f}x. Both run the same convolutions "
                    "(same FLOPs, near the same fraction of the matmul "
                    "peak), which bound the step; the VQ layer is a small "
                    "part of it at K=512."
                )
    notes = []
    for name, data in steps.items():
        if data:
            c = data["config_values"]
            notes.append(
                f"- `{name}`: hidden {c['num_hiddens']}, residual hidden "
                f"{c['num_residual_hiddens']}, K={c['num_embeddings']}, "
                f"D={c['embedding_dim']}, batch {c['batch_size']}, Adam "
                f"{c['learning_rate']}, quantizer `{c['quantizer']}`; "
                f"{data['train_step_gflop_per_image']:.3f} GFLOP per image "
                f"per step; matmul peak {data['matmul_peak_gflops']:.0f} "
                f"GFLOP/s"
                + (
                    f" (bf16 {data['matmul_peak_bf16_gflops']:.0f})"
                    if data.get("matmul_peak_bf16_gflops")
                    else ""
                )
                + f"; {data['steps_per_epoch']} steps per epoch."
            )
    return lines + [""] + notes + [""] + misses + [""], targets


def import_section(data: dict) -> tuple[list[str], list]:
    if not data:
        return ["## 5. Import overhead", "", "(failed)", ""], []
    s = data["import_s"]
    tf_s = data["tensorflow_s"]
    lines = [
        "## 5. Import overhead",
        "",
        "`bench_import.py`: fresh interpreters, `import tensorflow` then "
        "`import tf_vqvae`; the second import alone.",
        "",
        "| | min | median | max |",
        "|---|---|---|---|",
        f"| `import tf_vqvae` after TensorFlow (s) | {s['min']:.3f} "
        f"| {s['median']:.3f} | {s['max']:.3f} |",
        f"| resident memory added (MiB) | {data['memory_mb']['min']:.1f} "
        f"| {data['memory_mb']['median']:.1f} "
        f"| {data['memory_mb']['max']:.1f} |",
        f"| `import tensorflow` itself (s) | {min(tf_s):.2f} "
        f"| {statistics.median(tf_s):.2f} | {max(tf_s):.2f} |",
        "",
        "Heavy modules loaded by `import tf_vqvae`: "
        + (
            ", ".join(data["heavy_modules"])
            or "none (TFP, tfds, "
            "scikit-image, matplotlib, tf_keras are imported lazily)"
        )
        + ".",
        "",
    ]
    return lines, [
        ("import overhead <= 0.1 s (median)", 0.1 / max(s["median"], 1e-9), 1.0)
    ]


def quality_section(data: dict) -> tuple[list[str], list]:
    if not data:
        return ["## 6. Quality at a fixed budget", "", "(failed)", ""], []
    c = data["config_values"]
    lines = [
        "## 6. Quality at a fixed budget",
        "",
        f"`bench_quality.py`: CIFAR-10 JPEG set, `{data['config']}` config "
        f"(hidden {c['num_hiddens']}, residual hidden "
        f"{c['num_residual_hiddens']}, K={c['num_embeddings']}, "
        f"D={c['embedding_dim']}, quantizer `{c['quantizer']}`, batch "
        f"{c['batch_size']}, Adam {c['learning_rate']}), {data['steps']} "
        f"steps, seed {data['seed']}, same images in the same order "
        f"({data['train_images']} train images); evaluated on "
        f"{data['test_images']} test images.",
        "",
        "| implementation | MSE | PSNR (dB) | perplexity | dead codes "
        "| train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    res = data["results"]
    for impl, r in res.items():
        lines.append(
            f"| {impl} | {r['mse']:.5f} | {r['psnr_db']:.2f} "
            f"| {r['perplexity']:.1f} | {r['dead_codes']} "
            f"({100 * r['dead_fraction']:.1f}%) | {r['train_seconds']:.0f} |"
        )
    k = c["num_embeddings"]
    notes = []
    if "tf_vqvae" in res:
        notes.append(
            "`tf_vqvae`: `VQVAE` with its defaults, which draw the codebook "
            "from the first batch's encoder outputs (`data_init='random'`) "
            "and re-seed a code no vector picked for 100 steps "
            "(`dead_code_restart_steps=100`); it ends with "
            f"{k - res['tf_vqvae']['dead_codes']} of {k} codes in use on the "
            "test set."
        )
    if "tf_vqvae_paper" in res:
        paper = res["tf_vqvae_paper"]
        notes.append(
            "`tf_vqvae_paper`: both turned off, the paper's algorithm with "
            "the same U(-sqrt(3/D), sqrt(3/D)) initial codebook as Sonnet's; "
            f"it keeps {k - paper['dead_codes']} of {k} codes (perplexity "
            f"{paper['perplexity']:.1f}). A code no vector picks keeps its "
            "initial vector there, while Sonnet's zero-started, debiased "
            "averages move never-picked codes to the origin, next to the "
            "encoder's outputs, which revives some of them (on 32x32 photo "
            "patches the same move stranded codes instead: Sonnet used 3-4% "
            "of K = 512 after 600 steps)."
        )
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    targets = []
    for name in ("tf_vqvae",):
        if name not in res or "sonnet" not in res:
            continue
        ours, peer = res[name], res["sonnet"]
        targets += [
            (
                f"quality ({name}): MSE <= Sonnet's",
                peer["mse"] / ours["mse"],
                1.0,
            ),
            (
                f"quality ({name}): perplexity >= Sonnet's",
                ours["perplexity"] / peer["perplexity"],
                1.0,
            ),
            (
                f"quality ({name}): dead codes <= Sonnet's "
                f"({ours['dead_codes']} vs {peer['dead_codes']})",
                1.0 if ours["dead_codes"] <= peer["dead_codes"] else 0.0,
                1.0,
            ),
        ]
    return lines + [""], targets


QUANTIZER_RUN_NAMES = {
    "q_ema_k1024": "VQ-EMA, `VQVAE` defaults",
    "q_fsq": "FSQ",
    "q_fsq_penalty": "FSQ with the saturation penalty at 0.1",
    "q_fsq_paper": "FSQ as in the paper: no data init",
    "q_rvq": "residual VQ, quantizer dropout 0.5",
    "q_plain_k8192": "VQ-EMA, straight-through, no data init or restarts",
    "q_rotcos_k8192": "VQ-EMA, rotation trick + cosine, no data init or "
    "restarts",
    "q_lfq": "LFQ",
    "q_ema_k16384": "VQ-EMA, `VQVAE` defaults",
    "q_fsq_k15360": "FSQ (8, 8, 8, 6, 5)",
}


def _used(r: dict) -> int:
    return r["num_levels"] * r["num_embeddings"] - r["dead_codes"]


def _used_fraction(r: dict) -> float:
    return 1.0 - r["dead_fraction"]


def levels_prior_lines(
    prior: dict | None, level_stats: list | None = None
) -> list[str]:
    """Section 9's paragraph on the prior over residual VQ levels, with each
    level's test-code entropy (`log2` of its perplexity: what a prior that
    knew only each level's code frequencies would reach) when given."""
    if not prior:
        return []
    by_level = prior["bits_per_code_by_level"]
    entropy = []
    if level_stats:
        entropy = [
            "| entropy of the level's codes | "
            + " | ".join(
                f"{math.log2(level['perplexity']):.3f}" for level in level_stats
            )
            + " |"
        ]
    return [
        "",
        f"A `PixelCNNPrior(num_levels={prior['num_levels']})` trained "
        f"{prior['steps']} steps on these codes (hidden "
        f"{prior['num_hiddens']}, {prior['num_layers']} layers, batch "
        f"{prior['batch_size']}; {prior['train_seconds']:.0f} s): "
        f"{prior['bits_per_code']:.3f} bits per test code against the "
        f"uniform prior's {prior['uniform_bits_per_code']:.0f}, so "
        f"{prior['prior_bits_per_dim']:.3f} bits/dim for the codes instead "
        f"of {prior['uniform_prior_bits_per_dim']:.3f}. Bits per code at "
        "each level"
        + (
            ", beside the entropy of the level's test codes (what a prior "
            "that knew only each level's code frequencies would reach):"
            if entropy
            else ":"
        ),
        "",
        "| level | "
        + " | ".join(str(n + 1) for n in range(len(by_level)))
        + " |",
        "|---" * (len(by_level) + 1) + "|",
        "| bits per code under the prior | "
        + " | ".join(f"{b:.3f}" for b in by_level)
        + " |",
        *entropy,
    ]


def quantizer_quality_section(data: dict | None) -> tuple[list[str], list]:
    """Section 9: issue 13's quality criteria from `bench_quality.py`'s
    `q_*` runs (same architecture, steps, batch, seed and images)."""
    title = "## 9. Quantizer quality (issue 13)"
    if not data:
        return [title, "", "(not run or failed)", ""], []
    res = data["results"]
    c = data["config_values"]
    lines = [
        title,
        "",
        f"`bench_quality.py --impl q_...`: CIFAR-10 JPEG set, the "
        f"`{data['config']}` config's network (hidden {c['num_hiddens']}, "
        f"residual hidden {c['num_residual_hiddens']}, D="
        f"{c['embedding_dim']}, batch {c['batch_size']}, Adam "
        f"{c['learning_rate']}) with each quantizer, {data['steps']} steps, "
        f"seed {data['seed']}, the same {data['train_images']} train images "
        f"in the same order; evaluated on {data['test_images']} test "
        "images. Used codes: codes picked at least once on the test set "
        "(residual VQ: of its levels x K codes).",
        "",
        "| run | quantizer | codes | MSE | PSNR (dB) | perplexity "
        "| used codes | train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for impl in QUANTIZER_RUN_NAMES:
        if impl not in res:
            continue
        r = res[impl]
        k = r["num_embeddings"]
        codes = f"{r['num_levels']} x {k}" if r["num_levels"] > 1 else str(k)
        lines.append(
            f"| `{impl}` | {QUANTIZER_RUN_NAMES[impl]} | {codes} "
            f"| {r['mse']:.5f} | {r['psnr_db']:.2f} | {r['perplexity']:.1f} "
            f"| {_used(r)} ({100 * _used_fraction(r):.1f}%) "
            f"| {r['train_seconds']:.0f} |"
        )
    rvq = res.get("q_rvq")
    if rvq:
        by_levels = rvq["mse_by_levels"]
        lines += [
            "",
            "Residual VQ, test MSE of the first n levels "
            "(`decode(codes[..., :n])`):",
            "",
            "| n | "
            + " | ".join(str(n + 1) for n in range(len(by_levels)))
            + " |",
            "|---" * (len(by_levels) + 1) + "|",
            "| MSE | " + " | ".join(f"{m:.5f}" for m in by_levels) + " |",
        ]
        lines += levels_prior_lines(rvq.get("levels_prior"), rvq.get("levels"))
    targets = []
    ref = res.get("q_ema_k1024")
    fsq = res.get("q_fsq")
    if fsq:
        targets.append(
            (
                "FSQ uses >= 99% of its codes on the test set "
                f"({100 * _used_fraction(fsq):.1f}%, issue 13)",
                _used_fraction(fsq) / 0.99,
                1.0,
            )
        )
        if ref:
            targets.append(
                (
                    "FSQ test MSE within 5% of VQ-EMA's at K="
                    f"{ref['num_embeddings']} "
                    f"({100 * (fsq['mse'] / ref['mse'] - 1):+.1f}%, issue 13)",
                    1.05 * ref["mse"] / fsq["mse"],
                    1.0,
                )
            )
    if rvq:
        by_levels = rvq["mse_by_levels"]
        targets.append(
            (
                "residual VQ test MSE does not increase from 1 to "
                f"{len(by_levels)} levels (smallest step ratio, issue 13)",
                min(a / b for a, b in zip(by_levels, by_levels[1:])),
                1.0,
            )
        )
        if ref:
            targets.append(
                (
                    f"residual VQ at {len(by_levels)} levels: test MSE below "
                    f"VQ-EMA's at K={ref['num_embeddings']} "
                    f"({by_levels[-1]:.5f} vs {ref['mse']:.5f}, issue 13)",
                    ref["mse"] / by_levels[-1],
                    1.0,
                )
            )
    plain, rotcos = res.get("q_plain_k8192"), res.get("q_rotcos_k8192")
    if plain and rotcos:
        targets += [
            (
                "rotation trick + cosine: used codes >= 3x the "
                f"straight-through baseline's at K={plain['num_embeddings']} "
                f"({_used(rotcos)} vs {_used(plain)}, issue 13)",
                _used_fraction(rotcos) / max(_used_fraction(plain), 1e-9),
                3.0,
            ),
            (
                "rotation trick + cosine: test MSE not worse than the "
                "baseline's (issue 13)",
                plain["mse"] / rotcos["mse"],
                1.0,
            ),
        ]
    return lines + [""], targets


def quantizer_quality_summary(data: dict | None) -> str | None:
    """Section 9 in one sentence (the summary's bullet)."""
    res = (data or {}).get("results", {})
    parts = []
    ref = res.get("q_ema_k1024")
    fsq = res.get("q_fsq")
    if fsq:
        text = (
            f"FSQ uses {_used(fsq)} of its {fsq['num_embeddings']} codes "
            f"({100 * _used_fraction(fsq):.1f}%)"
        )
        if ref:
            text += (
                f", test MSE {fsq['mse']:.5f} vs VQ-EMA's "
                f"{ref['mse']:.5f} at K = {ref['num_embeddings']}"
            )
        parts.append(text)
    rvq = res.get("q_rvq")
    if rvq:
        by_levels = rvq["mse_by_levels"]
        parts.append(
            f"residual VQ ({len(by_levels)} x {rvq['num_embeddings']}) test "
            f"MSE {by_levels[0]:.5f} at 1 level to {by_levels[-1]:.5f} at "
            f"{len(by_levels)}"
        )
    plain, rotcos = res.get("q_plain_k8192"), res.get("q_rotcos_k8192")
    if plain and rotcos:
        parts.append(
            f"at K = {plain['num_embeddings']} without data init or "
            f"restarts, the rotation trick with cosine distance uses "
            f"{_used(rotcos)} codes vs {_used(plain)} (MSE {rotcos['mse']:.5f}"
            f" vs {plain['mse']:.5f})"
        )
    lfq, big = res.get("q_lfq"), res.get("q_ema_k16384")
    if lfq and big:
        parts.append(
            f"LFQ at K = {lfq['num_embeddings']} uses {_used(lfq)} codes "
            f"(MSE {lfq['mse']:.5f}) vs VQ-EMA's {_used(big)} "
            f"({big['mse']:.5f})"
        )
    big_fsq = res.get("q_fsq_k15360")
    if big_fsq and big:
        parts.append(
            f"FSQ at K = {big_fsq['num_embeddings']} uses {_used(big_fsq)} "
            f"codes (MSE {big_fsq['mse']:.5f}) vs VQ-EMA's {_used(big)} at "
            f"K = {big['num_embeddings']}"
        )
    if not parts:
        return None
    return (
        f"Quantizers at an equal budget (CIFAR-10 JPEG, {data['steps']} "
        f"steps, {data['test_images']} test images): " + "; ".join(parts) + "."
    )


def precision_quality_section(runs: list) -> tuple[list[str], list]:
    """bfloat16 vs float32 on the quality runs (one per seed): issue 14's
    criteria, per seed and as the mean over seeds."""
    runs = [
        data
        for data in runs
        if data and {"tf_vqvae", "tf_vqvae_bf16"} <= set(data["results"])
    ]
    title = "## 7. Precision: bfloat16 vs float32"
    if not runs:
        return [title, "", "(not run or failed)", ""], []
    lines = [
        title,
        "",
        "`bench_quality.py` per seed: `tf_vqvae` in float32 and under "
        "`mixed_bfloat16` (`tf_vqvae_bf16`), same images and seed, "
        f"{runs[0]['steps']} steps at the `{runs[0]['config']}` config. "
        "Same weights: a bfloat16 copy of the float32 model's trained "
        "weights encodes every test position (codes equal to float32's; "
        "MSE of the float32 decoder on the copy's codes, and of the copy "
        "alone). Prior: a PixelCNN prior trained on the float32 model's "
        "codes in each precision, and the float32 prior's weights "
        "evaluated in bfloat16.",
        "",
        "| seed | MSE fp32 | MSE bf16 | bf16 ÷ fp32 | perplexity fp32 "
        "| perplexity bf16 | bf16 ÷ fp32 | same weights: codes equal "
        "| MSE, fp32 decoder on bf16 codes | MSE, bf16 inference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    mse_ratios, ppl_ratios, agreements = [], [], []
    for data in runs:
        ours, bf16 = (
            data["results"]["tf_vqvae"],
            data["results"]["tf_vqvae_bf16"],
        )
        mse_ratios.append(bf16["mse"] / ours["mse"])
        ppl_ratios.append(bf16["perplexity"] / ours["perplexity"])
        agreements.append(ours["codes_bf16_agreement"])
        same = [
            f"{ours[name]:.5f}" if name in ours else "-"
            for name in ("mse_fp32_decoder_bf16_codes", "mse_bf16_inference")
        ]
        lines.append(
            f"| {data['seed']} | {ours['mse']:.5f} | {bf16['mse']:.5f} "
            f"| {mse_ratios[-1]:.3f} | {ours['perplexity']:.1f} "
            f"| {bf16['perplexity']:.1f} | {ppl_ratios[-1]:.3f} "
            f"| {100 * agreements[-1]:.2f}% | {same[0]} | {same[1]} |"
        )
    mse = statistics.mean(mse_ratios)
    ppl = statistics.mean(ppl_ratios)
    agreement = min(agreements)
    # Each target is a ratio that meets it at >= 1; the label shows the
    # measured difference.
    targets = [
        (
            f"bf16 test MSE within 3% of fp32 (mean of seeds "
            f"{100 * (mse - 1):+.2f}%)",
            0.03 / max(abs(mse - 1), 1e-9),
            1.0,
        ),
        (
            f"bf16 perplexity within 5% of fp32 (mean of seeds "
            f"{100 * (ppl - 1):+.2f}%)",
            0.05 / max(abs(ppl - 1), 1e-9),
            1.0,
        ),
        (
            "bf16 codes equal fp32 codes on >= 99.5% of test positions "
            f"({100 * agreement:.2f}%, lowest seed)",
            agreement / 0.995,
            1.0,
        ),
    ]
    priors = [(data, data["results"]["tf_vqvae"].get("prior")) for data in runs]
    priors = [(data, p) for data, p in priors if p]
    if priors:
        lines += [
            "",
            "| seed | prior bits/code fp32 | bf16 | prior bits/dim fp32 "
            "| bf16 | bf16 ÷ fp32 | fp32 weights in bf16 | ÷ fp32 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        ratios = []
        for data, prior in priors:
            f32, b16 = prior["float32"], prior["bfloat16"]
            ratios.append(b16["prior_bits_per_dim"] / f32["prior_bits_per_dim"])
            same = prior.get("float32_weights_in_bfloat16")
            same_cells = "- | -"
            if same:
                same_bpd = same["prior_bits_per_dim"]
                same_ratio = same_bpd / f32["prior_bits_per_dim"]
                same_cells = f"{same_bpd:.5f} | {same_ratio:.5f}"
            lines.append(
                f"| {data['seed']} | {f32['bits_per_code']:.4f} "
                f"| {b16['bits_per_code']:.4f} "
                f"| {f32['prior_bits_per_dim']:.5f} "
                f"| {b16['prior_bits_per_dim']:.5f} | {ratios[-1]:.4f} "
                f"| {same_cells} |"
            )
        # Like the MSE and perplexity, the mean over seeds: each seed's
        # pair of priors differs by training noise as well as precision.
        ratio = statistics.mean(ratios)
        seeds = (
            "mean of seeds "
            if len(ratios) > 1
            else f"seed {priors[0][0]['seed']}: "
        )
        targets.append(
            (
                f"bf16 prior bits/dim within 0.5% of fp32 ({seeds}"
                f"{100 * (ratio - 1):+.3f}%)",
                0.005 / max(abs(ratio - 1), 1e-9),
                1.0,
            )
        )
    return lines + [""], targets


DEMO_TITLE = "## 11. `vqvae demo` per precision (issue 14)"


def demo_section(data: dict | None) -> tuple[list[str], list]:
    """`bench_demo.py`: the demo's wall time and held-out metrics per
    `--precision` (float32 against `auto`)."""
    results = (data or {}).get("results", {})
    if not results:
        return [DEMO_TITLE, "", "(not run or failed)", ""], []
    lines = [
        DEMO_TITLE,
        "",
        "`bench_demo.py`: `vqvae demo --precision P` in a fresh interpreter "
        "and a fresh model directory, as after a fresh clone and install "
        "(train the VQ-VAE and the prior, sample, evaluate, export "
        "SavedModel and TFLite); wall time of the whole process, the "
        "demo's own training times, and the held-out metrics of its "
        "`evaluation.json`.",
        "",
        "| `--precision` | runs as | wall time (s) | VQ-VAE (s) | prior (s) "
        "| MSE | PSNR (dB) | perplexity | bits/dim (PixelCNN prior) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(results, key=lambda name: name != "float32"):
        r, m = results[name], results[name]["metrics"]
        cells = [
            "-" if m.get(key) is None else f"{m[key]:{spec}}"
            for key, spec in (
                ("mse", ".5f"),
                ("psnr", ".2f"),
                ("perplexity", ".1f"),
                ("bits_per_dim_pixelcnn_prior", ".3f"),
            )
        ]
        lines.append(
            f"| `{name}` | {', '.join(r['resolved']) or '-'} "
            f"| {r['seconds']:.0f} | {r['train_s']:.0f} "
            f"| {r['train_prior_s']:.0f} | {' | '.join(cells)} |"
        )
    ratio = demo_speedup(data)
    if ratio is not None:
        runs = len(results["auto"].get("seconds_all", [0]))
        lines += [
            "",
            f"- `--precision auto` (here {_resolved(results['auto'])}) ran "
            f"the demo {ratio:.2f}x as fast as float32 (median of {runs} "
            f"run{'s' if runs > 1 else ''} each).",
        ]
    return lines + [""], []


def _resolved(result: dict) -> str:
    """The precision a demo run resolved to (`-` if not reported)."""
    return ", ".join(result.get("resolved") or ["-"])


def demo_speedup(data: dict | None) -> float | None:
    """float32's demo wall time over `--precision auto`'s."""
    results = (data or {}).get("results", {})
    if not {"float32", "auto"} <= set(results):
        return None
    return results["float32"]["seconds"] / results["auto"]["seconds"]


SUMMARY_TITLE = "## Summary"
README_BEGIN = "<!-- benchmarks-summary: generated by benchmarks/run.py -->"
README_END = "<!-- /benchmarks-summary -->"


def summary_section(
    vq: dict,
    memory: dict,
    steps: dict,
    quality: dict | None,
    sampling: dict | None,
    export: dict | None,
    quantizers: tuple[dict, dict] | None = None,
    quantizer_quality: dict | None = None,
    demo: dict | None = None,
) -> list[str]:
    """The headline figures, as bullets; README quotes them verbatim.

    `quantizers`: `(ours, peers)` of `quantizers_section`;
    `quantizer_quality`: `bench_quality.py`'s `q_*` runs (section 9);
    `demo`: `bench_demo.py`'s result (section 11).

    Every number comes from the same results as the tables below it, so the
    README (`sync_readme`) cannot disagree with BENCHMARKS.md.
    """
    bullets = []
    vq_parts = []
    for k in (512, 8192):
        results = (vq.get(k) or {}).get("results", {})
        plain = paired_ratio(results, "tf_vqvae", "sonnet")
        ema = paired_ratio(results, "tf_vqvae_ema", "sonnet_ema")
        if plain is not None and ema is not None:
            vq_parts.append(
                f"K = {k}: {plain:.1f}x Sonnet's `VectorQuantizer`, "
                f"{ema:.1f}x its `VectorQuantizerEMA`"
            )
    if vq_parts:
        text = "VQ layer, forward + backward (N = 16384, D = 64): " + "; ".join(
            vq_parts
        )
        ours, peer = (
            memory.get((8192, "tf_vqvae")),
            memory.get((8192, "sonnet")),
        )
        if ours is not None and peer is not None:
            text += f"; peak memory at K = 8192 {ours:.0f} vs {peer:.0f} MiB"
        big = memory.get((65536, "tf_vqvae"))
        if big is not None:
            text += f"; K = 65536 needs {big:.0f} MiB"
        bullets.append(text + ".")
    step_parts = []
    for name, data in steps.items():
        ratio = paired_ratio(
            (data or {}).get("results", {}), "tf_vqvae", "sonnet"
        )
        if ratio is not None:
            step_parts.append(f"{ratio:.2f}x Sonnet at the {name} config")
    if step_parts:
        bullets.append("Full training step: " + ", ".join(step_parts) + ".")
    if quality and {"tf_vqvae", "sonnet"} <= set(quality["results"]):
        res = quality["results"]
        k = quality["config_values"]["num_embeddings"]
        ours, peer = res["tf_vqvae"], res["sonnet"]
        bullets.append(
            f"Quality with defaults, CIFAR-10 JPEG, {quality['steps']} steps: "
            f"MSE {ours['mse']:.5f} vs Sonnet's {peer['mse']:.5f}; "
            f"{k - ours['dead_codes']} of {k} codes used vs Sonnet's "
            f"{k - peer['dead_codes']}."
        )
    rows = (sampling or {}).get("rows", [])
    if rows:
        row = max(rows, key=lambda r: r["grid"])
        text = (
            f"Prior sampling at {row['grid']}x{row['grid']} codes (K = "
            f"{sampling['args']['num_embeddings']}, batch "
            f"{sampling['args']['batch']}): the cached sampler is "
            f"{row['speedup']:.0f}x faster than the naive one"
        )
        if "tfp_ratio" in row:
            text += (
                f" and {row['tfp_ratio']:.0f}x faster than "
                "`tfp.distributions.PixelCNN` of similar size"
            )
        bullets.append(text + ".")
    wavenet = (sampling or {}).get("wavenet_rows", [])
    if wavenet:
        row = max(wavenet, key=lambda r: r["length"])
        bullets.append(
            f"WaveNet prior sampling of {row['length']} codes (K = "
            f"{sampling['args']['num_embeddings']}, batch "
            f"{sampling['args']['wavenet_batch']}): the cached sampler is "
            f"{row['speedup']:.0f}x faster than the naive one."
        )
    latency = {
        (r["task"], r["runtime"], r["batch"]): r["median_ms"]
        for r in (export or {}).get("latency", [])
    }
    if latency:
        parts = [
            f"{runtime} {latency[('decode', runtime, 1)]:.2f} ms"
            for runtime in ("savedmodel", "tflite-float32", "tflite-int8")
            if ("decode", runtime, 1) in latency
        ]
        bullets.append(
            "Decoding one 32x32 image (median per image, batch 1): "
            + ", ".join(parts)
            + "."
        )
    ours, peers = quantizers or ({}, {})
    kind_parts = [
        f"{NAMES[QUANTIZER_IMPLS[kind][0]].removeprefix('tf_vqvae ')} "
        f"({_sizes(ours[kind], kind)}) {ratio:.1f}x"
        for kind in QUANTIZER_IMPLS
        if (ratio := quantizer_ratio(ours, peers, kind)) is not None
    ]
    if kind_parts:
        first = next(data for data in ours.values() if data)
        bullets.append(
            f"Quantizers, forward + backward (N = {first.get('n', 16384)}, "
            f"D = {first.get('d', 64)}) against vector-quantize-pytorch: "
            + ", ".join(kind_parts)
            + "."
        )
    quality_text = quantizer_quality_summary(quantizer_quality)
    if quality_text:
        bullets.append(quality_text)
    ratio = demo_speedup(demo)
    if ratio is not None:
        results = demo["results"]
        bullets.append(
            f"`vqvae demo` from a fresh model directory: "
            f"{results['auto']['seconds']:.0f} s with `--precision auto` "
            f"({_resolved(results['auto'])} here) vs "
            f"{results['float32']['seconds']:.0f} s in float32 "
            f"({ratio:.2f}x)."
        )
    if not bullets:
        return []
    return [SUMMARY_TITLE, ""] + [f"- {b}" for b in bullets] + [""]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def speech_section(data: dict | None) -> tuple[list[str], list]:
    """Issue 16's measured speech results (`bench_speech.py`): a table
    against the paper's and the issue's targets."""
    title = "## 10. Speech: phoneme discovery and voice conversion (issue 16)"
    if not data:
        return [title, "", "(failed)", ""], []
    paper, goal = data["paper"], data["targets"]
    test, voices = data["phonemes"]["test"], data["phonemes"]["test_voices"]
    kmeans = data["kmeans_logmel"]
    conv, classifier = data["conversion"], data["classifier"]
    corpus = data["corpus"]
    c = data["config"]
    minutes = data["timings"]["total"] / 60
    lines = [
        title,
        "",
        f"`bench_speech.py`: `--preset {data['preset']}` with speaker "
        f"conditioning, {data['steps']} steps of batch "
        f"{c['global_batch_size']} x {c['segment_length']} samples (K="
        f"{c['num_embeddings']}, {2 ** c['num_downsamples']} samples per "
        f"code, {c['num_hiddens']} hidden channels), on the eSpeak NG corpus "
        f"(`train`: {corpus['train']['utterances']} utterances, "
        f"{corpus['train']['hours']:.2f} h, {corpus['train']['speakers']} "
        f"voices; `test`: {corpus['test']['utterances']} held-out "
        f"sentences; `test_voices`: {corpus['test_voices']['utterances']} "
        f"utterances of {corpus['test_voices']['speakers']} held-out "
        f"voices); {minutes:.0f} min in all.",
        "",
        "| measure | paper (VCTK) | this run | target |",
        "|---|---|---|---|",
        f"| phoneme accuracy of the codes, held-out sentences "
        f"| {_percent(paper['accuracy'])} | {_percent(test['accuracy'])} | |",
        f"| most-frequent-phoneme baseline | {_percent(paper['baseline'])} "
        f"| {_percent(test['baseline_accuracy'])} | |",
        f"| ratio to the baseline | {paper['ratio']:.1f}x "
        f"| {test['ratio']:.2f}x | >= {goal['ratio']}x |",
        f"| phoneme classes | 41 | {test['num_classes']} | |",
        f"| held-out voices: accuracy (baseline, ratio) | - "
        f"| {_percent(voices['accuracy'])} "
        f"({_percent(voices['baseline_accuracy'])}, "
        f"{voices['ratio']:.2f}x) | reported |",
        f"| no model: k-means (K={kmeans['k']}) on log-mel frames, held-out "
        f"sentences; held-out voices | - "
        f"| {_percent(kmeans['test']['accuracy'])} "
        f"({kmeans['test']['ratio']:.2f}x); "
        f"{_percent(kmeans['test_voices']['accuracy'])} "
        f"({kmeans['test_voices']['ratio']:.2f}x) | |",
        f"| speaker classifier on clean held-out sentences | - "
        f"| {_percent(classifier['accuracy'])} "
        f"({classifier['num_test']} utterances) | |",
        f"| converted held-out utterances assigned the target voice | "
        f"qualitative | {_percent(conv['target_voice_accuracy'])} "
        f"({conv['num_utterances']} utterances) "
        f"| >= {_percent(goal['target_voice'])} |",
        f"| content kept: phoneme agreement converted / reconstruction | "
        f"qualitative | {conv['content_ratio']:.2f} "
        f"({_percent(conv['converted_phoneme_accuracy'])} / "
        f"{_percent(conv['reconstruction_phoneme_accuracy'])}) "
        f"| >= {goal['content']} |",
        f"| reconstructions (own voice) assigned their speaker | - "
        f"| {_percent(conv['reconstruction_target_voice_accuracy'])} | |",
        f"| reconstruction SNR (mean) | - "
        f"| {conv['reconstruction_snr_db_mean']:.2f} dB | |",
        *_prior_test_rows(data.get("prior_test")),
        "",
    ]
    targets = [
        (
            "speech: phoneme accuracy / baseline, held-out sentences (x)",
            test["ratio"],
            goal["ratio"],
        ),
        (
            "speech: converted utterances assigned the target voice",
            conv["target_voice_accuracy"],
            goal["target_voice"],
        ),
        (
            "speech: content ratio, converted / reconstruction",
            conv["content_ratio"],
            goal["content"],
        ),
    ]
    return lines, targets


def _prior_test_rows(prior: dict | None) -> list[str]:
    """The WaveNet prior's bits per test code (`bench_speech.prior_test_bits`)
    beside the uniform prior's and the codes' entropy, per level for
    residual VQ; none for a result without a prior."""
    if not prior:
        return []
    uniform = prior["uniform_bits_per_code"]
    rows = [
        f"| WaveNet prior, bits per held-out code (uniform: {uniform:g}) | - "
        f"| {prior['bits_per_code']:.3f} | |",
    ]
    if prior["num_levels"] == 1:
        (entropy,) = prior["entropy_by_level"]
        rows.append(
            "| entropy of the held-out codes (a prior without context) | - "
            f"| {entropy:.3f} | |"
        )
        return rows
    by_level = zip(
        prior["bits_per_code_by_level"], prior["entropy_by_level"], strict=True
    )
    levels = "; ".join(f"{bits:.3f} ({h:.3f})" for bits, h in by_level)
    rows.append(
        "| the same per level (in brackets: the level's code entropy) | - "
        f"| {levels} | |"
    )
    return rows


def wavenet_targets(sampling: dict | None) -> list:
    """Issue 15's target: cached WaveNet sampling >= 20x the naive one at
    4096 codes (from `bench_sampling.py`'s JSON)."""
    return [
        (
            f"WaveNet cached vs naive sampling, {row['length']} codes",
            row["speedup"],
            20.0,
        )
        for row in (sampling or {}).get("wavenet_rows", [])
        if row["length"] == 4096
    ]


def _written_date(text: str) -> str:
    match = re.search(r"^Written by .* on (\S+ \S+ UTC)\.$", text, re.M)
    return match.group(1) if match else "an unknown date"


def readme_block(benchmarks_text: str) -> str:
    """The README's quote of BENCHMARKS.md's summary, with the file's date."""
    lines = benchmarks_text.splitlines()
    if SUMMARY_TITLE not in lines:
        raise ValueError(f"BENCHMARKS.md has no {SUMMARY_TITLE!r} section")
    start = lines.index(SUMMARY_TITLE) + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("## ")),
        len(lines),
    )
    body = "\n".join(lines[start:end]).strip()
    return (
        f"{README_BEGIN}\nFrom BENCHMARKS.md, written "
        f"{_written_date(benchmarks_text)}:\n\n{body}\n{README_END}"
    )


def sync_readme(benchmarks_path: str, readme_path: str) -> bool:
    """Rewrites README's block between the markers from BENCHMARKS.md.

    Returns whether the README changed.
    """
    with open(benchmarks_path) as f:
        block = readme_block(f.read())
    with open(readme_path) as f:
        readme = f.read()
    pattern = re.compile(
        re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S
    )
    if not pattern.search(readme):
        raise ValueError(
            f"{readme_path} has no {README_BEGIN!r} ... {README_END!r} block"
        )
    updated = pattern.sub(lambda _: block, readme)
    if updated != readme:
        with open(readme_path, "w") as f:
            f.write(updated)
    return updated != readme


class Bf16Timing(NamedTuple):
    timed: bool
    reason: str


def bf16_timing(choice: str, tiny: bool) -> Bf16Timing:
    """Whether to time the bfloat16 rows (`--bf16`), and why."""
    if choice != "auto":
        return Bf16Timing(choice == "on", f"--bf16 {choice}")
    if tiny:
        return Bf16Timing(True, "timed (--tiny: every code path)")
    from tf_vqvae.precision import resolve

    resolution = resolve("auto")
    if resolution.precision == "bfloat16":
        return Bf16Timing(True, f"timed ({resolution.reason})")
    return Bf16Timing(
        False,
        f"not timed ({resolution.reason}: TensorFlow would emulate "
        "bfloat16 in software, so the rows would time the emulation; "
        "`--bf16 on` times them anyway)",
    )


def cpu() -> str:
    """The CPU, e.g. `"AMD EPYC (AVX-512; bfloat16: avx512_bf16, no AMX),
    2 cores"`: what the timings depend on."""
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
        flags = next(
            (line for line in lscpu.splitlines() if line.startswith("Flags")),
            "",
        )
        names = set(flags.split())
        bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in names]
        # bfloat16's speed-up depends on these: AMX tiles or only the
        # AVX-512 BF16 dot products (about 2x float32's FMA rate).
        avx512 = (
            f" (AVX-512; bfloat16: {', '.join(bf16) or 'none'}"
            f"{'' if 'amx_bf16' in names else ', no AMX'})"
            if "avx512f" in names
            else " (no AVX-512)"
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model, avx512 = platform.processor() or "unknown CPU", ""
    return f"{model}{avx512}, {os.cpu_count()} cores"


def machine() -> str:
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return (
        f"{cpu()}, "
        f"{mem_kb / 2**20:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def versions(python: str, modules: tuple) -> str:
    code = (
        "import importlib.metadata as m\n"
        f"for p in {modules!r}:\n"
        "    try: print(p, m.version(p))\n"
        "    except Exception: pass\n"
    )
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True
    ).stdout
    return ", ".join("==".join(line.split()) for line in out.splitlines())


# Path-valued flags and how BENCHMARKS.md shows a value outside the
# repository (the document never points at a reader's or this machine's
# files).
PATH_FLAGS = {
    "--results-dir": "DIR",
    "--venv-dir": "DIR",
    "--sonnet-python": "PYTHON",
    "--torch-python": "PYTHON",
    "--quality-data": "cifar10_jpeg.tar.gz",
    "--out": "FILE",
}
DEFAULT_RESULTS_DIR = os.path.join(HERE, "results")


def shown_command(argv: list[str]) -> str:
    """`python benchmarks/run.py ARGS` as BENCHMARKS.md shows it: path
    values inside the repository relative to it, the others placeholders."""
    shown, argv = [], list(argv)
    while argv:
        arg = argv.pop(0)
        flag, eq, value = arg.partition("=")
        if flag in PATH_FLAGS and (eq or argv):
            value = value if eq else argv.pop(0)
            path = os.path.abspath(value)
            if os.path.commonpath([path, REPO]) == REPO:
                value = os.path.relpath(path, REPO)
            else:
                value = PATH_FLAGS[flag]
            shown += [flag, value]
        else:
            shown.append(arg)
    return "python " + shlex.join(["benchmarks/run.py", *shown])


def write_markdown(
    args, parts: list, targets: list, env: dict, summary: list
) -> None:
    command = shown_command(sys.argv[1:])
    target_rows = ["| target | measured | met |", "|---|---|---|"]
    for name, ratio, target in targets:
        met = "✅" if ratio >= target else "❌"
        target_rows.append(
            f"| {name} | {ratio:.2f} (needs >= {target}) | {met} |"
        )
    header = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Machine: {env['machine']}. Absolute numbers drift from run to "
        "run here (+-20% and more, more when other jobs share the cores); "
        "compare the same-process, round-by-round ratios.",
        f"- Packages: {env['versions']}.",
        "- `OPENBLAS_CORETYPE` (set on these machines) halves numpy's matmul "
        "speed; no benchmark has numpy on its timed path.",
        "- Ratios: time of the peer ÷ time of tf_vqvae (> 1: tf_vqvae is "
        "faster), or the measured quantity over its target.",
        *(
            [
                "- `--resume`: results already in the results directory were "
                "kept, so sections were measured at different times of the "
                "session (each JSON records its time); ratios never mix "
                "runs, except vector-quantize-pytorch's (its own process)."
            ]
            if args.resume
            else []
        ),
        "",
        *summary,
        "## Targets (issue 6)",
        "",
        *target_rows,
        "",
    ]
    text = "\n".join(header + [line for part in parts for line in part])
    with open(args.out, "w") as f:
        f.write(text.rstrip() + "\n")
    print(f"wrote {args.out}")


# -------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    parser.add_argument(
        "--only",
        type=lambda v: v.split(","),
        default=list(SECTIONS),
        help=f"comma-separated sections: {SECTIONS}",
    )
    parser.add_argument(
        "--venv-dir",
        default=os.environ.get("BENCH_VENV_DIR")
        or os.path.expanduser("~/.cache/tf-vqvae-bench"),
    )
    parser.add_argument("--sonnet-python", help="existing Sonnet interpreter")
    parser.add_argument("--torch-python", help="existing torch interpreter")
    parser.add_argument(
        "--results-dir",
        default=None,
        help="raw JSON results and run.log (default: benchmarks/results, "
        "kept with BENCHMARKS.md so it can be written again with --resume; "
        "with --tiny, a new temp dir)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep results already in --results-dir instead of re-running",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed rounds per benchmark (default 10; the quantizer section "
        f"times up to {QUANTIZER_REPEATS} steps, at most "
        f"{QUANTIZER_SECONDS} s)",
    )
    parser.add_argument("--quality-steps", type=int, default=1500)
    parser.add_argument(
        "--quality-prior-steps",
        type=int,
        default=1500,
        help="prior steps per precision on the quality run's codes",
    )
    parser.add_argument(
        "--quality-data", help="CIFAR-10 JPEG archive (bench_quality.py)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="smoke run: tiny sizes"
    )
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="time the bfloat16 rows (training step, prior sampling); auto: "
        "where `--precision auto` picks bfloat16 (a CPU or GPU with native "
        "bfloat16; elsewhere TensorFlow emulates it in software) and in "
        "--tiny runs (results kept by --resume are shown as they are)",
    )
    parser.add_argument(
        "--sync-readme",
        action="store_true",
        help="only copy BENCHMARKS.md's summary into README.md (no runs)",
    )
    args = parser.parse_args(argv)
    if args.sync_readme:
        sync_readme(args.out, os.path.join(REPO, "README.md"))
        return
    if args.results_dir is None:
        args.results_dir = (
            tempfile.mkdtemp(prefix="tf_vqvae_bench_")
            if args.tiny
            else DEFAULT_RESULTS_DIR
        )
    unknown = [s for s in args.only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    runner = Runner(args)
    print(f"results in {args.results_dir}", flush=True)

    needs_sonnet = {"vq", "step", "quality"} & set(args.only)
    sonnet_py = args.sonnet_python or (
        ensure_venv(args.venv_dir, "sonnet", SONNET_SPEC, inherit=True)
        if needs_sonnet
        else sys.executable
    )
    torch_py = args.torch_python or (
        ensure_venv(args.venv_dir, "torch", TORCH_SPEC, inherit=False)
        if {"vq", "quantizers"} & set(args.only) and not args.tiny
        else None
    )
    env = {
        "machine": machine(),
        "versions": versions(
            sonnet_py,
            ("tensorflow", "keras", "dm-sonnet", "tf-vqvae"),
        )
        + (
            ", " + versions(torch_py, ("torch", "vector-quantize-pytorch"))
            if torch_py
            else ""
        ),
    }
    tiny = args.tiny
    repeats = 1 if tiny else args.repeats
    bf16 = Bf16Timing(False, "no section with bfloat16 rows")
    if {"step", "sampling"} & set(args.only):
        bf16 = bf16_timing(args.bf16, tiny)
        print(f"bfloat16 rows: {bf16.reason}", flush=True)
    warmup = 1 if tiny else 2
    common_args = ("--repeats", repeats, "--warmup", warmup)
    parts, targets = [], []
    vq, memory, torch, steps, fragments = {}, {}, {}, {}, {}
    quality = quantizers = quantizer_quality = None

    if "vq" in args.only:
        n = 256 if tiny else 16384
        ks = (8, 16) if tiny else K_VALUES
        for k in ks:
            impls = ["tf_vqvae", "tf_vqvae_ema"]
            if k <= PEER_MAX_K:
                impls += ["sonnet", "sonnet_noppl", "sonnet_ema", "kerasio"]
            vq[k] = runner.run(
                sonnet_py,
                "bench_vq_layer.py",
                f"vq_k{k}",
                "--impl",
                ",".join(impls),
                "--k",
                k,
                "--n",
                n,
                *common_args,
            )
            for impl in impls:
                data = runner.run(
                    sonnet_py,
                    "bench_vq_layer.py",
                    f"vq_k{k}_{impl}_memory",
                    "--impl",
                    impl,
                    "--k",
                    k,
                    "--n",
                    n,
                    "--repeats",
                    2,
                    "--warmup",
                    1,
                )
                if data:
                    memory[(k, impl)] = data["results"][impl]["peak_extra_mb"]
            if torch_py and k <= PEER_MAX_K:
                torch[k] = runner.run(
                    torch_py,
                    "bench_vq_layer.py",
                    f"vq_k{k}_vqtorch",
                    "--impl",
                    "vqtorch",
                    "--k",
                    k,
                    "--n",
                    n,
                    *common_args,
                )
                if torch[k]:
                    memory[(k, "vqtorch")] = torch[k]["results"]["vqtorch"][
                        "peak_extra_mb"
                    ]
        lines, t = vq_section(vq, memory, torch)
        parts.append(lines)
        targets += t

    if "step" in args.only:
        for config in ("paper", "sonnet"):
            extra = ("--tiny",) if tiny else ("--repeats", repeats)
            impls = "tf_vqvae,sonnet,kerasio"
            if bf16.timed:
                impls += ",tf_vqvae_bf16"
                if config == "paper":
                    impls += ",sonnet_bf16"
            steps[config] = runner.run(
                sonnet_py,
                "bench_train_step.py",
                f"step_{config}",
                "--config",
                config,
                "--impl",
                impls,
                *extra,
            )
        lines, t = step_section(steps, bf16)
        parts.append(lines)
        targets += t

    for section, script, title in (
        ("sampling", "bench_sampling.py", "## 3. Prior sampling"),
        ("export", "bench_export.py", "## 4. Export"),
    ):
        if section in args.only:
            script_args = ("--tiny",) if tiny else ()
            if section == "sampling" and not bf16.timed:
                script_args += ("--precisions", "float32")
            fragment = runner.run_fragment(script, section, *script_args)
            raw = os.path.join(args.results_dir, f"{section}.json")
            if fragment is not None and os.path.exists(raw):
                fragments[section] = _load_json(raw)
            if fragment is None:
                body = f"`benchmarks/{script}` is not in this checkout yet."
                if os.path.exists(os.path.join(HERE, script)):
                    body = f"`benchmarks/{script}` failed; see run.log."
                parts.append([title, "", body, ""])
            else:
                parts.append(
                    [
                        title,
                        "",
                        f"The table of `benchmarks/{script}` (run by this "
                        "script, included unchanged).",
                        "",
                        fragment.strip(),
                        "",
                    ]
                )

    if "import" in args.only:
        data = runner.run(
            sys.executable,
            "bench_import.py",
            "import",
            *(("--tiny",) if tiny else ("--repeats", repeats)),
        )
        lines, t = import_section(data)
        parts.append(lines)
        targets += t

    if "quality" in args.only:
        extra = ["--steps", args.quality_steps]
        if tiny:
            extra = ["--tiny"]
        if args.quality_data:
            extra += ["--data", args.quality_data]
        impls = ("--impl", "tf_vqvae,tf_vqvae_paper,sonnet,tf_vqvae_bf16")
        prior = ("--prior-steps", 2 if tiny else args.quality_prior_steps)
        quality = runner.run(
            sonnet_py, "bench_quality.py", "quality", *extra, *impls, *prior
        )
        lines, t = quality_section(quality)
        parts.append(lines)
        targets += t
        second_seed = runner.run(
            sonnet_py,
            "bench_quality.py",
            "quality_seed1",
            *extra,
            "--impl",
            "tf_vqvae,tf_vqvae_bf16",
            "--seed",
            1,
            *prior,
        )
        lines, t = precision_quality_section([quality, second_seed])
        parts.append(lines)
        targets += t

    if "quantizers" in args.only:
        n = 256 if tiny else 16384
        sizes = TINY_QUANTIZER_SIZES if tiny else QUANTIZER_SIZES
        ours, peers = {}, {}
        timing = (
            common_args
            if tiny
            else (
                "--repeats",
                max(repeats, QUANTIZER_REPEATS),
                "--warmup",
                warmup,
                "--max-seconds",
                QUANTIZER_SECONDS,
            )
        )
        for kind, (our_impl, peer_impl) in QUANTIZER_IMPLS.items():
            flags = (*sizes[kind], "--n", n, "--d", 8 if tiny else 64, *timing)
            ours[kind] = runner.run(
                sys.executable,
                "bench_vq_layer.py",
                f"quantizer_{kind}",
                "--impl",
                our_impl,
                *flags,
            )
            if torch_py:
                peers[kind] = runner.run(
                    torch_py,
                    "bench_vq_layer.py",
                    f"quantizer_{kind}_vqtorch",
                    "--impl",
                    peer_impl,
                    *flags,
                )
        quantizers = (ours, peers)
        lines, t = quantizers_section(ours, peers)
        parts.append(lines)
        targets += t

    if "quantizer_quality" in args.only:
        data_path = args.quality_data or os.path.join(
            os.path.dirname(REPO), "shared", "data", "cifar10_jpeg.tar.gz"
        )
        title = "## 9. Quantizer quality (issue 13)"
        if not os.path.exists(data_path):
            parts.append(
                [
                    title,
                    "",
                    f"Not run: no CIFAR-10 archive at `{data_path}`.",
                    "",
                ]
            )
        else:
            extra = (
                ["--tiny", "--prior-steps", "2"]
                if tiny
                else [
                    "--steps",
                    args.quality_steps,
                    "--prior-steps",
                    args.quality_prior_steps,
                ]
            )
            data = runner.run(
                sys.executable,
                "bench_quality.py",
                "quantizer_quality",
                *extra,
                "--data",
                data_path,
                "--impl",
                ",".join(QUANTIZER_RUN_NAMES),
            )
            lines, t = quantizer_quality_section(data)
            parts.append(lines)
            targets += t
            quantizer_quality = data

    if "speech" in args.only:
        extra = (
            ["--tiny"] if tiny else ["--docs-dir", os.path.join(REPO, "docs")]
        )
        data = runner.run(sys.executable, "bench_speech.py", "speech", *extra)
        lines, t = speech_section(data)
        parts.append(lines)
        targets += t

    demo = None
    if "demo" in args.only:
        demo = runner.run(
            sys.executable,
            "bench_demo.py",
            "demo",
            *(("--tiny",) if tiny else ()),
        )
        lines, t = demo_section(demo)
        parts.append(lines)
        targets += t

    targets += wavenet_targets(fragments.get("sampling"))
    summary = summary_section(
        vq,
        memory,
        steps,
        quality,
        fragments.get("sampling"),
        fragments.get("export"),
        quantizers,
        quantizer_quality,
        demo,
    )
    write_markdown(args, parts, targets, env, summary)
    if os.path.abspath(args.out) == os.path.join(REPO, "BENCHMARKS.md"):
        readme = os.path.join(REPO, "README.md")
        if sync_readme(args.out, readme):
            print(f"updated the benchmark summary in {readme}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(
            "run.py: interrupted; finished results stay in the results "
            "directory (run again with --resume to keep them)"
        )
