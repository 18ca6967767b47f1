"""The vector-quantization layer alone: forward + backward, vectors/s, memory.

One implementation per process (so peak memory is its own), e.g.

    python benchmarks/bench_vq_layer.py --impl tf_vqvae --k 8192 --out r.json
    python benchmarks/bench_vq_layer.py --impl tf_vqvae_rvq --k 1024

Implementations (`--impl`), single-codebook VQ (`--k` codes):
    tf_vqvae        tf_vqvae.VectorQuantizer (codebook trained by gradients)
    tf_vqvae_ema    tf_vqvae.VectorQuantizerEMA
    sonnet          snt.nets.VectorQuantizer (Sonnet 2.0.2), with perplexity
    sonnet_noppl    the same, its perplexity not fetched (so TensorFlow prunes
                    the N x K one-hot it is computed from)
    sonnet_ema      snt.nets.VectorQuantizerEMA
    kerasio         the keras-io "Vector-Quantized VAE" example's layer:
                    distance matmul, argmin, one-hot matmul lookup
    vqtorch         vector_quantize_pytorch.VectorQuantize (EMA, defaults)

Other quantizers (issue 13), each against its vector-quantize-pytorch peer
with the same sizes and loss weights; inputs of D = `--d` channels:
    tf_vqvae_rvq    tf_vqvae.ResidualVectorQuantizer, `--num-quantizers`
                    levels of `--k` codes each, EMA codebooks (its defaults:
                    data init, dead-code restarts)
    vqtorch_rvq     vector_quantize_pytorch.ResidualVQ, the same sizes, EMA
                    decay 0.99, commitment weight 0.25, straight-through
                    (`rotation_trick=False`, tf_vqvae's default; its own
                    default, the rotation trick, took 3x as long here)
    tf_vqvae_fsq    tf_vqvae.FiniteScalarQuantizer(`--levels`), projections
                    D -> len(levels) -> D when D != len(levels)
    vqtorch_fsq     vector_quantize_pytorch.FSQ, the same levels and D
    tf_vqvae_lfq    tf_vqvae.LookupFreeQuantizer, `--k` = 2**bits codes,
                    entropy weight 0.1, commitment 0.25, projections D -> bits
    vqtorch_lfq     vector_quantize_pytorch.LFQ, the same (its inverse
                    temperature 100 is tf_vqvae's temperature 0.01)

Each step is one training forward pass (straight-through estimator, codebook
and commitment losses, EMA update where there is one) and the backward pass to
the inputs and the trainable codebook, in a `tf.function` (TensorFlow) or
eagerly (PyTorch); it returns the loss (and Sonnet's perplexity, which its
example logs; tf_vqvae always updates its usage metric), so neither is
pruned. Several `--impl`s are timed round-robin in one process (one call of
each per round), so their ratios are taken under the same machine load. Peak
memory (single `--impl` only) is the peak resident set size over all steps
(tracing and warm-up included) minus the resident size before the first step
(inputs and layer built).
"""

from __future__ import annotations

import sys
import time

import common

TF_IMPLS = (
    "tf_vqvae",
    "tf_vqvae_ema",
    "sonnet",
    "sonnet_noppl",
    "sonnet_ema",
    "kerasio",
    "tf_vqvae_rvq",
    "tf_vqvae_fsq",
    "tf_vqvae_lfq",
)
TORCH_IMPLS = ("vqtorch", "vqtorch_rvq", "vqtorch_fsq", "vqtorch_lfq")
IMPLS = TF_IMPLS + TORCH_IMPLS


def keras_io_quantizer(keras, tf, num_embeddings: int, embedding_dim: int):
    """The keras-io example's `VectorQuantizer`, as that example writes it."""

    class KerasIOVectorQuantizer(keras.layers.Layer):
        def __init__(self, num_embeddings, embedding_dim, beta=0.25):
            super().__init__()
            self.embedding_dim = embedding_dim
            self.num_embeddings = num_embeddings
            self.beta = beta
            w_init = tf.random_uniform_initializer()
            self.embeddings = tf.Variable(
                initial_value=w_init(
                    shape=(self.embedding_dim, self.num_embeddings),
                    dtype="float32",
                ),
                trainable=True,
                name="embeddings_vqvae",
            )

        def call(self, x):
            input_shape = tf.shape(x)
            flattened = tf.reshape(x, [-1, self.embedding_dim])
            encoding_indices = self.get_code_indices(flattened)
            encodings = tf.one_hot(encoding_indices, self.num_embeddings)
            quantized = tf.matmul(encodings, self.embeddings, transpose_b=True)
            quantized = tf.reshape(quantized, input_shape)
            commitment_loss = tf.reduce_mean(
                (tf.stop_gradient(quantized) - x) ** 2
            )
            codebook_loss = tf.reduce_mean(
                (quantized - tf.stop_gradient(x)) ** 2
            )
            self.add_loss(self.beta * commitment_loss + codebook_loss)
            return x + tf.stop_gradient(quantized - x)

        def get_code_indices(self, flattened_inputs):
            similarity = tf.matmul(flattened_inputs, self.embeddings)
            distances = (
                tf.reduce_sum(flattened_inputs**2, axis=1, keepdims=True)
                + tf.reduce_sum(self.embeddings**2, axis=0)
                - 2 * similarity
            )
            return tf.argmin(distances, axis=1)

    return KerasIOVectorQuantizer(num_embeddings, embedding_dim)


def _tf_quantizer(impl: str, args):
    """The tf_vqvae layer of `tf_vqvae_{rvq,fsq,lfq}` for `args.d` inputs."""
    import tf_vqvae

    if impl == "tf_vqvae_rvq":
        return tf_vqvae.ResidualVectorQuantizer(
            args.num_quantizers, args.k, args.d
        )
    if impl == "tf_vqvae_fsq":
        return tf_vqvae.FiniteScalarQuantizer(
            levels=tuple(args.levels), embedding_dim=args.d
        )
    return tf_vqvae.LookupFreeQuantizer(
        codebook_size=args.k,
        entropy_loss_weight=0.1,
        commitment_cost=0.25,
        embedding_dim=args.d,
    )


def _tf_step(impl: str, args, shape: tuple, tf):
    """(forward returning (z_q, loss), trainable variables) for one impl."""
    k, d = args.k, args.d
    if impl in ("tf_vqvae_rvq", "tf_vqvae_fsq", "tf_vqvae_lfq"):
        layer = _tf_quantizer(impl, args)
        layer.build((None, *shape[1:]))

        def forward(x):
            z_q = layer(x, training=True)
            # FSQ's defaults (saturation_penalty=0) add no loss.
            return z_q, tf.add_n([tf.constant(0.0), *layer.losses])

        return forward, layer.trainable_weights
    if impl in ("tf_vqvae", "tf_vqvae_ema"):
        import tf_vqvae

        cls = (
            tf_vqvae.VectorQuantizer
            if impl == "tf_vqvae"
            else tf_vqvae.VectorQuantizerEMA
        )
        layer = cls(num_embeddings=k, embedding_dim=d)
        layer.build((None, d))

        def forward(x):
            z_q = layer(x, training=True)
            return z_q, tf.add_n(layer.losses)

        return forward, layer.trainable_weights
    if impl in ("sonnet", "sonnet_noppl", "sonnet_ema"):
        import sonnet as snt

        if impl in ("sonnet", "sonnet_noppl"):
            module = snt.nets.VectorQuantizer(
                embedding_dim=d, num_embeddings=k, commitment_cost=0.25
            )
        else:
            module = snt.nets.VectorQuantizerEMA(
                embedding_dim=d,
                num_embeddings=k,
                commitment_cost=0.25,
                decay=0.99,
            )
            snt.allow_empty_variables(module)

        def forward(x):
            out = module(x, is_training=True)
            if impl == "sonnet_noppl":
                return out["quantize"], out["loss"]
            # The loss plus the perplexity its example logs (tf_vqvae's
            # layers always update their usage metric).
            return out["quantize"], out["loss"] + 0.0 * out["perplexity"]

        return forward, module
    if impl == "kerasio":
        import keras

        layer = keras_io_quantizer(keras, tf, k, d)

        def forward(x):
            z_q = layer(x)
            return z_q, tf.add_n(layer.losses)

        return forward, layer.trainable_weights
    raise ValueError(f"Unknown TensorFlow implementation: {impl!r}")


def run_tf(args) -> dict:
    common.quiet_tensorflow()
    import tensorflow as tf

    common.configure_tf_threads(tf, args.threads)
    tf.random.set_seed(0)
    batch = args.n // 1024
    shape = (batch, 32, 32, args.d) if args.n % 1024 == 0 else (args.n, args.d)
    x = tf.random.normal(shape)
    upstream = tf.random.normal(shape)
    steps = {}
    for impl in args.impl:
        forward, trainable = _tf_step(impl, args, shape, tf)
        if impl.startswith("sonnet"):
            forward(x[:1])  # creates the module's variables
            trainable = trainable.trainable_variables
        step = _compile_step(tf, forward, list(trainable))
        steps[impl] = lambda step=step: step(x, upstream).numpy()
    return _time_interleaved(args, steps)


def _compile_step(tf, forward, trainable):
    @tf.function
    def step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z_q, loss = forward(x)
            objective = tf.reduce_sum(z_q * upstream) + loss
        grads = tape.gradient(objective, [x] + trainable)
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    return step


def _torch_quantizer(impl: str, args):
    """The vector-quantize-pytorch module of a torch impl."""
    import vector_quantize_pytorch as vqp

    if impl == "vqtorch":
        return vqp.VectorQuantize(
            dim=args.d, codebook_size=args.k, decay=0.99, commitment_weight=0.25
        )
    if impl == "vqtorch_rvq":
        return vqp.ResidualVQ(
            dim=args.d,
            num_quantizers=args.num_quantizers,
            codebook_size=args.k,
            decay=0.99,
            commitment_weight=0.25,
            rotation_trick=False,
        )
    if impl == "vqtorch_fsq":
        return vqp.FSQ(levels=list(args.levels), dim=args.d)
    return vqp.LFQ(
        dim=args.d,
        codebook_size=args.k,
        entropy_loss_weight=0.1,
        commitment_loss_weight=0.25,
        diversity_gamma=1.0,
    )


def run_torch(args) -> dict:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    (impl,) = args.impl
    module = _torch_quantizer(impl, args)
    module.train()
    batch = max(1, args.n // 1024)
    x = torch.randn(batch, args.n // batch, args.d, requires_grad=True)
    upstream = torch.randn(batch, args.n // batch, args.d)

    def step():
        x.grad = None
        # (quantized, indices[, loss or per-level losses]); FSQ has no loss.
        quantized, _, *losses = module(x)
        loss = sum(value.sum() for value in losses)
        ((quantized * upstream).sum() + loss).backward()
        return float(x.grad.sum())

    return _time_interleaved(args, {impl: step})


def _time_interleaved(args, steps: dict) -> dict:
    """Round-robin timing: one call of each implementation per round.

    With a single implementation, also its peak memory: the peak resident
    set size over all calls (warm-up included) minus the resident size
    before the first call.
    """
    # Measured from before the first call: the first calls allocate the
    # largest buffers, and the allocator may keep them afterwards.
    base = common.rss_mb()
    common.reset_peak_rss()
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times = {impl: [] for impl in steps}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        if (
            args.max_seconds
            and repeat >= common.MIN_TIMED_ROUNDS
            and time.perf_counter() - started > args.max_seconds
        ):
            break
        for impl, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[impl].append(time.perf_counter() - start)
    peak = common.hwm_mb()
    results = {}
    for impl, seconds in times.items():
        results[impl] = {
            "vectors_per_s": common.rates(seconds, args.n),
            "seconds": seconds,
        }
        if len(steps) == 1:
            results[impl]["peak_rss_mb"] = peak
            results[impl]["peak_extra_mb"] = max(0.0, peak - base)
    return {
        "benchmark": "vq_layer",
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "num_quantizers": args.num_quantizers,
        "levels": list(args.levels),
        "results": results,
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    common.add_impl_argument(
        parser, IMPLS, "timed round-robin in one process", required=True
    )
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument(
        "--k", type=int, default=512, help="codes (per level; LFQ: 2**bits)"
    )
    parser.add_argument(
        "--num-quantizers", type=int, default=8, help="residual VQ levels"
    )
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[8, 5, 5, 5], help="FSQ"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="stop timing after this long, once "
        f"{common.MIN_TIMED_ROUNDS} rounds are timed (0: run every "
        "--repeats round)",
    )
    args = parser.parse_args(argv)
    if not args.max_seconds >= 0:
        parser.error(f"--max-seconds must be >= 0, not {args.max_seconds}")
    torch_impls = [impl for impl in args.impl if impl in TORCH_IMPLS]
    if torch_impls and len(args.impl) > 1:
        parser.error(f"{torch_impls[0]} runs alone (its own venv and process)")
    result = run_torch(args) if torch_impls else run_tf(args)
    common.emit(result, args.out)
    return result


if __name__ == "__main__":
    common.run_main(main)
