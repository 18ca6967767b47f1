"""Codebook arithmetic shared by the quantizers: distances, nearest-code
search, counts, data-dependent sampling and the EMA codebook.

Plain functions on float32 tensors, so they are testable against numpy and
reusable by export code.
"""

from __future__ import annotations

import tensorflow as tf


def squared_distances(flat: tf.Tensor, embeddings: tf.Tensor) -> tf.Tensor:
    """`[N, K]` squared L2 distances, `||z||^2 - 2 z.E^T + ||E||^2`."""
    z_sq = tf.reduce_sum(tf.square(flat), axis=1, keepdims=True)
    e_sq = tf.reduce_sum(tf.square(embeddings), axis=1)
    return z_sq - 2.0 * tf.matmul(flat, embeddings, transpose_b=True) + e_sq


def _augmented_codebook(embeddings: tf.Tensor) -> tf.Tensor:
    """`[K, D + 1]` rows `(-2 e_k, ||e_k||^2)`.

    With a 1 appended to each input, one matmul gives
    `||e_k||^2 - 2 z.e_k`: the squared distance minus `||z||^2`, which is the
    same for every k and so never changes the argmin.
    """
    e_sq = tf.reduce_sum(tf.square(embeddings), axis=1, keepdims=True)
    return tf.concat([-2.0 * embeddings, e_sq], axis=1)


# The search works on blocks of rows whose distances stay in cache: each
# block's `[rows, K]` scores are written by the matmul and read back by the
# argmin while still cached, instead of streaming one `[N, K]` matrix through
# memory twice. Blocks of 2**21 scores (8 MiB), between 64 and 2048 rows,
# measured fastest on a 2-core AVX-512 Xeon for K = 512 .. 65536: 1.2-1.7x
# faster than one `[N, K]` block (benchmarks/bench_vq_layer.py).
_BLOCK_ELEMENTS = 2**21
_MIN_BLOCK_ROWS = 64
_MAX_BLOCK_ROWS = 2048
# Up to this many blocks are unrolled into the graph (static batch sizes);
# beyond it, or for dynamic batch sizes, a `tf.while_loop` walks them.
_MAX_UNROLLED_BLOCKS = 64


def _block_rows(num_embeddings: int, max_distance_elements: int) -> int:
    rows = _BLOCK_ELEMENTS // num_embeddings
    rows = min(_MAX_BLOCK_ROWS, max(_MIN_BLOCK_ROWS, rows))
    return max(1, min(rows, max_distance_elements // num_embeddings))


def _argmin_block(block: tf.Tensor, codebook_aug: tf.Tensor) -> tf.Tensor:
    """Nearest codes for the rows of `block` `[rows, D]`."""
    block_aug = tf.concat([block, tf.ones_like(block[:, :1])], axis=1)
    scores = tf.matmul(block_aug, codebook_aug, transpose_b=True)
    return tf.argmin(scores, axis=1, output_type=tf.int32)


def nearest_codes(
    flat: tf.Tensor, embeddings: tf.Tensor, max_distance_elements: int
) -> tf.Tensor:
    """Index of the nearest code for each row of `flat` `[N, D]`: int32 `[N]`.

    The same indices as `argmin(squared_distances(flat, embeddings), 1)`,
    computed block by block (see `_BLOCK_ELEMENTS`) and never holding more
    than about `max_distance_elements` distances at once. No gradient flows
    through the search. Graph ops only, which the TFLite converter turns
    into builtins (`tf.argmin`, a WHILE loop over static-shape blocks), so
    an exported encoder runs this same search with the same memory bound.
    """
    flat = tf.stop_gradient(flat)
    num_embeddings = embeddings.shape[0]
    codebook_aug = _augmented_codebook(tf.stop_gradient(embeddings))
    rows = _block_rows(num_embeddings, max_distance_elements)

    static_n = flat.shape[0]
    if static_n is not None and static_n <= rows:
        return _argmin_block(flat, codebook_aug)
    if static_n is not None and static_n <= rows * _MAX_UNROLLED_BLOCKS:
        return tf.concat(
            [
                _argmin_block(flat[start : start + rows], codebook_aug)
                for start in range(0, static_n, rows)
            ],
            axis=0,
        )

    def blockwise():
        # Whole blocks of `rows` rows (the last one zero-padded), so each
        # block and the TensorArray's elements have a static shape: TFLite
        # lowers such a loop to builtin ops (WHILE), and the padding rows'
        # codes are cut off at the end.
        n = tf.shape(flat)[0]
        num_blocks = (n + rows - 1) // rows
        padded = tf.pad(flat, [[0, num_blocks * rows - n], [0, 0]])
        blocks = tf.reshape(padded, [num_blocks, rows, flat.shape[1]])
        codes = tf.TensorArray(tf.int32, size=num_blocks, element_shape=[rows])

        def body(i, codes):
            return i + 1, codes.write(i, _argmin_block(blocks[i], codebook_aug))

        _, codes = tf.while_loop(
            lambda i, _: i < num_blocks,
            body,
            (tf.constant(0), codes),
            parallel_iterations=1,
        )
        return tf.reshape(codes.stack(), [-1])[:n]

    if static_n is not None:
        return blockwise()
    # `flat[:rows]` is `flat` whenever this branch runs, but TFLite's IF
    # allocates both branches for the actual input: sliced, the untaken one
    # never holds more than `rows x K` scores either.
    return tf.cond(
        tf.shape(flat)[0] <= rows,
        lambda: _argmin_block(flat[:rows], codebook_aug),
        blockwise,
    )


def code_counts(codes: tf.Tensor, num_embeddings: int) -> tf.Tensor:
    """How many times each code occurs in `codes`: float32 `[K]`."""
    codes = tf.reshape(codes, [-1])
    ones = tf.ones_like(codes, dtype=tf.float32)
    return tf.math.unsorted_segment_sum(ones, codes, num_embeddings)


def perplexity(counts: tf.Tensor) -> tf.Tensor:
    """`exp(-sum p log p)` of the code distribution given by `counts`."""
    total = tf.reduce_sum(counts)
    probs = counts / tf.maximum(total, 1e-12)
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs))
    return tf.exp(entropy)


def ema_codebook(
    cluster_size: tf.Tensor,
    ema_sum: tf.Tensor,
    embeddings: tf.Tensor,
    epsilon: float,
) -> tf.Tensor:
    """The codebook `m_i / N~_i` of appendix A.1 with Laplace-smoothed sizes.

    Codes whose moving count is still below `epsilon` keep their vector.
    """
    num_embeddings = embeddings.shape[0]
    total = tf.reduce_sum(cluster_size)
    smoothed = (
        (cluster_size + epsilon) / (total + num_embeddings * epsilon) * total
    )
    updated = ema_sum / tf.maximum(smoothed, 1e-30)[:, None]
    alive = cluster_size >= epsilon
    return tf.where(alive[:, None], updated, embeddings)


def sample_rows(samples: tf.Tensor, num: int, seed: tf.Tensor) -> tf.Tensor:
    """`num` rows of `samples` `[M, D]` picked uniformly at random.

    Without replacement when `M >= num`. `seed` is a stateless seed, shape [2].
    """
    m = tf.shape(samples)[0]
    keys = tf.random.stateless_uniform([m], seed=seed)
    order = tf.argsort(keys)
    index = tf.gather(order, tf.range(num) % m)
    return tf.gather(samples, index)


def kmeans_plus_plus(
    samples: tf.Tensor, num: int, seed: tf.Tensor
) -> tf.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): `num` rows.

    Each new centre is drawn with probability proportional to the squared
    distance to the nearest centre chosen so far.
    """
    seed = tf.cast(seed, tf.int64)
    m = tf.shape(samples)[0]
    first = tf.random.stateless_uniform(
        [], seed=seed, minval=0, maxval=m, dtype=tf.int32
    )
    first_centre = samples[first]
    min_dist = tf.reduce_sum(tf.square(samples - first_centre), axis=1)
    centres = tf.TensorArray(samples.dtype, size=num, element_shape=[None])
    centres = centres.write(0, first_centre)

    def body(k, centres, min_dist):
        # Tiny floor: when every sample is already a centre, draw uniformly.
        logits = tf.math.log(min_dist + 1e-12)[None, :]
        step_seed = seed + tf.stack(
            [tf.constant(0, tf.int64), tf.cast(k, tf.int64)]
        )
        index = tf.random.stateless_categorical(
            logits, 1, seed=step_seed, dtype=tf.int32
        )[0, 0]
        centre = samples[index]
        dist = tf.reduce_sum(tf.square(samples - centre), axis=1)
        return k + 1, centres.write(k, centre), tf.minimum(min_dist, dist)

    _, centres, _ = tf.while_loop(
        lambda k, *_: k < num, body, (tf.constant(1), centres, min_dist)
    )
    return centres.stack()


def sample_codebook(
    samples: tf.Tensor, num: int, method: str, seed: tf.Tensor
) -> tf.Tensor:
    """A data-dependent codebook of `num` rows drawn from `samples`."""
    if method == "random":
        return sample_rows(samples, num, seed)
    if method == "kmeans++":
        return kmeans_plus_plus(samples, num, seed)
    raise ValueError(f"Unknown codebook sampling method: {method!r}")
