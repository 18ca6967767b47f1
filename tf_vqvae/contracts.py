"""The contracts between the library and the code that uses its models.

Export (`tf_vqvae.export`), evaluation (`tf_vqvae.evaluation`), the
TensorBoard callbacks and the CLI call only what is listed here. A new
quantizer, autoencoder or prior that provides these members works with all of
them without a change there; anything else on a model (its encoder, its
codebook variable, its sampler internals) is private to the model.

Each contract is a `typing.Protocol`; `isinstance(obj, Contract)` checks only
that the members exist (the documentation says what they must do, and the
tests in `tests/test_contracts.py` check the library's classes against it).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import tensorflow as tf


@runtime_checkable
class Quantizer(Protocol):
    """A layer that maps latent vectors to integer codes and back.

    Shapes: `z` is `(batch, *grid, embedding_dim)` for any grid rank. A
    single-level quantizer (`num_levels == 1`) has int32 codes
    `(batch, *grid)` with values in `[0, num_embeddings)`; a multi-level one
    (e.g. residual VQ) has codes with a trailing level axis,
    `(batch, *grid, num_levels)`, each in `[0, num_embeddings)`.

    - `num_embeddings`: K, the number of distinct codes of one level (the
      codebook size of a level).
    - `embedding_dim`: D, the size of each latent vector.
    - `num_levels`: 1 for single-level quantizers, else the number of code
      levels per position (the size of the codes' trailing axis).
    - `call(z, training=None)`: `z_q`, the quantized `z` (same shape), with the
      quantizer's gradient rule (straight-through or its variant) and its
      losses added with `add_loss`.
    - `encode(z)`: the codes of `z`. Graph ops that TFLite converts to
      builtins only, and memory bounded independently of K (no `[N, K]`
      matrix for all N vectors at once).
    - `lookup(codes)`: the vectors `(batch, *grid, embedding_dim)` of codes;
      `lookup(encode(z))` is `call(z, training=False)` in the forward pass.
      A multi-level quantizer also accepts a prefix of the levels,
      `(batch, *grid, n)` with `1 <= n <= num_levels` (a lower bitrate),
      also with n unknown until run time (export's `decode` signature and
      TFLite decoder take any prefix; the caller checks n's range).
    - `codebook()`: the code vectors as the nearest-code search sees them,
      float32 `[rows, C]`, when the quantizer has an explicit codebook (for
      the TensorBoard projector), else `None`. `rows` is K, or
      `num_levels * K` for a multi-level quantizer with a codebook per level
      (row `l * K + k` is code k of level l); C is D, or the smaller size
      of factorised codes.
    """

    num_embeddings: int
    embedding_dim: int
    num_levels: int

    def encode(self, inputs: Any) -> tf.Tensor: ...

    def lookup(self, codes: Any) -> tf.Tensor: ...

    def codebook(self) -> tf.Tensor | None: ...


@runtime_checkable
class CodeModel(Protocol):
    """An autoencoder with a discrete bottleneck (e.g. `tf_vqvae.VQVAE`).

    Inputs are `(batch, *spatial, channels)`, uint8 in [0, 255] or float in
    [0, 1] for images; float waveforms `(batch, samples, 1)` in [-1, 1] for
    audio. Codes are int32 `(batch, *code_grid)`, with a trailing level
    axis `(batch, *code_grid, num_levels)` when `quantizer.num_levels > 1`
    (`decode` then also takes a prefix of the levels).

    - `modality`: `"image"` or `"audio"` (`tf_vqvae.options.MODALITIES`):
      what the inputs are and what `decode` returns.
    - `num_speakers`: the number of speaker ids `[0, num_speakers)` the
      decoder is conditioned on, or `None`. With speakers, `decode` and
      `decoder_outputs` need `speaker` (int ids `(batch,)`); the codes do
      not depend on it (`encode` takes waveforms alone), so decoding with
      another id converts the voice. Without, `speaker` must be `None`.
    - `generative_decoder`: `True` when `decode` draws a sample from an
      autoregressive decoder (a function of a seed, one step per output
      sample) instead of computing the decoder's mean in one pass; export
      supports only the one-pass decoders.
    - `num_embeddings`: K of its quantizer.
    - `example_shape`: the `(*spatial, channels)` shape of one input example
      the model was built or trained on (from the first batch it saw; saved
      in its config and in `.keras` files), `None` before it is built;
      `(samples, 1)` for audio. A
      spatial size is `None` while the model has only been built without
      sizes (e.g. `build((None, None, None, 3))`); the first batch with
      sizes fills them in.
    - `downsampling_factor`: each spatial size of the inputs is this many
      times the matching code grid size.
    - `code_shape(input_shape)`: the code grid `(*code_grid)` for inputs of
      shape `(*spatial, channels)`; raises `ValueError` if the sizes are not
      multiples of `downsampling_factor`.
    - `encode(inputs)`: the codes.
    - `latents(inputs)`: `z_e`, the float32 vectors `(batch, *code_grid,
      embedding_dim)` the quantizer turns into the codes:
      `encode(inputs)` is `quantizer.encode(latents(inputs))`, in the space
      `quantizer.lookup` returns code vectors in (what "the inputs nearest to
      a code" compares, e.g. `vqvae inspect`).
    - `decode(codes, speaker=None)`: the reconstruction's mean, float32
      `(batch, *spatial, channels)`: in [0, 1] scale for images, a
      waveform in [-1, 1] for audio (the expected value of each sample).
    - `decoder_outputs(codes, speaker=None, waveforms=None)`: the
      decoder's raw outputs, the parameters of the likelihood named by
      `likelihood` (for `"mu_law"`, the logits `(batch, samples, 256)`;
      for `"mu_law_logistic"`, `(batch, samples, 3 * num_mixtures)`, read
      by `tf_vqvae.likelihoods.audio_log_prob`). An autoregressive decoder
      (`VQVAE(decoder="wavenet")`) conditions the logits of each sample on
      the previous samples of `waveforms` (required there: teacher
      forcing); other decoders ignore them, so callers that score inputs
      pass them.
    - `likelihood`: the name of its reconstruction likelihood
      (`tf_vqvae.options.LIKELIHOODS`; `"mu_law"` or `"mu_law_logistic"`
      for audio).
    - `quantizer`: a `Quantizer`.

    `encode`, `decode` (of a one-pass decoder) and `decoder_outputs` must
    trace into a `tf.function` for inputs of any batch size (TF ops, checks
    as graph assertions when not executing eagerly):
    `tf_vqvae.evaluation` runs them as graphs, as export does.
    """

    num_embeddings: int
    example_shape: tuple | None
    downsampling_factor: int
    likelihood: str
    modality: str
    num_speakers: int | None
    generative_decoder: bool

    def code_shape(self, input_shape: Any) -> tuple: ...

    def encode(self, inputs: Any) -> tf.Tensor: ...

    def latents(self, inputs: Any) -> tf.Tensor: ...

    def decode(self, codes: Any, speaker: Any = None) -> tf.Tensor: ...

    def decoder_outputs(
        self, codes: Any, speaker: Any = None, waveforms: Any = None
    ) -> tf.Tensor: ...


@runtime_checkable
class CodePrior(Protocol):
    """An autoregressive distribution over code grids (e.g. `PixelCNNPrior`).

    - `num_embeddings`: K, the number of code values.
    - `grid_shape`: the code grid `(*code_grid)` it models.
    - `num_levels` (optional, default 1): codes per grid position (a prior
      over the levels of residual VQ codes); more than one adds a trailing
      level axis to every code array below (`prior_event_shape`).
    - `num_classes`: the number of class labels it is conditioned on, or
      `None` for an unconditional prior.
    - `distribution(labels=None, temperature=1.0, top_k=None)`: a
      `tfp.distributions.Distribution` over int32 grids with `log_prob`
      (nats per grid) and `sample(n, seed=...)`.
    - `sample_codes(noise, labels=None, temperature=1.0, top_k=None)`: int32
      codes `(n, *event_shape)` drawn by Gumbel-max from uniform `noise`
      `(n, *event_shape, num_embeddings)`; the same noise gives the same
      codes.
      Built from graph ops that TFLite converts to builtins (a static batch
      size), so export traces it as it is.

    `tf_vqvae.sampling` maps a seed to that noise, so a seed gives the same
    codes in Python, in a SavedModel and in a TFLite app.
    """

    num_embeddings: int
    grid_shape: tuple
    num_classes: int | None

    def distribution(self, labels: Any = None, **kwargs: Any) -> Any: ...

    def sample_codes(
        self, noise: Any, labels: Any = None, **kwargs: Any
    ) -> tf.Tensor: ...


def prior_event_shape(prior: CodePrior) -> tuple[int, ...]:
    """The shape of one draw of `prior`: its `grid_shape`, then its
    `num_levels` when there is more than one level."""
    levels = int(getattr(prior, "num_levels", 1))
    return tuple(prior.grid_shape) + ((levels,) if levels > 1 else ())
