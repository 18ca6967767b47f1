"""The VQ-VAE model: encoder, vector quantizer, decoder."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_vqvae import likelihoods, options, sampling, spectral
from tf_vqvae.arg_checks import check_bool, check_int, describe
from tf_vqvae.contracts import Quantizer
from tf_vqvae.networks import Decoder, Encoder
from tf_vqvae.precision import policy_scope
from tf_vqvae.quantizers import make_quantizer
from tf_vqvae.tensor_checks import (
    as_integer_tensor,
    as_tensor,
    assert_at_run_time,
    check_ids,
    check_range,
    check_unit_range,
    check_waveform_range,
)
from tf_vqvae.wavenet import WaveNetDecoder

# The names are `tf_vqvae.options.LIKELIHOODS` (a test keeps them equal).
# Decoder outputs per image channel for each reconstruction likelihood.
_LIKELIHOODS = {
    "mse": 1,
    "discretized_logistic": 2,
    "mu_law": likelihoods.MU_LAW_CLASSES,
    # 3 per mixture component (`likelihoods.num_logistic_params`).
    "mu_law_logistic": None,
}
# The likelihoods of each modality; the first is its default.
_MODALITY_LIKELIHOODS = {
    "image": ("mse", "discretized_logistic"),
    "audio": ("mu_law", "mu_law_logistic"),
}
DEFAULT_NUM_MIXTURES = 10
# The `"mu_law_logistic"` decoder's log scales start here (its output
# bias): components about e^-2 = 0.14 of the [0, 1] class grid (35 classes)
# wide. At 0 they cover the whole grid and put most of their mass in the two
# edge classes (about 7 nats per sample, worse than uniform), and a few
# hundred steps of Adam barely move a bias. Measured on speech (300 steps,
# lr 1e-3, companded encoder input, bits per sample on the test split for
# 0 / -2 / -3 / -4): 64x downsampling 7.6 / 6.4 / 7.3 / 7.6, 16x
# - / 6.3 / 6.4 / 5.8 (only -4 at 16x reached 3.9 dB SNR; single runs, so
# -2, best or close at both).
INITIAL_LOG_SCALE = -2.0

# `decoder_options` of `decoder="wavenet"`: `WaveNetDecoder` arguments
# (declared in `tf_vqvae.options.DECODER_KINDS`).
WAVENET_DECODER_OPTIONS = tuple(
    option.name for option in options.DECODER_KINDS["wavenet"].options
)


def _as_float(images) -> tf.Tensor:
    """float32 images: uint8 divided by 255, floats cast (not checked)."""
    images = as_tensor(images, "images")
    if images.dtype == tf.uint8:
        return tf.cast(images, "float32") / 255.0
    if not images.dtype.is_floating:
        raise TypeError(
            "Images must be uint8 in [0, 255] or floating point in [0, 1]. "
            f"Received: images.dtype={images.dtype.name}"
        )
    return tf.cast(images, "float32")


def _as_float_waveforms(waveforms) -> tf.Tensor:
    """float32 waveforms (floats cast, range not checked)."""
    waveforms = as_tensor(waveforms, "waveforms")
    if not waveforms.dtype.is_floating:
        raise TypeError(
            "Waveforms must be floating point in [-1, 1]. "
            f"Received: waveforms.dtype={waveforms.dtype.name}"
        )
    return tf.cast(waveforms, "float32")


def as_waveforms(waveforms) -> tf.Tensor:
    """float32 waveforms in [-1, 1], checked.

    Raises:
        TypeError: for waveforms that are not floating point.
        ValueError: for values outside [-1, 1] (in a graph,
            `InvalidArgumentError`).
    """
    return check_waveform_range(_as_float_waveforms(waveforms))


def to_unit_range(images) -> tf.Tensor:
    """Images as float32 in [0, 1]: uint8 is divided by 255, floats kept.

    Raises:
        TypeError: for images neither uint8 nor floating point.
        ValueError: for floating point values outside [0, 1] (in a graph,
            `InvalidArgumentError`), e.g. 8-bit values given as floats.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return _as_float(images)
    return check_unit_range(_as_float(images))


def _log_mel_options(hop: int) -> dict:
    """`LogMelFrames` arguments of `encoder_input="log_mel"`, all given (a
    saved model's features must not follow the layer's defaults): 25 ms
    windows and a 512-point DFT, both widened to cover a longer hop."""
    frame_length = max(400, hop)
    return dict(
        hop=hop,
        frame_length=frame_length,
        fft_length=max(512, 1 << (frame_length - 1).bit_length()),
        num_mel_bins=40,
        sample_rate=16_000,
        lower_edge_hertz=20.0,
        upper_edge_hertz=8000.0,
        log_offset=1e-6,
    )


def _either(names) -> str:
    return " or ".join(map(repr, names))


def _checked_decoder_options(
    decoder, decoder_options, modality, likelihood
) -> dict | None:
    """`decoder_options` checked against `decoder` (a copy, or `None`)."""
    if decoder not in options.DECODERS:
        raise ValueError(
            f"`decoder` must be {_either(options.DECODERS)}. "
            f"{describe('decoder', decoder)}"
        )
    if decoder == "parallel":
        if decoder_options:
            raise ValueError(
                "`decoder_options` are for decoder='wavenet'. "
                f"Received: decoder_options={decoder_options!r}"
            )
        return None
    if modality != "audio" or likelihood != "mu_law":
        raise ValueError(
            "decoder='wavenet' needs modality='audio' and "
            f"likelihood='mu_law'. Received: modality={modality!r}, "
            f"likelihood={likelihood!r}"
        )
    decoder_options = dict(decoder_options or {})
    unknown = sorted(set(decoder_options) - set(WAVENET_DECODER_OPTIONS))
    if unknown:
        raise ValueError(
            "`decoder_options` of decoder='wavenet' take "
            f"{', '.join(WAVENET_DECODER_OPTIONS)}. Received: {unknown}"
        )
    return decoder_options


def _json_options(quantizer_options: dict | None) -> dict | None:
    """The options as a config holds them (tuples as lists, as JSON)."""
    if quantizer_options is None:
        return None
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in quantizer_options.items()
    }


def _layer_config(layer: keras.layers.Layer) -> dict:
    """A quantizer layer's serialized config, without its build state (the
    model builds it with the encoder's output shape)."""
    config = keras.saving.serialize_keras_object(layer)
    config.pop("build_config", None)
    return config


def _per_example(seed) -> bool:
    """Whether `decode`'s `seed` holds one seed per example (rank 2)."""
    if seed is None or isinstance(seed, int):
        return False
    return tf.convert_to_tensor(seed).shape.rank == 2


def _on_device_of(losses: list, reference: tf.Tensor) -> list:
    """The `losses` placed on the same device as `reference`."""
    device = getattr(reference, "device", None)
    if not device:
        return losses
    return [loss for loss in losses if loss.device == device] or losses


@keras.saving.register_keras_serializable(package="tf_vqvae")
class VQVAE(keras.Model):
    """Vector-quantised variational autoencoder (van den Oord et al., 2017).

    `x -> Encoder -> z_e -> vector quantizer -> z_q -> Decoder -> x_hat`.
    Images are float in [0, 1] or uint8 in [0, 255] (converted); the encoder
    sees them shifted to [-0.5, 0.5] as in the paper, and reconstructions come
    back in [0, 1] (float32, not clipped). The loss is

        mean((x_hat - x)^2) + vq_loss                 (likelihood="mse")
        -mean(log p(x | z_q)) + vq_loss  (likelihood="discretized_logistic")
        -mean(log p(x | z_q)) + vq_loss  (likelihood="mu_law", audio)
        -mean(log p(x | z_q)) + vq_loss  (likelihood="mu_law_logistic")

    plus, for audio with `spectral_loss_weight` w, `w * L_stft(x, x_hat)`
    (`tf_vqvae.spectral.multi_resolution_stft_loss` of the decoded
    waveform `x_hat`, the expected value `model(x)` returns),

    where `vq_loss` is the quantizer's codebook and commitment loss (`"vq"`)
    or commitment loss only (`"ema"`, appendix A.1). All losses go through
    `add_loss`, so `compile(optimizer=...)` and `fit(images)` need no targets,
    and training under `tf.distribute.MirroredStrategy` matches one device.

    Audio (`modality="audio"`, `spatial_dims=1`): waveforms `(batch,
    samples, 1)`, float in [-1, 1] at 16 kHz, go into the encoder mu-law
    companded (`encoder_input="mu_law"`, the default), as they are
    (`"linear"`) or as log-mel frames, one per code (`"log_mel"`);
    `num_downsamples=6` is the paper's audio
    encoder (six window-4 stride-2 convolutions, 64 samples per code) with
    K=512.
    The decoder outputs a distribution over each sample's 8-bit mu-law
    value (`tf_vqvae.likelihoods`) and the reconstruction loss is its
    negative log-likelihood in nats per sample: `"mu_law"`, 256 logits per
    sample (a categorical; `model(x)` and `decode` return its expected
    value in the linear domain, `likelihoods.mu_law_mean`: smooth, slightly
    quieter than a sample; `likelihoods.mu_law_mode` of `decoder_outputs`
    gives the mode), or `"mu_law_logistic"`, a discretized logistic
    mixture of `num_mixtures` components over the 256 classes (PixelCNN++
    on the companded scale; `model(x)` and `decode` return the mixture's
    mean on the companded scale, expanded to the linear domain,
    `likelihoods.mu_law_logistic_mean`). With
    `num_speakers`, the decoder adds a learned speaker embedding to every
    layer (`Decoder`) and the inputs are dicts `{"audio": waveforms,
    "speaker": int ids (batch,)}`, the batches of
    `tf_vqvae.data.audio_pipeline`, so `fit(dataset)` needs no mapping; the
    codes do not depend on the speaker, so decoding them with another id
    converts the voice. A model without speakers takes such dicts too and
    ignores their `"speaker"`. With `decoder="wavenet"` the logits of
    sample t also see the samples before t (teacher forced in `call`,
    `decoder_outputs(codes, speaker, waveforms)`), so `model(x)` is each
    sample's expected value given the true past (a one-step prediction),
    while `decode(codes, speaker, seed=...)` generates a new waveform.

    Args:
        num_embeddings: K, codebook size (512 in the paper); of each level
            for `"rvq"`, a power of 2 for `"lfq"`, not used by `"fsq"`.
        embedding_dim: D, the encoder's output size (64 in the paper);
            `"fsq"` and `"lfq"` project it to their channels when it
            differs.
        num_hiddens: channels of the encoder/decoder (256 in the paper).
        num_residual_blocks: residual blocks in encoder and decoder (2).
        num_residual_hiddens: channels inside a residual block (256).
        num_downsamples: stride-2 convolutions; codes are
            `2**num_downsamples` times smaller than the input on each axis
            (with `encoder_input="log_mel"` the front end's hop instead:
            its encoder has none, the decoder has them all).
        commitment_cost: beta (0.25 in the paper).
        quantizer: the kind of quantizer, a key of
            `tf_vqvae.options.QUANTIZER_KINDS`: `"ema"`
            (`VectorQuantizerEMA`, default), `"vq"` (`VectorQuantizer`,
            codebook trained by gradients), `"rvq"`
            (`ResidualVectorQuantizer`), `"fsq"` (`FiniteScalarQuantizer`)
            or `"lfq"` (`LookupFreeQuantizer`). Each kind takes the
            arguments of this model its declaration names (e.g. `"fsq"`
            only `embedding_dim`: its K is the product of its `levels`;
            `"lfq"` takes `num_embeddings` as its `codebook_size`), so the
            model's `num_embeddings` is its quantizer's. Or a quantizer
            layer (a `tf_vqvae.contracts.Quantizer`), used as it is: the
            model's `num_embeddings` and `embedding_dim` are then the
            layer's, and the arguments the kinds take are not used.
        quantizer_options: the kind's own options by name, e.g.
            `{"num_quantizers": 8}` for `"rvq"` or `{"levels": (8, 5, 5,
            5)}` for `"fsq"` (`tf_vqvae.options.QUANTIZER_KINDS`: names,
            defaults, help; the `vqvae train` flags of the same names).
            Options not given take their defaults; all of them are saved in
            the config.
        decay: EMA decay gamma (`"ema"` and `"rvq"` only).
        epsilon: EMA Laplace smoothing (`"ema"` and `"rvq"` only).
        data_init: `"random"` (default), `"kmeans++"` or `None` (the
            paper): codebook initialisation from the first training batch's
            encoder outputs.
        dead_code_restart_steps: re-seed codes unused for this many training
            steps (default 100; `None`: never, the paper).
        spatial_dims: 1 (audio), 2 (images) or 3 (video).
        seed: seeds the codebook initialiser and the quantizer's random
            choices.
        check_finite: if `True`, non-finite input pixels raise
            `InvalidArgumentError` (off by default: it costs a pass over the
            input).
        likelihood: images: `"mse"` (default, the paper's training loss)
            or `"discretized_logistic"`: the decoder outputs a location and
            a log scale per channel and the reconstruction term is the
            negative log-likelihood of the 8-bit pixels in nats per
            subpixel (`tf_vqvae.likelihoods`; PixelCNN++). `model(x)` and
            `decode` then return the location clipped to [0, 1]. Needed for
            honest bits/dim (`tf_vqvae.bits_per_dim`). Audio: `"mu_law"`
            (default; 256-way categorical) or `"mu_law_logistic"`
            (discretized logistic mixture, `3 * num_mixtures` decoder
            outputs per sample).
        example_shape: `(*spatial, channels)` of one input example, e.g.
            `(32, 32, 3)`. Default `None`: recorded from the first batch the
            model is built or trained on. Saved in the config (and in
            `.keras` files), so an exported model knows its input size.
            `(samples, 1)` for audio.
        modality: `"image"` (default) or `"audio"` (needs
            `spatial_dims=1`), a key of `tf_vqvae.options.MODALITIES`.
        num_speakers: audio only: `None` (default) or the number of speaker
            ids `[0, num_speakers)` the decoder is conditioned on.
        decoder: `"parallel"` (default: `Decoder`, transposed
            convolutions, every sample at once) or, for audio with
            `likelihood="mu_law"`, `"wavenet"`: the paper's autoregressive
            `tf_vqvae.wavenet.WaveNetDecoder` p(x | z, speaker), trained
            teacher forced (same loss and metrics), whose `decode`
            generates one sample at a time (`tf_vqvae.options.DECODERS`).
        decoder_options: `decoder="wavenet"` only: `WaveNetDecoder`
            arguments by name (`WAVENET_DECODER_OPTIONS`: channels, layers,
            dilation cycle, kernel size); its upsampling is
            `num_downsamples` and its speakers `num_speakers`. Saved in
            the config.
        num_mixtures: components of the `"mu_law_logistic"` mixture
            (default 10, PixelCNN++'s); only for that likelihood.
        encoder_input: what an audio encoder sees: `"mu_law"` (default for
            audio) the waveform companded by `likelihoods.mu_law_compress`
            (not quantized: speech at about 0.1 rms reaches about 0.4 rms;
            on the linear waveform, small models' codebooks collapsed to one
            or two codes in some short runs on speech), `"linear"`
            the waveform as it is (models saved before this option), or
            `"log_mel"`: log-mel frames (`tf_vqvae.spectral.LogMelFrames`:
            25 ms windows, 40 bands), one centred on each code, read by an
            encoder without strided convolutions (its 3-wide convolution
            and residual stack at the code rate). Without the waveform's
            phase the codes keep more of the content and less of the
            waveform's fine detail (on the speech corpus after 1000 steps:
            phoneme discovery 5.4x the baseline against 3.2x from the
            waveform, with the same reconstruction loss). Images: always
            `"linear"` (their [-0.5, 0.5] shift).
        spectral_loss_weight: audio with the parallel decoder only: `None`
            (default, off) or a finite weight `w >= 0` of the multi-resolution
            STFT loss on the decoded waveform
            (`tf_vqvae.spectral.multi_resolution_stft_loss`: spectral
            convergence plus log-magnitude distance at FFT sizes 256, 512
            and 1024) added to the reconstruction loss. The per-sample
            likelihood alone lets a small decoder's expected waveform sit
            near silence (it learns the marginal); this term makes it match
            the spectrum, with the phase free. Reported as the
            `spectral_loss` metric (unweighted); `reconstruction_loss`
            includes its weighted term.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: images `(batch, height, width, channels)` (for
            `spatial_dims=2`); height and width divisible by
            `2**num_downsamples`. Audio: waveforms `(batch, samples, 1)`
            or `{"audio": waveforms, "speaker": ids}`.
        training: Python bool; the EMA codebook moves only when `True`.

    Returns:
        Reconstructions, float32 of the input's shape, in [0, 1] scale
        (audio: waveforms `(batch, samples, 1)` in [-1, 1]).

    Implements `tf_vqvae.contracts.CodeModel` (what export, evaluation and
    the TensorBoard callbacks use): `encode`, `latents`, `decode`,
    `decoder_outputs`, `code_shape`, `example_shape`, `downsampling_factor`,
    `num_embeddings`, `likelihood`, `modality`, `num_speakers` and
    `quantizer` (a
    `tf_vqvae.contracts.Quantizer`).

    Raises:
        ValueError: for float images outside [0, 1] (an
            `InvalidArgumentError` inside `fit` and other graphs): 8-bit
            images must come as uint8 or divided by 255. Likewise for
            waveforms outside [-1, 1] and speaker ids outside
            `[0, num_speakers)`.

    Metrics: `loss`, `reconstruction_loss`, `vq_loss` (all the quantizer's
    losses: codebook, commitment, entropy; 0 for `"fsq"`) and the
    quantizer's own metrics, e.g. `perplexity`, `codebook_usage`,
    `epoch_perplexity`, `epoch_codebook_usage`, `dead_codes` (see
    `CodebookUsage`; `"rvq"` reports them per level too).

    Example:

    >>> model = VQVAE(num_embeddings=512, embedding_dim=64)
    >>> model.compile(optimizer=keras.optimizers.Adam(2e-4))
    >>> model.fit(images, epochs=1)           # images in [0, 1]
    >>> codes = model.encode(images[:8])      # int32 (8, 8, 8) for 32x32
    >>> x_hat = model.decode(codes)           # float32 (8, 32, 32, 3)

    >>> speech = VQVAE(modality="audio", spatial_dims=1, num_downsamples=6,
    ...                num_speakers=8)
    >>> speech.compile(optimizer=keras.optimizers.Adam(2e-4))
    >>> speech.fit(tf_vqvae.data.audio_pipeline(utterances, 16384, 8, seed=0))
    >>> codes = speech.encode(waveforms)     # int32 (batch, samples / 64)
    >>> converted = speech.decode(codes, speaker=[3] * len(codes))
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        num_hiddens: int = 256,
        num_residual_blocks: int = 2,
        num_residual_hiddens: int = 256,
        num_downsamples: int = 2,
        commitment_cost: float = 0.25,
        quantizer: str | keras.layers.Layer = "ema",
        quantizer_options: dict | None = None,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        data_init: str | None = "random",
        dead_code_restart_steps: int | None = 100,
        spatial_dims: int = 2,
        seed: int = 0,
        check_finite: bool = False,
        likelihood: str | None = None,
        example_shape: tuple[int, ...] | None = None,
        modality: str = "image",
        num_speakers: int | None = None,
        decoder: str = "parallel",
        decoder_options: dict | None = None,
        num_mixtures: int | None = None,
        encoder_input: str | None = None,
        spectral_loss_weight: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if modality not in options.MODALITIES:
            raise ValueError(
                f"`modality` must be {_either(options.MODALITIES)}. "
                f"{describe('modality', modality)}"
            )
        if modality == "audio" and spatial_dims != 1:
            raise ValueError(
                "`modality='audio'` needs spatial_dims=1 (waveforms "
                f"(batch, samples, 1)). Received: spatial_dims={spatial_dims}"
            )
        if likelihood is None:
            likelihood = _MODALITY_LIKELIHOODS[modality][0]
        choices = _MODALITY_LIKELIHOODS[modality]
        if likelihood not in choices:
            if likelihood in options.LIKELIHOODS:
                raise ValueError(
                    f"`likelihood` of modality={modality!r} models must be "
                    f"{_either(choices)}. Received: likelihood="
                    f"{likelihood!r}, which is for the other modality."
                )
            raise ValueError(
                f"`likelihood` must be {_either(choices)}. "
                f"{describe('likelihood', likelihood)}"
            )
        if num_speakers is not None:
            if modality != "audio":
                raise ValueError(
                    "`num_speakers` conditions audio models "
                    "(modality='audio'). Received: "
                    f"num_speakers={num_speakers!r} with modality={modality!r}"
                )
            check_int("num_speakers", num_speakers, 1)
        decoder_options = _checked_decoder_options(
            decoder, decoder_options, modality, likelihood
        )
        if likelihood == "mu_law_logistic":
            if num_mixtures is None:
                num_mixtures = DEFAULT_NUM_MIXTURES
            check_int("num_mixtures", num_mixtures, 1)
        elif num_mixtures is not None:
            raise ValueError(
                "`num_mixtures` is for likelihood='mu_law_logistic'. "
                f"Received: num_mixtures={num_mixtures!r} with "
                f"likelihood={likelihood!r}"
            )
        if encoder_input is None:
            encoder_input = "mu_law" if modality == "audio" else "linear"
        if encoder_input not in options.ENCODER_INPUTS or (
            modality == "image" and encoder_input != "linear"
        ):
            audio_only = [c for c in options.ENCODER_INPUTS if c != "linear"]
            raise ValueError(
                "`encoder_input` must be 'linear' or (audio only) "
                f"{_either(audio_only)}. "
                f"Received: encoder_input={encoder_input!r} with "
                f"modality={modality!r}"
            )
        if spectral_loss_weight is not None:
            if (
                isinstance(spectral_loss_weight, bool)
                or not isinstance(spectral_loss_weight, (int, float))
                or not 0 <= spectral_loss_weight < float("inf")
                or modality != "audio"
                or decoder != "parallel"
            ):
                raise ValueError(
                    "`spectral_loss_weight` must be None or a finite number "
                    ">= 0, "
                    "for modality='audio' with decoder='parallel'. "
                    f"Received: spectral_loss_weight={spectral_loss_weight!r}"
                    f" with modality={modality!r}, decoder={decoder!r}"
                )
            spectral_loss_weight = float(spectral_loss_weight)
        if isinstance(quantizer, dict):
            # A quantizer layer, as `get_config` writes it.
            quantizer = keras.saving.deserialize_keras_object(quantizer)
        is_layer = isinstance(quantizer, keras.layers.Layer)
        if is_layer and not isinstance(quantizer, Quantizer):
            raise TypeError(
                "`quantizer` must be a kind name or a layer meeting "
                "tf_vqvae.contracts.Quantizer (num_embeddings, "
                "embedding_dim, num_levels, encode, lookup, codebook). "
                f"Received: quantizer={quantizer!r} "
                f"(of type {type(quantizer).__name__})."
            )
        if not is_layer and quantizer not in options.QUANTIZERS:
            raise ValueError(
                "`quantizer` must be one of "
                f"{', '.join(map(repr, options.QUANTIZERS))} or a quantizer "
                "layer. "
                f"Received: quantizer={quantizer!r} "
                f"(of type {type(quantizer).__name__})."
            )
        if is_layer and quantizer_options:
            raise ValueError(
                "`quantizer_options` go with a kind name; a quantizer layer "
                "takes its options itself. "
                f"Received: quantizer_options={quantizer_options!r}"
            )
        if not is_layer:
            quantizer_options = options.resolve_quantizer_options(
                quantizer, quantizer_options
            )
        self.quantizer_options = None if is_layer else quantizer_options
        self.num_hiddens = num_hiddens
        self.num_residual_blocks = num_residual_blocks
        self.num_residual_hiddens = num_residual_hiddens
        self.num_downsamples = num_downsamples
        self.commitment_cost = commitment_cost
        self.quantizer_type = None if is_layer else quantizer
        self.decay = decay
        self.epsilon = epsilon
        self.data_init = data_init
        self.dead_code_restart_steps = dead_code_restart_steps
        self.spatial_dims = spatial_dims
        self.seed = seed
        check_bool("check_finite", check_finite)
        self.check_finite = bool(check_finite)
        self.likelihood = likelihood
        self.modality = modality
        self.num_speakers = num_speakers
        self.decoder_type = decoder
        self.decoder_options = decoder_options
        self.num_mixtures = num_mixtures
        self.encoder_input = encoder_input
        self.spectral_loss_weight = spectral_loss_weight
        self.example_shape = self._checked_example_shape(example_shape)

        if is_layer:
            self.quantizer = quantizer
        else:
            self.quantizer = make_quantizer(
                quantizer,
                dict(
                    num_embeddings=num_embeddings,
                    embedding_dim=embedding_dim,
                    commitment_cost=commitment_cost,
                    decay=decay,
                    epsilon=epsilon,
                    data_init=data_init,
                    dead_code_restart_steps=dead_code_restart_steps,
                    seed=seed,
                ),
                quantizer_options,
                dtype=self.dtype_policy,
            )
        # The quantizer's: `"fsq"` has K = prod(levels), a layer its own.
        self.num_embeddings = int(self.quantizer.num_embeddings)
        self.embedding_dim = (
            int(self.quantizer.embedding_dim) if is_layer else embedding_dim
        )
        network = dict(
            num_hiddens=num_hiddens,
            num_residual_blocks=num_residual_blocks,
            num_residual_hiddens=num_residual_hiddens,
            num_downsamples=num_downsamples,
            spatial_dims=spatial_dims,
        )
        # The log-mel front end already gives one frame per code, so that
        # encoder has no strided convolutions.
        self.front_end = None
        encoder_network = network
        if encoder_input == "log_mel":
            self.front_end = spectral.LogMelFrames(
                name="log_mel_frames", **_log_mel_options(2**num_downsamples)
            )
            encoder_network = {**network, "num_downsamples": 0}
        # The layers take the model's dtype policy (`VQVAE(dtype=...)`, by
        # default the global one): Keras does not pass it down.
        with policy_scope(self.dtype_policy):
            self.encoder = Encoder(
                self.embedding_dim, name="encoder", **encoder_network
            )
        self._network_kwargs = network
        self.decoder = None
        self.image_channels = None
        self.reconstruction_loss_tracker = keras.metrics.Mean(
            name="reconstruction_loss"
        )
        self.vq_loss_tracker = keras.metrics.Mean(name="vq_loss")
        if spectral_loss_weight:
            # Only then: other models' metrics stay as they were.
            self.spectral_loss_tracker = keras.metrics.Mean(
                name="spectral_loss"
            )

    def _checked_example_shape(self, example_shape) -> tuple | None:
        if example_shape is None:
            return None
        rank = self.spatial_dims + 1
        if (
            not isinstance(example_shape, (tuple, list))
            or len(example_shape) != rank
            or not all(
                (s is None and axis < rank - 1)
                or (isinstance(s, int) and not isinstance(s, bool) and s > 0)
                for axis, s in enumerate(example_shape)
            )
        ):
            raise ValueError(
                f"`example_shape` must be None or {rank} positive integers "
                "(*spatial, channels), e.g. "
                f"{self._example_input()[1:]} (a spatial size may be "
                f"None). {describe('example_shape', example_shape)}"
            )
        return tuple(example_shape)

    def _record_example_shape(self, input_shape) -> None:
        # The first shape seen; a later one only fills in unknown sizes
        # (a model built on `(None, None, None, 3)`, then trained).
        shape = tuple(None if s is None else int(s) for s in input_shape[1:])
        recorded = self.example_shape
        if recorded is None or (None in recorded and None not in shape):
            self.example_shape = shape

    def _example_input(self) -> tuple:
        if self.modality == "audio":
            return (None, 16384, 1)
        # Before `build` (e.g. checking `example_shape`): RGB.
        channels = getattr(self, "image_channels", None) or 3
        return (None,) + (32,) * self.spatial_dims + (channels,)

    def _split_inputs(self, inputs):
        """`(waveforms or images, speaker ids or None)` of call inputs."""
        if not isinstance(inputs, dict):
            if self.num_speakers is not None:
                raise ValueError(
                    f"`{self.name}` is conditioned on num_speakers="
                    f"{self.num_speakers} speakers: inputs must be a dict "
                    '{"audio": waveforms, "speaker": ids}. Received: '
                    f"inputs.shape={tuple(getattr(inputs, 'shape', ()))}"
                )
            return inputs, None
        keys = sorted(inputs)
        expected = ["audio", "speaker"]
        if self.modality != "audio" or not (
            keys == expected
            or (keys == ["audio"] and self.num_speakers is None)
        ):
            wanted = (
                "images, not a dict"
                if self.modality != "audio"
                else '{"audio": waveforms, "speaker": ids}'
                if self.num_speakers is not None
                else 'waveforms or {"audio": waveforms[, "speaker": ids]}'
            )
            raise ValueError(
                f"`{self.name}` takes {wanted}. "
                f"Received: a dict with keys {keys}."
            )
        speaker = inputs.get("speaker") if self.num_speakers else None
        return inputs["audio"], speaker

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            # `{"audio": ..., "speaker": ...}`: the waveforms' shape.
            input_shape = input_shape.get("audio", ())
        input_shape = tuple(input_shape)
        expected_rank = self.spatial_dims + 2
        if len(input_shape) != expected_rank or input_shape[-1] is None:
            raise ValueError(
                f"VQVAE(spatial_dims={self.spatial_dims}) expects inputs of "
                f"rank {expected_rank} with a known channel axis, e.g. "
                f"{self._example_input()}. "
                f"Received: inputs.shape={input_shape}"
            )
        if self.modality == "audio" and input_shape[-1] != 1:
            raise ValueError(
                "Audio models take mono waveforms (batch, samples, 1). "
                f"Received: inputs.shape={input_shape}"
            )
        if (
            self.example_shape is not None
            and self.example_shape[-1] != input_shape[-1]
        ):
            raise ValueError(
                f"`{self.name}` has example_shape={self.example_shape}: "
                f"inputs must have {self.example_shape[-1]} channels. "
                f"Received: inputs.shape={input_shape}"
            )
        self._record_example_shape(input_shape)
        self.image_channels = int(input_shape[-1])
        with policy_scope(self.dtype_policy):
            if self.decoder_type == "wavenet":
                self.decoder = WaveNetDecoder(
                    self.num_downsamples,
                    num_speakers=self.num_speakers,
                    name="decoder",
                    **self.decoder_options,
                )
            else:
                self.decoder = Decoder(
                    self.image_channels * self._outputs_per_channel(),
                    name="decoder",
                    num_speakers=self.num_speakers,
                    **self._network_kwargs,
                )
        encoder_shape = input_shape
        if self.front_end is not None:
            self.front_end.build(input_shape)
            encoder_shape = self.front_end.compute_output_shape(input_shape)
        self.encoder.build(encoder_shape)
        latent_shape = self.encoder.compute_output_shape(encoder_shape)
        if not self.quantizer.built:
            # A quantizer layer passed in (or deserialized) may come built.
            self.quantizer.build(latent_shape)
        self.decoder.build(latent_shape)
        if self.likelihood == "mu_law_logistic":
            self._initialize_log_scales()

    def _initialize_log_scales(self) -> None:
        """Sets the output bias of the log scales (the last `num_mixtures`
        channels of the `split_logistic_params` layout) to
        `INITIAL_LOG_SCALE`; a loaded model's weights replace it."""
        output = (
            self.decoder.upsamples[-1]
            if self.decoder.upsamples
            else self.decoder.output_conv
        )
        bias = output.bias
        num_scales = self.num_mixtures
        values = tf.concat(
            [
                tf.convert_to_tensor(bias)[:-num_scales],
                tf.fill(
                    [num_scales], tf.constant(INITIAL_LOG_SCALE, bias.dtype)
                ),
            ],
            axis=0,
        )
        bias.assign(values)

    def _outputs_per_channel(self) -> int:
        if self.likelihood == "mu_law_logistic":
            return likelihoods.num_logistic_params(self.num_mixtures)
        return _LIKELIHOODS[self.likelihood]

    def _check_images(self, images: tf.Tensor) -> tf.Tensor:
        """`images` after checking their rank, channels and sizes (multiples
        of `downsampling_factor`, which the decoder gives back): statically
        where the shape is known, else at run time (Keras retraces `fit` on
        a new input shape with `None` sizes, or an unknown rank)."""
        rank = self.spatial_dims + 2
        channels = self.image_channels
        factor = self.downsampling_factor
        built_for = (
            f"`{self.name}` was built for inputs of rank {rank} with "
            f"{channels} channels, e.g. {self._example_input()}."
        )
        sizes = "sample counts" if self.modality == "audio" else "spatial sizes"
        multiples = (
            f"`{self.name}` needs {sizes} that are multiples of "
            f"downsampling_factor={factor} (2**num_downsamples), e.g. "
            f"{self._example_input()}."
        )
        shape = images.shape
        if shape.rank is not None:
            dims = tuple(shape)
            if len(dims) != rank or dims[-1] not in (None, channels):
                raise ValueError(f"{built_for} Received: inputs.shape={dims}")
            if any(s is not None and s % factor for s in dims[1:-1]):
                raise ValueError(f"{multiples} Received: inputs.shape={dims}")
            if None not in dims[1:]:
                return images
        actual = tf.shape(images)
        # Padded so that a wrong rank still slices (and fails the check).
        padded = tf.concat([actual, tf.ones([rank], tf.int32)], 0)[:rank]
        right_rank = tf.logical_and(
            tf.equal(tf.size(actual), rank), tf.equal(padded[-1], channels)
        )
        images = assert_at_run_time(
            images,
            right_rank,
            [f"{built_for} Received: inputs.shape=", actual],
            "check_inputs_rank",
        )
        images = assert_at_run_time(
            images,
            tf.logical_or(
                tf.logical_not(right_rank),
                tf.reduce_all(tf.equal(padded[1:-1] % factor, 0)),
            ),
            [f"{multiples} Received: inputs.shape=", actual],
            "check_inputs_sizes",
        )
        # Static only: a runtime `ensure_shape` could fail before the checks.
        images.set_shape([None] * (rank - 1) + [channels])
        return images

    def _as_inputs(self, inputs) -> tuple[tf.Tensor, bool]:
        """float32 inputs, and whether their range is still to check."""
        if self.modality == "audio":
            return _as_float_waveforms(inputs), True
        images = as_tensor(inputs, "images")
        return _as_float(images), images.dtype != tf.uint8

    def _encode_vectors(self, images, training=None) -> tf.Tensor:
        images, unchecked = self._as_inputs(images)
        if not self.built:
            shape = images.shape
            if self.num_speakers is not None:
                # Built from `encode`: recorded as the call's dict, which
                # Keras' default export signature calls the model with.
                shape = {"audio": shape, "speaker": shape[:1]}
            self.build(shape)
        images = self._check_images(images)
        self._record_example_shape(images.shape)
        if self.check_finite:
            images = tf.debugging.assert_all_finite(
                images, f"`{self.name}` received non-finite pixel values"
            )
        if self.modality == "audio":
            images = check_waveform_range(images)
            encoder_inputs = images
            if self.encoder_input == "mu_law":
                encoder_inputs = likelihoods.mu_law_compress(images)
            elif self.front_end is not None:
                encoder_inputs = self.front_end(images)
            return images, self.encoder(encoder_inputs, training=training)
        if unchecked:
            images = check_unit_range(images)
        return images, self.encoder(images - 0.5, training=training)

    def _checked_speaker(self, speaker, batch_size) -> tf.Tensor | None:
        """int32 speaker ids `(batch,)` in `[0, num_speakers)`, checked."""
        if speaker is None:
            if self.num_speakers is None:
                return None
            raise ValueError(
                f"`{self.name}` is conditioned on num_speakers="
                f"{self.num_speakers} speakers; pass `speaker` ids (batch,)."
            )
        if self.num_speakers is None:
            raise ValueError(
                f"`{self.name}` has no speaker embedding (num_speakers="
                "None); decode without `speaker`."
            )
        speaker = as_integer_tensor(speaker, "speaker", "integer ids")
        if speaker.shape.rank != 1 or (
            speaker.shape[0] is not None
            and batch_size is not None
            and speaker.shape[0] != batch_size
        ):
            raise ValueError(
                f"`speaker` must have shape (batch,), one id per example "
                f"(batch={batch_size}). "
                f"Received: speaker.shape={tuple(speaker.shape)}"
            )
        speaker = tf.cast(speaker, "int32")
        return check_range(
            speaker,
            (0, self.num_speakers - 1),
            f"`speaker` ids must be in [0, num_speakers={self.num_speakers})."
            " Received: ids from",
            "",
            "check_speaker_range",
        )

    def _mean_image(self, outputs: tf.Tensor) -> tf.Tensor:
        if self.likelihood == "mse":
            return outputs + 0.5
        if self.likelihood == "mu_law":
            return likelihoods.mu_law_mean(outputs)[..., None]
        if self.likelihood == "mu_law_logistic":
            # Keeping the channel axis: squeezing and re-adding it is a
            # strided slice TFLite lacks.
            return likelihoods.mu_law_logistic_mean(
                outputs, self.num_mixtures, keepdims=True
            )
        logits, locs, _ = likelihoods.split_logistic_params(
            outputs, self.image_channels
        )
        return likelihoods.logistic_mixture_mean(logits, locs)

    def call(self, inputs, training=None):
        inputs, speaker = self._split_inputs(inputs)
        images, z_e = self._encode_vectors(inputs, training=training)
        speaker = self._checked_speaker(speaker, images.shape[0])
        z_q = self.quantizer(z_e, training=training)
        outputs = self._run_decoder(z_q, speaker, images)
        reconstructions = self._mean_image(outputs)
        if self.likelihood == "mse":
            loss = tf.reduce_mean(tf.square(reconstructions - images))
        elif self.likelihood == "mu_law":
            loss = -tf.reduce_mean(
                likelihoods.mu_law_log_prob(images[..., 0], outputs)
            )
        elif self.likelihood == "mu_law_logistic":
            loss = -tf.reduce_mean(
                likelihoods.mu_law_logistic_log_prob(
                    images[..., 0], outputs, self.num_mixtures
                )
            )
        else:
            loss = -tf.reduce_mean(
                likelihoods.logistic_pixel_log_prob(
                    images, outputs, self.image_channels
                )
            )
        samples = images.shape[1]
        if self.spectral_loss_weight and (samples is None or samples >= 4):
            # Resolutions longer than the waveforms are left out (a short
            # clip: its whole length).
            fft_lengths = tuple(
                n
                for n in spectral.DEFAULT_FFT_LENGTHS
                if samples is None or n <= samples
            ) or (samples,)
            spectral_loss = tf.reduce_mean(
                spectral.multi_resolution_stft_loss(
                    images, reconstructions, fft_lengths
                )
            )
            self.spectral_loss_tracker.update_state(spectral_loss)
            loss = loss + self.spectral_loss_weight * spectral_loss
        self.add_loss(loss)
        return reconstructions

    @property
    def generative_decoder(self) -> bool:
        """`True` for `decoder="wavenet"`: `decode` generates sample by
        sample (`tf_vqvae.contracts.CodeModel`)."""
        return self.decoder_type == "wavenet"

    @property
    def downsampling_factor(self) -> int:
        """Input size / code grid size on each spatial axis."""
        return 2**self.num_downsamples

    def code_shape(self, input_shape) -> tuple[int, ...]:
        """The code grid `(*code_grid)` of inputs `(*spatial, channels)`.

        E.g. `(8, 8)` for `(32, 32, 3)` with `num_downsamples=2`.

        Raises:
            ValueError: unless `input_shape` has `spatial_dims + 1` entries
                whose spatial sizes are positive multiples of
                `downsampling_factor`.
        """
        factor = self.downsampling_factor
        shape = input_shape
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != self.spatial_dims + 1
            or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 1
                for s in shape
            )
            or any(s % factor for s in shape[:-1])
        ):
            raise ValueError(
                "`input_shape` must be (*spatial, channels) with "
                f"{self.spatial_dims} spatial sizes that are positive "
                f"multiples of downsampling_factor={factor}. "
                f"{describe('input_shape', input_shape)}"
            )
        return tuple(s // factor for s in shape[:-1])

    def encode(self, images) -> tf.Tensor:
        """Integer codes for `images`: int32 `(batch, h', w')`, with a
        trailing level axis `(batch, h', w', num_levels)` when the quantizer
        has levels (`quantizer.num_levels > 1`, `"rvq"`). Audio: int32
        `(batch, samples / 2**num_downsamples)` for waveforms `(batch,
        samples, 1)` (or the call's dict; the codes do not depend on the
        speaker).

        The quantizer's own `encode` on the encoder's outputs: graph ops
        that TFLite converts to builtins, with the quantizer's memory bound.
        """
        if isinstance(images, dict):
            images, _ = self._split_inputs(images)
        _, z_e = self._encode_vectors(images, training=False)
        return self.quantizer.encode(z_e)

    def latents(self, images) -> tf.Tensor:
        """The encoder's outputs `z_e` for `images`: float32 `(batch, h',
        w', embedding_dim)`, what the quantizer receives.

        The space `quantizer.lookup` returns code vectors in:
        `encode(images)` is `quantizer.encode(latents(images))`, and for a
        codebook quantizer (`"vq"`, `"ema"`) `quantizer.lookup(encode(x))`
        is the code vector nearest to `latents(x)` by its `distance`.
        """
        _, z_e = self._encode_vectors(images, training=False)
        return tf.cast(z_e, "float32")

    def decode(
        self,
        codes,
        speaker=None,
        *,
        seed=None,
        temperature: float = 1.0,
        method: str = "cached",
    ) -> tf.Tensor:
        """Images in [0, 1] scale for int `codes` `(batch, h', w')` (or
        `(batch, h', w', n)` for the first `n` levels of an `"rvq"`
        model). Audio: waveforms `(batch, samples, 1)` in [-1, 1], decoded
        as `speaker` (int ids `(batch,)`, required when `num_speakers` is
        set): the mean of each sample's distribution for the parallel
        decoder (see the class docstring); for `decoder="wavenet"` a
        waveform generated sample by sample (`WaveNetDecoder.generate`:
        one step per sample, about `samples / speed` seconds, see the
        README's audio costs),
        a function of `seed` (as in `tf_vqvae.sampling.uniform_noise`:
        one seed for the batch's noise; `None` draws one; or int `(batch,
        2)`, a stateless seed per example, `sampling.example_noise`, so
        an example's waveform does not depend on the batch it is in:
        `sampling.decode_seed`), with the logits divided by `temperature`
        and the `"cached"` (default) or `"naive"` sampler. `seed`,
        `temperature` and `method` are refused by the other decoders."""
        if self.decoder_type != "wavenet":
            if seed is not None or temperature != 1.0 or method != "cached":
                raise ValueError(
                    "`seed`, `temperature` and `method` are for "
                    "decoder='wavenet' (generation). Received: "
                    f"seed={seed!r}, temperature={temperature!r}, "
                    f"method={method!r} with decoder={self.decoder_type!r}"
                )
            return self._mean_image(self.decoder_outputs(codes, speaker))
        codes = self._checked_codes(codes)
        speaker = self._checked_speaker(speaker, codes.shape[0])
        z_q = self.quantizer.lookup(codes)
        num = (
            codes.shape[0] if codes.shape[0] is not None else tf.shape(codes)[0]
        )
        shape = [
            codes.shape[1] * self.downsampling_factor,
            likelihoods.MU_LAW_CLASSES,
        ]
        if _per_example(seed):
            seed = tf.convert_to_tensor(seed)
            if seed.shape[0] is not None and seed.shape[0] != codes.shape[0]:
                raise ValueError(
                    "`seed` of shape (batch, 2) must have one seed per "
                    f"example (batch={codes.shape[0]}). "
                    f"Received: seed.shape={tuple(seed.shape)}"
                )
            noise = sampling.example_noise(seed, shape)
        else:
            noise = sampling.uniform_noise([num, *shape], seed)
        samples = self.decoder.generate(
            z_q, noise, speaker, temperature=temperature, method=method
        )
        return likelihoods.mu_law_decode(samples)[..., None]

    def convert_voice(self, waveforms, speaker, **decode_kwargs) -> tf.Tensor:
        """Speech of any length said again in the voice of `speaker`.

        `decode(encode(x), speaker)` (section 4.3 of the paper: the codes
        keep the content, the decoder's speaker embedding sets the voice),
        with the waveforms zero-padded at the end to a multiple of
        `downsampling_factor` (64 samples per code for the paper's encoder)
        and the output cropped back to the input's length. Decoding with the
        utterance's own speaker is its reconstruction. Graph-safe (the
        SavedModel `convert` signature traces it with a dynamic length).

        Args:
            waveforms: float in [-1, 1] at 16 kHz: one waveform
                `(samples,)`, or a batch `(batch, samples)` or `(batch,
                samples, 1)` of equal lengths; any `samples >= 1`.
            speaker: the target speaker: an int id for the whole batch, or
                int ids `(batch,)`, in `[0, num_speakers)`.
            **decode_kwargs: `decode`'s `seed`, `temperature`, `method`
                (`decoder="wavenet"` only).

        Returns:
            float32 waveforms of the input's shape, each sample's expected
            value (the parallel decoder; see `decode`).

        Raises:
            ValueError: for an image model, a model without speakers
                (`num_speakers=None`), waveforms of another rank or outside
                [-1, 1], or speaker ids outside `[0, num_speakers)` or not
                one per waveform (in a graph: `InvalidArgumentError` for
                the value checks).
            TypeError: for waveforms that are not floating point or
                speaker ids that are not integers.
        """
        if self.modality != "audio":
            raise ValueError(
                f"`convert_voice` takes an audio model; `{self.name}` has "
                f"modality={self.modality!r}."
            )
        if self.num_speakers is None:
            raise ValueError(
                f"`convert_voice` needs a speaker-conditioned model, and "
                f"`{self.name}` has no speaker embedding (num_speakers=None; "
                "train with num_speakers / --speaker-conditioning)."
            )
        waveforms = _as_float_waveforms(waveforms)
        rank = waveforms.shape.rank
        if rank not in (1, 2, 3) or (rank == 3 and waveforms.shape[-1] != 1):
            raise ValueError(
                "`waveforms` must have shape (samples,), (batch, samples) or "
                f"(batch, samples, 1). Received: waveforms.shape="
                f"{tuple(waveforms.shape)}"
            )
        batch = waveforms if rank > 1 else waveforms[tf.newaxis]
        if rank < 3:
            batch = batch[..., tf.newaxis]
        speaker = tf.convert_to_tensor(speaker)
        if speaker.shape.rank == 0:
            speaker = as_integer_tensor(speaker, "speaker", "integer ids")
            speaker = tf.fill(tf.shape(batch)[:1], tf.cast(speaker, "int32"))
        length = batch.shape[1]
        if length == 0:
            raise ValueError(
                "`waveforms` must have at least one sample. Received: "
                f"waveforms.shape={tuple(waveforms.shape)}"
            )
        if length is None:  # a graph with a dynamic length
            length = tf.shape(batch)[1]
        padding = -length % self.downsampling_factor
        padded = tf.pad(batch, [[0, 0], [0, padding], [0, 0]])
        codes = self.encode(padded)
        decoded = self.decode(codes, speaker=speaker, **decode_kwargs)
        decoded = decoded[:, :length]
        if rank < 3:
            decoded = decoded[..., 0]
        return decoded if rank > 1 else decoded[0]

    def decoder_outputs(self, codes, speaker=None, waveforms=None) -> tf.Tensor:
        """The decoder's raw float32 outputs for int `codes`.

        `(batch, height, width, channels * p)`: the parameters of the pixel
        likelihood named by `likelihood` on the [-0.5, 0.5] scale (`p = 1`:
        the mean for `"mse"`; `p = 2`: location and log scale for
        `"discretized_logistic"`, see `tf_vqvae.likelihoods`). Audio
        (`"mu_law"`): the logits `(batch, samples, 256)` of each sample's
        mu-law class; `"mu_law_logistic"`: `(batch, samples, 3 *
        num_mixtures)` (`(batch, samples, 2)` for one component), the
        mixture's logits, locations and log scales in the
        `likelihoods.split_logistic_params` layout. Decoded as `speaker`
        (as in `decode`).
        `decoder="wavenet"`: the logits of each sample given the codes and
        the previous samples of `waveforms` (`(batch, samples, 1)` in [-1,
        1], required; teacher forcing), so `likelihoods.mu_law_log_prob(
        waveforms[..., 0], logits)` is the exact `log p(x | z)`; the other
        decoders do not read `waveforms`.
        """
        codes = self._checked_codes(codes)
        speaker = self._checked_speaker(speaker, codes.shape[0])
        z_q = self.quantizer.lookup(codes)
        if self.decoder_type == "wavenet":
            if waveforms is None:
                raise ValueError(
                    "decoder='wavenet' computes the logits of each sample "
                    "from the previous ones: pass `waveforms` (batch, "
                    "samples, 1) (teacher forcing), or `decode` to generate."
                )
            waveforms = as_waveforms(waveforms)
        return self._run_decoder(z_q, speaker, waveforms)

    def _checked_codes(self, codes) -> tf.Tensor:
        """Integer `codes` of the model's rank in `[0, num_embeddings)`,
        checked (the model built): a codebook's gather fails on a bad code
        with TensorFlow's message on CPU and returns zeros on GPU, and FSQ's
        and LFQ's arithmetic decodes it to a wrong image silently."""
        codes = as_integer_tensor(codes, "codes", "an integer tensor")
        levels = self.quantizer.num_levels > 1
        rank = self.spatial_dims + 1 + levels
        if codes.shape.rank != rank:
            axes = ["..."] * self.spatial_dims + ["levels"] * levels
            raise ValueError(
                f"`codes` must have shape (batch, {', '.join(axes)}) (rank "
                f"{rank}). Received: codes.shape={tuple(codes.shape)}"
            )
        if not self.built:
            raise ValueError(
                "The model must be built (called on images once, or loaded) "
                "before `decode`."
            )
        return check_ids(codes, "codes", "num_embeddings", self.num_embeddings)

    def _run_decoder(self, z_q, speaker, waveforms) -> tf.Tensor:
        """float32 decoder outputs; the WaveNet decoder's are teacher forced
        on `waveforms` (float32 `(batch, samples, 1)`)."""
        if self.decoder_type == "wavenet":
            samples = likelihoods.mu_law_encode(waveforms[..., 0])
            return self.decoder(z_q, samples, speaker=speaker)
        return tf.cast(self.decoder(z_q, speaker=speaker), "float32")

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Configures training; the losses are the model's own.

        Args:
            optimizer: as `keras.Model.compile`.
            loss: must be `None`: the reconstruction and VQ losses are added
                by the model itself, and `fit` needs no targets.
            **kwargs: other `keras.Model.compile` arguments (`metrics`,
                `jit_compile`, `steps_per_execution`, ...).
        """
        if loss is not None:
            raise ValueError(
                "VQVAE adds its reconstruction and VQ losses itself; "
                "`compile` takes no `loss`. Received: loss="
                f"{loss!r} (of type {type(loss).__name__})."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips `compile` on load for models that override it.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        # Under MirroredStrategy the replicas trace `call` in turn on one
        # shared layer, and the quantizer's all-reduce lets a later replica
        # append its losses to lists an earlier one already filled. Keep the
        # losses computed on this replica's device (the gradients were
        # right either way; the reported metrics were not).
        # A quantizer may add no loss (`"fsq"`).
        vq_losses = _on_device_of(self.quantizer.losses, y_pred)
        vq_loss = tf.add_n(vq_losses) if vq_losses else tf.zeros(())
        total = tf.add_n(_on_device_of(self.losses, y_pred))
        self.vq_loss_tracker.update_state(vq_loss)
        self.reconstruction_loss_tracker.update_state(total - vq_loss)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Keras' scaling of `add_loss` terms: gradients are summed across
        # replicas, so each replica contributes 1/replicas of its mean.
        return total / replicas

    @property
    def input_dtype(self):
        # Float images stay float32 (they are the loss's targets); the
        # encoder casts them to its compute dtype.
        return "float32"

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            return tuple(input_shape["audio"])
        return tuple(input_shape)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if config.get("modality") == "audio":
            # Saved before `encoder_input` existed: they saw the waveform.
            config.setdefault("encoder_input", "linear")
        if config.get("quantizer") == "fsq":
            # Saved before FSQ's data init and saturation penalty existed.
            config["quantizer_options"] = {
                "fsq_data_init": False,
                "fsq_saturation_penalty": 0.0,
                **(config.get("quantizer_options") or {}),
            }
        return super().from_config(config, custom_objects=custom_objects)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            num_hiddens=self.num_hiddens,
            num_residual_blocks=self.num_residual_blocks,
            num_residual_hiddens=self.num_residual_hiddens,
            num_downsamples=self.num_downsamples,
            commitment_cost=self.commitment_cost,
            quantizer=(
                self.quantizer_type
                if self.quantizer_type is not None
                else _layer_config(self.quantizer)
            ),
            quantizer_options=_json_options(self.quantizer_options),
            decay=self.decay,
            epsilon=self.epsilon,
            data_init=self.data_init,
            dead_code_restart_steps=self.dead_code_restart_steps,
            spatial_dims=self.spatial_dims,
            seed=self.seed,
            check_finite=self.check_finite,
            likelihood=self.likelihood,
            example_shape=(
                None if self.example_shape is None else list(self.example_shape)
            ),
            modality=self.modality,
            num_speakers=self.num_speakers,
            decoder=self.decoder_type,
            decoder_options=self.decoder_options,
            num_mixtures=self.num_mixtures,
            encoder_input=self.encoder_input,
            spectral_loss_weight=self.spectral_loss_weight,
        )
        return config
