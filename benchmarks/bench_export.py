"""Per-image decode and encode latency and model size: Keras vs SavedModel vs
TFLite float32 / float16 / int8, with the parity of each export.

Trains a VQ-VAE briefly on real 32x32 photo patches (so int8 calibration and
parity see realistic activations), exports it with
`tf_vqvae.export.saved_model.export_saved_model` and
`tf_vqvae.export.tflite.export_tflite`, then times each runtime on the same
codes / images: `--warmup` calls, then `--repeats` timed calls, min / median
/ max per image.

    python benchmarks/bench_export.py                 # a few minutes on CPU
    python benchmarks/bench_export.py --json out.json
    python benchmarks/bench_export.py --tiny          # seconds; a test runs it

Runtimes: "keras" is `model.decode` / `model.encode` called eagerly (what a
Python user calls); "keras (tf.function)" the same traced once; "savedmodel"
the exported signature (in-graph validation included) after
`tf.saved_model.load`; "tflite-*" LiteRT signature runners with
`--litert-threads` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import common

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-embeddings", type=int, default=512)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--num-hiddens", type=int, default=128)
    parser.add_argument("--num-residual-hiddens", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--litert-threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--tiny", action="store_true", help="smoke test: tiny sizes"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.image_size = 16
        args.num_embeddings = 16
        args.embedding_dim = 4
        args.num_hiddens = 8
        args.num_residual_hiddens = 4
        args.train_images = 32
        args.epochs = 1
        args.batch_sizes = "1,4"
        args.warmup = 1
        args.repeats = 2
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    return args


def time_per_item(fn, items: int, warmup: int, repeats: int) -> dict:
    """min / median / max milliseconds per item of `fn()` on `items`."""
    times = sorted(
        seconds / items * 1e3
        for seconds in common.time_repeats(fn, warmup, repeats)
    )
    return {
        "min_ms": times[0],
        "median_ms": statistics.median(times),
        "max_ms": times[-1],
    }


def directory_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(path)
        for f in files
    )


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def run(args: argparse.Namespace, work_dir: str) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tf_vqvae import VQVAE
    from tf_vqvae.data import photo_crops
    from tf_vqvae.export import saved_model, tflite

    keras.utils.set_random_seed(0)
    images = photo_crops(args.image_size, args.train_images)
    model = VQVAE(
        num_embeddings=args.num_embeddings,
        embedding_dim=args.embedding_dim,
        num_hiddens=args.num_hiddens,
        num_residual_hiddens=args.num_residual_hiddens,
        data_init="random",
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    start = time.perf_counter()
    model.fit(images, batch_size=32, epochs=args.epochs, verbose=0)
    train_seconds = time.perf_counter() - start
    keras_path = os.path.join(work_dir, "model.keras")
    model.save(keras_path)

    size = (args.image_size, args.image_size)
    start = time.perf_counter()
    version_dir = saved_model.export_saved_model(
        model, work_dir, image_size=size, max_batch_size=max(args.batch_sizes)
    )
    saved_model_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tflite_files = tflite.export_tflite(
        model,
        os.path.join(work_dir, "tflite"),
        size,
        representative_images=images[:256],
    )
    tflite_seconds = time.perf_counter() - start

    sizes = {
        "keras (.keras)": os.path.getsize(keras_path),
        "savedmodel (dir)": directory_bytes(version_dir),
    }
    for name, path in tflite_files.items():
        sizes[name] = os.path.getsize(path)

    loaded = tf.saved_model.load(version_dir)
    decode_keras_fn = tf.function(model.decode)
    encode_keras_fn = tf.function(model.encode)
    batch_max = max(args.batch_sizes)
    # Held-out patches (another seed) for timing and parity.
    test_images = photo_crops(args.image_size, batch_max, seed=1)
    test_floats = (test_images / 255.0).astype(np.float32)
    test_codes = np.asarray(model.encode(test_images))

    def runner(name: str, key: str):
        interpreter = Interpreter(
            model_path=tflite_files[name], num_threads=args.litert_threads
        )
        return interpreter.get_signature_runner(key)

    decoders = {
        f"tflite-{q}": runner(f"decoder_{q}.tflite", "decode")
        for q in ("float32", "float16", "int8")
    }
    encoder = runner("encoder_float32.tflite", "encode")

    reference = np.asarray(model.decode(test_codes))
    outputs = {
        "savedmodel": loaded.signatures["decode"](
            codes=tf.constant(test_codes)
        )["images"].numpy(),
        **{k: r(codes=test_codes)["images"] for k, r in decoders.items()},
    }
    parity = {
        f"decode {k} max |error| vs keras": float(np.max(np.abs(v - reference)))
        for k, v in outputs.items()
    }
    parity["decode tflite-int8 PSNR vs tflite-float32 (dB)"] = psnr(
        outputs["tflite-int8"], outputs["tflite-float32"]
    )
    parity["decode tflite-int8 PSNR vs keras (dB)"] = psnr(
        outputs["tflite-int8"], reference
    )
    parity["decode tflite-float16 PSNR vs keras (dB)"] = psnr(
        outputs["tflite-float16"], reference
    )
    parity["reconstruction PSNR keras vs input (dB)"] = psnr(
        reference, test_floats
    )
    enc_sm = loaded.signatures["encode"](images=tf.constant(test_floats))
    parity["encode savedmodel codes equal keras (fraction)"] = float(
        np.mean(enc_sm["codes"].numpy() == test_codes)
    )
    parity["encode tflite-float32 codes equal keras (fraction)"] = float(
        np.mean(encoder(images=test_floats)["codes"] == test_codes)
    )

    latency = []
    for batch in args.batch_sizes:
        codes = test_codes[:batch]
        floats = test_floats[:batch]
        codes_t = tf.constant(codes)
        floats_t = tf.constant(floats)
        decode_runs = {
            "keras": lambda c=codes_t: model.decode(c).numpy(),
            "keras (tf.function)": lambda c=codes_t: decode_keras_fn(c).numpy(),
            "savedmodel": lambda c=codes_t: loaded.signatures["decode"](
                codes=c
            )["images"].numpy(),
        }
        for name, r in decoders.items():
            decode_runs[name] = lambda r=r, c=codes: r(codes=c)["images"]
        encode_runs = {
            "keras": lambda x=floats_t: model.encode(x).numpy(),
            "keras (tf.function)": lambda x=floats_t: encode_keras_fn(
                x
            ).numpy(),
            "savedmodel": lambda x=floats_t: loaded.signatures["encode"](
                images=x
            )["codes"].numpy(),
            "tflite-float32": lambda x=floats: encoder(images=x)["codes"],
        }
        for task, runs in (("decode", decode_runs), ("encode", encode_runs)):
            for runtime, fn in runs.items():
                latency.append(
                    {
                        "task": task,
                        "runtime": runtime,
                        "batch": batch,
                        **time_per_item(fn, batch, args.warmup, args.repeats),
                    }
                )

    return {
        "config": {
            k: v for k, v in vars(args).items() if k not in ("json", "tiny")
        },
        "tiny": args.tiny,
        "machine": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "seconds": {
            "train": train_seconds,
            "export_saved_model": saved_model_seconds,
            "export_tflite": tflite_seconds,
        },
        "sizes_bytes": sizes,
        "parity": parity,
        "latency": latency,
    }


def markdown(result: dict) -> str:
    lines = [
        "| task | runtime | batch | min ms/image | median | max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in result["latency"]:
        lines.append(
            f"| {row['task']} | {row['runtime']} | {row['batch']} | "
            f"{row['min_ms']:.3f} | {row['median_ms']:.3f} | "
            f"{row['max_ms']:.3f} |"
        )
    lines += ["", "| artifact | bytes |", "|---|---:|"]
    for name, size in result["sizes_bytes"].items():
        lines.append(f"| {name} | {size:,} |")
    lines += ["", "| parity | value |", "|---|---:|"]
    for name, value in result["parity"].items():
        lines.append(f"| {name} | {value:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as work_dir:
        result = run(args, work_dir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    sys.stdout.write(markdown(result) + "\n")
    return 0


if __name__ == "__main__":
    common.run_main(main)
