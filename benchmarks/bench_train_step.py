"""A full VQ-VAE training step: images/s and GFLOP/s vs the matmul peak.

    python benchmarks/bench_train_step.py --config paper \\
        --impl tf_vqvae,sonnet,kerasio --out step.json

`--config paper`: the paper's CIFAR-10 model (two stride-2 4x4 convolutions,
2 residual blocks, 256 hidden units, K=512, D=64, Adam 2e-4, batch 128,
codebook trained by gradients). `--config sonnet`: Sonnet's VQ-VAE example
(128 hidden, 32 residual hidden, EMA codebook, Adam 3e-4, batch 32).

Implementations (`--impl`, see `models.py`): `tf_vqvae` (`VQVAE`), `sonnet`
(Sonnet 2 modules, `tf.function` step in a Python loop, as its example
trains), `kerasio` (the keras-io example's quantizer and custom `train_step`;
it has no EMA variant, so it trains its codebook by gradients in both
configs). `tf_vqvae_bf16`: `VQVAE` under `mixed_bfloat16`
(`tf_vqvae.precision`: float32 variables, codebook and losses);
`sonnet_bf16`: Sonnet's encoder and decoder in bfloat16 (weights too: Sonnet
2 has no mixed-precision policy, see `models.SonnetVQVAE`). All run in one
process on the same in-memory random images (`tf.data`, so no decoding
cost) and are timed round-robin: one "epoch" of `--steps` steps of each per
round, in reverse order every other round. The
Keras models step through the train function that `model.fit` compiles and
calls for each step (after one short `fit`), because the set-up of a `fit`
call itself varied by seconds here; tf_vqvae is then also timed inside one
`fit` call of `--fit-epochs` epochs (`fit_images_per_s`). Achieved GFLOP/s
counts 3x the forward FLOPs of `models.forward_flops_per_image`; the peak is
the best of repeated 2048^3 `tf.matmul`s in the same process, float32 for
the float32 implementations and bfloat16 for the `_bf16` ones.
"""

from __future__ import annotations

import sys
import time

import common
import models

IMPLS = ("tf_vqvae", "sonnet", "kerasio", "tf_vqvae_bf16", "sonnet_bf16")
DEFAULT_IMPLS = ("tf_vqvae", "sonnet", "kerasio")


def _dtype(impl: str) -> str:
    return "bfloat16" if impl.endswith("_bf16") else "float32"


def matmul_peak_gflops(
    tf, size: int = 2048, repeats: int = 10, dtype: str = "float32"
) -> float:
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)

    @tf.function
    def product(a, b):
        return tf.reduce_sum(tf.matmul(a, b))

    times = common.time_repeats(lambda: product(a, b).numpy(), 2, repeats)
    return 2.0 * size**3 / min(times) / 1e9


def _epoch_runner(impl: str, config, dataset, steps: int, tf):
    """A function running `steps` training steps and blocking until done."""
    if impl.startswith("sonnet"):
        model = models.SonnetVQVAE(config, compute_dtype=_dtype(impl))
        iterator = iter(dataset)

        def run():
            for _ in range(steps):
                loss, _, _ = model.step(next(iterator))
            return float(loss)

        return run
    if impl.startswith("tf_vqvae"):
        model = models.build_tf_vqvae(config, precision=_dtype(impl))
    else:
        model = models.build_kerasio(config)
    # One short `fit` builds the model and compiles Keras' train function;
    # the epochs then call that function, the one `fit` runs for each step,
    # so no per-`fit`-call set-up is timed (it varied by seconds here).
    model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    iterator = iter(dataset)

    def run():
        for _ in range(steps):
            logs = model.train_function(iterator)
        return float(next(iter(logs.values())))

    run.model = model
    return run


def fit_epochs(model, dataset, steps: int, epochs: int) -> list[float]:
    """Seconds of each epoch after the first of one `model.fit` call."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    model.fit(
        dataset,
        steps_per_epoch=steps,
        epochs=epochs + 1,
        verbose=0,
        shuffle=False,
        callbacks=[timer],
    )
    return timer.seconds[1:]


def run(args) -> dict:
    common.quiet_tensorflow()
    import tensorflow as tf

    common.configure_tf_threads(tf, args.threads)
    config = models.CONFIGS[args.config]
    if args.batch_size:
        config = models.Config(
            **{**config.__dict__, "batch_size": args.batch_size}
        )
    if args.image_size:
        config = models.Config(
            **{**config.__dict__, "image_size": args.image_size}
        )
    images = tf.random.uniform(
        (args.images, config.image_size, config.image_size, 3), seed=0
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices(images)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .prefetch(2)
    )
    runners = {
        impl: _epoch_runner(impl, config, dataset, args.steps, tf)
        for impl in args.impl
    }
    dtypes = sorted({_dtype(impl) for impl in runners})
    peaks = {dtype: [matmul_peak_gflops(tf, dtype=dtype)] for dtype in dtypes}
    for _ in range(args.warmup):
        for fn in runners.values():
            fn()
    times = {impl: [] for impl in runners}
    order = list(runners.items())
    for round_index in range(args.repeats):
        # Every other round in reverse, so no implementation always runs
        # first or right after the same other one.
        for impl, fn in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[impl].append(time.perf_counter() - start)
    fit_seconds = {
        impl: fit_epochs(fn.model, dataset, args.steps, args.fit_epochs)
        for impl, fn in runners.items()
        if impl.startswith("tf_vqvae") and args.fit_epochs
    }
    for dtype in dtypes:
        peaks[dtype].append(matmul_peak_gflops(tf, dtype=dtype))
    peak = {dtype: max(samples) for dtype, samples in peaks.items()}
    images_per_epoch = args.steps * config.batch_size
    flops = models.train_step_flops_per_image(config)
    results = {}
    for impl, seconds in times.items():
        ips = common.rates(seconds, images_per_epoch)
        results[impl] = {
            "images_per_s": ips,
            "seconds": seconds,
            "gflops_per_s": ips["median"] * flops / 1e9,
            "fraction_of_peak": ips["median"]
            * flops
            / 1e9
            / peak[_dtype(impl)],
            "dtype": _dtype(impl),
        }
        if impl in fit_seconds:
            results[impl]["fit_images_per_s"] = common.rates(
                fit_seconds[impl], images_per_epoch
            )
    return {
        "benchmark": "train_step",
        "config": args.config,
        "config_values": config.__dict__,
        "steps_per_epoch": args.steps,
        "train_step_gflop_per_image": flops / 1e9,
        "matmul_peak_gflops": peak.get("float32"),
        "matmul_peak_bf16_gflops": peak.get("bfloat16"),
        "matmul_peak_samples": peaks,
        "results": results,
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(models.CONFIGS))
    common.add_impl_argument(
        parser, IMPLS, "timed round-robin", default=list(DEFAULT_IMPLS)
    )
    parser.add_argument("--steps", type=int, default=0, help="per epoch")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument(
        "--fit-epochs",
        type=int,
        default=3,
        help="then time tf_vqvae in one model.fit call of this many epochs",
    )
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument(
        "--tiny", action="store_true", help="smoke test: tiny sizes"
    )
    parser.set_defaults(config="paper")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.image_size, args.images = 2, 8, 8
        args.steps, args.warmup, args.repeats = 1, 1, 1
        args.fit_epochs = 1
    if not args.steps:
        args.steps = 4 if args.config == "paper" else 20
    result = run(args)
    common.emit(result, args.out)
    return result


if __name__ == "__main__":
    common.run_main(main)
