"""Prior sampling: naive vs cached sampler (PixelCNN vs TFP, WaveNet).

    python benchmarks/bench_sampling.py --out sampling.md --json sampling.json

For each code grid (8x8, 16x16, 32x32 by default; K = 512, batch 16) both
samplers of `tf_vqvae.PixelCNNPrior.sample_codes` draw one batch from the same
uniform noise: the naive one runs the whole network on the whole grid for
every code, the cached one only the windows the next code needs. Each is
compiled (`tf.function`) and run `--warmup` times, then timed `--repeats`
times (wall clock, min/median/max). The script checks that both return
identical codes and writes a markdown table fragment (and JSON with
`--json`). `--tiny` is a seconds-long smoke run (a test runs it).

`--precisions` (default float32 and bfloat16, `tf_vqvae.precision`): the
cached sampler is also timed with the same weights under each other
precision, alternating with the float32 one in each round, with the share of
its codes equal to float32's; and the prior's training step (`fit`'s train
function on random codes, batch `--train-batch`) is timed per precision,
alternating rounds (`--precision-repeats` of each, default 9: they are
cheap, and this host's slow bursts skew fewer).

WaveNet (`tf_vqvae.WaveNetPrior`, issue 15): for each sequence length
(`--wavenet-lengths`, 1024 and 4096 codes by default; K as above, batch
`--wavenet-batch`) the naive sampler (the whole network on the whole
sequence for every code) and the cached one (per-layer queues, Paine et al.
2016) draw one batch from the same noise and must return identical codes.
The naive sampler grows quadratically with the length (minutes at 4096
codes), so it runs `--wavenet-naive-repeats` times (default 1) without a
warm-up: its time includes tracing its `tf.function` (under a second). The
cached one is warmed up and repeated like the PixelCNN's.
`--wavenet-lengths` with no value skips the WaveNet part.

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
    precision_repeats=2,
    train_batch=4,
    train_steps=2,
    wavenet_lengths=[16],
    wavenet_batch=2,
    wavenet_channels=8,
    wavenet_layers=3,
    wavenet_naive_repeats=1,
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
        "--precisions",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", "bfloat16", "float16"],
        help="cached sampling and the training step per precision",
    )
    parser.add_argument(
        "--precision-repeats",
        type=int,
        default=9,
        help="rounds of the per-precision table (cheap next to the naive "
        "sampler's, and this host's bursts need more than --repeats)",
    )
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument(
        "--tfp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time tfp.distributions.PixelCNN",
    )
    parser.add_argument("--tfp-resnet", type=int, default=1)
    parser.add_argument("--tfp-hierarchies", type=int, default=1)
    parser.add_argument("--tfp-logistic-mix", type=int, default=5)
    parser.add_argument(
        "--wavenet-lengths", type=int, nargs="*", default=[1024, 4096]
    )
    parser.add_argument("--wavenet-batch", type=int, default=4)
    parser.add_argument(
        "--wavenet-channels",
        type=int,
        default=64,
        help="residual and skip channels of the WaveNet prior",
    )
    parser.add_argument("--wavenet-layers", type=int, default=10)
    parser.add_argument("--wavenet-dilation-cycle", type=int, default=10)
    parser.add_argument("--wavenet-naive-repeats", type=int, default=1)
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


def make_prior(args: argparse.Namespace, grid: int, precision: str):
    """The benchmark's prior under `precision`: the same float32 weights
    for every precision (same seed)."""
    import keras

    from tf_vqvae import PixelCNNPrior
    from tf_vqvae.precision import dtype_policy

    keras.utils.set_random_seed(args.seed)
    prior = PixelCNNPrior(
        args.num_embeddings,
        (grid, grid),
        num_hiddens=args.num_hiddens,
        num_layers=args.num_layers,
        kernel_size=args.kernel_size,
        dtype=dtype_policy(precision),
    )
    prior.build((None, grid, grid))
    return prior


def alternate(functions: dict, warmup: int, repeats: int) -> dict:
    """Seconds per call of each function, timed round-robin (reversed
    every other round) after `warmup` calls of each."""
    import time

    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    order = list(functions.items())
    for round_index in range(repeats):
        for name, fn in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def run_precisions(args: argparse.Namespace) -> list[dict]:
    """Cached sampling and the training step of the prior per precision."""
    import keras
    import numpy as np
    import tensorflow as tf

    rows = []
    for grid in args.grids:
        priors = {p: make_prior(args, grid, p) for p in args.precisions}
        noise = tf.random.stateless_uniform(
            (args.batch, grid, grid, args.num_embeddings),
            seed=(args.seed, grid),
        )
        codes = {}

        def sampler(precision):
            def sample():
                codes[precision] = priors[precision].sample_codes(noise).numpy()

            return sample

        sampling = alternate(
            {p: sampler(p) for p in priors},
            args.warmup,
            args.precision_repeats,
        )
        data = np.random.default_rng(args.seed).integers(
            0,
            args.num_embeddings,
            (args.train_batch * args.train_steps, grid, grid),
        )
        dataset = tf.data.Dataset.from_tensor_slices(data.astype("int32"))
        dataset = dataset.batch(args.train_batch, drop_remainder=True)
        steppers = {}
        for precision, prior in priors.items():
            prior.compile(optimizer=keras.optimizers.Adam(3e-4))
            prior.fit(dataset.take(1), epochs=1, verbose=0, shuffle=False)

            def steps(prior=prior):
                iterator = iter(dataset.repeat())
                for _ in range(args.train_steps):
                    logs = prior.train_function(iterator)
                return float(next(iter(logs.values())))

            steppers[precision] = steps
        training = alternate(steppers, 1, args.precision_repeats)
        reference = args.precisions[0]
        for precision in args.precisions:
            rows.append(
                {
                    "grid": grid,
                    "precision": precision,
                    "cached": sampling[precision],
                    "codes_equal_to": reference,
                    "codes_agreement": float(
                        np.mean(codes[precision] == codes[reference])
                    ),
                    "train_step": [
                        t / args.train_steps for t in training[precision]
                    ],
                }
            )
            print(
                f"{grid}x{grid} {precision}: cached "
                + ", ".join(f"{t:.3f}" for t in sampling[precision])
                + " s; train step "
                + ", ".join(f"{t:.4f}" for t in rows[-1]["train_step"])
                + " s",
                file=sys.stderr,
                flush=True,
            )
    return rows


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


def precision_markdown(args: argparse.Namespace, rows: list[dict]) -> str:
    def cell(times, digits=3):
        low, mid, high = min(times), statistics.median(times), max(times)
        return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f}"

    reference = args.precisions[0]
    lines = [
        "",
        "### The prior per precision",
        "",
        f"The same weights under each precision (`tf_vqvae.precision`); "
        f"rounds alternate between precisions. Cached sampling: seconds per "
        f"batch of {args.batch}; training step: seconds per step of "
        f"{args.train_batch} code grids (`fit`'s train function, "
        f"{args.train_steps} steps per round); min / median / max of "
        f"{args.precision_repeats} rounds. Speed-ups are {reference} ÷ "
        "precision (medians).",
        "",
        "| grid | precision | cached sampling (s) | speed-up | codes equal "
        f"to {reference} | training step (s) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {row["grid"]: row for row in rows if row["precision"] == reference}
    for row in rows:
        ref = base[row["grid"]]
        sample_ratio = statistics.median(ref["cached"]) / statistics.median(
            row["cached"]
        )
        train_ratio = statistics.median(ref["train_step"]) / statistics.median(
            row["train_step"]
        )
        lines.append(
            f"| {row['grid']}x{row['grid']} | {row['precision']} "
            f"| {cell(row['cached'])} | {sample_ratio:.2f}x "
            f"| {100 * row['codes_agreement']:.2f}% "
            f"| {cell(row['train_step'], 4)} | {train_ratio:.2f}x |"
        )
    lines += [
        "",
        "Untrained weights: the agreement of codes says how often bfloat16 "
        "rounding flips a draw here, not the quality of a trained prior "
        "(`bench_quality.py` measures bits/dim per precision).",
    ]
    return "\n".join(lines) + "\n"


def run_wavenet(args: argparse.Namespace) -> list[dict]:
    """Naive vs cached sampling of `WaveNetPrior` per sequence length."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_vqvae import WaveNetPrior

    rows = []
    for length in args.wavenet_lengths:
        keras.utils.set_random_seed(args.seed)
        prior = WaveNetPrior(
            args.num_embeddings,
            length,
            residual_channels=args.wavenet_channels,
            skip_channels=args.wavenet_channels,
            num_layers=args.wavenet_layers,
            dilation_cycle=args.wavenet_dilation_cycle,
        )
        prior.build((None, length))
        noise = tf.random.stateless_uniform(
            (args.wavenet_batch, length, args.num_embeddings),
            seed=(args.seed, length),
        )
        row = {"length": length}
        codes = {}
        for method, warmup, repeats in (
            ("cached", args.warmup, args.repeats),
            ("naive", 0, args.wavenet_naive_repeats),
        ):

            def sample(method=method):
                codes[method] = prior.sample_codes(noise, method=method).numpy()

            row[method] = common.time_repeats(sample, warmup, repeats)
            print(
                f"WaveNet {length} codes {method}: "
                + ", ".join(f"{t:.3f}" for t in row[method])
                + " s",
                file=sys.stderr,
                flush=True,
            )
        row["params"] = int(prior.count_params())
        row["receptive_field"] = prior.receptive_field
        row["identical"] = bool(np.array_equal(codes["naive"], codes["cached"]))
        row["speedup"] = statistics.median(row["naive"]) / statistics.median(
            row["cached"]
        )
        rows.append(row)
    return rows


def wavenet_markdown(args: argparse.Namespace, rows: list[dict]) -> str:
    def cell(times):
        low, mid, high = min(times), statistics.median(times), max(times)
        return f"{low:.3f} / {mid:.3f} / {high:.3f}"

    lines = [
        "",
        "### WaveNet prior sampling: naive vs cached",
        "",
        f"`tf_vqvae.WaveNetPrior`, K={args.num_embeddings}, batch "
        f"{args.wavenet_batch}, residual and skip channels "
        f"{args.wavenet_channels}, {args.wavenet_layers} layers (dilation "
        f"cycle {args.wavenet_dilation_cycle}, receptive field "
        f"{rows[0]['receptive_field']} codes), {rows[0]['params']:,} "
        "parameters, untrained weights. Cached: "
        f"{args.warmup} warm-up + {args.repeats} timed runs; naive: "
        f"{args.wavenet_naive_repeats} timed run(s), no warm-up (includes "
        "under a second of tracing). Seconds per batch, min / median / max.",
        "",
        "| codes | naive (s) | cached (s) | speed-up (median) "
        "| cached ms per code | same codes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_code = 1000 * statistics.median(row["cached"]) / row["length"]
        lines.append(
            f"| {row['length']} | {cell(row['naive'])} | "
            f"{cell(row['cached'])} | {row['speedup']:.1f}x | "
            f"{per_code:.3f} | {'yes' if row['identical'] else 'NO'} |"
        )
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
    precision_rows = []
    if len(args.precisions) > 1:
        precision_rows = run_precisions(args)
        text += precision_markdown(args, precision_rows)
    wavenet_rows = run_wavenet(args) if args.wavenet_lengths else []
    if wavenet_rows:
        text += wavenet_markdown(args, wavenet_rows)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "rows": rows,
                    "precision_rows": precision_rows,
                    "wavenet_rows": wavenet_rows,
                },
                f,
                indent=1,
            )
    identical = all(row["identical"] for row in rows + wavenet_rows)
    return 0 if identical else 1


if __name__ == "__main__":
    common.run_main(main)
