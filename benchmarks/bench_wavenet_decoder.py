"""WaveNet decoder vs parallel decoder: generation speed and training step.

    python benchmarks/bench_wavenet_decoder.py [--tiny] [--json out.json]

Generation (issue 16, item 2): a small `tf_vqvae.wavenet.WaveNetDecoder`
(defaults: 10 layers of dilations 1..512, 32 residual/skip/condition
channels, 64x upsampling) generates one second of audio (16,000 samples,
250 codes, batch 1) with the cached sampler (per-layer queues, XLA),
warmed up once, then timed `--repeats` times. The naive sampler (the whole
network on the whole sequence for every sample) is timed on `--naive-samples`
samples (its cost per sample grows with the length, so a second of it is
out of reach); its time for one second is extrapolated from one full
forward pass over 16,000 samples (what each of its 16,000 steps runs), also
measured. Both samplers draw from the same noise and must agree on the
shorter sequence.

Training: one `train_on_batch` step of the same audio VQVAE (encoder and
quantizer identical) with `decoder="parallel"` and `decoder="wavenet"`, on
`--train-batch` random waveforms of `--train-samples` samples, after two
warm-up steps, median of `--repeats`. The decoders' parameter counts are
printed next to the times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import common
import keras
import numpy as np
import tensorflow as tf

from tf_vqvae.vqvae import VQVAE
from tf_vqvae.wavenet import WaveNetDecoder


def _time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generation(samples: int, naive_samples: int, repeats: int) -> dict:
    decoder = WaveNetDecoder(num_upsamples=6)
    codes = samples // 64
    z_q = tf.random.stateless_normal((1, codes, 64), seed=(0, 1))
    decoder.build(tuple(z_q.shape))
    noise = tf.random.stateless_uniform((1, samples, 256), seed=(0, 2))
    decoder.generate(z_q, noise).numpy()
    cached = _time(lambda: decoder.generate(z_q, noise).numpy(), repeats)

    short = naive_samples // 64
    short_noise = noise[:, :naive_samples]
    a = decoder.generate(z_q[:, :short], short_noise).numpy()
    start = time.perf_counter()
    b = decoder.generate(z_q[:, :short], short_noise, method="naive").numpy()
    naive_short = time.perf_counter() - start
    if not np.array_equal(a, b):
        raise AssertionError("cached and naive samples differ")
    forward = tf.function(lambda z, x: decoder(z, x))
    x = tf.zeros((1, samples), "int32")
    forward(z_q, x).numpy()
    step = _time(lambda: forward(z_q, x).numpy(), repeats)
    return {
        "samples": samples,
        "decoder_parameters": int(decoder.count_params()),
        "receptive_field": decoder.receptive_field,
        "cached_seconds": cached,
        "cached_samples_per_second": samples / cached,
        "naive_samples": naive_samples,
        "naive_seconds": naive_short,
        "naive_samples_per_second_short": naive_samples / naive_short,
        "forward_seconds_full_length": step,
        "naive_samples_per_second_full_length": 1.0 / step,
    }


def training(batch: int, samples: int, repeats: int) -> dict:
    shared = dict(
        modality="audio",
        spatial_dims=1,
        num_downsamples=6,
        num_hiddens=64,
        num_residual_hiddens=32,
        embedding_dim=64,
    )
    rng = np.random.default_rng(0)
    x = np.clip(0.3 * rng.normal(size=(batch, samples, 1)), -1, 1)
    x = x.astype("float32")
    results = {}
    for decoder in ("parallel", "wavenet"):
        model = VQVAE(**shared, decoder=decoder)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        for _ in range(2):
            model.train_on_batch(x)
        seconds = _time(lambda m=model: m.train_on_batch(x), repeats)
        results[decoder] = {
            "step_seconds": seconds,
            "decoder_parameters": int(model.decoder.count_params()),
        }
    return {"batch": batch, "samples": samples, **results}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-samples", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-samples", type=int, default=16384)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    samples = 1024 if args.tiny else 16000
    naive = 128 if args.tiny else args.naive_samples
    results = {
        "generation": generation(samples, naive, args.repeats),
        "training": training(
            args.train_batch,
            1024 if args.tiny else args.train_samples,
            args.repeats,
        ),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    common.run_main(main)
