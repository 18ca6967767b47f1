"""Gated PixelCNN prior over VQ-VAE codes, with naive and cached samplers.

The prior factorises the distribution of a code grid `z` (height `H`, width
`W`, K categories) in raster order:

    p(z) = prod_{i, j} p(z[i, j] | z[<i, :], z[i, <j])

and models every conditional with a gated PixelCNN [1]: a vertical stack
that sees the rows above, a horizontal stack that sees the row to the left
(together: no blind spot), gated activations `tanh(a) * sigmoid(b)`,
residual connections in the horizontal stack and skip connections into the
output head. Optional class conditioning adds a per-class bias to every gate.

Sampling runs the conditionals one code at a time with the Gumbel-max trick
on uniform noise that is an input (`z = argmax(logits / T + g)`,
`g = -log(-log(u))`, see `tf_vqvae.sampling`), so the same noise gives the
same codes and the sampler uses only TFLite builtin ops. The cached sampler
[2] keeps, per layer, the last rows of the vertical stack and the last
columns of the horizontal stack, and recomputes only the window that the
next code needs: its cost per code does not grow with the grid size, and it
returns exactly the naive sampler's codes for the same noise.

References:
    [1] van den Oord et al., 2016. Conditional Image Generation with PixelCNN
        Decoders. https://arxiv.org/abs/1606.05328
    [2] Ramachandran et al., 2017. Fast Generation for Convolutional
        Autoregressive Models. https://arxiv.org/abs/1704.06001
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_vqvae import sampling
from tf_vqvae.arg_checks import check_int, describe
from tf_vqvae.autoregressive import AutoregressivePrior, gate
from tf_vqvae.precision import policy_scope

_STACKS = ("vertical", "horizontal")
_MASK_TYPES = ("A", "B")


def _check_kernel_size(kernel_size) -> None:
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 3
        or kernel_size % 2 == 0
    ):
        raise ValueError(
            "`kernel_size` must be an odd integer >= 3. "
            f"{describe('kernel_size', kernel_size)}"
        )


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        text = " or ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be {text}. {describe(name, value)}")


def causal_mask(kernel_size: int, stack: str, mask_type: str) -> np.ndarray:
    """The 0/1 mask of a masked convolution kernel, `(rows, cols)` float32.

    `"vertical"`: a `(k, k)` kernel that sees the rows above the centre
    (`"A"`) or the rows above and the centre row (`"B"`). `"horizontal"`: a
    `(1, k)` kernel that sees the columns left of the centre (`"A"`) or those
    and the centre (`"B"`).
    """
    centre = kernel_size // 2
    last = centre + 1 if mask_type == "B" else centre
    if stack == "vertical":
        mask = np.zeros((kernel_size, kernel_size), "float32")
        mask[:last, :] = 1.0
    else:
        mask = np.zeros((1, kernel_size), "float32")
        mask[0, :last] = 1.0
    return mask


@keras.saving.register_keras_serializable(package="tf_vqvae")
class MaskedConv2D(keras.layers.Layer):
    """2D convolution whose kernel is multiplied by a constant causal mask.

    The mask is applied inside `call` (`conv(x, kernel * mask)`), so the
    layer is causal from its first call, whatever the optimizer does to the
    kernel: no `assign` after each step, no kernel constraint. Padding is
    `"same"` (zeros), stride 1.

    Args:
        filters: number of output channels.
        kernel_size: odd integer k >= 3.
        stack: `"vertical"` (a `(k, k)` kernel seeing the rows above) or
            `"horizontal"` (a `(1, k)` kernel seeing the columns to the
            left), as in the gated PixelCNN.
        mask_type: `"A"` (the centre row or column is excluded: for the first
            layer, whose input is the code itself) or `"B"` (included).
        use_bias: whether to add a bias.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, height, width, channels)`.

    Returns:
        `(batch, height, width, filters)`.

    Example:

    >>> conv = MaskedConv2D(32, 3, stack="vertical", mask_type="A")
    >>> conv(keras.ops.zeros((2, 8, 8, 16))).shape
    (2, 8, 8, 32)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        stack: str = "vertical",
        mask_type: str = "B",
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("filters", filters)
        _check_kernel_size(kernel_size)
        _check_choice("stack", stack, _STACKS)
        _check_choice("mask_type", mask_type, _MASK_TYPES)
        self.filters = filters
        self.kernel_size = kernel_size
        self.stack = stack
        self.mask_type = mask_type
        self.use_bias = bool(use_bias)
        self.mask = causal_mask(kernel_size, stack, mask_type)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"`{self.name}` expects inputs of shape (batch, height, "
                "width, channels) with a known channel axis. "
                f"Received: inputs.shape={tuple(input_shape)}"
            )
        rows, cols = self.mask.shape
        self.kernel = self.add_weight(
            name="kernel",
            shape=(rows, cols, int(input_shape[-1]), self.filters),
            initializer="glorot_uniform",
        )
        self.bias = (
            self.add_weight(
                name="bias", shape=(self.filters,), initializer="zeros"
            )
            if self.use_bias
            else None
        )

    def convolve(self, inputs, padding: str = "SAME") -> tf.Tensor:
        """The masked convolution with `"SAME"` or `"VALID"` padding.

        `"VALID"` on a zero-padded window gives the `"SAME"` output at the
        window's centre: the cached sampler uses it.
        """
        mask = tf.constant(self.mask[:, :, None, None], self.compute_dtype)
        kernel = tf.cast(self.kernel, self.compute_dtype) * mask
        outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding=padding)
        if self.bias is not None:
            outputs = tf.nn.bias_add(
                outputs, tf.cast(self.bias, self.compute_dtype)
            )
        return outputs

    def call(self, inputs):
        return self.convolve(inputs, "SAME")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            stack=self.stack,
            mask_type=self.mask_type,
            use_bias=self.use_bias,
        )
        return config


@keras.saving.register_keras_serializable(package="tf_vqvae")
class GatedPixelCNNBlock(keras.layers.Layer):
    """One gated PixelCNN layer: a vertical and a horizontal stack [1].

    With `v` and `h` the vertical and horizontal inputs (C channels each):

        v_pre = vconv_kxk(v) + cond_v            # rows above (mask A/B)
        v_out = tanh(v_pre[:C]) * sigmoid(v_pre[C:])
        h_pre = hconv_1xk(h) + conv_1x1(v_pre) + cond_h
        h_out = conv_1x1(tanh(h_pre[:C]) * sigmoid(h_pre[C:])) (+ h)

    The vertical stack never sees the current row (the first layer's mask
    `"A"` excludes it, later layers only see rows that exclude it), so it
    can feed the horizontal stack at the same position. The residual `+ h`
    is used with mask `"B"` only (with `"A"` the input is the code itself).

    Args:
        num_hiddens: C, channels of each stack.
        kernel_size: odd k >= 3: the vertical kernel is `(k, k)`, the
            horizontal one `(1, k)`.
        mask_type: `"A"` for the first layer, `"B"` for the others.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `concat([v, h], -1)`, `(batch, height, width, 2 * C)`.
        condition: optional `(batch, 4 * C)` gate biases (class
            conditioning): `cond_v` then `cond_h`.

    Returns:
        `concat([v_out, h_out], -1)`, `(batch, height, width, 2 * C)`.

    Example:

    >>> block = GatedPixelCNNBlock(num_hiddens=16, mask_type="B")
    >>> block(keras.ops.zeros((2, 8, 8, 32))).shape
    (2, 8, 8, 32)
    """

    def __init__(
        self,
        num_hiddens: int,
        kernel_size: int = 3,
        mask_type: str = "B",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_hiddens", num_hiddens)
        _check_kernel_size(kernel_size)
        _check_choice("mask_type", mask_type, _MASK_TYPES)
        self.num_hiddens = num_hiddens
        self.kernel_size = kernel_size
        self.mask_type = mask_type
        c2 = 2 * num_hiddens
        self.vertical_conv = MaskedConv2D(
            c2, kernel_size, "vertical", mask_type, name="vertical_conv"
        )
        self.horizontal_conv = MaskedConv2D(
            c2, kernel_size, "horizontal", mask_type, name="horizontal_conv"
        )
        self.vertical_to_horizontal = keras.layers.Conv2D(
            c2, 1, name="vertical_to_horizontal"
        )
        self.horizontal_output = keras.layers.Conv2D(
            num_hiddens, 1, name="horizontal_output"
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != 2 * self.num_hiddens:
            raise ValueError(
                f"`{self.name}` expects inputs of shape (batch, height, "
                f"width, {2 * self.num_hiddens}) (2 * num_hiddens). "
                f"Received: inputs.shape={tuple(input_shape)}"
            )
        c = self.num_hiddens
        stack_shape = tuple(input_shape[:-1]) + (c,)
        pre_shape = tuple(input_shape[:-1]) + (2 * c,)
        self.vertical_conv.build(stack_shape)
        self.horizontal_conv.build(stack_shape)
        self.vertical_to_horizontal.build(pre_shape)
        self.horizontal_output.build(stack_shape)

    def vertical(self, v, condition=None, padding: str = "SAME"):
        """`(v_pre, v_out)` of the vertical stack."""
        v_pre = self.vertical_conv.convolve(v, padding)
        if condition is not None:
            v_pre = v_pre + condition[:, None, None, : 2 * self.num_hiddens]
        return v_pre, gate(v_pre)

    def horizontal(
        self, h_window, h, v_to_h, condition=None, padding: str = "SAME"
    ):
        """`h_out` from the horizontal input window and `conv_1x1(v_pre)`."""
        h_pre = self.horizontal_conv.convolve(h_window, padding) + v_to_h
        if condition is not None:
            h_pre = h_pre + condition[:, None, None, 2 * self.num_hiddens :]
        h_out = self.horizontal_output(gate(h_pre))
        if self.mask_type == "B":
            h_out = h_out + h
        return h_out

    def call(self, inputs, condition=None):
        v, h = tf.split(inputs, 2, axis=-1)
        v_pre, v_out = self.vertical(v, condition)
        v_to_h = self.vertical_to_horizontal(v_pre)
        h_out = self.horizontal(h, h, v_to_h, condition)
        return tf.concat([v_out, h_out], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_hiddens=self.num_hiddens,
            kernel_size=self.kernel_size,
            mask_type=self.mask_type,
        )
        return config


@keras.saving.register_keras_serializable(package="tf_vqvae")
class PixelCNNPrior(AutoregressivePrior):
    """Autoregressive prior over VQ-VAE codes: a gated PixelCNN [1].

    Models `p(z) = prod_{i,j} p(z[i,j] | codes before (i, j) in raster
    order)` over int codes `z` of shape `(H, W)` with K categories. The codes
    are embedded (C channels) and fed to `num_layers` `GatedPixelCNNBlock`s
    (the first with mask `"A"`, so a position never sees its own code); the
    horizontal outputs of all blocks are summed through 1x1 "skip"
    convolutions, then `relu -> conv_1x1(C) -> relu -> conv_1x1(K)` gives
    the logits. Class conditioning (`num_classes`) adds a learned per-class
    bias to the gates of every block.

    Training: `compile()` defaults to
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)` (a Loss
    object, so `tf.distribute` scales it per replica) with the codes
    themselves as targets: `fit` takes a dataset of codes (or of
    `{"codes": ..., "labels": ...}` dicts) without targets. The progress bar
    shows `bits_per_code`, the negative log-likelihood in bits per code.

    Sampling (pseudo-code of the naive sampler):

        for i in range(H):
            for j in range(W):
                logits = network(z)[:, i, j]        # depends on z before (i,j)
                z[:, i, j] = argmax(logits / T + gumbel(noise[:, i, j]))

    The cached sampler [2] (the default of `sample_codes` and
    `distribution().sample`) computes the vertical stack once per row and the
    horizontal stack on a `(1, k)` window per code, from per-layer caches of
    the last `k // 2` rows and columns: its cost per code does not grow with
    `H * W`. Each of its convolutions is the naive one's `"SAME"`
    convolution evaluated as `"VALID"` on the zero-padded window around the
    position, the same multiply-adds in the same order, so both samplers
    return identical codes for the same noise (tested, also after a TFLite
    conversion). Its cost per code is constant where the naive sampler's
    grows with `H * W`, so the gap widens with the grid; the measurements
    are in BENCHMARKS.md ("Prior sampling").

    The prior satisfies `tf_vqvae.contracts.CodePrior` (`num_embeddings`,
    `grid_shape`, `num_classes`, `distribution`, `sample_codes`).

    Each layer widens the receptive field by `k // 2` rows upwards and
    `k // 2` columns to each side (to the left only within the current
    row); it never includes `(i, j)` itself or anything after it.

    Args:
        num_embeddings: K, the number of codes (the VQ-VAE codebook size).
        grid_shape: `(H, W)`, the code grid (the event shape of
            `distribution()`).
        num_hiddens: C, channels of the embedding and of each stack.
        num_layers: number of gated blocks.
        kernel_size: odd k >= 3 of the masked convolutions.
        num_classes: `None` (unconditional) or the number of classes for
            class conditioning.
        num_levels: L, codes per position (default 1). With L > 1 the
            prior models the levels of residual VQ codes (`VQVAE(
            quantizer="rvq")`), see "Levels" below.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Levels (`num_levels = L > 1`): codes `(batch, H, W, L)`, drawn position
    by position in raster order and, at each position, level by level.
    The input of the gated stacks is the sum of one embedding per level,
    so the stacks see every level of the earlier positions; the head then
    adds what the position's earlier levels say, one learned vector per
    (level, code) and one per level:

        h = conv_1x1(relu(skip))                      # the position's context
        c_l = b_l + sum_{m < l} e_m[z[i, j, m]]       # its levels before l
        logits[i, j, l] = conv_1x1_K(relu(h + c_l))

    (a depth head in the spirit of RQ-Transformer's [3], one layer deep).
    `-log2 p` of a grid is then the sum over its `H W L` codes.

    Call arguments:
        inputs: int codes `(batch, H, W)` (`(batch, H, W, L)` with levels),
            or with `num_classes` a dict `{"codes": ..., "labels":
            (batch,)}`.
        training: unused (no dropout or batch statistics).

    Returns:
        Logits `(batch, H, W, K)` (`(batch, H, W, L, K)` with levels),
        float32.

    Raises:
        TypeError: for codes or labels that are not integers.
        ValueError: for invalid arguments, codes not on the (H, W) grid,
            labels not `(batch,)`, or (eagerly) codes outside `[0, K)` or
            labels outside `[0, num_classes)`. In a graph (`fit`'s train
            step, a `tf.function`) what the static shapes leave open, and
            the values, raise `InvalidArgumentError` with the same text.

    Example:

    >>> prior = PixelCNNPrior(num_embeddings=512, grid_shape=(8, 8))
    >>> prior.compile(optimizer=keras.optimizers.Adam(3e-4))
    >>> prior.fit(codes_dataset, epochs=10)     # int32 (batch, 8, 8)
    >>> z = prior.distribution().sample(16, seed=0)  # int32 (16, 8, 8)

    References:
        [1] van den Oord et al., 2016. Conditional Image Generation with
            PixelCNN Decoders.
        [2] Ramachandran et al., 2017. Fast Generation for Convolutional
            Autoregressive Models.
        [3] Lee et al., 2022. Autoregressive Image Generation using
            Residual Quantization.
    """

    grid_axes = ("H", "W")

    def __init__(
        self,
        num_embeddings: int,
        grid_shape: tuple[int, int],
        num_hiddens: int = 64,
        num_layers: int = 8,
        kernel_size: int = 3,
        num_classes: int | None = None,
        num_levels: int = 1,
        **kwargs,
    ):
        if (
            not isinstance(grid_shape, (tuple, list))
            or len(grid_shape) != 2
            or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 1
                for s in grid_shape
            )
        ):
            raise ValueError(
                "`grid_shape` must be a pair of positive integers (height, "
                f"width). {describe('grid_shape', grid_shape)}"
            )
        check_int("num_hiddens", num_hiddens)
        check_int("num_layers", num_layers)
        _check_kernel_size(kernel_size)
        super().__init__(
            num_embeddings, grid_shape, num_classes, num_levels, **kwargs
        )
        self.num_hiddens = num_hiddens
        self.num_layers = num_layers
        self.kernel_size = kernel_size

        # The layers take the model's dtype policy (`dtype=...`, by default
        # the global one): Keras does not pass it down.
        with policy_scope(self.dtype_policy):
            self._make_layers()

    def _make_layers(self) -> None:
        num_embeddings, num_hiddens = self.num_embeddings, self.num_hiddens
        kernel_size, num_classes = self.kernel_size, self.num_classes
        num_layers = self.num_layers
        levels = self.num_levels
        self.embedding = keras.layers.Embedding(
            levels * num_embeddings, num_hiddens, name="embedding"
        )
        self._make_level_layers(num_hiddens)
        self.blocks = [
            GatedPixelCNNBlock(
                num_hiddens,
                kernel_size,
                "A" if i == 0 else "B",
                name=f"block{i}",
            )
            for i in range(num_layers)
        ]
        self.skips = [
            keras.layers.Conv2D(num_hiddens, 1, name=f"skip{i}")
            for i in range(num_layers)
        ]
        self.head_hidden = keras.layers.Conv2D(
            num_hiddens, 1, name="head_hidden"
        )
        self.head_logits = keras.layers.Conv2D(
            num_embeddings, 1, name="head_logits"
        )
        self.class_embeddings = (
            [
                keras.layers.Embedding(
                    num_classes, 4 * num_hiddens, name=f"class_embedding{i}"
                )
                for i in range(num_layers)
            ]
            if num_classes is not None
            else []
        )

    # ----------------------------------------------------------------- build
    def build(self, input_shape):
        shape = self._codes_shape(input_shape)
        self._check_codes_shape(shape)
        c = self.num_hiddens
        batch = shape[0]
        grid = (batch,) + self.grid_shape
        self.embedding.build((batch,) + self.event_shape)
        for block, skip in zip(self.blocks, self.skips, strict=True):
            block.build(grid + (2 * c,))
            skip.build(grid + (c,))
        self.head_hidden.build(grid + (c,))
        self.head_logits.build(grid + (c,))
        for embedding in self.class_embeddings:
            embedding.build((batch,))
        self._build_level_layers(batch)

    # ------------------------------------------------------------------ call
    def _head(self, skip, codes=None) -> tf.Tensor:
        """float32 logits from the summed skips `(batch, H, W, C)`; with
        levels, of every level given the position's `codes` `(batch, H, W,
        L)` (the depth head, `_level_logits`)."""
        hidden = self.head_hidden(tf.nn.relu(skip))
        if self.num_levels == 1:
            return self._logits(hidden)
        return self._level_logits(hidden, codes)

    def _draw(self, skip, noise, temperature, top_k):
        """The cached sampler's draw at one position: `(code, embedded)`
        from the summed skips `(n, 1, 1, C)` and the position's noise
        `(n, K)` (`(n, L, K)` with levels, one draw per level in order):
        int32 `(n,)` (`(n, L)`) and its embedding `(n, 1, 1, C)`. The same
        arithmetic as `_head` at that position."""
        if self.num_levels == 1:
            logits = self._head(skip)[:, 0, 0]
            code = sampling.gumbel_argmax(logits, noise, temperature, top_k)
            return code, self._embed(code)[:, None, None, :]
        hidden = self.head_hidden(tf.nn.relu(skip))
        codes = self._draw_levels(hidden, noise, temperature, top_k)
        return codes, self._embed(codes)[:, None, None, :]

    def call(self, inputs, training=None):
        codes, labels = self._checked_inputs(inputs)
        conditions = self._conditions(labels)
        x = self._embed(codes)
        v, h = x, x
        skip = None
        for block, skip_conv, condition in zip(
            self.blocks, self.skips, conditions, strict=True
        ):
            v_pre, v = block.vertical(v, condition)
            v_to_h = block.vertical_to_horizontal(v_pre)
            h = block.horizontal(h, h, v_to_h, condition)
            s = skip_conv(h)
            skip = s if skip is None else skip + s
        return self._head(skip, codes)

    # -------------------------------------------------------------- sampling
    def _sample_cached(self, noise, labels, temperature, top_k):
        """Row by row: the vertical stack of a row once, then code by code
        the horizontal stack on a `(1, k)` window per layer.

        State per layer: the last `c = k // 2` rows of its vertical input
        (zero padded to `W + 2c` columns) and the last `c` columns of its
        horizontal input in the current row. Every convolution is the
        naive one's `"SAME"` convolution evaluated as `"VALID"` on the
        zero-padded window around the current row or position.
        """
        height, width = self.grid_shape
        c = self.kernel_size // 2
        ch = self.num_hiddens
        dtype = self.compute_dtype
        # A static batch size keeps the loop variables' shapes fixed.
        static_n = noise.shape[0]
        n = static_n if static_n is not None else tf.shape(noise)[0]
        conditions = self._conditions(labels)
        blocks = list(zip(self.blocks, self.skips, conditions, strict=True))
        # With levels, codes carry a trailing level axis (axis 2 of a row).
        levels = [self.num_levels] if self.num_levels > 1 else []
        level_axis = [2] if levels else []

        def zeros(rows, cols):
            return tf.zeros([n, rows, cols, ch], dtype)

        def pad_columns(row):
            return tf.pad(row, [[0, 0], [0, 0], [c, c], [0, 0]])

        def row_body(i, histories, codes_ta):
            # Vertical stack of row i for every layer: needs rows < i only.
            v_to_h_rows = []
            new_histories = [None] * self.num_layers
            previous = None
            for layer, (block, _, condition) in enumerate(blocks):
                if layer == 0:
                    band = tf.concat(
                        [histories[0], zeros(c + 1, width + 2 * c)], 1
                    )
                else:
                    band = tf.concat(
                        [histories[layer], previous, zeros(c, width + 2 * c)], 1
                    )
                    new_histories[layer] = tf.concat(
                        [histories[layer][:, 1:], previous], 1
                    )
                v_pre, v_out = block.vertical(band, condition, "VALID")
                v_to_h_rows.append(block.vertical_to_horizontal(v_pre))
                previous = pad_columns(v_out)

            def column_body(j, lefts, row_ta):
                new_lefts = [None] * self.num_layers
                h = None
                skip = None
                for layer, (block, skip_conv, condition) in enumerate(blocks):
                    v_to_h = v_to_h_rows[layer][:, :, j][:, :, None]
                    if layer == 0:
                        window = tf.concat([lefts[0], zeros(1, c + 1)], 2)
                    else:
                        window = tf.concat([lefts[layer], h, zeros(1, c)], 2)
                        new_lefts[layer] = tf.concat(
                            [lefts[layer][:, :, 1:], h], 2
                        )
                    h = block.horizontal(window, h, v_to_h, condition, "VALID")
                    s = skip_conv(h)
                    skip = s if skip is None else skip + s
                code, embedded = self._draw(
                    skip, noise[:, i, j], temperature, top_k
                )
                new_lefts[0] = tf.concat([lefts[0][:, :, 1:], embedded], 2)
                return j + 1, new_lefts, row_ta.write(j, code)

            lefts = [zeros(1, c) for _ in range(self.num_layers)]
            row_ta = tf.TensorArray(
                "int32", size=width, element_shape=[static_n, *levels]
            )
            _, _, row_ta = tf.while_loop(
                lambda j, *_: j < width,
                column_body,
                (tf.constant(0), lefts, row_ta),
                parallel_iterations=1,
            )
            row_codes = tf.transpose(row_ta.stack(), [1, 0, *level_axis])
            embedded_row = pad_columns(self._embed(row_codes)[:, None])
            new_histories[0] = tf.concat([histories[0][:, 1:], embedded_row], 1)
            return i + 1, new_histories, codes_ta.write(i, row_codes)

        histories = [zeros(c, width + 2 * c) for _ in range(self.num_layers)]
        codes_ta = tf.TensorArray(
            "int32", size=height, element_shape=[static_n, width, *levels]
        )
        _, _, codes_ta = tf.while_loop(
            lambda i, *_: i < height,
            row_body,
            (tf.constant(0), histories, codes_ta),
            parallel_iterations=1,
        )
        return tf.transpose(
            codes_ta.stack(), [1, 0, 2, *[a + 1 for a in level_axis]]
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            grid_shape=list(self.grid_shape),
            num_hiddens=self.num_hiddens,
            num_layers=self.num_layers,
            kernel_size=self.kernel_size,
            num_classes=self.num_classes,
            num_levels=self.num_levels,
        )
        return config
