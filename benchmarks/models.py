"""The VQ-VAE of the paper written three ways, for the step and quality runs.

- `tf_vqvae`: `tf_vqvae.VQVAE`, trained by `model.fit`.
- `sonnet`: Sonnet 2 modules (`snt.Conv2D`, `snt.Conv2DTranspose`,
  `snt.nets.VectorQuantizer[EMA]`) with the layer layout of
  `tf_vqvae.Encoder`/`Decoder`, trained by a `tf.function` step and
  `snt.optimizers.Adam`, as Sonnet's VQ-VAE example does.
- `kerasio`: the keras-io VQ-VAE example's design: a functional Keras model
  with its quantizer layer (distance matmul, argmin, one-hot matmul lookup)
  and its `VQVAETrainer` custom `train_step`, trained by `fit`.

All three take images in [0, 1], shift them to [-0.5, 0.5], and minimise
`mean((x_hat - x)^2)` plus the quantizer's loss. Same layer shapes, so the
same FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """One VQ-VAE configuration (the paper's CIFAR-10 one by default)."""

    num_hiddens: int = 256
    num_residual_hiddens: int = 256
    num_residual_blocks: int = 2
    num_embeddings: int = 512
    embedding_dim: int = 64
    batch_size: int = 128
    learning_rate: float = 2e-4
    quantizer: str = "vq"  # "vq" (gradients) or "ema"
    image_size: int = 32


CONFIGS = {
    # van den Oord et al. 2017, CIFAR-10: 256 hidden units everywhere.
    "paper": Config(),
    # Sonnet's VQ-VAE example: smaller network, EMA codebook, batch 32.
    "sonnet": Config(
        num_hiddens=128,
        num_residual_hiddens=32,
        batch_size=32,
        learning_rate=3e-4,
        quantizer="ema",
    ),
}


def forward_flops_per_image(config: Config, channels: int = 3) -> float:
    """Multiply-adds x 2 of one forward pass, convolutions and distances."""
    h = config.num_hiddens
    r = config.num_residual_hiddens
    d = config.embedding_dim
    s = config.image_size
    half, quarter = (s // 2) ** 2, (s // 4) ** 2

    def conv(pixels_out, k, c_in, c_out):
        return 2.0 * pixels_out * k * k * c_in * c_out

    residual = config.num_residual_blocks * (
        conv(quarter, 3, h, r) + conv(quarter, 1, r, h)
    )
    encoder = (
        conv(half, 4, channels, h)
        + conv(quarter, 4, h, h)
        + conv(quarter, 3, h, h)
        + residual
        + conv(quarter, 1, h, d)
    )
    # A stride-2 transposed convolution does k*k*c_in*c_out multiply-adds
    # per input pixel.
    decoder = (
        conv(quarter, 3, d, h)
        + residual
        + conv(quarter, 4, h, h)
        + conv(half, 4, h, channels)
    )
    distances = 2.0 * quarter * config.num_embeddings * d
    return encoder + decoder + distances


def train_step_flops_per_image(config: Config) -> float:
    """Forward + backward: the usual 3x forward estimate."""
    return 3.0 * forward_flops_per_image(config)


# ---------------------------------------------------------------- tf_vqvae
def build_tf_vqvae(
    config: Config, seed: int = 0, precision: str = "float32", **options
):
    """`tf_vqvae.VQVAE` for `config` under `precision` (`float32`,
    `bfloat16`, `float16`, `auto`: `tf_vqvae.precision`); `options` are
    further VQVAE arguments."""
    import keras

    import tf_vqvae
    from tf_vqvae.precision import dtype_policy

    keras.utils.set_random_seed(seed)
    model = tf_vqvae.VQVAE(
        dtype=dtype_policy(precision),
        num_embeddings=config.num_embeddings,
        embedding_dim=config.embedding_dim,
        num_hiddens=config.num_hiddens,
        num_residual_blocks=config.num_residual_blocks,
        num_residual_hiddens=config.num_residual_hiddens,
        quantizer=config.quantizer,
        seed=seed,
        **options,
    )
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    return model


# ------------------------------------------------------------------ sonnet
class SonnetVQVAE:
    """Sonnet 2 modules in tf_vqvae's layout, with a compiled train step.

    `compute_dtype="bfloat16"`: Sonnet 2 has no mixed-precision policy, and
    its modules create their variables in the dtype of their first inputs;
    the encoder and decoder are fed bfloat16, so their weights and
    arithmetic are bfloat16 (no float32 master weights), while the
    quantizer and the loss stay float32. A speed reference only.
    """

    def __init__(
        self, config: Config, seed: int = 0, compute_dtype: str = "float32"
    ):
        import sonnet as snt
        import tensorflow as tf

        tf.random.set_seed(seed)
        self.tf = tf
        self.compute_dtype = compute_dtype
        h, r = config.num_hiddens, config.num_residual_hiddens

        def residual_stack(prefix):
            return [
                (
                    snt.Conv2D(r, 3, name=f"{prefix}_res{i}_3x3"),
                    snt.Conv2D(h, 1, name=f"{prefix}_res{i}_1x1"),
                )
                for i in range(config.num_residual_blocks)
            ]

        self.down = [
            snt.Conv2D(h, 4, stride=2, name="down0"),
            snt.Conv2D(h, 4, stride=2, name="down1"),
        ]
        self.enc_conv = snt.Conv2D(h, 3, name="enc_conv")
        self.enc_res = residual_stack("enc")
        self.projection = snt.Conv2D(config.embedding_dim, 1, name="proj")
        self.dec_conv = snt.Conv2D(h, 3, name="dec_conv")
        self.dec_res = residual_stack("dec")
        self.up = [
            snt.Conv2DTranspose(h, 4, stride=2, name="up0"),
            snt.Conv2DTranspose(3, 4, stride=2, name="up1"),
        ]
        if config.quantizer == "ema":
            self.vq = snt.nets.VectorQuantizerEMA(
                embedding_dim=config.embedding_dim,
                num_embeddings=config.num_embeddings,
                commitment_cost=0.25,
                decay=0.99,
            )
            snt.allow_empty_variables(self.vq)
        else:
            self.vq = snt.nets.VectorQuantizer(
                embedding_dim=config.embedding_dim,
                num_embeddings=config.num_embeddings,
                commitment_cost=0.25,
            )
        self.optimizer = snt.optimizers.Adam(config.learning_rate)
        self.step = tf.function(self._step)
        self.evaluate_batch = tf.function(self._evaluate_batch)

    def _residual(self, x, blocks):
        tf = self.tf
        for conv3, conv1 in blocks:
            x = x + conv1(tf.nn.relu(conv3(tf.nn.relu(x))))
        return tf.nn.relu(x)

    def encoder(self, images):
        tf = self.tf
        x = tf.cast(images - 0.5, self.compute_dtype)
        for conv in self.down:
            x = tf.nn.relu(conv(x))
        x = self._residual(self.enc_conv(x), self.enc_res)
        return tf.cast(self.projection(x), tf.float32)

    def decoder(self, z_q):
        tf = self.tf
        z_q = tf.cast(z_q, self.compute_dtype)
        x = self._residual(self.dec_conv(z_q), self.dec_res)
        x = tf.nn.relu(self.up[0](x))
        return tf.cast(self.up[1](x), tf.float32) + 0.5

    def _forward(self, images, is_training):
        tf = self.tf
        vq = self.vq(self.encoder(images), is_training=is_training)
        reconstructions = self.decoder(vq["quantize"])
        reconstruction = tf.reduce_mean(tf.square(reconstructions - images))
        return reconstruction, vq

    def _step(self, images):
        tf = self.tf
        with tf.GradientTape() as tape:
            reconstruction, vq = self._forward(images, True)
            loss = reconstruction + vq["loss"]
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, reconstruction, vq["perplexity"]

    def _evaluate_batch(self, images):
        reconstruction, vq = self._forward(images, False)
        return reconstruction, vq["encoding_indices"]

    @property
    def trainable_variables(self):
        modules = (
            self.down
            + [self.enc_conv, self.projection, self.dec_conv]
            + [m for pair in self.enc_res + self.dec_res for m in pair]
            + self.up
            + [self.vq]
        )
        return [v for m in modules for v in m.trainable_variables]

    def codebook(self):
        return self.tf.transpose(self.vq.embeddings)


# ----------------------------------------------------------------- kerasio
def build_kerasio(config: Config, seed: int = 0):
    """The keras-io example's design (its quantizer and custom train_step)."""
    import keras
    import tensorflow as tf
    from bench_vq_layer import keras_io_quantizer

    keras.utils.set_random_seed(seed)
    h, r = config.num_hiddens, config.num_residual_hiddens
    s = config.image_size
    layers = keras.layers

    def residual(x, prefix):
        for i in range(config.num_residual_blocks):
            y = layers.Conv2D(r, 3, padding="same", name=f"{prefix}{i}a")(
                layers.ReLU()(x)
            )
            y = layers.Conv2D(h, 1, name=f"{prefix}{i}b")(layers.ReLU()(y))
            x = layers.Add()([x, y])
        return layers.ReLU()(x)

    images = keras.Input((s, s, 3))
    x = layers.Rescaling(1.0, offset=-0.5)(images)
    x = layers.Conv2D(h, 4, 2, padding="same", activation="relu")(x)
    x = layers.Conv2D(h, 4, 2, padding="same", activation="relu")(x)
    x = residual(layers.Conv2D(h, 3, padding="same")(x), "enc")
    z_e = layers.Conv2D(config.embedding_dim, 1)(x)
    z_q = keras_io_quantizer(
        keras, tf, config.num_embeddings, config.embedding_dim
    )(z_e)
    x = residual(layers.Conv2D(h, 3, padding="same")(z_q), "dec")
    x = layers.Conv2DTranspose(h, 4, 2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(3, 4, 2, padding="same")(x)
    outputs = layers.Rescaling(1.0, offset=0.5)(x)
    vqvae = keras.Model(images, outputs, name="vq_vae")

    class VQVAETrainer(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.vqvae = vqvae
            self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
            self.reconstruction_loss_tracker = keras.metrics.Mean(
                name="reconstruction_loss"
            )
            self.vq_loss_tracker = keras.metrics.Mean(name="vq_loss")

        @property
        def metrics(self):
            return [
                self.total_loss_tracker,
                self.reconstruction_loss_tracker,
                self.vq_loss_tracker,
            ]

        def call(self, x):
            return self.vqvae(x)

        def train_step(self, x):
            with tf.GradientTape() as tape:
                reconstructions = self.vqvae(x)
                reconstruction_loss = tf.reduce_mean((x - reconstructions) ** 2)
                total_loss = reconstruction_loss + sum(self.vqvae.losses)
            grads = tape.gradient(total_loss, self.vqvae.trainable_variables)
            self.optimizer.apply_gradients(
                zip(grads, self.vqvae.trainable_variables)
            )
            self.total_loss_tracker.update_state(total_loss)
            self.reconstruction_loss_tracker.update_state(reconstruction_loss)
            self.vq_loss_tracker.update_state(sum(self.vqvae.losses))
            return {m.name: m.result() for m in self.metrics}

    trainer = VQVAETrainer()
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    return trainer
