"""Quality at a fixed budget: tf_vqvae vs Sonnet on the CIFAR-10 JPEG set.

    python benchmarks/bench_quality.py --steps 1500 --out quality.json

`tf_vqvae` is `VQVAE` with its defaults (codebook drawn from the first
batch's encoder outputs, unused codes re-seeded after 100 steps);
`tf_vqvae_paper` turns both off (`data_init=None`,
`dead_code_restart_steps=None`: the paper's algorithm, U(+-sqrt(3/D)) codebook
like Sonnet's). All models get the
same architecture (`--config`, Sonnet's example by default: 128 hidden, 32
residual hidden, K=512, D=64, EMA codebook, Adam 3e-4, batch 32), the same
training images in the same order (a seeded permutation of the train split,
one per pass), the same number of steps and the same seed. Each is then
evaluated on the test split: reconstruction MSE (images in [0, 1]) and PSNR,
and the perplexity and dead codes (codes no test vector picked) of the pooled
test-set code counts.

Precision (issue 14): `tf_vqvae_bf16` is `tf_vqvae` trained under
`mixed_bfloat16` (`tf_vqvae.precision`), same seed and images, compared per
seed (`--seed`). With the same trained weights, `tf_vqvae`'s float32 codes
are compared with those of a bfloat16 copy on every test position
(`codes_bf16_agreement`), with what the differing codes cost: the test MSE
of the float32 decoder on the copy's codes and of the copy alone. With
`--prior-steps N`, a `PixelCNNPrior` is trained N steps on `tf_vqvae`'s
training codes under each of float32 and bfloat16 (same seed and batches)
and its negative log-likelihood of the test codes is reported in bits per
code and as the prior's term of bits/dim (per image dimension: bits per
code x codes / (32 x 32 x 3)); so is the float32 prior's, evaluated in
bfloat16 with the same weights.

Quantizers (issue 13): the `q_*` implementations are `VQVAE` with the same
architecture and budget and another quantizer (`quantizer_runs`; `--tiny`
shrinks their code counts, `TINY_QUANTIZER_SIZES`):

    q_ema_k1024      the defaults (EMA codebook, data init, restarts), K=1024
    q_fsq            FiniteScalarQuantizer (8, 5, 5, 5): K = 1000
    q_rvq            ResidualVectorQuantizer, 8 levels x K=256, quantizer
                     dropout 0.5; test MSE for each prefix of 1..8 levels;
                     with `--prior-steps N`, a `PixelCNNPrior(num_levels=8)`
                     trained N steps on its codes: test bits per code (and
                     per level) against the uniform prior's 8
    q_plain_k8192    EMA codebook, K=8192, data init and restarts off
    q_rotcos_k8192   the same with the rotation trick and cosine distance
    q_lfq            LookupFreeQuantizer, K = 2**14
    q_ema_k16384     the defaults at K = 2**14 (LFQ's neighbour)
    q_fsq_k15360     FiniteScalarQuantizer (8, 8, 8, 6, 5): K = 15360, the
                     paper's levels nearest 2**14 (FSQ at a large codebook)

Each reports the test MSE, perplexity and used codes (pooled over the
levels' `L x K` codes for residual VQ, and per level).

The archive (`--data`, default `../shared/data/cifar10_jpeg.tar.gz` next to
the repository) is extracted to a temporary directory and decoded once.
`--steps` sets the budget; the default fits in about half an hour here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tarfile
import tempfile
import time

import common
import models

# Issue 13's code counts (`--tiny`: small ones, same code paths).
QUANTIZER_SIZES = dict(
    k=1024,
    rvq_k=256,
    rvq_levels=8,
    big_k=8192,
    lfq_k=2**14,
    fsq=(8, 5, 5, 5),
    big_fsq=(8, 8, 8, 6, 5),
)
TINY_QUANTIZER_SIZES = dict(
    k=16,
    rvq_k=8,
    rvq_levels=3,
    big_k=64,
    lfq_k=2**6,
    fsq=(4, 4),
    big_fsq=(4, 4, 4),
)
# Isolates the gradient rule and the distance from codebook collapse cures.
NO_CURES = {"data_init": None, "dead_code_restart_steps": None}


def quantizer_runs(sizes: dict) -> dict[str, dict]:
    """`{q_* impl: VQVAE arguments}` over the config's, for `sizes`."""
    return {
        "q_ema_k1024": dict(quantizer="ema", num_embeddings=sizes["k"]),
        "q_fsq": dict(
            quantizer="fsq", quantizer_options={"levels": sizes["fsq"]}
        ),
        # FSQ with its optional saturation penalty, and without its data
        # init (the paper's FSQ).
        "q_fsq_penalty": dict(
            quantizer="fsq",
            quantizer_options={
                "levels": sizes["fsq"],
                "fsq_saturation_penalty": 0.1,
            },
        ),
        "q_fsq_paper": dict(
            quantizer="fsq",
            quantizer_options={"levels": sizes["fsq"], "fsq_data_init": False},
        ),
        "q_rvq": dict(
            quantizer="rvq",
            num_embeddings=sizes["rvq_k"],
            quantizer_options={
                "num_quantizers": sizes["rvq_levels"],
                "quantizer_dropout": 0.5,
            },
        ),
        "q_plain_k8192": dict(
            quantizer="ema", num_embeddings=sizes["big_k"], **NO_CURES
        ),
        "q_rotcos_k8192": dict(
            quantizer="ema",
            num_embeddings=sizes["big_k"],
            quantizer_options={"rotation_trick": True, "distance": "cosine"},
            **NO_CURES,
        ),
        "q_lfq": dict(quantizer="lfq", num_embeddings=sizes["lfq_k"]),
        "q_ema_k16384": dict(quantizer="ema", num_embeddings=sizes["lfq_k"]),
        # FSQ near the same K (the paper's levels for K = 15360).
        "q_fsq_k15360": dict(
            quantizer="fsq", quantizer_options={"levels": sizes["big_fsq"]}
        ),
    }


QUANTIZER_IMPLS = tuple(quantizer_runs(QUANTIZER_SIZES))
IMPLS = (
    "tf_vqvae",
    "tf_vqvae_paper",
    "sonnet",
    "tf_vqvae_bf16",
    *QUANTIZER_IMPLS,
)
DEFAULT_IMPLS = ("tf_vqvae", "tf_vqvae_paper", "sonnet")
PRIOR_PRECISIONS = ("float32", "bfloat16")
# tf_vqvae with its measures against codebook collapse turned off.
PAPER_OPTIONS = {"data_init": None, "dead_code_restart_steps": None}
DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "shared",
    "data",
    "cifar10_jpeg.tar.gz",
)


def load_split(tf, root: str, split: str, limit: int, seed: int):
    """uint8 `[n, 32, 32, 3]` of up to `limit` images of `split`, decoded.

    A seeded sample of the files (all of them when `limit` covers them).
    """
    pattern = os.path.join(root, "**", split, "*", "*.jpg")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No JPEG files match {pattern}")
    order = tf.random.experimental.stateless_shuffle(
        tf.range(len(files)), seed=[seed, 0]
    )
    count = min(limit, len(files)) if limit else len(files)
    chosen = tf.gather(tf.constant(files), order[:count])
    dataset = tf.data.Dataset.from_tensor_slices(chosen).map(
        lambda path: tf.io.decode_jpeg(tf.io.read_file(path), channels=3),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.batch(count).get_single_element()


def training_batches(
    tf, images, batch_size: int, steps: int, seed: int, images_in=True
):
    """Float batches in [0, 1]: a seeded permutation per pass over images
    (`images_in=False`: the examples as they are, e.g. codes)."""
    n = int(images.shape[0])
    passes = math.ceil(steps * batch_size / n)
    order = tf.concat(
        [
            tf.random.experimental.stateless_shuffle(
                tf.range(n), seed=[seed, epoch + 1]
            )
            for epoch in range(passes)
        ],
        axis=0,
    )[: steps * batch_size]
    return (
        tf.data.Dataset.from_tensor_slices(order)
        .batch(batch_size, drop_remainder=True)
        .map(
            lambda idx: (
                tf.cast(tf.gather(images, idx), tf.float32) / 255.0
                if images_in
                else tf.gather(images, idx)
            )
        )
        .prefetch(2)
    )


def code_statistics(tf, codes, num_embeddings: int) -> dict:
    counts = tf.math.bincount(
        tf.reshape(codes, [-1]), minlength=num_embeddings, dtype=tf.float64
    )
    probs = counts / tf.reduce_sum(counts)
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs))
    dead = int(tf.reduce_sum(tf.cast(counts == 0, tf.int32)))
    return {
        "perplexity": float(tf.exp(entropy)),
        "dead_codes": dead,
        "dead_fraction": dead / num_embeddings,
    }


def level_statistics(tf, codes, num_embeddings: int) -> dict:
    """Usage of multi-level codes `(..., L)`: pooled over the `L x K` codes
    of all levels (what `code_statistics` returns), and per level."""
    levels = int(codes.shape[-1])
    codes = tf.reshape(codes, [-1, levels])
    pooled = code_statistics(
        tf, codes + tf.range(levels) * num_embeddings, levels * num_embeddings
    )
    per_level = [
        code_statistics(tf, codes[:, level], num_embeddings)
        for level in range(levels)
    ]
    return {**pooled, "levels": per_level}


def prefix_mse(tf, model, test, batch: int) -> list[float]:
    """Test MSE of `model.decode(codes[..., :n])` for n = 1..L levels."""
    encode, decode = tf.function(model.encode), tf.function(model.decode)
    levels = model.quantizer.num_levels
    sums = [0.0] * levels
    for begin in range(0, int(test.shape[0]), batch):
        images = tf.cast(test[begin : begin + batch], tf.float32) / 255.0
        codes = encode(images)
        for n in range(1, levels + 1):
            x_hat = decode(codes[..., :n])
            sums[n - 1] += float(
                tf.reduce_sum(
                    tf.reduce_mean(tf.square(x_hat - images), [1, 2, 3])
                )
            )
    return [total / int(test.shape[0]) for total in sums]


def train_and_evaluate(impl: str, config, tf, train, test, args) -> dict:
    batches = training_batches(tf, train, config.batch_size, args.steps, 0)
    start = time.perf_counter()
    model = None
    if impl in QUANTIZER_IMPLS:
        sizes = TINY_QUANTIZER_SIZES if args.tiny else QUANTIZER_SIZES
        options = dict(quantizer_runs(sizes)[impl])
        config = dataclasses.replace(
            config,
            quantizer=options.pop("quantizer"),
            num_embeddings=options.pop("num_embeddings", config.num_embeddings),
        )
        model = models.build_tf_vqvae(config, seed=args.seed, **options)
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
    elif impl.startswith("tf_vqvae"):
        options = PAPER_OPTIONS if impl == "tf_vqvae_paper" else {}
        precision = "bfloat16" if impl == "tf_vqvae_bf16" else "float32"
        model = models.build_tf_vqvae(
            config, seed=args.seed, precision=precision, **options
        )
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
    ours = model is not None
    if ours:

        @tf.function
        def evaluate(images):
            codes = model.encode(images)
            x_hat = model.decode(codes)
            return tf.reduce_mean(tf.square(x_hat - images)), codes

    else:
        model = models.SonnetVQVAE(config, seed=args.seed)
        for images in batches:
            model.step(images)
        evaluate = model.evaluate_batch
    train_s = time.perf_counter() - start
    squared_errors, all_codes = [], []
    for begin in range(0, int(test.shape[0]), args.eval_batch):
        images = tf.cast(test[begin : begin + args.eval_batch], tf.float32)
        mse, codes = evaluate(images / 255.0)
        squared_errors.append(float(mse) * int(images.shape[0]))
        all_codes.append(tf.reshape(tf.cast(codes, tf.int32), [-1]))
    mse = sum(squared_errors) / int(test.shape[0])
    all_codes = tf.concat(all_codes, axis=0)
    k = model.num_embeddings if ours else config.num_embeddings
    levels = model.quantizer.num_levels if ours else 1
    if levels > 1:
        usage = level_statistics(tf, tf.reshape(all_codes, [-1, levels]), k)
    else:
        usage = code_statistics(tf, all_codes, k)
    result = {
        "mse": mse,
        "psnr_db": 10.0 * math.log10(1.0 / mse),
        "num_embeddings": k,
        "num_levels": levels,
        **usage,
        "train_seconds": train_s,
    }
    if levels > 1:
        result["mse_by_levels"] = prefix_mse(tf, model, test, args.eval_batch)
        if args.prior_steps:
            result["levels_prior"] = levels_prior_quality(
                tf, model, train, test, args
            )
    if impl == "tf_vqvae":
        result.update(
            bf16_agreement(tf, model, test, all_codes, args.eval_batch)
        )
        if args.prior_steps:
            result["prior"] = prior_quality(tf, model, train, test, args)
    return result


def _encode_all(tf, model, images, batch: int):
    encode = tf.function(model.encode)
    return tf.concat(
        [
            tf.reshape(encode(images[begin : begin + batch]), [-1])
            for begin in range(0, int(images.shape[0]), batch)
        ],
        axis=0,
    )


def bf16_copy(model, input_shape: tuple):
    """`model` rebuilt under `mixed_bfloat16` with the same weights."""
    from tf_vqvae.precision import dtype_policy

    copy = type(model).from_config(
        {**model.get_config(), "dtype": dtype_policy("bfloat16")}
    )
    copy.build((None, *input_shape))
    copy.set_weights(model.get_weights())
    return copy


def bf16_agreement(tf, model, test, codes, batch: int) -> dict:
    """A bfloat16 copy of `model` (same weights) on the test set: the share
    of positions where it picks the same code as `model`
    (`codes_bf16_agreement`), the test MSE of `model`'s float32 decoder on
    those codes (`mse_fp32_decoder_bf16_codes`: what the flipped codes
    cost) and the copy's own MSE (`mse_bf16_inference`)."""
    copy = bf16_copy(model, tuple(test.shape[1:]))
    bf16_codes = _encode_all(tf, copy, test, batch)
    decode, decode_bf16 = tf.function(model.decode), tf.function(copy.decode)
    sums = [0.0, 0.0]
    side = tf.reshape(bf16_codes, (int(test.shape[0]), -1)).shape[1]
    grid = (int(round(math.sqrt(side))),) * 2
    for begin in range(0, int(test.shape[0]), batch):
        images = tf.cast(test[begin : begin + batch], tf.float32) / 255.0
        chunk = tf.reshape(
            bf16_codes[begin * side : (begin + int(images.shape[0])) * side],
            (-1, *grid),
        )
        for i, fn in enumerate((decode, decode_bf16)):
            x_hat = tf.cast(fn(chunk), tf.float32)
            sums[i] += float(tf.reduce_sum(tf.square(x_hat - images)))
    size = int(tf.size(test))
    return {
        "codes_bf16_agreement": float(
            tf.reduce_mean(tf.cast(bf16_codes == codes, tf.float32))
        ),
        "mse_fp32_decoder_bf16_codes": sums[0] / size,
        "mse_bf16_inference": sums[1] / size,
    }


def prior_quality(tf, model, train, test, args) -> dict:
    """Bits per code of the test codes under priors trained on `model`'s
    training codes in each of `PRIOR_PRECISIONS`."""
    from tf_vqvae.precision import dtype_policy

    train_codes = tf.reshape(
        _encode_all(tf, model, train, args.eval_batch),
        (int(train.shape[0]), -1),
    )
    test_codes = tf.reshape(
        _encode_all(tf, model, test, args.eval_batch),
        (int(test.shape[0]), -1),
    )
    side = int(round(math.sqrt(int(train_codes.shape[1]))))
    train_codes = tf.reshape(train_codes, (-1, side, side))
    test_codes = tf.reshape(test_codes, (-1, side, side))
    dims = int(math.prod(test.shape[1:]))
    results = {}
    for precision in PRIOR_PRECISIONS:
        prior, train_s = _train_prior(
            tf, model, train_codes, args, dtype=dtype_policy(precision)
        )
        results[precision] = {
            **_test_bits(tf, prior, test_codes, dims, args.eval_batch),
            "train_seconds": train_s,
        }
        if precision == "float32":
            # The same trained weights evaluated in bfloat16: what bfloat16
            # arithmetic alone changes, without a second training run.
            copy = bf16_copy(prior, tuple(test_codes.shape[1:]))
            results["float32_weights_in_bfloat16"] = _test_bits(
                tf, copy, test_codes, dims, args.eval_batch
            )
    return results


def _train_prior(tf, model, train_codes, args, **options):
    """A `PixelCNNPrior` (the `--prior-*` sizes, seeded) trained
    `args.prior_steps` steps on `train_codes` `(N, h, w[, L])`; returns it and
    the training seconds. `options`: more `PixelCNNPrior` arguments."""
    import keras

    import tf_vqvae

    keras.utils.set_random_seed(args.seed)
    prior = tf_vqvae.PixelCNNPrior(
        model.num_embeddings,
        tuple(int(s) for s in train_codes.shape[1:3]),
        num_hiddens=args.prior_hiddens,
        num_layers=args.prior_layers,
        **options,
    )
    prior.compile(optimizer=keras.optimizers.Adam(3e-4))
    batches = training_batches(
        tf,
        train_codes,
        args.prior_batch,
        args.prior_steps,
        args.seed,
        images_in=False,
    )
    start = time.perf_counter()
    prior.fit(batches, epochs=1, verbose=0, shuffle=False)
    return prior, time.perf_counter() - start


def levels_prior_quality(tf, model, train, test, args) -> dict:
    """A `PixelCNNPrior(num_levels=L)` trained on a multi-level `model`'s
    training codes `(N, h, w, L)` (the `--prior-*` sizes and steps): test
    bits per code, per level, and its term of bits/dim, next to the uniform
    prior's `log2 K` bits per code."""

    levels = model.quantizer.num_levels

    def codes_of(images):
        flat = _encode_all(tf, model, images, args.eval_batch)
        return tf.reshape(flat, (int(images.shape[0]), -1, levels))

    train_codes, test_codes = codes_of(train), codes_of(test)
    side = int(round(math.sqrt(int(train_codes.shape[1]))))
    train_codes = tf.reshape(train_codes, (-1, side, side, levels))
    test_codes = tf.reshape(test_codes, (-1, side, side, levels))
    prior, train_s = _train_prior(
        tf, model, train_codes, args, num_levels=levels
    )
    nats = tf.zeros([levels], tf.float64)
    for begin in range(0, int(test_codes.shape[0]), args.eval_batch):
        chunk = test_codes[begin : begin + args.eval_batch]
        per_code = tf.nn.sparse_softmax_cross_entropy_with_logits(
            chunk, tf.cast(prior(chunk), tf.float32)
        )
        nats += tf.cast(tf.reduce_sum(per_code, axis=(0, 1, 2)), tf.float64)
    per_level = (
        nats / math.log(2.0) / int(test_codes.shape[0]) / side**2
    ).numpy()
    bits = float(per_level.sum()) * side**2
    dims = int(math.prod(test.shape[1:]))
    return {
        "num_levels": levels,
        "steps": args.prior_steps,
        "num_hiddens": args.prior_hiddens,
        "num_layers": args.prior_layers,
        "batch_size": args.prior_batch,
        "bits_per_code": bits / (side**2 * levels),
        "bits_per_code_by_level": [float(b) for b in per_level],
        "uniform_bits_per_code": math.log2(model.num_embeddings),
        "prior_bits_per_dim": bits / dims,
        "uniform_prior_bits_per_dim": side**2
        * levels
        * math.log2(model.num_embeddings)
        / dims,
        "train_seconds": train_s,
    }


def _test_bits(tf, prior, test_codes, dims: int, batch: int) -> dict:
    """The prior's negative log-likelihood of `test_codes`: bits per code
    and the prior's term of bits/dim (`dims` image dimensions per grid)."""
    nats = []
    for begin in range(0, int(test_codes.shape[0]), batch):
        chunk = test_codes[begin : begin + batch]
        logits = prior(chunk)
        nats.append(
            tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    chunk, tf.cast(logits, tf.float32)
                )
            )
        )
    bits = float(tf.add_n(nats)) / math.log(2.0)
    return {
        "bits_per_code": bits / int(tf.size(test_codes)),
        "prior_bits_per_dim": bits / int(test_codes.shape[0]) / dims,
    }


def run(args) -> dict:
    common.quiet_tensorflow()
    import tensorflow as tf

    common.configure_tf_threads(tf, args.threads)
    config = models.CONFIGS[args.config]
    with tempfile.TemporaryDirectory(prefix="cifar10_jpeg_") as root:
        with tarfile.open(args.data) as archive:
            archive.extractall(root, filter="data")
        train = load_split(
            tf, root, "train", args.steps * config.batch_size, args.seed
        )
        test = load_split(tf, root, "test", args.eval_images, args.seed)
    results = {
        impl: train_and_evaluate(impl, config, tf, train, test, args)
        for impl in args.impl
    }
    return {
        "benchmark": "quality",
        "config": args.config,
        "config_values": config.__dict__,
        "steps": args.steps,
        "seed": args.seed,
        "train_images": int(train.shape[0]),
        "test_images": int(test.shape[0]),
        "results": results,
        "quantizer_sizes": TINY_QUANTIZER_SIZES
        if args.tiny
        else QUANTIZER_SIZES,
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(models.CONFIGS))
    common.add_impl_argument(
        parser,
        IMPLS,
        "trained one after another",
        default=list(DEFAULT_IMPLS),
    )
    parser.add_argument(
        "--prior-steps",
        type=int,
        default=0,
        help="train a prior per precision on tf_vqvae's codes, and a prior "
        "over the levels of q_rvq's codes (0: no)",
    )
    parser.add_argument("--prior-batch", type=int, default=32)
    parser.add_argument("--prior-hiddens", type=int, default=64)
    parser.add_argument("--prior-layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument(
        "--eval-images", type=int, default=0, help="0: the whole test split"
    )
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument(
        "--tiny", action="store_true", help="smoke test: a few steps"
    )
    parser.set_defaults(config="sonnet")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.eval_images, args.eval_batch = 3, 64, 32
        if args.prior_steps:
            args.prior_steps, args.prior_batch = 2, 4
            args.prior_hiddens, args.prior_layers = 8, 2
    result = run(args)
    common.emit(result, args.out)
    return result


if __name__ == "__main__":
    common.run_main(main)
