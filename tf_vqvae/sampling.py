"""Sampling codes from categorical logits: seeds, noise, Gumbel-max, options.

The one place for what makes "the same seed gives the same codes" true in
Python (`PixelCNNPrior.distribution().sample`), in a SavedModel (the
`sample` signature) and in a TFLite app (the prior sampler, which takes the
noise as an input):

    seed  --stateless_seed-->  [s, 0]  --uniform_noise-->  u ~ U[0, 1)
    codes = gumbel_argmax(logits, u, temperature, top_k)
          = argmax(adjust_logits(logits, temperature, top_k) - log(-log u))

`argmax(l + g)` with `g = -log(-log u)` standard Gumbel noise is a draw from
`Categorical(softmax(l))` (the Gumbel-max trick [1]); `adjust_logits`
divides the logits by the temperature and keeps the `top_k` largest. Every
function here is made of graph ops that TFLite converts to builtins (no
random categorical op), and none imports TensorFlow Probability.

A generative decoder draws each example from its own seed, so a batch of
any size gives every example the same waveform (`example_seeds`,
`example_noise`, `decode_seed`):

    (seed, index i)  --example_seeds-->  fold_in([s, 0], i)  --> noise_i

References:
    [1] Maddison, Tarlow and Minka, 2014. A* Sampling.
        https://arxiv.org/abs/1411.0030
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import describe
from tf_vqvae.contracts import CodePrior, prior_event_shape

METHODS = ("cached", "naive")
"""Autoregressive samplers of the priors' `sample_codes`; same codes."""

_TINY = np.finfo(np.float32).tiny
_BELOW_ONE = 1.0 - np.finfo(np.float32).epsneg


def check_sampling_options(
    temperature: float, top_k: int | None, num_embeddings: int
) -> None:
    """Raises `ValueError` for a bad `temperature` or `top_k`.

    Args:
        temperature: must be a positive finite number.
        top_k: must be `None` or an integer in `[1, num_embeddings]`.
        num_embeddings: K, the number of categories.
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(
            "`temperature` must be a positive finite number. "
            f"{describe('temperature', temperature)}"
        )
    if top_k is not None and (
        isinstance(top_k, bool)
        or not isinstance(top_k, int)
        or not 1 <= top_k <= num_embeddings
    ):
        raise ValueError(
            f"`top_k` must be None or an integer in [1, {num_embeddings}] "
            f"(num_embeddings). {describe('top_k', top_k)}"
        )


def check_method(method: str) -> None:
    """Raises `ValueError` unless `method` is one of `METHODS`."""
    if method not in METHODS:
        choices = " or ".join(repr(m) for m in METHODS)
        raise ValueError(
            f"`method` must be {choices}. {describe('method', method)}"
        )


def check_labels(labels: Any, num_classes: int | None) -> None:
    """Raises `ValueError` unless labels come exactly with `num_classes`.

    A class-conditional prior (`num_classes` set) needs labels; an
    unconditional one (`num_classes=None`) takes none.
    """
    if (labels is None) != (num_classes is None):
        raise ValueError(
            "`labels` must be given exactly when the prior is class "
            f"conditional (num_classes={num_classes}). "
            f"{describe('labels', labels)}"
        )


def adjust_logits(
    logits: Any, temperature: float = 1.0, top_k: int | None = None
) -> tf.Tensor:
    """Tempered, top-k-restricted logits, float32 of the shape of `logits`.

    `logits / temperature`, then every logit below the `top_k`-th largest of
    its row (last axis) becomes `-inf` (ties with the `top_k`-th are kept).
    `temperature=1` and `top_k=None` return the float32 logits unchanged.

    Args:
        logits: float `(..., K)`.
        temperature: positive; below 1 sharpens, above 1 flattens.
        top_k: `None` or the number of largest logits kept per row.

    Returns:
        float32 `(..., K)`.
    """
    logits = tf.cast(logits, "float32")
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None:
        kth = tf.math.top_k(logits, k=top_k).values[..., -1:]
        logits = tf.where(logits < kth, tf.constant(-np.inf, "float32"), logits)
    return logits


def gumbel_argmax(
    logits: Any,
    uniform_noise: Any,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> tf.Tensor:
    """One categorical draw per row by the Gumbel-max trick, int32 `(...)`.

    `argmax(adjust_logits(logits) + g)` over the last axis, with
    `g = -log(-log(u))` and `u` the given uniform noise, clipped to
    `[tiny, 1 - epsneg]` of float32 so that `g` is finite. The same noise
    gives the same draw; uses only TFLite builtin ops.

    Args:
        logits: float `(..., K)`.
        uniform_noise: float `(..., K)`, uniform in [0, 1).
        temperature: positive; logits are divided by it.
        top_k: `None` or the number of most likely categories kept.

    Returns:
        int32 `(...)`, values in `[0, K)`.
    """
    logits = adjust_logits(logits, temperature, top_k)
    u = tf.clip_by_value(tf.cast(uniform_noise, "float32"), _TINY, _BELOW_ONE)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)


def stateless_seed(seed: Any = None) -> tf.Tensor:
    """The int32 `[2]` stateless seed of `seed`.

    An integer `s` (a Python int or an integer scalar tensor, as the
    SavedModel's `seed` input) maps to `[s, 0]`, so the same integer gives
    the same noise on every call, eagerly and in a graph. A `[2]` seed is
    used as it is (TFP's stateless seeds). `None` draws a seed from the
    stateful global generator (`tf.random.uniform`), as TFP does.

    Raises:
        TypeError: for a bool or a non-integer seed.
        ValueError: for an integer tensor that is neither a scalar nor `[2]`.
    """
    if seed is None:
        info = np.iinfo(np.int32)
        return tf.random.uniform(
            [2], minval=info.min, maxval=info.max, dtype=tf.int32
        )
    if isinstance(seed, bool):
        raise TypeError(
            "`seed` must be None, an integer or a [2] integer tensor. "
            f"{describe('seed', seed)}"
        )
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    tensor = tf.convert_to_tensor(seed)
    if not tensor.dtype.is_integer:
        raise TypeError(
            "`seed` must be None, an integer or a [2] integer tensor. "
            f"Received: seed of dtype {tensor.dtype.name}"
        )
    tensor = tf.cast(tensor, tf.int32)
    if tensor.shape.rank == 0:
        return tf.stack([tensor, tf.constant(0, tf.int32)])
    if tensor.shape.as_list() != [2]:
        raise ValueError(
            "`seed` must be None, an integer or a [2] integer tensor. "
            f"Received: seed.shape={tuple(tensor.shape)}"
        )
    return tensor


def uniform_noise(shape: Sequence[Any], seed: Any = None) -> tf.Tensor:
    """Uniform float32 noise in [0, 1) of `shape`, a function of `seed`.

    `tf.random.stateless_uniform(shape, stateless_seed(seed))`: the same
    seed and shape give the same noise in eager code, in a `tf.function`
    and in a SavedModel.

    Args:
        shape: a sequence of ints or int32 scalar tensors (e.g. a dynamic
            batch size), or a 1-D int32 tensor.
        seed: as in `stateless_seed`.

    Returns:
        float32 of `shape`.
    """
    return tf.random.stateless_uniform(shape, seed=stateless_seed(seed))


def prior_noise(prior: CodePrior, num: Any, seed: Any = None) -> tf.Tensor:
    """The Gumbel-max noise of `num` samples of `prior`, from `seed`.

    Args:
        prior: a `CodePrior` (only its `grid_shape`, `num_levels` and
            `num_embeddings` are read).
        num: the number of samples, an int or an int32 scalar tensor.
        seed: as in `stateless_seed`.

    Returns:
        float32 `(num, *event_shape, num_embeddings)`, uniform in [0, 1):
        the `noise` of `prior.sample_codes` (`event_shape`:
        `contracts.prior_event_shape`).
    """
    shape = [num, *prior_event_shape(prior), prior.num_embeddings]
    return uniform_noise(shape, seed)


def example_seeds(seed: Any, start: int, count: int) -> tf.Tensor:
    """int32 `(count, 2)`: the stateless seeds of examples `start`, ...,
    `start + count - 1` of a run seeded by `seed`.

    Example `i` gets `tf.random.experimental.stateless_fold_in(
    stateless_seed(seed), i)`: a function of `seed` and `i` alone, so
    examples drawn in batches of any size, or one at a time, get the same
    seeds; and not `[s, i]`, the seed `vqvae sample` gives batch `i` of
    the prior, so a batch's codes and its waveforms use unrelated noise.

    Args:
        seed: as in `stateless_seed` (not `None`: the point is to repeat).
        start: the index of the first example, >= 0.
        count: the number of seeds, >= 0.

    Raises:
        ValueError: for `seed=None`, or a negative `start` or `count`.
    """
    if seed is None:
        raise ValueError(
            "`seed` must be an integer or a [2] integer tensor; per-example "
            "seeds repeat a run. Received: seed=None"
        )
    for name, value in (("start", start), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"`{name}` must be a non-negative integer. "
                f"{describe(name, value)}"
            )
    base = stateless_seed(seed)
    return tf.reshape(
        tf.stack(
            [
                tf.random.experimental.stateless_fold_in(base, start + i)
                for i in range(count)
            ]
        ),
        [count, 2],
    )


def example_noise(seeds: Any, shape: Sequence[int]) -> tf.Tensor:
    """float32 `(n, *shape)` uniform noise in [0, 1): row `i` is
    `uniform_noise(shape, seeds[i])`, whatever the other rows.

    Args:
        seeds: int `(n, 2)` stateless seeds, e.g. `example_seeds(...)`.
        shape: the static shape of one example's noise.

    Raises:
        ValueError: unless `seeds` has shape `(n, 2)`.
    """
    seeds = tf.convert_to_tensor(seeds)
    if (
        not seeds.dtype.is_integer
        or seeds.shape.rank != 2
        or seeds.shape[1] != 2
    ):
        raise ValueError(
            "`seeds` must be integer stateless seeds of shape (n, 2). "
            f"Received: seeds.shape={tuple(seeds.shape)}, "
            f"dtype={seeds.dtype.name}"
        )
    seeds = tf.cast(seeds, tf.int32)
    return tf.map_fn(
        lambda seed: tf.random.stateless_uniform(shape, seed=seed),
        seeds,
        fn_output_signature=tf.TensorSpec(shape, tf.float32),
    )


def decode_seed(model: Any, seed: Any, start: int, count: int) -> dict:
    """The `seed` keyword of `model.decode` for examples `start`, ...,
    `start + count - 1` of a run seeded by `seed`: `{"seed":
    example_seeds(seed, start, count)}` (int32 `(count, 2)`) when the
    model's decoder generates (`CodeModel.generative_decoder`), else `{}`
    (a one-pass decoder takes no seed).

    `model.decode(codes, speaker, **decode_seed(model, seed, start, n))`
    gives the same waveforms for the same `seed` however the examples are
    batched, and different ones for another `seed`.
    """
    if not getattr(model, "generative_decoder", False):
        return {}
    return {"seed": example_seeds(seed, start, count)}
