"""Codebook health metrics."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_vqvae import codebook_ops


@keras.saving.register_keras_serializable(package="tf_vqvae")
class CodebookUsage(keras.metrics.Metric):
    """Code usage statistics, per batch and pooled over an epoch.

    Per-batch perplexity depends on the batch size (a batch of 8 vectors
    cannot show more than 8 codes), so this metric reports both:

    - `perplexity`, `codebook_usage`: `exp(-sum p log p)` of each batch's code
      distribution and the fraction of codes it used, averaged over batches.
    - `epoch_perplexity`, `epoch_codebook_usage`, `dead_codes`: the same from
      counts pooled since the last reset (an epoch in `fit`, the whole dataset
      in `evaluate`), and how many codes were never used.

    Args:
        num_embeddings: K, the codebook size.
        name: metric name (its results are reported under the keys above).
        level: `None`, or the level of a multi-level quantizer whose codes
            these are: the keys get the suffix `_<level>`
            (`perplexity_0`, `dead_codes_0`, ...).

    Call arguments (`update_state`):
        counts: float `[num_embeddings]`, how often each code was picked in
            one batch.

    Returns (`result`): a dict of the five scalars above.
    """

    def __init__(
        self,
        num_embeddings: int,
        name: str = "codebook",
        level: int | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.num_embeddings = num_embeddings
        self.level = level
        self.counts = self.add_variable(
            shape=(num_embeddings,), initializer="zeros", name="counts"
        )
        self.batch_perplexity = self.add_variable(
            shape=(), initializer="zeros", name="batch_perplexity"
        )
        self.batch_usage = self.add_variable(
            shape=(), initializer="zeros", name="batch_usage"
        )
        self.batches = self.add_variable(
            shape=(), initializer="zeros", name="batches"
        )

    def update_state(self, counts):
        counts = tf.cast(counts, "float32")
        self.counts.assign_add(counts)
        self.batch_perplexity.assign_add(codebook_ops.perplexity(counts))
        self.batch_usage.assign_add(self._used_fraction(counts))
        self.batches.assign_add(1.0)

    def _used_fraction(self, counts):
        used = tf.reduce_sum(tf.cast(counts > 0, "float32"))
        return used / self.num_embeddings

    def result(self):
        batches = tf.maximum(tf.convert_to_tensor(self.batches), 1.0)
        counts = tf.convert_to_tensor(self.counts)
        used = tf.reduce_sum(tf.cast(counts > 0, "float32"))
        results = {
            "perplexity": self.batch_perplexity / batches,
            "codebook_usage": self.batch_usage / batches,
            "epoch_perplexity": codebook_ops.perplexity(counts),
            "epoch_codebook_usage": used / self.num_embeddings,
            "dead_codes": self.num_embeddings - used,
        }
        if self.level is None:
            return results
        return {f"{key}_{self.level}": v for key, v in results.items()}

    def get_config(self):
        config = {"name": self.name, "num_embeddings": self.num_embeddings}
        if self.level is not None:
            config["level"] = self.level
        return config
