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
(`codes_bf16_agreement`). With `--prior-steps N`, a `PixelCNNPrior` is
trained N steps on `tf_vqvae`'s training codes under each of float32 and
bfloat16 (same seed and batches) and its negative log-likelihood of the
test codes is reported in bits per code and as the prior's term of bits/dim
(per image dimension: bits per code x codes / (32 x 32 x 3)).

The archive (`--data`, default `../shared/data/cifar10_jpeg.tar.gz` next to
the repository) is extracted to a temporary directory and decoded once.
`--steps` sets the budget; the default fits in about half an hour here.
"""

from __future__ import annotations

import math
import os
import sys
import tarfile
import tempfile
import time

import common
import models

IMPLS = ("tf_vqvae", "tf_vqvae_paper", "sonnet", "tf_vqvae_bf16")
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


def train_and_evaluate(impl: str, config, tf, train, test, args) -> dict:
    batches = training_batches(tf, train, config.batch_size, args.steps, 0)
    start = time.perf_counter()
    model = None
    if impl.startswith("tf_vqvae"):
        options = PAPER_OPTIONS if impl == "tf_vqvae_paper" else {}
        precision = "bfloat16" if impl == "tf_vqvae_bf16" else "float32"
        model = models.build_tf_vqvae(
            config, seed=args.seed, precision=precision, **options
        )
        model.fit(batches, epochs=1, verbose=0, shuffle=False)

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
    result = {
        "mse": mse,
        "psnr_db": 10.0 * math.log10(1.0 / mse),
        **code_statistics(tf, all_codes, config.num_embeddings),
        "train_seconds": train_s,
    }
    if impl == "tf_vqvae":
        result["codes_bf16_agreement"] = bf16_agreement(
            tf, model, test, all_codes, args.eval_batch
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


def bf16_agreement(tf, model, test, codes, batch: int) -> float:
    """The share of test positions where a bfloat16 copy of `model` (same
    weights) picks the same code as `model`."""
    import tf_vqvae
    from tf_vqvae.precision import dtype_policy

    copy = tf_vqvae.VQVAE.from_config(
        {**model.get_config(), "dtype": dtype_policy("bfloat16")}
    )
    copy.build((None, *test.shape[1:]))
    copy.set_weights(model.get_weights())
    bf16_codes = _encode_all(tf, copy, test, batch)
    return float(tf.reduce_mean(tf.cast(bf16_codes == codes, tf.float32)))


def prior_quality(tf, model, train, test, args) -> dict:
    """Bits per code of the test codes under priors trained on `model`'s
    training codes in each of `PRIOR_PRECISIONS`."""
    import keras

    import tf_vqvae
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
        keras.utils.set_random_seed(args.seed)
        prior = tf_vqvae.PixelCNNPrior(
            model.num_embeddings,
            (side, side),
            num_hiddens=args.prior_hiddens,
            num_layers=args.prior_layers,
            dtype=dtype_policy(precision),
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
        train_s = time.perf_counter() - start
        nats = []
        for begin in range(0, int(test_codes.shape[0]), args.eval_batch):
            chunk = test_codes[begin : begin + args.eval_batch]
            logits = prior(chunk)
            nats.append(
                tf.reduce_sum(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(
                        chunk, tf.cast(logits, tf.float32)
                    )
                )
            )
        bits = float(tf.add_n(nats)) / math.log(2.0)
        per_code = bits / int(tf.size(test_codes))
        results[precision] = {
            "bits_per_code": per_code,
            "prior_bits_per_dim": bits / int(test_codes.shape[0]) / dims,
            "train_seconds": train_s,
        }
    return results


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
        help="train a prior per precision on tf_vqvae's codes (0: no)",
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
    main()
