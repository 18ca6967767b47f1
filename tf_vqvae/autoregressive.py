"""What the autoregressive code priors share: inputs, training, sampling.

`tf_vqvae.PixelCNNPrior` (2D code grids) and `tf_vqvae.WaveNetPrior` (1D
code sequences) differ in their network and in how their cached sampler
walks the grid; everything the `tf_vqvae.contracts.CodePrior` contract
sees is written once here, in `AutoregressivePrior`:

- inputs: int codes `(batch, *grid_shape)`, or `{"codes": ..., "labels":
  (batch,)}` for a class-conditional prior (`num_classes` set), checked
  once where they enter (`call`, `sample_codes`, the distribution's
  `log_prob`), never in a sampler's loop: dtype and known sizes at once,
  sizes unknown while tracing and the values in `[0, num_embeddings)` and
  `[0, num_classes)` at run time (`InvalidArgumentError` in `fit`);
- training: `compile()` defaults to
  `SparseCategoricalCrossentropy(from_logits=True)` with the codes as their
  own targets, and `fit` shows `bits_per_code`;
- sampling: `sample_codes(noise, labels, temperature, top_k, method)` checks
  its arguments with `tf_vqvae.sampling` and runs the subclass's
  `_sample_naive` or `_sample_cached` (compiled eagerly, traced as it is
  inside an outer graph), and `distribution()` wraps the prior in a TFP
  distribution (`tf_vqvae.distributions`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import keras
import tensorflow as tf

from tf_vqvae import sampling
from tf_vqvae.arg_checks import check_int
from tf_vqvae.tensor_checks import (
    as_integer_tensor,
    assert_at_run_time,
    check_ids,
)

try:
    # Keras' symbolic build scope (not in its public API).
    from keras.src.backend import in_symbolic_scope
except ImportError:  # pragma: no cover

    def in_symbolic_scope() -> bool:
        # A Keras that moved it: every trace counts as symbolic, so that
        # `fit` under a strategy still builds (float codes are then refused
        # only eagerly, as before the dtype check existed).
        return not tf.executing_eagerly()


def gate(x: tf.Tensor) -> tf.Tensor:
    """`tanh(a) * sigmoid(b)` for `x = concat([a, b], -1)`: the gated unit
    of the PixelCNN and WaveNet layers."""
    a, b = tf.split(x, 2, axis=-1)
    return tf.tanh(a) * tf.sigmoid(b)


def layer_conditions(embeddings, ids, num_layers: int, dtype) -> list:
    """Per layer, the gate's conditioning vector `embeddings[l](ids)` in
    `dtype` (a class's or a speaker's, `(batch, channels)`), or `None` for
    every layer when `ids` is `None`."""
    if ids is None:
        return [None] * num_layers
    ids = tf.cast(ids, "int32")
    return [tf.cast(embedding(ids), dtype) for embedding in embeddings]


def _sum_levels(vectors: tf.Tensor) -> tf.Tensor:
    """`(..., L, C)` -> `(..., C)`, summed level by level in order (a fixed
    order of additions, so the cached and the naive samplers agree)."""
    total = vectors[..., 0, :]
    for level in range(1, vectors.shape[-2]):
        total = total + vectors[..., level, :]
    return total


def _shape_tuple(shape):
    """`shape` as a tuple; a `TensorShape` of unknown rank (Keras retraced
    `fit` on inputs of another rank) as it is, for the run-time checks."""
    shape = tf.TensorShape(shape)
    return shape if shape.rank is None else tuple(shape.as_list())


def run_sampler(cache: dict, key: tuple, sample, *args) -> tf.Tensor:
    """`sample(*args)`, compiled once per `key` when called eagerly.

    `key[0]` is the method: `"cached"` samplers compile with XLA
    (`jit_compile=True`: their loop body is many small ops, and fusing them
    halved the PixelCNN's time per code on CPU; the naive sampler's large
    convolutions are faster without XLA). Traced by an outer function (a
    `tf.function`, an export endpoint, a TFLite conversion), `sample`'s ops
    go straight into that graph, not into a nested function call.

    Args:
        cache: the owner's compiled functions by key (not saved state).
        key: `(method, *options)`; the options `sample` closes over.
        sample: the sampler, a function of `args` (tensors or `None`).
        *args: its arguments.
    """
    if not tf.executing_eagerly():
        return sample(*args)
    if key not in cache:
        cache[key] = tf.function(sample, jit_compile=key[0] == "cached")
    return cache[key](*args)


class AutoregressivePrior(keras.Model):
    """Base of the autoregressive priors over code grids (not for direct use).

    A subclass validates its arguments, calls
    `super().__init__(num_embeddings, grid_shape, num_classes, **kwargs)`,
    sets `num_layers`, creates its layers (among them `embedding`, a
    `keras.layers.Embedding` of the codes, and `class_embeddings`, one
    embedding of the labels per layer), sets `grid_axes` (the names of the
    grid axes in messages) and implements `build`, `call` (float32 logits
    `(batch, *grid_shape, num_embeddings)` that depend only on earlier
    codes, of the inputs checked by `_checked_inputs`), `_sample_cached`
    and `get_config`. `_sample_naive` (the whole network for every
    position, in raster order) is written here.

    With `num_levels = L > 1` (a prior over the levels of residual VQ
    codes) every code array gains a trailing level axis: codes `(batch,
    *grid_shape, L)`, logits `(batch, *grid_shape, L, K)`, the `event_shape`
    `(*grid_shape, L)`; the order is raster order over the grid and, at each
    position, level 0 to L - 1 (the naive sampler walks `event_shape` in
    raster order, the level axis innermost). `_embed` then sums one
    embedding per level (`embedding` has `L * K` rows), so the network sees
    every level of the earlier positions, and the depth head written here
    adds what the position's own earlier levels say, one learned vector per
    (level, code) and one per level:

        h = conv_1x1(relu(skip))                      # the position's context
        c_l = b_l + sum_{m < l} e_m[z[..., m]]        # its levels before l
        logits[..., l, :] = conv_1x1_K(relu(h + c_l))

    (in the spirit of RQ-Transformer's depth transformer, one layer deep).
    A subclass with levels makes the head's layers with
    `_make_level_layers`, builds them with `_build_level_layers`, and ends
    `call` with `_level_logits(h, codes)` and its cached sampler's step
    with `_draw_levels(h, noise)`; its 1x1 convolution to K logits is
    `head_logits`.

    Args:
        num_embeddings: K, the number of codes (of one level).
        grid_shape: the code grid, already validated by the subclass.
        num_classes: `None` or the number of class labels.
        num_levels: L, codes per grid position (default 1).
        **kwargs: base `keras.Model` arguments.
    """

    grid_axes: tuple[str, ...] = ()

    def __init__(
        self,
        num_embeddings: int,
        grid_shape: tuple[int, ...],
        num_classes: int | None = None,
        num_levels: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_embeddings", num_embeddings)
        if num_classes is not None:
            check_int("num_classes", num_classes)
        check_int("num_levels", num_levels)
        self.num_embeddings = num_embeddings
        self.grid_shape = tuple(grid_shape)
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.bits_per_code_tracker = keras.metrics.Mean(name="bits_per_code")
        # Compiled samplers by (method, temperature, top_k), set past Keras'
        # attribute tracking: they are not state to save.
        object.__setattr__(self, "_compiled_samplers", {})
        # False while the naive sampler traces its calls (`_own_codes`).
        object.__setattr__(self, "_check_values", True)

    @classmethod
    def for_grid(
        cls,
        num_embeddings: int,
        grid_shape: tuple[int, ...],
        num_classes: int | None = None,
        **kwargs,
    ) -> AutoregressivePrior:
        """The prior over code grids of `grid_shape` (how
        `tf_vqvae.priors.make_prior` builds every kind)."""
        return cls(
            num_embeddings=num_embeddings,
            grid_shape=tuple(grid_shape),
            num_classes=num_classes,
            **kwargs,
        )

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one code grid: `grid_shape`, then the level axis
        when `num_levels > 1`."""
        levels = (self.num_levels,) if self.num_levels > 1 else ()
        return self.grid_shape + levels

    # ---------------------------------------------------------------- inputs
    def _grid_text(self) -> str:
        levels = ("level",) if self.num_levels > 1 else ()
        return ", ".join(self.grid_axes + levels)

    def _codes_shape(self, input_shape):
        if isinstance(input_shape, dict):
            if self.num_classes is None or set(input_shape) != {
                "codes",
                "labels",
            }:
                raise ValueError(
                    f"`{self.name}` takes a dict input only with num_classes "
                    "set, with keys 'codes' and 'labels'. "
                    f"Received: inputs.shape={input_shape}"
                )
            return _shape_tuple(input_shape["codes"])
        if self.num_classes is not None:
            raise ValueError(
                f"`{self.name}` (num_classes={self.num_classes}) expects a "
                f"dict input {{'codes': (batch, {self._grid_text()}), "
                "'labels': (batch,)}. "
                f"Received: inputs.shape={_shape_tuple(input_shape)}"
            )
        return _shape_tuple(input_shape)

    def _codes_shape_text(self, any_batch: bool = False) -> str:
        sizes = ", ".join(str(s) for s in self.event_shape)
        batch = "..." if any_batch else "batch"
        what = "grid_shape, num_levels" if self.num_levels > 1 else "grid_shape"
        return (
            f"`{self.name}` expects codes of shape ({batch}, {sizes}) "
            f"({what}). Received: codes.shape="
        )

    def _check_codes_shape(self, shape, any_batch: bool = False) -> None:
        """Raises `ValueError` unless a static `shape` can be `(batch,
        *grid_shape)` (`any_batch`: any leading axes, `(..., *grid_shape)`).
        Unknown sizes pass: `_checked_codes` checks them at run time."""
        shape = tf.TensorShape(shape)
        if shape.rank is None:
            return
        dims = tuple(shape.as_list())
        rank = len(self.event_shape)
        if (len(dims) < rank if any_batch else len(dims) != rank + 1) or any(
            s is not None and s != g
            for s, g in zip(
                dims[len(dims) - rank :], self.event_shape, strict=True
            )
        ):
            raise ValueError(f"{self._codes_shape_text(any_batch)}{dims}")

    def _checked_codes(
        self, codes, any_batch: bool = False, check_values: bool = True
    ) -> tf.Tensor:
        """Integer `codes` `(batch, *grid_shape)` (`any_batch`: `(...,
        *grid_shape)`) in `[0, num_embeddings)`, checked: the dtype and the
        known sizes at once, the sizes unknown while tracing and (with
        `check_values`) the values at run time (`check_ids`).

        Raises:
            TypeError: for codes that are not integers.
            ValueError: for a wrong shape, or eagerly for values out of
                range (in a graph: `InvalidArgumentError`).
        """
        codes = as_integer_tensor(
            codes,
            "codes",
            f"integer codes in [0, num_embeddings={self.num_embeddings})",
        )
        self._check_codes_shape(codes.shape, any_batch)
        rank = len(self.event_shape)
        if codes.shape.rank is None or None in codes.shape[-rank:].as_list():
            shape = tf.shape(codes)
            # Padded in front so that the slice exists at any rank.
            grid = tf.concat([tf.fill([rank], -1), shape], 0)[-rank:]
            rank_ok = (
                tf.size(shape) >= rank
                if any_batch
                else tf.equal(tf.size(shape), rank + 1)
            )
            codes = assert_at_run_time(
                codes,
                tf.logical_and(
                    rank_ok, tf.reduce_all(tf.equal(grid, self.event_shape))
                ),
                [self._codes_shape_text(any_batch), shape],
                "check_codes_shape",
            )
        if check_values:
            codes = check_ids(
                codes, "codes", "num_embeddings", self.num_embeddings
            )
        return codes

    def _checked_labels(
        self,
        labels,
        like: tf.Tensor | None = None,
        scalar_ok: bool = False,
        check_values: bool = True,
    ) -> tf.Tensor:
        """Integer class `labels` in `[0, num_classes)`: `(batch,)`, the
        batch of `like` (the codes or the noise), or with `scalar_ok` a
        scalar or `(batch,)` of any batch; checked as `_checked_codes`
        (`check_values`: the values, and a batch unknown while tracing, at
        run time)."""
        labels = as_integer_tensor(
            labels,
            "labels",
            f"integer class ids in [0, num_classes={self.num_classes})",
        )
        rank = labels.shape.rank
        if scalar_ok:
            if rank is not None and rank > 1:
                raise ValueError(
                    "`labels` must be a scalar or of shape (batch,). "
                    f"Received: labels.shape={tuple(labels.shape)}"
                )
        else:
            batch = None if like is None else like.shape[0]
            if rank is not None and (
                rank != 1
                or (batch is not None and labels.shape[0] not in (None, batch))
            ):
                of = "" if batch is None else f" (batch={batch})"
                raise ValueError(
                    "`labels` must have shape (batch,), one class id per "
                    f"code grid{of}. "
                    f"Received: labels.shape={tuple(labels.shape)}"
                )
            if (
                check_values
                and like is not None
                and (rank is None or batch is None or labels.shape[0] is None)
            ):
                shape = tf.shape(labels)
                labels = assert_at_run_time(
                    labels,
                    tf.logical_and(
                        tf.equal(tf.size(shape), 1),
                        tf.reduce_all(tf.equal(shape[:1], tf.shape(like)[:1])),
                    ),
                    [
                        "`labels` must have shape (batch,), one class id per "
                        "code grid. Received: labels.shape=",
                        shape,
                        "batch=",
                        tf.shape(like)[0],
                    ],
                    "check_labels_shape",
                )
                labels.set_shape([None])
        if check_values:
            labels = check_ids(
                labels, "labels", "num_classes", self.num_classes
            )
        return labels

    def _checked_inputs(self, inputs) -> tuple[tf.Tensor, tf.Tensor | None]:
        """`(codes, labels)` of `call`'s `inputs`, checked (`labels` is
        `None` for an unconditional prior). The values are not checked in
        the naive sampler's calls: its codes are its own draws, its labels
        were checked by `sample_codes`."""
        shapes = tf.nest.map_structure(
            lambda x: tf.convert_to_tensor(x).shape, inputs
        )
        self._codes_shape(shapes)
        codes, labels = self._split_inputs(inputs)
        if in_symbolic_scope():
            # Keras' symbolic build (`fit` under a tf.distribute strategy)
            # calls the model for shapes only, on the replicas' mean of the
            # first batch: int codes and labels arrive as floats.
            codes = tf.cast(codes, "int32")
            labels = None if labels is None else tf.cast(labels, "int32")
        codes = self._checked_codes(codes, check_values=self._check_values)
        if labels is not None:
            labels = self._checked_labels(
                labels, like=codes, check_values=self._check_values
            )
        return codes, labels

    @contextlib.contextmanager
    def _own_codes(self) -> Iterator[None]:
        """Calls traced in this context skip `_checked_inputs`' value checks
        (the naive sampler's, one per position)."""
        object.__setattr__(self, "_check_values", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_check_values", True)

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            return inputs["codes"], inputs["labels"]
        return inputs, None

    def _conditions(self, labels) -> list:
        """Per layer, the class embedding of `labels` (or `None`)."""
        return layer_conditions(
            self.class_embeddings, labels, self.num_layers, self.compute_dtype
        )

    def _embed(self, codes) -> tf.Tensor:
        """The embedding of `codes` `(..., *[L])`: `(..., C)`, the sum over
        the levels of each level's embedding when `num_levels > 1`."""
        codes = tf.cast(codes, "int32")
        if self.num_levels == 1:
            return tf.cast(self.embedding(codes), self.compute_dtype)
        vectors = self.embedding(codes + self._level_offsets())
        return tf.cast(_sum_levels(vectors), self.compute_dtype)

    def _level_offsets(self) -> tf.Tensor:
        """int32 `(L,)`: level l's rows start at `l * K` in a table of all
        levels' codes."""
        return tf.range(self.num_levels, dtype=tf.int32) * self.num_embeddings

    # ------------------------------------------------------ the depth head
    def _make_level_layers(self, channels: int) -> None:
        """The depth head's `level_context`, the vectors `e_m` of levels
        `m < L - 1` (no level reads the last one's), and `level_bias`, the
        `b_l`, each `channels` wide; `None` for a one-level prior."""
        self.level_context = self.level_bias = None
        if self.num_levels > 1:
            self.level_context = keras.layers.Embedding(
                (self.num_levels - 1) * self.num_embeddings,
                channels,
                name="level_context",
            )
            self.level_bias = keras.layers.Embedding(
                self.num_levels, channels, name="level_bias"
            )

    def _build_level_layers(self, batch) -> None:
        if self.num_levels > 1:
            self.level_context.build(
                (batch,) + self.grid_shape + (self.num_levels - 1,)
            )
            self.level_bias.build((self.num_levels,))

    def _level_logits(self, hidden, codes) -> tf.Tensor:
        """float32 logits `(batch, *grid_shape, L, K)` of every level from
        the head's `hidden` `(batch, *grid_shape, C)` and the position's
        `codes` `(batch, *grid_shape, L)` (level l sees levels < l only)."""
        # The last level's codes condition no level.
        vectors = self._level_vectors(
            tf.cast(codes, "int32")[..., :-1] + self._level_offsets()[:-1]
        )
        contexts, earlier = [], None
        for level in range(self.num_levels):
            context = self._level_context(level, earlier)
            contexts.append(tf.broadcast_to(context, tf.shape(hidden)))
            if level + 1 < self.num_levels:
                vector = vectors[..., level, :]
                earlier = vector if earlier is None else earlier + vector
        return self._logits(hidden[..., None, :] + tf.stack(contexts, -2))

    def _draw_levels(self, hidden, noise, temperature, top_k) -> tf.Tensor:
        """A cached sampler's draw of one position's levels: int32 `(n, L)`
        from the head's `hidden` `(n, *ones, C)` and the Gumbel-max `noise`
        `(n, L, K)`, level by level with the arithmetic of
        `_level_logits`."""
        codes, earlier = [], None
        ones = [1] * (hidden.shape.rank - 2)
        for level in range(self.num_levels):
            context = self._level_context(level, earlier)
            logits = tf.reshape(
                self._logits(hidden + context), [-1, self.num_embeddings]
            )
            code = sampling.gumbel_argmax(
                logits, noise[:, level], temperature, top_k
            )
            codes.append(code)
            if level + 1 < self.num_levels:
                row = code + level * self.num_embeddings
                vector = tf.reshape(
                    self._level_vectors(row), [-1, *ones, hidden.shape[-1]]
                )
                earlier = vector if earlier is None else earlier + vector
        return tf.stack(codes, axis=-1)

    def _logits(self, x) -> tf.Tensor:
        """float32 `head_logits(relu(x))` of `x` `(batch, *grid_shape, C)`
        or, with a level axis, `(batch, *grid_shape, L, C)`."""
        x = tf.nn.relu(x)
        if x.shape.rank == len(self.grid_shape) + 2:
            return tf.cast(self.head_logits(x), "float32")
        # The last grid axis and the levels as one axis of the convolution.
        shape = tf.shape(x)
        flat = tf.reshape(x, tf.concat([shape[:-3], [-1, x.shape[-1]]], 0))
        logits = tf.reshape(
            self.head_logits(flat),
            tf.concat([shape[:-1], [self.num_embeddings]], 0),
        )
        return tf.cast(logits, "float32")

    def _level_vectors(self, rows) -> tf.Tensor:
        """The head's vectors `e_m[z]` of rows `m K + z` of `level_context`."""
        return tf.cast(self.level_context(rows), self.compute_dtype)

    def _level_context(self, level: int, earlier):
        """`c_l`: the level's bias `b_l` `(C,)`, plus `earlier` (the sum of
        the position's `e_m[z_m]`, `m < l`, added in order) when `l > 0`."""
        bias = self.level_bias(tf.constant([level], "int32"))[0]
        bias = tf.cast(bias, self.compute_dtype)
        return bias if earlier is None else earlier + bias

    def _build_for_sampling(self) -> None:
        if self.built:
            return
        shape = (None,) + self.event_shape
        if self.num_classes is None:
            self.build(shape)
        else:
            self.build({"codes": shape, "labels": (None,)})

    def compute_output_shape(self, input_shape):
        shape = self._codes_shape(input_shape)
        return tuple(shape) + (self.num_embeddings,)

    # -------------------------------------------------------------- training
    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile`, with the loss defaulting to
        `SparseCategoricalCrossentropy(from_logits=True)`."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(
            optimizer=optimizer, loss=loss, metrics=metrics, **kwargs
        )

    def compile_from_config(self, config):
        # Keras skips `compile` on load for models that override it.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y is None:
            y, _ = self._split_inputs(x)
        total = super().compute_loss(
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
        nats = keras.losses.sparse_categorical_crossentropy(
            y, y_pred, from_logits=True
        )
        self.bits_per_code_tracker.update_state(
            tf.reduce_mean(nats) / math.log(2.0)
        )
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None:
            y, _ = self._split_inputs(x)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # -------------------------------------------------------------- sampling
    def distribution(
        self,
        labels=None,
        temperature: float = 1.0,
        top_k: int | None = None,
        **kwargs,
    ):
        """The prior as a `tfp.distributions.Distribution` over code grids.

        Args:
            labels: `None`, or int class labels (scalar or `(batch,)`) when
                the prior is class conditional.
            temperature: positive; logits are divided by it.
            top_k: `None` or the number of most likely codes kept per
                position.
            **kwargs: `method`, `validate_args`, `name` of
                `tf_vqvae.distributions.CodePriorDistribution`.

        Returns:
            A `CodePriorDistribution`: event shape `event_shape`, dtype
            int32; `log_prob` in nats per grid.
        """
        from tf_vqvae.distributions import CodePriorDistribution

        return CodePriorDistribution(
            self, labels=labels, temperature=temperature, top_k=top_k, **kwargs
        )

    def sample_codes(
        self,
        noise,
        labels=None,
        temperature: float = 1.0,
        top_k: int | None = None,
        method: str = "cached",
    ) -> tf.Tensor:
        """Codes drawn autoregressively from the given uniform noise.

        Eagerly, each `(method, temperature, top_k)` runs as its own
        compiled `tf.function`, the cached sampler with XLA
        (`run_sampler`). Called while a graph is traced (a `tf.function`, a
        `keras.export.ExportArchive` endpoint, a TFLite conversion) it adds
        the sampler's ops to that graph: graph ops only, no random op,
        static loop shapes for a static `n`, so it converts with
        `TFLITE_BUILTINS` only and gives the same codes there.
        `tf_vqvae.sampling.prior_noise(prior, n, seed)` maps a seed to the
        noise.

        Args:
            noise: float `(n, *event_shape, K)` uniform in [0, 1): the
                Gumbel-max noise, one vector per position. The same noise
                gives the same codes.
            labels: int `(n,)` class labels (class-conditional priors only).
            temperature: positive; logits are divided by it.
            top_k: `None` or the number of most likely codes kept per
                position.
            method: `"cached"` (default; cost per code independent of the
                grid size) or `"naive"` (the whole network on the whole grid
                for every code). Both give identical codes.

        Returns:
            int32 codes `(n, *event_shape)`.

        Raises:
            TypeError: for `noise` not floating point or `labels` not
                integers.
            ValueError: for a bad option, `labels` given to an unconditional
                prior (or missing for a conditional one), a `noise` shape
                other than `(n, *event_shape, K)`, `labels` not `(n,)`, or
                eagerly for `labels` outside `[0, num_classes)` (in a
                graph: `InvalidArgumentError`). The noise values are not
                checked (a pass over them would cost some 4% of a sample):
                `gumbel_argmax` clips them into (0, 1).
        """
        sampling.check_method(method)
        sampling.check_sampling_options(temperature, top_k, self.num_embeddings)
        sampling.check_labels(labels, self.num_classes)
        noise = tf.convert_to_tensor(noise)
        if not noise.dtype.is_floating:
            raise TypeError(
                "`noise` must be floating point uniform noise in [0, 1). "
                f"Received: noise.dtype={noise.dtype.name}"
            )
        noise = tf.cast(noise, "float32")
        expected = self.event_shape + (self.num_embeddings,)
        if noise.shape.rank != len(expected) + 1 or (
            tuple(noise.shape[1:]) != expected
        ):
            raise ValueError(
                "`noise` must have shape (n, "
                f"{', '.join(str(s) for s in expected)}) "
                f"(n, {self._grid_text()}, num_embeddings). "
                f"Received: noise.shape={tuple(noise.shape)}"
            )
        self._build_for_sampling()
        if labels is not None:
            labels = tf.cast(self._checked_labels(labels, like=noise), "int32")
        sample = (
            self._sample_cached if method == "cached" else self._sample_naive
        )

        def compiled(noise, labels):
            return sample(noise, labels, temperature, top_k)

        key = (method, float(temperature), top_k)
        return run_sampler(
            self._compiled_samplers, key, compiled, noise, labels
        )

    def _sample_naive(self, noise, labels, temperature, top_k):
        """Position by position in raster order, the whole network on the
        whole grid for each."""
        n = tf.shape(noise)[0]
        size = math.prod(self.event_shape)
        inputs_of = (
            (lambda codes: codes)
            if labels is None
            else (lambda codes: {"codes": codes, "labels": labels})
        )

        def body(t, codes):
            position, rest = [], t
            for size_of_axis in reversed(self.event_shape):
                position.insert(0, rest % size_of_axis)
                rest = rest // size_of_axis
            index = tf.stack(
                [tf.range(n)] + [tf.fill([n], p) for p in position], axis=1
            )
            logits = tf.gather_nd(self(inputs_of(codes), training=False), index)
            code = sampling.gumbel_argmax(
                logits, tf.gather_nd(noise, index), temperature, top_k
            )
            return t + 1, tf.tensor_scatter_nd_update(codes, index, code)

        codes = tf.zeros(tf.concat([[n], self.event_shape], 0), "int32")
        with self._own_codes():
            _, codes = tf.while_loop(
                lambda t, _: t < size,
                body,
                (tf.constant(0), codes),
                parallel_iterations=1,
            )
        return codes
