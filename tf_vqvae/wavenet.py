"""WaveNet prior over 1D VQ-VAE codes and WaveNet audio decoder, with
naive and cached samplers.

The prior factorises the distribution of a code sequence `z` (length `L`,
K categories) left to right:

    p(z) = prod_t p(z[t] | z[<t])

and models every conditional with a WaveNet [1]: the codes, embedded and
shifted right by one position (position t sees `z[t - 1]`, position 0 a
zero vector), go through a stack of dilated causal convolutions with gated
units `tanh(a) * sigmoid(b)`, residual connections between layers and skip
connections into the output head. Optional class (e.g. speaker)
conditioning adds a learned per-class vector inside every gate.

Sampling runs the conditionals one code at a time with the Gumbel-max trick
on uniform noise that is an input (`tf_vqvae.sampling`), so the same noise
gives the same codes and the sampler uses only TFLite builtin ops. The
cached sampler [2] keeps, per layer, a queue of the layer's last
`(kernel_size - 1) * dilation` inputs (a circular buffer): each step reads
the inputs the dilated convolution needs from the queues, computes one
position of every layer and pushes the new inputs, so its cost per code is
O(num_layers), independent of the sequence length; it returns exactly the
naive sampler's codes for the same noise.

`WaveNetDecoder` is the same network over 8-bit mu-law audio samples
instead of codes, conditioned locally on the VQ-VAE's code vectors
(upsampled to the sample rate) and globally on a speaker: the paper's
audio decoder `p(x | z, speaker)` (`VQVAE(decoder="wavenet")`). Both run
their layers through `run_stack` (training, naive sampling) and
`stack_step` (cached sampling), so they share one implementation.

References:
    [1] van den Oord et al., 2016. WaveNet: A Generative Model for Raw
        Audio. https://arxiv.org/abs/1609.03499
    [2] Paine et al., 2016. Fast Wavenet Generation Algorithm.
        https://arxiv.org/abs/1611.09482
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_vqvae import likelihoods, sampling
from tf_vqvae.arg_checks import check_int, describe
from tf_vqvae.autoregressive import (
    AutoregressivePrior,
    gate,
    layer_conditions,
    run_sampler,
)
from tf_vqvae.precision import policy_scope


def _check_kernel_size(kernel_size) -> None:
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 2
    ):
        raise ValueError(
            "`kernel_size` must be an integer >= 2. "
            f"{describe('kernel_size', kernel_size)}"
        )


def _check_sequence_shape(name: str, input_shape) -> None:
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"`{name}` expects inputs of shape (batch, length, channels) "
            "with a known channel axis. "
            f"Received: inputs.shape={tuple(input_shape)}"
        )


@keras.saving.register_keras_serializable(package="tf_vqvae")
class CausalConv1D(keras.layers.Layer):
    """Dilated causal 1D convolution, written as taps and one matmul.

    With kernel size k and dilation d, output t is

        y[t] = sum_{j < k} x[t - (k - 1 - j) * d] @ kernel[j] + bias

    (zeros before the start): it sees `(k - 1) * d` earlier positions and
    t itself, never a later one. `taps(x)` gathers the k inputs of every
    position side by side, `(batch, length, k * channels)`, and
    `convolve_taps` applies the kernel to them as a 1x1 convolution; the
    cached sampler of `WaveNetPrior` builds the taps of one position from
    its queues and calls the same `convolve_taps`, so both give the same
    numbers.

    Args:
        filters: number of output channels.
        kernel_size: k >= 2, the number of taps.
        dilation_rate: d >= 1, the distance between taps.
        use_bias: whether to add a bias.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, length, channels)`.

    Returns:
        `(batch, length, filters)`.

    Example:

    >>> conv = CausalConv1D(32, kernel_size=2, dilation_rate=4)
    >>> conv(keras.ops.zeros((2, 16, 8))).shape
    (2, 16, 32)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 2,
        dilation_rate: int = 1,
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("filters", filters)
        _check_kernel_size(kernel_size)
        check_int("dilation_rate", dilation_rate)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.use_bias = bool(use_bias)

    @property
    def history(self) -> int:
        """`(kernel_size - 1) * dilation_rate`: earlier positions seen."""
        return (self.kernel_size - 1) * self.dilation_rate

    def build(self, input_shape):
        _check_sequence_shape(self.name, input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, int(input_shape[-1]), self.filters),
            initializer="glorot_uniform",
        )
        self.bias = (
            self.add_weight(
                name="bias", shape=(self.filters,), initializer="zeros"
            )
            if self.use_bias
            else None
        )

    def taps(self, inputs) -> tf.Tensor:
        """`(batch, length, k * channels)`: at t, the inputs at
        `t - (k - 1) * d, ..., t - d, t` (oldest first), zeros before 0."""
        length = tf.shape(inputs)[1]
        padded = tf.pad(inputs, [[0, 0], [self.history, 0], [0, 0]])
        d = self.dilation_rate
        return tf.concat(
            [
                padded[:, j * d : j * d + length]
                for j in range(self.kernel_size)
            ],
            axis=-1,
        )

    def convolve_taps(self, taps) -> tf.Tensor:
        """The convolution's output from `taps`, `(batch, length, filters)`."""
        kernel = tf.reshape(
            tf.cast(self.kernel, self.compute_dtype), [1, -1, self.filters]
        )
        outputs = tf.nn.conv1d(taps, kernel, stride=1, padding="VALID")
        if self.bias is not None:
            outputs = tf.nn.bias_add(
                outputs, tf.cast(self.bias, self.compute_dtype)
            )
        return outputs

    def call(self, inputs):
        return self.convolve_taps(self.taps(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate,
            use_bias=self.use_bias,
        )
        return config


@keras.saving.register_keras_serializable(package="tf_vqvae")
class WaveNetBlock(keras.layers.Layer):
    """One WaveNet layer: dilated causal convolution, gate, residual, skip [1].

    With `x` the layer's input (C channels):

        pre  = causal_conv_k,d(x) + condition      # 2C channels
               [+ conv_1x1(local_condition)]        # local_channels set
        g    = tanh(pre[:C]) * sigmoid(pre[C:])
        skip = conv_1x1(g)                          # S channels
        out  = x + conv_1x1(g)                      # C channels

    `use_residual=False` (the last layer of a stack, whose residual output
    nothing reads) leaves `out = x` and has no residual convolution.
    `local_channels` adds WaveNet's local conditioning [1]: features of the
    same length as `x` (e.g. `WaveNetDecoder`'s upsampled codes) projected
    to 2C by a 1x1 convolution without bias; the feature at t may depend
    on anything (it is not part of the autoregression).

    Args:
        residual_channels: C, channels of the input and of `out`.
        skip_channels: S, channels of `skip`.
        dilation_rate: d, the dilation of the causal convolution.
        kernel_size: k >= 2 taps of the causal convolution.
        use_residual: whether `out` adds a 1x1 convolution of `g` to `x`.
        local_channels: `None` (default) or the channels of the
            `local_condition` features.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `x`, `(batch, length, C)`.
        condition: optional `(batch, 2 * C)`, added to `pre` at every
            position (class conditioning).
        local_condition: `(batch, length, local_channels)`, required with
            `local_channels` and refused without.

    Returns:
        `concat([out, skip], -1)`, `(batch, length, C + S)`.

    Example:

    >>> block = WaveNetBlock(16, 32, dilation_rate=2)
    >>> block(keras.ops.zeros((2, 10, 16))).shape
    (2, 10, 48)
    """

    def __init__(
        self,
        residual_channels: int,
        skip_channels: int,
        dilation_rate: int = 1,
        kernel_size: int = 2,
        use_residual: bool = True,
        local_channels: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("residual_channels", residual_channels)
        if local_channels is not None:
            check_int("local_channels", local_channels)
        check_int("skip_channels", skip_channels)
        check_int("dilation_rate", dilation_rate)
        _check_kernel_size(kernel_size)
        self.residual_channels = residual_channels
        self.skip_channels = skip_channels
        self.dilation_rate = dilation_rate
        self.kernel_size = kernel_size
        self.use_residual = bool(use_residual)
        self.local_channels = local_channels
        self.conv = CausalConv1D(
            2 * residual_channels, kernel_size, dilation_rate, name="conv"
        )
        self.skip_output = keras.layers.Conv1D(
            skip_channels, 1, name="skip_output"
        )
        self.residual_output = (
            keras.layers.Conv1D(residual_channels, 1, name="residual_output")
            if self.use_residual
            else None
        )
        self.local_projection = (
            keras.layers.Conv1D(
                2 * residual_channels, 1, use_bias=False, name="local"
            )
            if local_channels is not None
            else None
        )

    def build(self, input_shape):
        _check_sequence_shape(self.name, input_shape)
        if input_shape[-1] != self.residual_channels:
            raise ValueError(
                f"`{self.name}` expects inputs of shape (batch, length, "
                f"{self.residual_channels}) (residual_channels). "
                f"Received: inputs.shape={tuple(input_shape)}"
            )
        self.conv.build(input_shape)
        gated = tuple(input_shape[:-1]) + (self.residual_channels,)
        self.skip_output.build(gated)
        if self.residual_output is not None:
            self.residual_output.build(gated)
        if self.local_projection is not None:
            self.local_projection.build(
                tuple(input_shape[:-1]) + (self.local_channels,)
            )

    def step(
        self, taps, x, condition=None, local_condition=None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """`(out, skip)` from the convolution's `taps`, the input `x` and
        the conditions at the same positions."""
        if (local_condition is None) != (self.local_projection is None):
            raise ValueError(
                f"`{self.name}` takes `local_condition` exactly when "
                "local_channels is set. "
                f"Received: local_channels={self.local_channels}, "
                f"local_condition given: {local_condition is not None}."
            )
        pre = self.conv.convolve_taps(taps)
        if condition is not None:
            pre = pre + condition[:, None, :]
        if local_condition is not None:
            pre = pre + self.local_projection(local_condition)
        g = gate(pre)
        out = x if self.residual_output is None else x + self.residual_output(g)
        return out, self.skip_output(g)

    def call(self, inputs, condition=None, local_condition=None):
        out, skip = self.step(
            self.conv.taps(inputs), inputs, condition, local_condition
        )
        return tf.concat([out, skip], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (
            self.residual_channels + self.skip_channels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            residual_channels=self.residual_channels,
            skip_channels=self.skip_channels,
            dilation_rate=self.dilation_rate,
            kernel_size=self.kernel_size,
            use_residual=self.use_residual,
            local_channels=self.local_channels,
        )
        return config


def layer_dilations(num_layers: int, dilation_cycle: int) -> tuple[int, ...]:
    """`1, 2, ..., 2 ** (dilation_cycle - 1)`, repeated over `num_layers`."""
    return tuple(2 ** (i % dilation_cycle) for i in range(num_layers))


def run_stack(blocks, x, conditions, local_condition=None) -> tf.Tensor:
    """The summed skip outputs of `WaveNetBlock`s over a whole sequence.

    `x`: `(batch, length, C)`, already shifted (position t holds the input
    that predicts t); `conditions`: per block `(batch, 2C)` or `None`;
    `local_condition`: `(batch, length, L)` features for blocks with
    `local_channels`, else `None`.
    """
    skip = None
    for block, condition in zip(blocks, conditions, strict=True):
        x, s = block.step(block.conv.taps(x), x, condition, local_condition)
        skip = s if skip is None else skip + s
    return skip


def bucket_length(length: int) -> int:
    """`length` rounded up to a multiple of `2**(floor(log2(length)) - 2)`:
    at most four lengths per octave, each at most 25% above the lengths it
    holds (the cached generators compile once per bucket)."""
    step = 2 ** max(int(length).bit_length() - 3, 0)
    return -(-int(length) // step) * step


def empty_queues(blocks, n, channels: int, dtype) -> list[tf.Tensor]:
    """Per block, its `(history, n, channels)` queue of zeros (the causal
    padding) for `stack_step`."""
    return [
        tf.zeros([block.conv.history, n, channels], dtype) for block in blocks
    ]


def stack_step(
    blocks, queues, x, t, conditions, local_condition=None
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """One position `t` of `run_stack` from per-block queues (Paine et al.).

    The queue of a block with history `q = (k - 1) * d` is a `(q, n, C)`
    circular buffer: slot `t % q` holds the block's input at `t - q` until
    step t reads it and overwrites it with the input at t; the taps at
    `t - j * d` are in slots `(t - j * d) % q`. Slots not yet written hold
    zeros, the causal padding of `run_stack`. The same
    `CausalConv1D.convolve_taps` and 1x1 convolutions run on the one
    position, so the numbers are `run_stack`'s.

    Args:
        blocks: the `WaveNetBlock`s.
        queues: their queues (`empty_queues` at t = 0).
        x: `(n, C)`, the first block's input at t.
        t: int32 scalar, the position.
        conditions: per block `(n, 2C)` or `None`.
        local_condition: `(n, 1, L)`, the local features at t, or `None`.

    Returns:
        `(skip, queues)`: the summed skips `(n, 1, S)` at t and the updated
        queues.
    """
    skip = None
    new_queues = []
    for block, condition, queue in zip(blocks, conditions, queues, strict=True):
        size = block.conv.history
        d = block.dilation_rate
        taps = [
            tf.gather(queue, (t - j * d) % size)
            for j in range(block.kernel_size - 1, 0, -1)
        ]
        taps = tf.concat(taps + [x], axis=-1)[:, None]
        new_queues.append(
            tf.tensor_scatter_nd_update(
                queue, tf.reshape(t % size, [1, 1]), x[None]
            )
        )
        out, s = block.step(taps, x[:, None], condition, local_condition)
        x = out[:, 0]
        skip = s if skip is None else skip + s
    return skip, new_queues


def output_head(hidden, logits, skip) -> tf.Tensor:
    """`conv_1x1(relu(conv_1x1(relu(skip))))` as float32 logits: the output
    of the WaveNet prior and decoder."""
    return tf.cast(logits(tf.nn.relu(hidden(tf.nn.relu(skip)))), "float32")


class _DilatedStack:
    """What `WaveNetPrior` and `WaveNetDecoder` share (a mixin of theirs).

    The host sets `residual_channels`, `skip_channels`, `num_layers`,
    `dilation_cycle` and `kernel_size`, and keeps `blocks` (from
    `_make_blocks`), `head_hidden` and `head_logits` (from `_make_head`);
    it embeds its previous outputs with `_embed`.
    """

    @property
    def dilations(self) -> tuple[int, ...]:
        """The dilation of each layer."""
        return layer_dilations(self.num_layers, self.dilation_cycle)

    @property
    def receptive_field(self) -> int:
        """How many earlier positions the logits at a position can see."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def _make_blocks(self, local_channels: int | None = None) -> list:
        return [
            WaveNetBlock(
                self.residual_channels,
                self.skip_channels,
                dilation,
                self.kernel_size,
                use_residual=i < self.num_layers - 1,
                local_channels=local_channels,
                name=f"block{i}",
            )
            for i, dilation in enumerate(self.dilations)
        ]

    def _make_head(self, classes: int) -> tuple:
        """`(head_hidden, head_logits)`, the 1x1 convolutions of
        `output_head` with `classes` logits."""
        return (
            keras.layers.Conv1D(self.skip_channels, 1, name="head_hidden"),
            keras.layers.Conv1D(classes, 1, name="head_logits"),
        )

    def _build_stack(self, embedding, sequence: tuple, gate_embeddings):
        """Builds `embedding` (of the previous outputs), the blocks and the
        head for `sequence = (batch, length)`, and the per-layer
        `gate_embeddings` of the class or speaker ids."""
        embedding.build(sequence)
        for block in self.blocks:
            block.build(sequence + (self.residual_channels,))
        self.head_hidden.build(sequence + (self.skip_channels,))
        self.head_logits.build(sequence + (self.skip_channels,))
        for gate_embedding in gate_embeddings:
            gate_embedding.build((sequence[0],))

    def _head(self, skip) -> tf.Tensor:
        return output_head(self.head_hidden, self.head_logits, skip)

    def _draw_step(self, skip, noise, temperature, top_k) -> tf.Tensor:
        """The cached sampler's draw at one position: int32 `(n,)` from the
        summed skips `(n, 1, C)` and the position's Gumbel-max noise `(n,
        classes)`."""
        logits = self._head(skip)[:, 0]
        return sampling.gumbel_argmax(logits, noise, temperature, top_k)

    def _draw_cached(
        self,
        noise,
        conditions,
        temperature,
        top_k=None,
        features=None,
        steps=None,
    ) -> tf.Tensor:
        """Position by position, every layer on one position from its queue
        (`stack_step`): int32 draws `(n, length)` for Gumbel-max `noise`
        `(n, length, classes)`, with per-sample local `features` `(n,
        length, L)` for blocks with `local_channels`. With `steps` (an int32
        scalar tensor <= length) only the first `steps` positions are drawn
        (the rest of the result is 0): a padded `noise` and `features` then
        share one compiled loop across lengths."""
        c = self.residual_channels
        dtype = self.compute_dtype
        # A static batch size keeps the loop variables' shapes fixed.
        static_n = noise.shape[0]
        n = static_n if static_n is not None else tf.shape(noise)[0]
        length = noise.shape[1]
        if steps is None:
            steps = length

        def body(t, previous, queues, draws_ta):
            local = (
                None if features is None else tf.gather(features, [t], axis=1)
            )
            skip, queues = stack_step(
                self.blocks, queues, previous, t, conditions, local
            )
            draw = self._draw_step(skip, noise[:, t], temperature, top_k)
            return t + 1, self._embed(draw), queues, draws_ta.write(t, draw)

        # Draws of several levels (a prior's) keep their level axis.
        levels = noise.shape[2:-1].as_list()
        draws_ta = tf.TensorArray(
            "int32", size=length, element_shape=[static_n, *levels]
        )
        _, _, _, draws_ta = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (
                tf.constant(0),
                tf.zeros([n, c], dtype),
                empty_queues(self.blocks, n, c, dtype),
                draws_ta,
            ),
            parallel_iterations=1,
        )
        return tf.transpose(
            draws_ta.stack(), [1, 0, *range(2, 2 + len(levels))]
        )


@keras.saving.register_keras_serializable(package="tf_vqvae")
class WaveNetPrior(_DilatedStack, AutoregressivePrior):
    """Autoregressive prior over 1D VQ-VAE codes: a WaveNet [1].

    Models `p(z) = prod_t p(z[t] | z[<t])` over int codes `z` of shape
    `(length,)` with K categories (e.g. the latents of speech). The codes
    are embedded (C = `residual_channels`) and shifted right by one, so
    position t sees `z[t - 1]` and position 0 a zero vector; `num_layers`
    `WaveNetBlock`s follow, layer l with dilation
    `2 ** (l % dilation_cycle)` (1, 2, 4, ..., repeated); their skip
    outputs are summed, then `relu -> conv_1x1(S) -> relu -> conv_1x1(K)`
    gives float32 logits. Class conditioning (`num_classes`, e.g. speaker
    ids) adds a learned per-class vector to the gate input of every layer.

    Receptive field: the logits at t depend on the `receptive_field =
    1 + (kernel_size - 1) * sum(dilations)` codes `z[t - receptive_field],
    ..., z[t - 1]` (those that exist) and on nothing else: with the
    defaults 1024 codes.

    Training: as `PixelCNNPrior` (see `tf_vqvae.autoregressive`):
    `compile()` defaults to `SparseCategoricalCrossentropy(from_logits=True)`
    with the codes as their own targets; `fit` takes a dataset of int32
    codes `(batch, length)` (or of `{"codes": ..., "labels": ...}` dicts)
    without targets and shows `bits_per_code`.

    Sampling (pseudo-code of the naive sampler):

        for t in range(length):
            logits = network(z)[:, t]            # depends on z[<t] only
            z[:, t] = argmax(logits / T + gumbel(noise[:, t]))

    The cached sampler [2] (the default of `sample_codes` and
    `distribution().sample`) keeps, for each layer, a circular buffer of its
    last `(kernel_size - 1) * dilation` inputs. A step reads the taps of
    the dilated convolution from the buffers, runs every layer on the one
    new position (the same `CausalConv1D.convolve_taps` and 1x1
    convolutions as the naive sampler, so the same numbers and the same
    codes for the same noise, tested), overwrites the oldest entry of each
    buffer and feeds the embedding of the new code to the next step: O(num
    layers) work per code, independent of `length`, where the naive sampler
    runs the whole network on the whole sequence for every code. The
    measurements are in BENCHMARKS.md ("Prior sampling").

    The prior satisfies `tf_vqvae.contracts.CodePrior` (`num_embeddings`,
    `grid_shape == (length,)`, `num_classes`, `distribution`,
    `sample_codes`).

    Args:
        num_embeddings: K, the number of codes (the VQ-VAE codebook size).
        length: the number of codes in a sequence (the event shape of
            `distribution()` is `[length]`).
        residual_channels: C, channels of the embedding and of the residual
            stream.
        skip_channels: S, channels of the skip connections and the head.
        num_layers: number of `WaveNetBlock`s.
        dilation_cycle: the dilations are `1, 2, ..., 2 **
            (dilation_cycle - 1)`, repeated over the layers.
        kernel_size: k >= 2 taps of each dilated convolution (WaveNet: 2).
        num_classes: `None` (unconditional) or the number of classes (e.g.
            speakers) for class conditioning.
        num_levels: L, codes per position (default 1). With L > 1 the
            prior models the levels of residual VQ codes (an audio
            `VQVAE(quantizer="rvq")`), see "Levels" below.
        **kwargs: base `keras.Model` arguments (e.g. `dtype` for a mixed
            precision policy; the logits stay float32).

    Levels (`num_levels = L > 1`): codes `(batch, length, L)`, drawn
    position by position and, at each position, level by level. The
    stack's input is the sum of one embedding per level (position t sees
    every level of `z[t - 1]`), and the head adds what the position's
    earlier levels say, one learned vector per (level, code) and one per
    level:

        h = conv_1x1(relu(skip))                      # the position's context
        c_l = b_l + sum_{m < l} e_m[z[t, m]]          # its levels before l
        logits[t, l] = conv_1x1_K(relu(h + c_l))

    as `PixelCNNPrior`'s levels (`tf_vqvae.autoregressive`). The cached
    sampler draws the L codes of a position in order, then runs the stack
    on their summed embedding.

    Call arguments:
        inputs: int codes `(batch, length)` (`(batch, length, L)` with
            levels), or with `num_classes` set a dict `{"codes": ...,
            "labels": (batch,)}`.

    Returns:
        Logits `(batch, length, K)` (`(batch, length, L, K)` with levels),
        float32.

    Raises:
        TypeError: for codes or labels that are not integers.
        ValueError: for invalid arguments, codes not on the (length,) grid,
            labels not `(batch,)`, or (eagerly) codes outside `[0, K)` or
            labels outside `[0, num_classes)`. In a graph (`fit`'s train
            step, a `tf.function`) what the static shapes leave open, and
            the values, raise `InvalidArgumentError` with the same text.

    Example:

    >>> prior = WaveNetPrior(num_embeddings=512, length=1024)
    >>> prior.compile(optimizer=keras.optimizers.Adam(3e-4))
    >>> prior.fit(codes_dataset, epochs=10)     # int32 (batch, 1024)
    >>> z = prior.distribution().sample(4, seed=0)   # int32 (4, 1024)

    References:
        [1] van den Oord et al., 2016. WaveNet: A Generative Model for Raw
            Audio.
        [2] Paine et al., 2016. Fast Wavenet Generation Algorithm.
    """

    grid_axes = ("length",)

    def __init__(
        self,
        num_embeddings: int,
        length: int,
        residual_channels: int = 64,
        skip_channels: int = 64,
        num_layers: int = 10,
        dilation_cycle: int = 10,
        kernel_size: int = 2,
        num_classes: int | None = None,
        num_levels: int = 1,
        **kwargs,
    ):
        check_int("length", length)
        check_int("residual_channels", residual_channels)
        check_int("skip_channels", skip_channels)
        check_int("num_layers", num_layers)
        check_int("dilation_cycle", dilation_cycle)
        _check_kernel_size(kernel_size)
        super().__init__(
            num_embeddings, (length,), num_classes, num_levels, **kwargs
        )
        self.length = length
        self.residual_channels = residual_channels
        self.skip_channels = skip_channels
        self.num_layers = num_layers
        self.dilation_cycle = dilation_cycle
        self.kernel_size = kernel_size
        # The layers take the model's dtype policy (`dtype=...`, by default
        # the global one): Keras does not pass it down.
        with policy_scope(self.dtype_policy):
            self._make_layers()

    @classmethod
    def for_grid(
        cls,
        num_embeddings: int,
        grid_shape: tuple[int, ...],
        num_classes: int | None = None,
        **kwargs,
    ) -> WaveNetPrior:
        """The prior over code sequences of `grid_shape == (length,)`."""
        if len(tuple(grid_shape)) != 1:
            raise ValueError(
                "`grid_shape` must be (length,) for a WaveNetPrior. "
                f"Received: grid_shape={tuple(grid_shape)}"
            )
        (length,) = grid_shape
        return cls(
            num_embeddings=num_embeddings,
            length=length,
            num_classes=num_classes,
            **kwargs,
        )

    def _make_layers(self) -> None:
        self.embedding = keras.layers.Embedding(
            self.num_levels * self.num_embeddings,
            self.residual_channels,
            name="embedding",
        )
        self.blocks = self._make_blocks()
        self.head_hidden, self.head_logits = self._make_head(
            self.num_embeddings
        )
        self._make_level_layers(self.skip_channels)
        self.class_embeddings = (
            [
                keras.layers.Embedding(
                    self.num_classes,
                    2 * self.residual_channels,
                    name=f"class_embedding{i}",
                )
                for i in range(self.num_layers)
            ]
            if self.num_classes is not None
            else []
        )

    def build(self, input_shape):
        shape = self._codes_shape(input_shape)
        self._check_codes_shape(shape)
        self._build_stack(
            self.embedding, (shape[0], self.length), self.class_embeddings
        )
        self._build_level_layers(shape[0])

    def call(self, inputs, training=None):
        codes, labels = self._checked_inputs(inputs)
        conditions = self._conditions(labels)
        embedded = self._embed(codes)
        x = tf.pad(embedded[:, :-1], [[0, 0], [1, 0], [0, 0]])
        return self._head(run_stack(self.blocks, x, conditions), codes)

    def _head(self, skip, codes=None) -> tf.Tensor:
        """float32 logits from the summed skips `(batch, length, S)`; with
        levels, of every level given the position's `codes` `(batch,
        length, L)` (the depth head, `_level_logits`)."""
        if self.num_levels == 1:
            return super()._head(skip)
        return self._level_logits(self.head_hidden(tf.nn.relu(skip)), codes)

    def _draw_step(self, skip, noise, temperature, top_k) -> tf.Tensor:
        if self.num_levels == 1:
            return super()._draw_step(skip, noise, temperature, top_k)
        hidden = self.head_hidden(tf.nn.relu(skip))
        return self._draw_levels(hidden, noise, temperature, top_k)

    def _sample_cached(self, noise, labels, temperature, top_k):
        """Code by code, every layer on one position from its queue
        (`stack_step`)."""
        return self._draw_cached(
            noise, self._conditions(labels), temperature, top_k
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            length=self.length,
            residual_channels=self.residual_channels,
            skip_channels=self.skip_channels,
            num_layers=self.num_layers,
            dilation_cycle=self.dilation_cycle,
            kernel_size=self.kernel_size,
            num_classes=self.num_classes,
            num_levels=self.num_levels,
        )
        return config


@keras.saving.register_keras_serializable(package="tf_vqvae")
class WaveNetDecoder(_DilatedStack, keras.layers.Layer):
    """The paper's audio decoder: a WaveNet p(x | z, speaker) [1].

    Models the 8-bit mu-law classes `x` of a waveform (`S` samples) given
    the code vectors `z_q` (`n = S / 2**num_upsamples` of them) and an
    optional speaker id:

        p(x | z, s) = prod_t p(x[t] | x[<t], z, s)

    Local conditioning: `z_q` goes through a 3-wide convolution and
    `num_upsamples` stride-2 window-4 transposed convolutions (ReLU between
    them; 64x for 6, the inverse of the paper's audio encoder) to
    `condition_channels` features per sample, which every layer projects
    into its gate (`WaveNetBlock(local_channels=...)`); a feature at t sees
    the codes around t, never the samples. Global conditioning: a learned
    per-speaker vector in every gate, as `WaveNetPrior`'s classes. The
    autoregression: the previous samples' classes, embedded (C channels)
    and shifted right by one (sample 0 sees a zero vector), go through
    `num_layers` `WaveNetBlock`s with dilations `2 ** (l %
    dilation_cycle)`; their summed skips give 256 float32 logits per sample
    (`relu -> 1x1(S) -> relu -> 1x1(256)`). Training is teacher forced:
    the true previous samples come in and all logits are computed at once.

    Receptive field over the samples: `1 + (kernel_size - 1) *
    sum(dilations)` previous samples (1024 with 10 layers of cycle 10).

    Generation (`generate`) draws one sample at a time by Gumbel-max from
    given uniform noise (`tf_vqvae.sampling`), so the same noise gives the
    same waveform. `"cached"` (default, XLA) keeps per-layer queues
    (`stack_step`, as `WaveNetPrior`'s sampler): O(num_layers) work per
    sample, independent of `S`; `"naive"` runs the whole network on the
    whole sequence for every sample (O(S) per sample; for tests). Both
    give the same samples for the same noise.

    Args:
        num_upsamples: stride-2 upsamplings of the codes (6 for the paper's
            audio encoder: one code per 64 samples); 0 allowed.
        residual_channels: C, channels of the embedding and the residual
            stream.
        skip_channels: S, channels of the skips and the head.
        condition_channels: channels of the upsampled code features.
        num_layers: number of `WaveNetBlock`s.
        dilation_cycle: dilations `1, 2, ..., 2 ** (dilation_cycle - 1)`,
            repeated.
        kernel_size: k >= 2 taps of each dilated convolution.
        num_speakers: `None` or the number of speaker ids to condition on.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `z_q`, float `(batch, n, embedding_dim)`.
        samples: int mu-law classes `(batch, n * 2**num_upsamples)` in
            [0, 256): the waveform being modelled (teacher forcing; the
            logits at t use only `samples[:, :t]`).
        speaker: int ids `(batch,)`, required with `num_speakers` and
            refused without.

    Returns:
        Logits `(batch, n * 2**num_upsamples, 256)`, float32.

    Example:

    >>> decoder = WaveNetDecoder(num_upsamples=6, num_layers=10)
    >>> z_q = keras.ops.zeros((2, 4, 64))
    >>> decoder(z_q, keras.ops.zeros((2, 256), "int32")).shape
    (2, 256, 256)
    >>> noise = tf.random.uniform((2, 256, 256))
    >>> decoder.generate(z_q, noise).shape       # int32 classes
    (2, 256)

    References:
        [1] van den Oord et al., 2016. WaveNet: A Generative Model for Raw
            Audio. https://arxiv.org/abs/1609.03499
    """

    def __init__(
        self,
        num_upsamples: int = 6,
        residual_channels: int = 32,
        skip_channels: int = 32,
        condition_channels: int = 32,
        num_layers: int = 10,
        dilation_cycle: int = 10,
        kernel_size: int = 2,
        num_speakers: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_upsamples", num_upsamples, 0)
        check_int("residual_channels", residual_channels)
        check_int("skip_channels", skip_channels)
        check_int("condition_channels", condition_channels)
        check_int("num_layers", num_layers)
        check_int("dilation_cycle", dilation_cycle)
        _check_kernel_size(kernel_size)
        if num_speakers is not None:
            check_int("num_speakers", num_speakers)
        self.num_upsamples = num_upsamples
        self.residual_channels = residual_channels
        self.skip_channels = skip_channels
        self.condition_channels = condition_channels
        self.num_layers = num_layers
        self.dilation_cycle = dilation_cycle
        self.kernel_size = kernel_size
        self.num_speakers = num_speakers
        c, h = residual_channels, condition_channels
        self.sample_embedding = keras.layers.Embedding(
            likelihoods.MU_LAW_CLASSES, c, name="sample_embedding"
        )
        self.condition_conv = keras.layers.Conv1D(
            h, 3, padding="same", name="condition_conv"
        )
        self.upsamples = [
            keras.layers.Conv1DTranspose(
                h, 4, strides=2, padding="same", name=f"up{i}"
            )
            for i in range(num_upsamples)
        ]
        self.blocks = self._make_blocks(local_channels=h)
        self.speaker_embeddings = (
            []
            if num_speakers is None
            else [
                keras.layers.Embedding(num_speakers, 2 * c, name=f"speaker{i}")
                for i in range(num_layers)
            ]
        )
        self.head_hidden, self.head_logits = self._make_head(
            likelihoods.MU_LAW_CLASSES
        )
        # Compiled generators by (method, temperature); not state to save.
        object.__setattr__(self, "_compiled_samplers", {})

    @property
    def upsampling_factor(self) -> int:
        """Samples per code, `2**num_upsamples`."""
        return 2**self.num_upsamples

    def build(self, input_shape):
        _check_sequence_shape(self.name, input_shape)
        batch, length = input_shape[0], input_shape[1]
        samples = None if length is None else length * self.upsampling_factor
        self.condition_conv.build(tuple(input_shape))
        shape = (batch, length, self.condition_channels)
        for layer in self.upsamples:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self._build_stack(
            self.sample_embedding, (batch, samples), self.speaker_embeddings
        )

    def upsample(self, z_q) -> tf.Tensor:
        """The local conditioning features of `z_q`: `(batch, n *
        2**num_upsamples, condition_channels)`."""
        x = self.condition_conv(tf.cast(z_q, self.compute_dtype))
        for layer in self.upsamples:
            x = layer(tf.nn.relu(x))
        return x

    def _conditions(self, speaker) -> list:
        """Per layer, the speaker's gate vector `(batch, 2C)` (or `None`)."""
        if (speaker is None) != (self.num_speakers is None):
            raise ValueError(
                f"`{self.name}` takes `speaker` ids exactly when it has "
                f"speakers. Received: num_speakers={self.num_speakers}, "
                f"speaker given: {speaker is not None}."
            )
        return layer_conditions(
            self.speaker_embeddings,
            speaker,
            self.num_layers,
            self.compute_dtype,
        )

    def _embed(self, samples) -> tf.Tensor:
        return tf.cast(
            self.sample_embedding(tf.cast(samples, "int32")),
            self.compute_dtype,
        )

    def _check_samples(self, z_q, samples) -> None:
        length, count = z_q.shape[1], samples.shape[-1]
        if samples.shape.rank != 2 or (
            length is not None
            and count is not None
            and count != length * self.upsampling_factor
        ):
            raise ValueError(
                f"`{self.name}` expects `samples` of shape (batch, n * "
                f"{self.upsampling_factor}) for codes (batch, n, dim). "
                f"Received: inputs.shape={tuple(z_q.shape)}, "
                f"samples.shape={tuple(samples.shape)}"
            )

    def call(self, inputs, samples, speaker=None):
        samples = tf.convert_to_tensor(samples)
        self._check_samples(inputs, samples)
        conditions = self._conditions(speaker)
        features = self.upsample(inputs)
        embedded = self._embed(samples)
        x = tf.pad(embedded[:, :-1], [[0, 0], [1, 0], [0, 0]])
        return self._head(run_stack(self.blocks, x, conditions, features))

    def generate(
        self,
        inputs,
        noise,
        speaker=None,
        temperature: float = 1.0,
        method: str = "cached",
    ) -> tf.Tensor:
        """Mu-law classes drawn sample by sample from `p(x | z, speaker)`.

        Args:
            inputs: `z_q`, float `(n, codes, embedding_dim)`.
            noise: float `(n, codes * 2**num_upsamples, 256)` uniform in
                [0, 1), the Gumbel-max noise of each sample. The same noise
                gives the same classes.
            speaker: int ids `(n,)` (with `num_speakers`).
            temperature: positive; logits are divided by it.
            method: `"cached"` (XLA, O(num_layers) per sample) or
                `"naive"` (the whole network for every sample).

        Returns:
            int32 classes `(n, codes * 2**num_upsamples)`
            (`tf_vqvae.likelihoods.mu_law_decode` gives the waveform).

        Raises:
            ValueError: for a bad option, a `noise` shape that does not
                match `inputs`, or an unknown number of codes (a graph
                traced with a dynamic length).
        """
        sampling.check_method(method)
        sampling.check_sampling_options(
            temperature, None, likelihoods.MU_LAW_CLASSES
        )
        inputs = tf.convert_to_tensor(inputs)
        noise = tf.convert_to_tensor(noise, "float32")
        samples = (
            None
            if inputs.shape[1] is None
            else inputs.shape[1] * self.upsampling_factor
        )
        if noise.shape.rank != 3 or tuple(noise.shape[1:]) != (
            samples,
            likelihoods.MU_LAW_CLASSES,
        ):
            raise ValueError(
                f"`noise` must have shape (n, {samples}, 256) (n, codes * "
                f"{self.upsampling_factor}, classes) for codes of shape "
                f"{tuple(inputs.shape)}. "
                f"Received: noise.shape={tuple(noise.shape)}"
            )
        if samples is None:
            raise ValueError(
                "`generate` needs a static number of codes (its loops are "
                "built for one length): call it eagerly, or trace it with a "
                f"fixed length. Received: inputs.shape={tuple(inputs.shape)}"
            )
        self._conditions(speaker)  # checks `speaker` against the table
        if not self.built:
            self.build(tuple(inputs.shape))
        if speaker is not None:
            speaker = tf.convert_to_tensor(speaker, "int32")
        key = (method, float(temperature))
        if method == "naive":

            def naive(inputs, noise, speaker):
                return self._generate_naive(inputs, noise, speaker, temperature)

            return run_sampler(
                self._compiled_samplers, key, naive, inputs, noise, speaker
            )

        # The loop compiles (XLA) for one length: called eagerly, the noise
        # and the features are padded to `bucket_length` and the loop stops
        # at the true length, so clips of similar lengths share one
        # compilation. The features are computed at the true length first
        # (the upsampling convolutions see both neighbours, so padding the
        # codes would change the last features); the loop is causal, so
        # the padding changes no draw.
        features = self.upsample(inputs)
        if tf.executing_eagerly():
            padding = [[0, 0], [0, bucket_length(samples) - samples], [0, 0]]
            features = tf.pad(features, padding)
            noise = tf.pad(noise, padding)

        def cached(features, noise, speaker, steps):
            return self._draw_cached(
                noise,
                self._conditions(speaker),
                temperature,
                features=features,
                steps=steps,
            )

        draws = run_sampler(
            self._compiled_samplers,
            key,
            cached,
            features,
            noise,
            speaker,
            tf.constant(samples, "int32"),
        )
        return draws[:, :samples]

    def _generate_naive(self, inputs, noise, speaker, temperature):
        """Sample by sample, the whole network on the whole sequence."""
        n = tf.shape(noise)[0]
        length = noise.shape[1]

        def body(t, samples):
            logits = self.call(inputs, samples, speaker)[:, t]
            sample = sampling.gumbel_argmax(logits, noise[:, t], temperature)
            index = tf.stack([tf.range(n), tf.fill([n], t)], axis=1)
            return t + 1, tf.tensor_scatter_nd_update(samples, index, sample)

        _, samples = tf.while_loop(
            lambda t, _: t < length,
            body,
            (tf.constant(0), tf.zeros([n, length], "int32")),
            parallel_iterations=1,
        )
        return samples

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        samples = None if length is None else length * self.upsampling_factor
        return (input_shape[0], samples, likelihoods.MU_LAW_CLASSES)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_upsamples=self.num_upsamples,
            residual_channels=self.residual_channels,
            skip_channels=self.skip_channels,
            condition_channels=self.condition_channels,
            num_layers=self.num_layers,
            dilation_cycle=self.dilation_cycle,
            kernel_size=self.kernel_size,
            num_speakers=self.num_speakers,
        )
        return config
