"""PixelCNN prior sampling: naive vs cached sampler vs TFP, seconds per batch.

    python benchmarks/bench_sampling.py --out sampling.md --json sampling.json

For each code grid (8x8, 16x16, 32x32 by default; K = 512, batch 16) both
samplers of `tf_vqvae.PixelCNNPrior.sample_codes` draw one batch from the same
uniform noise: the naive one runs the whole network on the whole grid for
every code, the cached one only the windows the next code needs. Each is
compiled (`tf.function`) and run `--warmup` times, then timed `--repeats`
times (wall clock, min/median/max). The script checks that both return
identical codes and writes a markdown table fragment (and JSON with
`--json`). `--tiny` is a seconds-long smoke run (a test runs it).

The peer is `tfp.distributions.PixelCNN` (PixelCNN++) over the same grid of
integers in [0, K-1] (one channel, a discretized logistic mixture: TFP has
no categorical PixelCNN), of similar size: `--tfp-resnet` ResNet layers per
block, `--tfp-hierarchies` blocks, `--num-hiddens` filters, no dropout or
weight norm; its `sample` is compiled the same way. The parameter counts of
both are in the table. `--no-tfp` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import common

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = dict(
    grids=[4],
    num_embeddings=16,
    batch=2,
    num_hiddens=8,
    num_layers=2,
    warmup=1,
    repeats=2,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--grids", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--num-embeddings", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-hiddens", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=5)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tfp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time tfp.distributions.PixelCNN",
    )
    parser.add_argument("--tfp-resnet", type=int, default=1)
    parser.add_argument("--tfp-hierarchies", type=int, default=1)
    parser.add_argument("--tfp-logistic-mix", type=int, default=5)
    parser.add_argument("--out", help="write the markdown fragment here")
    parser.add_argument("--json", help="write the raw timings here")
    parser.add_argument(
        "--tiny", action="store_true", help="smoke test: tiny sizes"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    return args


def tfp_pixel_cnn(args: argparse.Namespace, grid: int):
    """`tfp.distributions.PixelCNN` over a `grid x grid` map of codes."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    dist = tfp.distributions.PixelCNN(
        image_shape=(grid, grid, 1),
        num_resnet=args.tfp_resnet,
        num_hierarchies=args.tfp_hierarchies,
        num_filters=args.num_hiddens,
        num_logistic_mix=args.tfp_logistic_mix,
        dropout_p=0.0,
        use_weight_norm=False,
        use_data_init=False,
        high=args.num_embeddings - 1,
        low=0,
    )
    # Builds the network (its weights exist after the first log_prob).
    dist.log_prob(tf.zeros((args.batch, grid, grid, 1)))
    return dist


def run(args: argparse.Namespace) -> list[dict]:
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_vqvae import PixelCNNPrior

    rows = []
    for grid in args.grids:
        keras.utils.set_random_seed(args.seed)
        prior = PixelCNNPrior(
            args.num_embeddings,
            (grid, grid),
            num_hiddens=args.num_hiddens,
            num_layers=args.num_layers,
            kernel_size=args.kernel_size,
        )
        noise = tf.random.stateless_uniform(
            (args.batch, grid, grid, args.num_embeddings),
            seed=(args.seed, grid),
        )
        row = {"grid": grid}
        codes = {}
        for method in ("naive", "cached"):

            def sample(method=method):
                codes[method] = prior.sample_codes(noise, method=method).numpy()

            row[method] = common.time_repeats(sample, args.warmup, args.repeats)
            print(
                f"{grid}x{grid} {method}: "
                + ", ".join(f"{t:.3f}" for t in row[method])
                + " s",
                file=sys.stderr,
                flush=True,
            )
        row["params"] = int(prior.count_params())
        if args.tfp:
            dist = tfp_pixel_cnn(args, grid)
            tfp_sample = tf.function(
                lambda dist=dist: dist.sample(args.batch, seed=args.seed)
            )
            row["tfp"] = common.time_repeats(
                lambda: tfp_sample().numpy(), args.warmup, args.repeats
            )
            row["tfp_params"] = int(dist.network.count_params())
            row["tfp_ratio"] = statistics.median(
                row["tfp"]
            ) / statistics.median(row["cached"])
        row["identical"] = bool(np.array_equal(codes["naive"], codes["cached"]))
        row["speedup"] = statistics.median(row["naive"]) / statistics.median(
            row["cached"]
        )
        rows.append(row)
    return rows


def markdown(args: argparse.Namespace, rows: list[dict], command: str) -> str:
    def cell(times):
        low, mid, high = min(times), statistics.median(times), max(times)
        return f"{low:.3f} / {mid:.3f} / {high:.3f}"

    import tensorflow as tf

    lines = [
        "### PixelCNN prior sampling: naive vs cached",
        "",
        f"`{command}`",
        "",
        f"K={args.num_embeddings}, batch {args.batch}, "
        f"num_hiddens={args.num_hiddens}, num_layers={args.num_layers}, "
        f"kernel_size={args.kernel_size}, untrained weights; "
        f"{args.warmup} warm-up + {args.repeats} timed runs each; "
        f"TF {tf.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPU cores. Seconds per batch, min / median / max.",
        "",
        "| grid | naive (s) | cached (s) | speed-up (median) | same codes "
        "| TFP PixelCNN (s) | TFP ÷ cached |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        tfp_cells = "| - | - |"
        if "tfp" in row:
            tfp_cells = f"| {cell(row['tfp'])} | {row['tfp_ratio']:.1f}x |"
        lines.append(
            f"| {row['grid']}x{row['grid']} | {cell(row['naive'])} | "
            f"{cell(row['cached'])} | {row['speedup']:.1f}x | "
            f"{'yes' if row['identical'] else 'NO'} {tfp_cells}"
        )
    if rows and "tfp" in rows[0]:
        lines += [
            "",
            f"Parameters: tf_vqvae prior {rows[0]['params']:,}, TFP "
            f"PixelCNN {rows[0]['tfp_params']:,} (num_resnet="
            f"{args.tfp_resnet}, num_hierarchies={args.tfp_hierarchies}, "
            f"num_filters={args.num_hiddens}, num_logistic_mix="
            f"{args.tfp_logistic_mix}). TFP models the codes as ordinal "
            "integers (a discretized logistic mixture), tf_vqvae as "
            "categories; the comparison is of sampling speed.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    # Where the results went is not part of how they were measured (and
    # would cite files outside the repository).
    for flag in ("--json", "--out"):
        while flag in given:
            at = given.index(flag)
            del given[at : at + 2]
    command = "python benchmarks/bench_sampling.py " + " ".join(given)
    rows = run(args)
    text = markdown(args, rows, command.strip())
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
