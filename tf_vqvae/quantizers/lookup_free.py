"""Lookup-free quantization: `LookupFreeQuantizer` (MAGVIT-v2, Yu et al.,
2023), and its entropy terms computed exactly without an `N x K` matrix."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import describe, is_number
from tf_vqvae.quantizers.grid import GridQuantizer
from tf_vqvae.quantizers.vector import _all_reduce_sum

# Codes are int32: at most 2**30 of them.
_MAX_BITS = 30


def bit_entropies(logits: tf.Tensor) -> tf.Tensor:
    """Entropy in nats of each bit `Bernoulli(sigmoid(logits))`, elementwise.

    `p softplus(-a) + (1 - p) softplus(a)` with `1 - p = sigmoid(-a)`: no
    cancellation for large `|a|` (the form `softplus(a) - p a` loses
    `|a| eps` to it).
    """
    return tf.sigmoid(logits) * tf.nn.softplus(-logits) + tf.sigmoid(
        -logits
    ) * tf.nn.softplus(logits)


def _bit_patterns(num_bits: int) -> np.ndarray:
    """float32 `[2 num_bits, 2**num_bits]`: column c holds the bits of c
    (row i: bit i) over their complements (row num_bits + i)."""
    bits = (np.arange(2**num_bits)[None, :] >> np.arange(num_bits)[:, None]) & 1
    return np.concatenate([bits, 1 - bits]).astype(np.float32)


def _sub_code_probabilities(logits: tf.Tensor, patterns: tf.Tensor):
    """`p(c | z_n)` `[n, 2**b]` of the codes of `b` bits, from their logits
    `[n, b]`: `prod_i sigmoid(+-a_i)`, one matmul in log space."""
    log_sigmoids = tf.concat(
        [tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)], axis=-1
    )
    return tf.exp(tf.matmul(log_sigmoids, patterns))


def _sub_code_logits_grad(logits, grad_log_probs, patterns) -> tf.Tensor:
    """The gradient at `logits` `[n, b]` of `sum(g * log p)` for
    `log p = [log sigmoid(a), log sigmoid(-a)] @ patterns`, `g =
    grad_log_probs` `[n, 2**b]`."""
    num_bits = logits.shape[-1]
    grad = tf.matmul(grad_log_probs, patterns, transpose_b=True)
    return grad[:, :num_bits] * tf.sigmoid(-logits) - grad[
        :, num_bits:
    ] * tf.sigmoid(logits)


def chunk_rows(num_bits: int, max_elements: int) -> int:
    """Rows per chunk of `code_probability_sums`: each chunk holds
    `rows x (2**low + 2**high)` probabilities, at most `max_elements` (at
    least one row)."""
    low = num_bits // 2
    return max(1, max_elements // (2**low + 2 ** (num_bits - low)))


def code_probability_sums(logits, max_elements: int = 2**22) -> tf.Tensor:
    """`sum_n p(c | z_n)` for every code c: float32 `[2**k]`, exactly.

    `logits` `[N, k]` are the per-bit log-odds `a_n`, so that
    `p(c | z_n) = prod_i sigmoid(+-a_ni)` (+ where bit i of c is 1). Split
    the bits into the low `l = k // 2` and the high `h = k - l`: with
    `c = c_lo + 2**l c_hi` the product factorises, and

        sum_n p(c | z_n) = sum_n p_lo[n, c_lo] p_hi[n, c_hi]
                         = (P_hi^T P_lo)[c_hi, c_lo]

    one matmul of `[N, 2**h]` by `[N, 2**l]` matrices. Rows go in chunks of
    `chunk_rows(k, max_elements)`, accumulating the `[2**h, 2**l]` sums, so
    memory is O(K + max_elements), never `N x K`, and the flops those of
    one `[N, K]` matrix (with `N 2 sqrt(K)` exponentials, not `N K`). The
    gradient recomputes each chunk's probabilities instead of storing them.
    """
    logits = tf.cast(tf.convert_to_tensor(logits), "float32")
    num_bits = logits.shape[-1]
    low_bits = num_bits // 2
    high_bits = num_bits - low_bits
    low = tf.constant(_bit_patterns(low_bits))
    high = tf.constant(_bit_patterns(high_bits))
    rows = chunk_rows(num_bits, max_elements)

    @tf.custom_gradient
    def sums(logits):
        # Whole chunks of `rows` rows, the last one zero-padded and its
        # padding masked out, so every tensor inside the loops has a static
        # shape (at least one chunk: an empty batch gives zero sums).
        n = tf.shape(logits)[0]
        num_chunks = tf.maximum((n + rows - 1) // rows, 1)
        padded = num_chunks * rows
        chunks = tf.reshape(
            tf.pad(logits, [[0, padded - n], [0, 0]]),
            [num_chunks, rows, num_bits],
        )
        masks = tf.reshape(
            tf.cast(tf.range(padded) < n, "float32"), [num_chunks, rows, 1]
        )

        def chunk_probabilities(i):
            chunk = chunks[i]
            p_low = _sub_code_probabilities(chunk[:, :low_bits], low)
            p_high = _sub_code_probabilities(chunk[:, low_bits:], high)
            return chunk, p_low * masks[i], p_high

        def body(i, total):
            _, p_low, p_high = chunk_probabilities(i)
            return i + 1, total + tf.matmul(p_high, p_low, transpose_a=True)

        _, total = tf.while_loop(
            lambda i, _: i < num_chunks,
            body,
            (tf.constant(0), tf.zeros([2**high_bits, 2**low_bits])),
            parallel_iterations=1,
        )

        def grad(upstream):
            upstream = tf.reshape(upstream, [2**high_bits, 2**low_bits])

            def grad_body(i, grads):
                chunk, p_low, p_high = chunk_probabilities(i)
                # d/d log p = p d/dp, with d/dp_lo = P_hi U and
                # d/dp_hi = P_lo U^T (padding rows: p_lo = 0, no gradient).
                g_low = tf.matmul(p_high, upstream) * p_low
                g_high = tf.matmul(p_low, upstream, transpose_b=True) * p_high
                chunk_grad = tf.concat(
                    [
                        _sub_code_logits_grad(chunk[:, :low_bits], g_low, low),
                        _sub_code_logits_grad(
                            chunk[:, low_bits:], g_high, high
                        ),
                    ],
                    axis=-1,
                )
                return i + 1, grads.write(i, chunk_grad)

            grads = tf.TensorArray(
                tf.float32, size=num_chunks, element_shape=[rows, num_bits]
            )
            _, grads = tf.while_loop(
                lambda i, _: i < num_chunks,
                grad_body,
                (tf.constant(0), grads),
                parallel_iterations=1,
            )
            return tf.reshape(grads.stack(), [padded, num_bits])[:n]

        return tf.reshape(total, [-1]), grad

    return sums(logits)


def entropy(probabilities: tf.Tensor) -> tf.Tensor:
    """`-sum p log p` in nats (`0 log 0 = 0`), with a finite gradient at
    `p = 0`."""
    safe = tf.maximum(probabilities, np.finfo(np.float32).tiny)
    return -tf.reduce_sum(probabilities * tf.math.log(safe))


@tf.custom_gradient
def _sign_straight_through(z: tf.Tensor):
    """+1 where `z > 0`, else -1; the gradient passes to `z` unchanged."""

    def grad(upstream):
        return upstream

    return tf.where(z > 0, 1.0, -1.0), grad


@keras.saving.register_keras_serializable(package="tf_vqvae")
class LookupFreeQuantizer(GridQuantizer):
    """Lookup-free quantization (LFQ): each channel binarised by its sign.

    MAGVIT-v2 [1]: `k = log2(codebook_size)` channels, each quantized to
    `z_q_i = sign(z_i)` in {-1, +1} (+1 for `z_i > 0`), gradient straight
    through; the code is the integer with bits `b_i = [z_i > 0]`,
    `index = sum_i b_i 2**i` (channel 0 the least significant bit). No
    codebook is stored or searched. The layer adds, through `add_loss`,

        commitment_cost * mean((z - sg[z_q])^2)
        + entropy_loss_weight * (mean_n H(p(. | z_n))
                                 - diversity_gamma * H(mean_n p(. | z_n)))

    with code probabilities `p(c | z) = softmax_c(-||z - c||^2 /
    temperature)` over all `2**k` codes `c` in {-1, +1}^k. The first entropy
    makes each vector confident, the second spreads the batch over the
    codebook. `||z - c||^2` is a sum over bits, so `p(c | z)` is a product of
    per-bit Bernoullis with log-odds `4 z_i / temperature`, and the
    per-sample entropy is the sum of the bits' entropies (exact). The batch
    distribution `mean_n p(. | z_n)` is not a product; it is computed exactly
    by `code_probability_sums` as a matmul of low-bit by high-bit
    probabilities, in row chunks, never holding an `N x K` matrix. Its sums
    and counts are all-reduced across replicas, so N replicas see the
    global batch's distribution, as one device does. Entropies are in nats.

    With `embedding_dim != k`, learned `Dense` projections map the input to
    `k` channels and `z_q` back (float32 under any precision policy); the
    losses are on the `k` projected channels.

    Args:
        codebook_size: K, a power of two `2**k`, 2 to 2**30 (default
            2**14).
        entropy_loss_weight: the weight of the entropy penalty (0.1, as
            vector-quantize-pytorch).
        commitment_cost: beta, the weight of the commitment loss (0.25).
        diversity_gamma: gamma, the weight of the batch entropy within the
            penalty (1.0).
        temperature: of the code probabilities (0.01: the inverse
            temperature 100 of vector-quantize-pytorch).
        embedding_dim: D, the size of the input vectors; `None` (default)
            means k (no projections).
        max_entropy_elements: the batch distribution holds at most this many
            probabilities per chunk of rows (plus the `[K]` sums).
        seed: seeds the projections' initial kernels.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `z_e`, float tensor `(batch, ..., embedding_dim)` of any
            rank >= 2, e.g. `(batch, height, width, embedding_dim)`.
        training: unused (LFQ has no state); accepted for the contract.

    Returns:
        `z_q`: same shape as `inputs`, in the layer's compute dtype; the
        arithmetic is float32 under mixed precision policies.

    Metrics (in `model.fit`'s progress bar and History): `perplexity`,
    `codebook_usage`, `epoch_perplexity`, `epoch_codebook_usage`,
    `dead_codes` (`tf_vqvae.CodebookUsage`, counts all-reduced across
    replicas), and the two entropies of the penalty, `per_sample_entropy`
    and `batch_entropy` (nats).

    Implements `tf_vqvae.contracts.Quantizer`: `num_embeddings` (K),
    `embedding_dim`, `num_levels` (1), `encode(z)` (int32 codes
    `(batch, ...)`, TFLite builtins: GREATER, CAST, MUL, SUM),
    `lookup(codes)`, `codebook()` (the `K` corners of {-1, +1}^k, before
    the output projection if any: float32 `(K, k)`, `None` for K > 65536).

    Raises:
        ValueError: for invalid arguments, or inputs whose last dimension is
            not `embedding_dim`.
        TypeError: for inputs that are not float (any float dtype), or
            `lookup` codes that are not integers.

    Example:

    >>> lfq = LookupFreeQuantizer(codebook_size=2**14, embedding_dim=64)
    >>> z_q = lfq(keras.random.normal((8, 16, 16, 64)))    # (8, 16, 16, 64)
    >>> codes = lfq.encode(keras.random.normal((8, 16, 16, 64)))
    >>> codes.shape                                        # (8, 16, 16)

    References:
        [1] Yu et al. Language Model Beats Diffusion: Tokenizer is Key to
            Visual Generation. ICLR 2024 (arXiv:2310.05737).
    """

    def __init__(
        self,
        codebook_size: int = 2**14,
        entropy_loss_weight: float = 0.1,
        commitment_cost: float = 0.25,
        diversity_gamma: float = 1.0,
        temperature: float = 0.01,
        embedding_dim: int | None = None,
        max_entropy_elements: int = 2**22,
        seed: int = 0,
        **kwargs,
    ):
        if (
            isinstance(codebook_size, bool)
            or not isinstance(codebook_size, int)
            or codebook_size < 2
            or codebook_size & (codebook_size - 1)
            or codebook_size > 2**_MAX_BITS
        ):
            raise ValueError(
                "`codebook_size` must be a power of two from 2 to 2**30. "
                f"{describe('codebook_size', codebook_size)}"
            )
        for name, value in (
            ("entropy_loss_weight", entropy_loss_weight),
            ("commitment_cost", commitment_cost),
            ("diversity_gamma", diversity_gamma),
        ):
            if not is_number(value) or value < 0:
                raise ValueError(
                    f"`{name}` must be a non-negative finite number. "
                    f"{describe(name, value)}"
                )
        if not is_number(temperature) or not temperature > 0:
            raise ValueError(
                "`temperature` must be a positive finite number. "
                f"{describe('temperature', temperature)}"
            )
        if (
            isinstance(max_entropy_elements, bool)
            or not isinstance(max_entropy_elements, int)
            or max_entropy_elements < 1
        ):
            raise ValueError(
                "`max_entropy_elements` must be a positive integer. "
                f"{describe('max_entropy_elements', max_entropy_elements)}"
            )
        num_bits = codebook_size.bit_length() - 1
        super().__init__((2,) * num_bits, embedding_dim, seed, **kwargs)
        self.codebook_size = codebook_size
        self.entropy_loss_weight = float(entropy_loss_weight)
        self.commitment_cost = float(commitment_cost)
        self.diversity_gamma = float(diversity_gamma)
        self.temperature = float(temperature)
        self.max_entropy_elements = max_entropy_elements
        self.per_sample_entropy_tracker = keras.metrics.Mean(
            name="per_sample_entropy"
        )
        self.batch_entropy_tracker = keras.metrics.Mean(name="batch_entropy")

    def _digits(self, z: tf.Tensor) -> tf.Tensor:
        return tf.cast(z > 0, tf.int32)

    def _values(self, digits: tf.Tensor) -> tf.Tensor:
        return 2.0 * tf.cast(digits, "float32") - 1.0

    def _quantize(self, z: tf.Tensor, training):
        digits = self._digits(z)
        z_q = _sign_straight_through(z)
        per_sample, batch = self.entropies(z)
        self.per_sample_entropy_tracker.update_state(per_sample)
        self.batch_entropy_tracker.update_state(batch)
        size = tf.cast(tf.size(z), "float32")
        commitment = tf.reduce_sum(
            tf.square(z - tf.stop_gradient(z_q))
        ) / tf.maximum(size, 1.0)
        self.add_loss(
            self.commitment_cost * commitment
            + self.entropy_loss_weight
            * (per_sample - self.diversity_gamma * batch)
        )
        return z_q, digits

    def entropies(self, z) -> tuple[tf.Tensor, tf.Tensor]:
        """The penalty's two entropies (nats) for `z` `[..., k]` after the
        input projection: `mean_n H(p(. | z_n))` over this replica's
        vectors, and `H(mean_n p(. | z_n))` over the global batch (sums
        all-reduced across replicas)."""
        logits = tf.reshape(
            4.0 * tf.cast(z, "float32") / self.temperature,
            [-1, self.codebook_dim],
        )
        rows = tf.cast(tf.shape(logits)[0], "float32")
        per_sample = tf.reduce_sum(bit_entropies(logits)) / tf.maximum(
            rows, 1.0
        )
        sums = _all_reduce_sum(
            code_probability_sums(logits, self.max_entropy_elements)
        )
        total_rows = _all_reduce_sum(rows)
        batch = entropy(sums / tf.maximum(total_rows, 1.0))
        return per_sample, batch

    def get_config(self):
        config = super().get_config()
        config.update(
            codebook_size=self.codebook_size,
            entropy_loss_weight=self.entropy_loss_weight,
            commitment_cost=self.commitment_cost,
            diversity_gamma=self.diversity_gamma,
            temperature=self.temperature,
            max_entropy_elements=self.max_entropy_elements,
        )
        return config
