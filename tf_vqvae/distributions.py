"""An autoregressive code prior as a TensorFlow Probability distribution.

The only module of the library that imports `tensorflow_probability`; the
priors (`PixelCNNPrior`, `WaveNetPrior`) import it lazily from their
`distribution()`, so `import tf_vqvae` does not pay for TFP. It takes the
prior as an argument and imports nothing of `tf_vqvae.prior` or
`tf_vqvae.wavenet`; seeds, noise and logit adjustment come from
`tf_vqvae.sampling`, as in the SavedModel and TFLite samplers.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from tf_vqvae import sampling
from tf_vqvae.arg_checks import describe
from tf_vqvae.contracts import prior_event_shape


def _check_sample_shape(sample_shape) -> None:
    """Raises unless `sample_shape` is a non-negative int, a sequence of
    them or an integer tensor of rank 0 or 1 (TFP would cast a float and
    fail deep inside on a negative size)."""
    problem = (
        "`sample_shape` must be a non-negative integer or a sequence of "
        f"them. {describe('sample_shape', sample_shape)}"
    )
    if isinstance(sample_shape, (list, tuple)) and not sample_shape:
        return
    if isinstance(sample_shape, bool) or (
        isinstance(sample_shape, (list, tuple))
        and any(isinstance(size, bool) for size in sample_shape)
    ):
        raise TypeError(problem)
    try:
        tensor = tf.convert_to_tensor(sample_shape)
    except (TypeError, ValueError):
        raise TypeError(problem) from None
    if not tensor.dtype.is_integer:
        raise TypeError(problem)
    static = tf.get_static_value(tensor)
    if tensor.shape.rank not in (0, 1) or (
        static is not None and (static < 0).any()
    ):
        raise ValueError(problem)


class CodePriorDistribution(tfp.distributions.Distribution):
    """Distribution over code grids defined by an autoregressive prior.

    For a `PixelCNNPrior` over `(H, W)` grids or a `WaveNetPrior` over
    `(length,)` sequences (any prior with the `AutoregressivePrior` call:
    int codes `(batch, *event_shape)` -> float logits
    `(batch, *event_shape, K)`):
    `p(z) = prod_p Categorical(z[p]; softmax(adjust(logits[p])))` over the
    positions `p` of the grid, where `logits = prior(z)` depend only on the
    codes before `p` in raster order and `adjust` divides by
    `temperature` and keeps the `top_k` largest logits (the rest get
    probability 0). `log_prob` is one masked forward pass; `sample` runs
    the prior's autoregressive sampler with the Gumbel-max trick on uniform
    noise, passed as `noise` or drawn from `seed` by
    `tf_vqvae.sampling.uniform_noise` (an int `s` is the stateless seed
    `[s, 0]`, or pass a `[2]` seed): the same seed gives the same codes,
    here and in the SavedModel's `sample` signature.

    Args:
        prior: a `PixelCNNPrior` or a `WaveNetPrior`.
        labels: `None`, or int class labels of a class-conditional prior, a
            scalar or `(batch,)`: the distribution's batch shape.
        temperature: positive; 1 is the prior itself.
        top_k: `None` or the number of most likely codes kept per position.
        method: `"cached"` (default) or `"naive"` sampler; same codes.
        validate_args: check that codes passed to `log_prob` are in
            `[0, num_embeddings)` with TFP assertions (`InvalidArgumentError`
            eagerly too); the prior's call checks them in any case.
        name: the distribution's name.

    Event shape the prior's `event_shape` (`[H, W]`, `[length]`; `[H, W,
    L]` for a prior over `L` levels of codes), dtype int32, batch
    shape `labels.shape` (or `[]`).

    Example:

    >>> dist = prior.distribution()
    >>> codes = dist.sample(16, seed=0)          # int32 (16, *event_shape)
    >>> dist.log_prob(codes)                     # float32 (16,), nats
    >>> dist.sample(2, noise=u)                  # u: (2, *event_shape, K)
    """

    def __init__(
        self,
        prior,
        labels=None,
        temperature: float = 1.0,
        top_k: int | None = None,
        method: str = "cached",
        validate_args: bool = False,
        name: str = "CodePriorDistribution",
    ):
        parameters = dict(locals())
        sampling.check_sampling_options(
            temperature, top_k, prior.num_embeddings
        )
        sampling.check_labels(labels, prior.num_classes)
        sampling.check_method(method)
        with tf.name_scope(name) as name:
            self._prior = prior
            self._labels = (
                None
                if labels is None
                else tf.cast(
                    prior._checked_labels(labels, scalar_ok=True), "int32"
                )
            )
            self._temperature = float(temperature)
            self._top_k = top_k
            self._method = method
            super().__init__(
                dtype=tf.int32,
                reparameterization_type=tfp.distributions.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=True,
                parameters=parameters,
                name=name,
            )

    @property
    def prior(self):
        """The prior (a `PixelCNNPrior` or a `WaveNetPrior`)."""
        return self._prior

    @property
    def labels(self):
        """The class labels (`None` for an unconditional prior)."""
        return self._labels

    @property
    def temperature(self) -> float:
        return self._temperature

    @property
    def top_k(self) -> int | None:
        return self._top_k

    def _event_shape(self):
        return tf.TensorShape(prior_event_shape(self._prior))

    def _event_shape_tensor(self):
        return tf.constant(prior_event_shape(self._prior), tf.int32)

    def _batch_shape(self):
        if self._labels is None:
            return tf.TensorShape([])
        return self._labels.shape

    def _batch_shape_tensor(self):
        if self._labels is None:
            return tf.constant([], tf.int32)
        return tf.shape(self._labels)

    def _flat_labels(self, copies):
        if self._labels is None:
            return None
        return tf.tile(tf.reshape(self._labels, [-1]), [copies])

    def sample(
        self, sample_shape=(), seed=None, name: str = "sample", **kwargs
    ) -> tf.Tensor:
        """Codes `sample_shape + batch_shape + event_shape`, int32.

        `tfp.distributions.Distribution.sample`, with `sample_shape` checked
        (a non-negative int or a sequence of them); `seed`, or the Gumbel-max
        `noise=` `(*sample_shape, *batch, *event_shape, K)` in [0, 1), as in
        the class docstring.

        Raises:
            TypeError: for a `sample_shape` of floats, bools or strings.
            ValueError: for a negative size or a wrong `noise` shape.
        """
        _check_sample_shape(sample_shape)
        return super().sample(sample_shape, seed=seed, name=name, **kwargs)

    def log_prob(self, value, name: str = "log_prob", **kwargs) -> tf.Tensor:
        """`log p(codes)` in nats, float32 of the codes' leading shape.

        `value`: int codes `(..., *event_shape)` in `[0, num_embeddings)`
        (their leading axes broadcast against `batch_shape`). TFP alone
        would truncate float codes to ints: they raise here.

        Raises:
            TypeError: for codes that are not integers.
            ValueError: for a wrong shape, or eagerly for codes outside `[0,
                num_embeddings)` (in a graph: `InvalidArgumentError`; with
                `validate_args`, `InvalidArgumentError` eagerly too).
        """
        return super().log_prob(self._checked_value(value), name, **kwargs)

    def prob(self, value, name: str = "prob", **kwargs) -> tf.Tensor:
        """`p(codes)`, `exp(log_prob(codes))`, checked as `log_prob`."""
        return super().prob(self._checked_value(value), name, **kwargs)

    def _checked_value(self, codes) -> tf.Tensor:
        """int32 codes `(..., *event_shape)` whose leading axes broadcast
        against the batch shape; their values are checked by the prior's
        call (and by `validate_args`)."""
        codes = self._prior._checked_codes(
            codes, any_batch=True, check_values=False
        )
        rank = len(prior_event_shape(self._prior))
        if codes.shape.rank is not None:
            try:
                tf.broadcast_static_shape(
                    codes.shape[: codes.shape.rank - rank], self.batch_shape
                )
            except ValueError:
                sizes = ", ".join(
                    str(s) for s in prior_event_shape(self._prior)
                )
                raise ValueError(
                    f"`codes` must have shape (..., {sizes}) with leading "
                    "axes that broadcast against the distribution's "
                    f"batch_shape={tuple(self.batch_shape)} (its labels). "
                    f"Received: codes.shape={tuple(codes.shape)}"
                ) from None
        return tf.cast(codes, tf.int32)

    def _sample_n(self, n, seed=None, noise=None):
        grid = list(prior_event_shape(self._prior))
        k = self._prior.num_embeddings
        static_n = tf.get_static_value(n)
        n = int(static_n) if static_n is not None else n
        batch = self.batch_shape.as_list()
        per_sample = 1
        for size in batch:
            per_sample *= size
        if noise is None:
            noise = sampling.uniform_noise([n * per_sample, *grid, k], seed)
        else:
            noise = tf.convert_to_tensor(noise, tf.float32)
            expected = [n] + batch + grid + [k]
            if noise.shape.as_list() != expected:
                axes = ", ".join(
                    getattr(self._prior, "grid_axes", ())
                    + (
                        ("level",)
                        if len(grid) > len(self._prior.grid_shape)
                        else ()
                    )
                )
                raise ValueError(
                    f"`noise` must have shape {tuple(expected)} "
                    f"(sample, *batch, {axes}, num_embeddings). "
                    f"Received: noise.shape={tuple(noise.shape)}"
                )
            noise = tf.reshape(noise, [-1, *grid, k])
        codes = self._prior.sample_codes(
            noise,
            self._flat_labels(n),
            temperature=self._temperature,
            top_k=self._top_k,
            method=self._method,
        )
        return tf.reshape(codes, [n] + batch + grid)

    def _log_prob(self, codes):
        grid = list(prior_event_shape(self._prior))
        rank = len(grid)
        codes = tf.convert_to_tensor(codes, tf.int32)
        if self.validate_args:
            k = self._prior.num_embeddings
            message = f"`codes` must be in [0, num_embeddings={k})"
            checks = [
                tf.debugging.assert_non_negative(codes, message=message),
                tf.debugging.assert_less(codes, k, message=message),
            ]
            with tf.control_dependencies(checks):
                codes = tf.identity(codes)
        batch = self.batch_shape_tensor()
        prefix = tf.broadcast_dynamic_shape(tf.shape(codes)[:-rank], batch)
        codes = tf.broadcast_to(codes, tf.concat([prefix, grid], axis=0))
        flat = tf.reshape(codes, [-1, *grid])
        inputs = flat
        if self._labels is not None:
            labels = tf.broadcast_to(self._labels, prefix)
            inputs = {"codes": flat, "labels": tf.reshape(labels, [-1])}
        logits = sampling.adjust_logits(
            self._prior(inputs, training=False), self._temperature, self._top_k
        )
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        picked = tf.gather(log_probs, flat, axis=-1, batch_dims=1 + rank)
        return tf.reshape(
            tf.reduce_sum(picked, axis=list(range(1, 1 + rank))), prefix
        )


# The name from before the WaveNet prior, kept for existing imports.
PixelCNNCodeDistribution = CodePriorDistribution
