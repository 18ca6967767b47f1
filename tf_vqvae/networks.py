"""Encoder, decoder and residual stack of the VQ-VAE paper (1D/2D/3D)."""

from __future__ import annotations

import keras

from tf_vqvae.arg_checks import check_int, describe

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_CONV_TRANSPOSE = {
    1: keras.layers.Conv1DTranspose,
    2: keras.layers.Conv2DTranspose,
    3: keras.layers.Conv3DTranspose,
}


def _check_spatial_dims(spatial_dims) -> None:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(
            "`spatial_dims` must be 1, 2 or 3. "
            f"{describe('spatial_dims', spatial_dims)}"
        )


def _check_input_rank(layer: keras.layers.Layer, input_shape) -> None:
    expected = layer.spatial_dims + 2
    if len(input_shape) != expected:
        axes = {1: "length", 2: "height, width", 3: "time, height, width"}
        raise ValueError(
            f"`{layer.name}` expects inputs of shape (batch, "
            f"{axes[layer.spatial_dims]}, channels) (rank {expected}, "
            f"spatial_dims={layer.spatial_dims}). "
            f"Received: inputs.shape={tuple(input_shape)}"
        )


@keras.saving.register_keras_serializable(package="tf_vqvae")
class ResidualStack(keras.layers.Layer):
    """Residual blocks `x + conv1x1(relu(conv3x3(relu(x))))`, then ReLU.

    The paper's residual block ("ReLU, 3x3 conv, ReLU, 1x1 conv").

    Args:
        num_hiddens: channels of the input and output (the residual path).
        num_residual_blocks: number of blocks.
        num_residual_hiddens: channels inside each block (after the 3x3 conv).
        spatial_dims: 1, 2 or 3 (the rank of the data grid).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, ..., num_hiddens)`, e.g. `(batch, height, width,
            num_hiddens)` for `spatial_dims=2`.
        biases: optional, one tensor per block broadcastable to the inputs
            (e.g. `(batch, 1, 1, num_hiddens)`), added to the block's output
            (a conditioning signal such as `Decoder`'s speaker embedding).

    Returns:
        A tensor of the input's shape.
    """

    def __init__(
        self,
        num_hiddens: int,
        num_residual_blocks: int,
        num_residual_hiddens: int,
        spatial_dims: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_hiddens", num_hiddens, 1)
        check_int("num_residual_blocks", num_residual_blocks, 0)
        check_int("num_residual_hiddens", num_residual_hiddens, 1)
        _check_spatial_dims(spatial_dims)
        self.num_hiddens = num_hiddens
        self.num_residual_blocks = num_residual_blocks
        self.num_residual_hiddens = num_residual_hiddens
        self.spatial_dims = spatial_dims
        conv = _CONV[spatial_dims]
        self.blocks = [
            (
                conv(
                    num_residual_hiddens, 3, padding="same", name=f"res{i}_3x3"
                ),
                conv(num_hiddens, 1, name=f"res{i}_1x1"),
            )
            for i in range(num_residual_blocks)
        ]

    def build(self, input_shape):
        _check_input_rank(self, input_shape)
        if input_shape[-1] != self.num_hiddens:
            raise ValueError(
                f"`{self.name}` expects {self.num_hiddens} input channels. "
                f"Received: inputs.shape={tuple(input_shape)}"
            )
        inner = tuple(input_shape[:-1]) + (self.num_residual_hiddens,)
        for conv3, conv1 in self.blocks:
            conv3.build(input_shape)
            conv1.build(inner)

    def call(self, inputs, biases=None):
        x = inputs
        for i, (conv3, conv1) in enumerate(self.blocks):
            h = conv3(keras.ops.relu(x))
            x = x + conv1(keras.ops.relu(h))
            if biases is not None:
                x = x + biases[i]
        return keras.ops.relu(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_hiddens=self.num_hiddens,
            num_residual_blocks=self.num_residual_blocks,
            num_residual_hiddens=self.num_residual_hiddens,
            spatial_dims=self.spatial_dims,
        )
        return config


_NETWORK_ARGS = """
        num_hiddens: channels of the strided convolutions and the residual
            path (256 in the paper).
        num_residual_blocks: residual blocks (2 in the paper).
        num_residual_hiddens: channels inside each residual block.
        num_downsamples: stride-2 4x4 convolutions; each halves every spatial
            axis (2 in the paper: 32x32 images -> 8x8 codes, 128x128 -> 32x32).
        spatial_dims: 1 (audio, `(batch, time, channels)`), 2 (images) or 3
            (video, `(batch, time, height, width, channels)`).
        **kwargs: base `keras.layers.Layer` arguments."""


def _is_empty_batch(inputs) -> bool:
    return inputs.shape[0] == 0 and inputs.shape.is_fully_defined()


def _empty_output(layer: keras.layers.Layer, inputs):
    """The layer's output for an empty batch, without running convolutions.

    With oneDNN (on by default for TF 2.21 on x86 CPUs) a convolution of an
    empty batch returns the input's shape, not the output's, and the bias
    add after it fails; a batch of 0 is known statically, so this costs
    nothing in graphs.
    """
    shape = layer.compute_output_shape(tuple(inputs.shape))
    return keras.ops.zeros(shape, dtype=layer.compute_dtype)


class _ConvNetwork(keras.layers.Layer):
    """Arguments, checks, the 3x3 convolution and the residual stack that
    `Encoder` and `Decoder` share; not public."""

    def __init__(
        self,
        num_hiddens: int,
        num_residual_blocks: int,
        num_residual_hiddens: int,
        num_downsamples: int,
        spatial_dims: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_hiddens", num_hiddens, 1)
        check_int("num_downsamples", num_downsamples, 0)
        _check_spatial_dims(spatial_dims)
        self.num_hiddens = num_hiddens
        self.num_residual_blocks = num_residual_blocks
        self.num_residual_hiddens = num_residual_hiddens
        self.num_downsamples = num_downsamples
        self.spatial_dims = spatial_dims
        self.conv = _CONV[spatial_dims](
            num_hiddens, 3, padding="same", name="conv"
        )
        self.residual_stack = ResidualStack(
            num_hiddens,
            num_residual_blocks,
            num_residual_hiddens,
            spatial_dims,
            name="residual_stack",
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_hiddens=self.num_hiddens,
            num_residual_blocks=self.num_residual_blocks,
            num_residual_hiddens=self.num_residual_hiddens,
            num_downsamples=self.num_downsamples,
            spatial_dims=self.spatial_dims,
        )
        return config


@keras.saving.register_keras_serializable(package="tf_vqvae")
class Encoder(_ConvNetwork):
    # Assembled from shared text, so set explicitly (a concatenation is
    # not a docstring).
    __doc__ = (
        """The VQ-VAE encoder: x -> z_e(x).

    `num_downsamples` stride-2 4x4 convolutions with ReLU, a 3x3 convolution,
    the residual stack, and a 1x1 projection to `embedding_dim`.

    Args:
        embedding_dim: D, channels of the output `z_e`."""
        + _NETWORK_ARGS
        + """

    Call arguments:
        inputs: `(batch, height, width, channels)` for `spatial_dims=2`;
            each spatial size must be divisible by `2**num_downsamples`.

    Returns:
        `z_e`: `(batch, height / 2**num_downsamples, width /
        2**num_downsamples, embedding_dim)`.

    Example:

    >>> encoder = Encoder(embedding_dim=64)
    >>> encoder(keras.ops.zeros((2, 32, 32, 3))).shape
    (2, 8, 8, 64)
    """
    )

    def __init__(
        self,
        embedding_dim: int,
        num_hiddens: int = 256,
        num_residual_blocks: int = 2,
        num_residual_hiddens: int = 256,
        num_downsamples: int = 2,
        spatial_dims: int = 2,
        **kwargs,
    ):
        check_int("embedding_dim", embedding_dim, 1)
        super().__init__(
            num_hiddens,
            num_residual_blocks,
            num_residual_hiddens,
            num_downsamples,
            spatial_dims,
            **kwargs,
        )
        self.embedding_dim = embedding_dim
        conv = _CONV[spatial_dims]
        self.downsamples = [
            conv(num_hiddens, 4, strides=2, padding="same", name=f"down{i}")
            for i in range(num_downsamples)
        ]
        self.projection = conv(embedding_dim, 1, name="projection")

    def build(self, input_shape):
        _check_input_rank(self, input_shape)
        factor = 2**self.num_downsamples
        spatial = input_shape[1:-1]
        if any(s is not None and s % factor for s in spatial):
            raise ValueError(
                f"`{self.name}` expects spatial sizes divisible by "
                f"2**num_downsamples={factor}. "
                f"Received: inputs.shape={tuple(input_shape)}"
            )
        shape = tuple(input_shape)
        for layer in self.downsamples:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        self.residual_stack.build(shape)
        self.projection.build(shape)

    def call(self, inputs):
        if _is_empty_batch(inputs):
            return _empty_output(self, inputs)
        x = inputs
        for layer in self.downsamples:
            x = keras.ops.relu(layer(x))
        x = self.residual_stack(self.conv(x))
        return self.projection(x)

    def compute_output_shape(self, input_shape):
        factor = 2**self.num_downsamples
        spatial = tuple(
            None if s is None else s // factor for s in input_shape[1:-1]
        )
        return (input_shape[0],) + spatial + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(embedding_dim=self.embedding_dim)
        return config


@keras.saving.register_keras_serializable(package="tf_vqvae")
class Decoder(_ConvNetwork):
    # Assembled from shared text, so set explicitly (a concatenation is
    # not a docstring).
    __doc__ = (
        """The VQ-VAE decoder: z_q -> x, mirroring `Encoder`.

    A 3x3 convolution to `num_hiddens`, the residual stack, then
    `num_downsamples` stride-2 4x4 transposed convolutions (ReLU between
    them); the last one outputs `output_channels`.

    Each transposed convolution (window 4, stride 2) mirrors one of the
    encoder's convolutions, so one code is upsampled to
    `2**num_downsamples` outputs (64 audio samples with 6). An output
    depends on `2 * num_residual_blocks + 4` or `+ 5` codes around it
    along each axis, depending on its position (the 3-wide convolution and
    each residual block widen it by one code on each side, the
    upsampling by one or two more): 8 or 9 codes, 512-576 samples (about
    35 ms at 16 kHz) for the paper's audio model with 2 residual blocks.

    With `num_speakers`, a speaker embedding is added to the activations of
    every layer but the output (after the 3-wide convolution, each residual
    block and each hidden upsampling): one learned vector per speaker and
    layer, WaveNet's global conditioning. The speaker ids are a second call
    argument.

    Args:
        output_channels: channels of the output (3 for RGB, or the number of
            distribution parameters per pixel or sample).
        num_speakers: `None` (default, unconditioned) or the number of
            speaker ids `[0, num_speakers)` to condition on."""
        + _NETWORK_ARGS
        + """

    Call arguments:
        inputs: `z_q`, `(batch, h, w, embedding_dim)` for `spatial_dims=2`.
        speaker: int speaker ids `(batch,)`, required with `num_speakers`
            and refused without (ids outside the table are the caller's to
            refuse: `VQVAE` checks them).

    Returns:
        `(batch, h * 2**num_downsamples, w * 2**num_downsamples,
        output_channels)`, unbounded (no output activation).

    Example:

    >>> decoder = Decoder(output_channels=3)
    >>> decoder(keras.ops.zeros((2, 8, 8, 64))).shape
    (2, 32, 32, 3)
    """
    )

    def __init__(
        self,
        output_channels: int,
        num_hiddens: int = 256,
        num_residual_blocks: int = 2,
        num_residual_hiddens: int = 256,
        num_downsamples: int = 2,
        spatial_dims: int = 2,
        num_speakers: int | None = None,
        **kwargs,
    ):
        check_int("output_channels", output_channels, 1)
        if num_speakers is not None:
            check_int("num_speakers", num_speakers, 1)
        super().__init__(
            num_hiddens,
            num_residual_blocks,
            num_residual_hiddens,
            num_downsamples,
            spatial_dims,
            **kwargs,
        )
        self.output_channels = output_channels
        conv = _CONV[spatial_dims]
        transpose = _CONV_TRANSPOSE[spatial_dims]
        self.upsamples = [
            transpose(
                output_channels if i == num_downsamples - 1 else num_hiddens,
                4,
                strides=2,
                padding="same",
                name=f"up{i}",
            )
            for i in range(num_downsamples)
        ]
        self.output_conv = (
            None
            if num_downsamples
            else conv(output_channels, 3, padding="same", name="output")
        )
        self.num_speakers = num_speakers
        # One table per conditioned layer: the 3-wide convolution, each
        # residual block, each hidden upsampling.
        conditioned = 1 + num_residual_blocks + max(num_downsamples - 1, 0)
        self.speaker_embeddings = (
            []
            if num_speakers is None
            else [
                keras.layers.Embedding(
                    num_speakers, num_hiddens, name=f"speaker{i}"
                )
                for i in range(conditioned)
            ]
        )

    def build(self, input_shape):
        _check_input_rank(self, input_shape)
        shape = tuple(input_shape)
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        self.residual_stack.build(shape)
        for layer in self.upsamples:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.output_conv is not None:
            self.output_conv.build(shape)
        for embedding in self.speaker_embeddings:
            embedding.build((input_shape[0],))

    def _speaker_biases(self, speaker) -> list:
        """Per conditioned layer, `(batch, 1, ..., 1, num_hiddens)`."""
        if self.num_speakers is None:
            if speaker is not None:
                raise ValueError(
                    f"`{self.name}` has no speaker embedding "
                    "(num_speakers=None); call it without `speaker`."
                )
            return [None] * (1 + self.num_residual_blocks + len(self.upsamples))
        if speaker is None:
            raise ValueError(
                f"`{self.name}` is conditioned on num_speakers="
                f"{self.num_speakers} speakers; pass `speaker` ids "
                "(batch,)."
            )
        ones = (1,) * self.spatial_dims
        return [
            keras.ops.reshape(
                embedding(speaker), (-1,) + ones + (self.num_hiddens,)
            )
            for embedding in self.speaker_embeddings
        ] + [None]

    def call(self, inputs, speaker=None):
        biases = self._speaker_biases(speaker)
        if _is_empty_batch(inputs):
            return _empty_output(self, inputs)
        x = self.conv(inputs)
        if biases[0] is not None:
            x = x + biases[0]
        blocks = self.num_residual_blocks
        x = self.residual_stack(
            x, biases=None if biases[0] is None else biases[1 : blocks + 1]
        )
        for i, layer in enumerate(self.upsamples):
            x = layer(x)
            if i < len(self.upsamples) - 1:
                bias = biases[blocks + 1 + i]
                x = keras.ops.relu(x if bias is None else x + bias)
        if self.output_conv is not None:
            x = self.output_conv(x)
        return x

    def compute_output_shape(self, input_shape):
        factor = 2**self.num_downsamples
        spatial = tuple(
            None if s is None else s * factor for s in input_shape[1:-1]
        )
        return (input_shape[0],) + spatial + (self.output_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            output_channels=self.output_channels,
            num_speakers=self.num_speakers,
        )
        return config
