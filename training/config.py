"""The training configurations: frozen dataclasses, saved with the model.

Every field carries its documentation in `metadata["help"]` (and, for a
field with a fixed set of values, `metadata["choices"]`, from
`tf_vqvae.options`), which is also the `--help` text and the choices of the
matching `vqvae train` / `vqvae train-prior` flag, so defaults and docs live
in one place. `model_dir/config.json` holds the config a run used;
`vqvae train --config model_dir/config.json --model-dir NEW` repeats it.
Named presets (`PRESETS`, e.g. `vqvae train --preset demo`) are configs of
the same types.

This module imports no TensorFlow: `vqvae --help` reads it.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tf_vqvae import atomic
from tf_vqvae.options import (
    DATA_INITS,
    DECODERS,
    DEFAULT_AUDIO_DATASET,
    DEFAULT_DATASET,
    ENCODER_INPUTS,
    LIKELIHOODS,
    OFF,
    ON_COLLAPSE,
    PRECISIONS,
    PRIOR_KINDS,
    QUANTIZERS,
    STRATEGIES,
    describe_choices,
    resolve_decoder_options,
    resolve_quantizer_options,
)
from tf_vqvae.training.layout import CONFIG_FILE, PRIOR_DIR

# `vqvae sample`: samples drawn, decoded and written per PNG grid, and at
# most in all (1024 grids).
SAMPLES_PER_GRID = 64
MAX_SAMPLES = 65_536


class ConfigError(ValueError):
    """A configuration that cannot be used, with what to do instead."""


def _field(default, help: str, **metadata):
    if isinstance(default, dict):
        # Not hashed: a dict is not hashable (the config still compares).
        return dataclasses.field(
            default_factory=lambda: dict(default),
            hash=False,
            metadata={"help": help, **metadata},
        )
    return dataclasses.field(
        default=default, metadata={"help": help, **metadata}
    )


def _arg(default, help: str, **metadata):
    """A field that is also a constructor argument of the model trained
    (`TrainConfig.model_kwargs`, `PriorConfig.prior_kwargs`)."""
    return _field(default, help, argument=True, **metadata)


# Fields both configs share, with the same default and meaning.
def _epochs_field():
    return _field(
        10,
        "Epochs to train in total (raise it to train a run longer).",
        resumable=True,
    )


def _checkpoint_steps_field():
    return _field(
        100,
        "Write a checkpoint every this many steps (and after each epoch).",
        resumable=True,
    )


def _strategy_field():
    return _field(
        "default",
        f"{describe_choices(STRATEGIES)}.",
        resumable=True,
        choices=tuple(STRATEGIES),
    )


def _devices_field():
    return _field(
        None,
        "Devices for --strategy mirrored, e.g. /gpu:0 /gpu:1.",
        resumable=True,
    )


def _precision_field():
    # Not resumable: a float16 run's checkpoints hold the loss scale, and a
    # run keeps its arithmetic. `auto` is resolved before it is saved.
    return _field(
        "float32",
        f"{describe_choices(PRECISIONS)}.",
        choices=tuple(PRECISIONS),
    )


def _skip_bad_files_field(which: str):
    return _field(
        False,
        f"Leave out {which} files of a 'folder:' dataset that are not "
        "usable images (empty, not an image, truncated, too large) and "
        "print how many, instead of stopping at the first.",
        resumable=True,
    )


# `vqvae train` on an audio dataset starts from these instead of the image
# defaults (`audio_train_config`): the paper's audio encoder (six stride-2
# convolutions, 64 samples per code, K=512) at a size that trains on 2 CPU
# cores, and the paper's 256-way mu-law categorical decoder.
AUDIO_DEFAULTS = {
    "dataset": DEFAULT_AUDIO_DATASET,
    "likelihood": "mu_law",
    "num_downsamples": 6,
    "num_embeddings": 512,
    "embedding_dim": 64,
    "num_hiddens": 64,
    "num_residual_hiddens": 32,
    "num_residual_blocks": 2,
    "segment_length": 8192,
    "global_batch_size": 8,
    "learning_rate": 4e-4,
}

# The `likelihood` choices of audio models (`VQVAE(modality="audio")`).
AUDIO_LIKELIHOODS = ("mu_law", "mu_law_logistic")

# Seeds reach int32 seed tensors and `keras.utils.set_random_seed`.
MAX_SEED = 2**31 - 1
# Far above any codebook in use (LFQ at 2**18 takes a second a step here);
# a typo such as 100000000 would otherwise be killed by the OOM killer.
MAX_NUM_EMBEDDINGS = 2**20


def _check_int(
    name: str,
    value,
    minimum: int,
    off: bool = False,
    maximum: int | None = None,
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        what = "a positive" if minimum == 1 else "a non-negative"
        alternative = f" or {OFF!r}" if off else ""
        at_most = f" at most {maximum}" if maximum is not None else ""
        raise ConfigError(
            f"`{name}` must be {what} integer{at_most}{alternative}. "
            f"Received: {name}={value!r}"
        )


def _check_text(name: str, value, optional: bool = False) -> None:
    if not (isinstance(value, str) or (optional and value is None)):
        raise ConfigError(
            f"`{name}` must be a string{' or null' if optional else ''}. "
            f"Received: {name}={value!r}"
        )


def _check_rate(name: str, value) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value >= 0
        or value == float("inf")
    ):
        raise ConfigError(
            f"`{name}` must be a non-negative number. "
            f"Received: {name}={value!r}"
        )


def _check_fraction(name: str, value) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= 1
    ):
        raise ConfigError(
            f"`{name}` must be a number in [0, 1]. Received: {name}={value!r}"
        )


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(
            f"`{name}` must be one of {', '.join(map(repr, choices))}. "
            f"Received: {name}={value!r}"
        )


def _default(field: dataclasses.Field):
    """The default value of a config field."""
    if field.default is dataclasses.MISSING:
        return field.default_factory()
    return field.default


class _Config:
    """JSON round trip, resume checks and the checks both configs share."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict, source: str = "config"):
        """A config from a dict; unknown keys are an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        if "mixed_precision" in values:
            # Config files before `precision` had a float16 switch.
            values = dict(values)
            mixed = values.pop("mixed_precision")
            values.setdefault("precision", "float16" if mixed else "float32")
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"`{source}` has unknown options {unknown}; the options are "
                f"{sorted(names)}. Received: {unknown[0]}="
                f"{values[unknown[0]]!r}"
            )
        if isinstance(values.get("devices"), list):
            values = dict(values, devices=tuple(values["devices"]))
        return cls(**values)

    def incompatible_fields(self, other) -> list[str]:
        """Fields that must match to resume `other`'s run with this config."""
        return [
            field.name
            for field in dataclasses.fields(self)
            if not field.metadata.get("resumable")
            and getattr(self, field.name) != getattr(other, field.name)
        ]

    def _arguments(self) -> dict:
        """The fields made with `_arg`, as the model takes them (`OFF` is
        `None`)."""
        arguments = {}
        for field in dataclasses.fields(self):
            if field.metadata.get("argument"):
                value = getattr(self, field.name)
                off = field.metadata.get("off") and value == OFF
                arguments[field.name] = None if off else value
        return arguments

    def _check_fields(self, positive: tuple[str, ...]) -> None:
        """The run options of both configs, the fields in `positive`,
        every bool field's type and every field's `choices`."""
        for name in ("global_batch_size", "epochs", "checkpoint_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in positive:
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        if self.steps_per_epoch is not None:
            _check_int("steps_per_epoch", self.steps_per_epoch, minimum=1)
        _check_rate("learning_rate", self.learning_rate)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if str(field.type) in ("str", "str | None"):
                _check_text(field.name, value, "None" in str(field.type))
            if str(field.type) == "bool" and not isinstance(value, bool):
                raise ConfigError(
                    f"`{field.name}` must be true or false. "
                    f"Received: {field.name}={value!r}"
                )
            optional = value is None and "None" in str(field.type)
            if "choices" in field.metadata and not optional:
                _check_choice(field.name, value, field.metadata["choices"])
        if self.devices is not None and (
            not isinstance(self.devices, tuple)
            or not self.devices
            or not all(isinstance(d, str) and d for d in self.devices)
        ):
            raise ConfigError(
                "`devices` must be a list of device names such as /gpu:0. "
                f"Received: devices={self.devices!r}"
            )
        if self.devices is not None and self.strategy != "mirrored":
            raise ConfigError(
                "`devices` needs --strategy mirrored. "
                f"Received: devices={list(self.devices)}, "
                f"strategy={self.strategy!r}"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Config):
    """Options of `vqvae train` (a VQ-VAE and how it is trained)."""

    dataset: str = _field(
        DEFAULT_DATASET,
        "Training images: 'photos' (scikit-image's photographs, offline), "
        "'tfds:NAME[:SPLIT]' or 'folder:PATH' (PATH/split/label/*.png).",
    )
    data_dir: str | None = _field(
        None,
        "Where TensorFlow Datasets looks for prepared datasets.",
        resumable=True,
    )
    skip_bad_files: bool = _skip_bad_files_field("image")
    global_batch_size: int = _field(
        64, "Examples per step over all replicas (split across them)."
    )
    epochs: int = _epochs_field()
    steps_per_epoch: int | None = _field(
        None, "Steps per epoch (default: one pass over the training split)."
    )
    learning_rate: float = _field(
        2e-4, "Adam learning rate (2e-4 in the paper).", resumable=True
    )
    num_embeddings: int = _arg(
        512,
        "K, the codebook size (rvq: of each level; lfq: a power of 2; not "
        "used by fsq, whose K is the product of its --levels).",
    )
    embedding_dim: int = _arg(
        64,
        "D, the size of each latent vector (fsq, lfq: projected to their "
        "channels when it differs).",
    )
    num_hiddens: int = _arg(128, "Channels of the encoder and decoder.")
    num_residual_hiddens: int = _arg(32, "Channels inside each residual block.")
    num_residual_blocks: int = _arg(
        2, "Residual blocks in the encoder and in the decoder."
    )
    num_downsamples: int = _arg(
        2, "Stride-2 convolutions: codes are 2**n times smaller per axis."
    )
    commitment_cost: float = _arg(0.25, "beta, the commitment loss weight.")
    quantizer: str = _arg(
        "ema",
        f"{describe_choices(QUANTIZERS)}.",
        choices=tuple(QUANTIZERS),
    )
    quantizer_options: dict = _arg(
        {},
        "The quantizer's own options (`tf_vqvae.options.QUANTIZER_KINDS`; "
        "each is a flag of its own, e.g. --num-quantizers); saved with every "
        "option of the kind, defaults included.",
        quantizer_options=True,
    )
    data_init: str = _arg(
        "random",
        "Initialise the codebook from the first batch's encoder outputs: "
        f"{describe_choices({**DATA_INITS, OFF: 'the paper: no'})}.",
        choices=(*DATA_INITS, OFF),
        off=True,
    )
    dead_code_restart_steps: int | str = _arg(
        100,
        f"Re-seed codes unused for this many steps ({OFF!r}: never, the "
        "paper; 0 means the same).",
        off=True,
    )
    likelihood: str = _arg(
        "mse",
        f"Reconstruction loss: {describe_choices(LIKELIHOODS)} (audio "
        f"datasets: default {AUDIO_DEFAULTS['likelihood']!r}).",
        choices=tuple(LIKELIHOODS),
    )
    num_mixtures: int | None = _arg(
        None,
        "Audio, --likelihood mu_law_logistic: components of the logistic "
        "mixture (default: the model's).",
        audio=True,
    )
    encoder_input: str | None = _arg(
        None,
        f"Audio: what the encoder reads, {describe_choices(ENCODER_INPUTS)}.",
        audio=True,
        choices=tuple(ENCODER_INPUTS),
    )
    decoder: str = _arg(
        "parallel",
        f"Audio datasets: the decoder, {describe_choices(DECODERS)}; "
        "'wavenet' needs --likelihood mu_law, and its sample, reconstruct "
        "and TensorBoard clips are generated from their seeds.",
        choices=tuple(DECODERS),
        audio=True,
    )
    decoder_options: dict = _arg(
        {},
        "The decoder's own options (`tf_vqvae.options.DECODER_KINDS`; each "
        "is a flag of its own, e.g. --decoder-num-layers); saved with every "
        "option of the kind, defaults included.",
        decoder_options=True,
        audio=True,
    )
    spectral_loss_weight: float | None = _arg(
        None,
        "Audio: weight of a multi-resolution STFT loss (spectral "
        "convergence + log magnitude) on the decoded waveform, added to the "
        "reconstruction loss (default: off).",
        audio=True,
    )
    segment_length: int | None = _field(
        None,
        "Audio datasets: samples per training crop, a multiple of "
        f"2**num_downsamples (default {AUDIO_DEFAULTS['segment_length']}, "
        f"{AUDIO_DEFAULTS['segment_length'] / 16000:g} s at 16 kHz); "
        "exported models take waveforms of this length.",
        audio=True,
    )
    speaker_conditioning: bool = _field(
        False,
        "Audio datasets: condition the decoder on the dataset's speakers (a "
        "speaker embedding in every decoder layer; their names go to "
        "MODEL_DIR/speakers.json); `vqvae reconstruct --speaker` then "
        "converts voices.",
        audio=True,
    )
    seed: int = _arg(
        0, "Seeds the weights, the codebook and the order of the data."
    )
    precision: str = _precision_field()
    jit_compile: bool = _field(
        False,
        "Compile the train step with XLA (slower on CPU).",
        resumable=True,
    )
    strategy: str = _strategy_field()
    devices: tuple[str, ...] | None = _devices_field()
    checkpoint_steps: int = _checkpoint_steps_field()
    on_collapse: str = _field(
        "warn",
        "When an epoch's code usage falls below the two thresholds below "
        "(CodebookHealth): "
        f"{describe_choices({**ON_COLLAPSE, OFF: 'no check'})}.",
        resumable=True,
        choices=(*ON_COLLAPSE, OFF),
    )
    min_code_usage: float = _field(
        0.25,
        "Collapse threshold: the least fraction of the K codes an epoch "
        "uses (at most 1 - this fraction dead).",
        resumable=True,
    )
    min_perplexity: float = _field(
        0.05,
        "Collapse threshold: the least epoch perplexity, as a fraction of K.",
        resumable=True,
    )

    def __post_init__(self):
        # "Off" is spelled `OFF`; older config files and flags said `null`
        # or 0.
        if self.data_init is None:
            object.__setattr__(self, "data_init", OFF)
        if self.dead_code_restart_steps in (None, 0):
            object.__setattr__(self, "dead_code_restart_steps", OFF)
        if self.quantizer in QUANTIZERS:
            try:
                resolved = resolve_quantizer_options(
                    self.quantizer, self.quantizer_options
                )
            except ValueError as error:
                raise ConfigError(str(error)) from None
            object.__setattr__(self, "quantizer_options", resolved)
        if self.decoder in DECODERS:
            try:
                resolved = resolve_decoder_options(
                    self.decoder, self.decoder_options
                )
            except ValueError as error:
                raise ConfigError(str(error)) from None
            object.__setattr__(self, "decoder_options", resolved)
        self._check_fields(
            positive=(
                "num_embeddings",
                "embedding_dim",
                "num_hiddens",
                "num_residual_hiddens",
                "num_residual_blocks",
            )
        )
        _check_int("num_downsamples", self.num_downsamples, minimum=0)
        _check_int(
            "num_embeddings",
            self.num_embeddings,
            minimum=1,
            maximum=MAX_NUM_EMBEDDINGS,
        )
        if self.dead_code_restart_steps != OFF:
            _check_int(
                "dead_code_restart_steps",
                self.dead_code_restart_steps,
                minimum=1,
                off=True,
            )
        _check_rate("commitment_cost", self.commitment_cost)
        for name in ("min_code_usage", "min_perplexity"):
            _check_fraction(name, getattr(self, name))
        if self.num_mixtures is not None:
            _check_int("num_mixtures", self.num_mixtures, minimum=1)
        if self.spectral_loss_weight is not None:
            _check_rate("spectral_loss_weight", self.spectral_loss_weight)
        if self.segment_length is not None:
            _check_int("segment_length", self.segment_length, minimum=1)
            factor = 2**self.num_downsamples
            if self.segment_length % factor:
                raise ConfigError(
                    "`segment_length` must be a multiple of "
                    f"2**num_downsamples={factor}. "
                    f"Received: segment_length={self.segment_length}"
                )

    def model_kwargs(
        self, modality: str = "image", num_speakers: int | None = None
    ) -> dict:
        """Constructor arguments of `tf_vqvae.VQVAE` for a dataset of
        `modality` (`"audio"`: a 1D model of waveforms, conditioned on
        `num_speakers` speakers with `speaker_conditioning`)."""
        arguments = self._arguments()
        if modality == "audio":
            arguments.update(modality="audio", spatial_dims=1)
            if self.speaker_conditioning:
                arguments["num_speakers"] = num_speakers
        return arguments

    def modality_errors(self, modality: str) -> str | None:
        """Why this config cannot train on a dataset of `modality`
        (`"image"` or `"audio"`), or `None`: an audio-only option on
        images, an image likelihood on audio or the reverse."""
        audio_likelihoods = AUDIO_LIKELIHOODS
        if modality == "image":
            for field in dataclasses.fields(self):
                value = getattr(self, field.name)
                if field.metadata.get("audio") and value != _default(field):
                    return (
                        f"`{field.name}` is an option of audio datasets, and "
                        f"{self.dataset!r} holds images; leave it out. "
                        f"Received: {field.name}={value!r}"
                    )
            if self.likelihood in audio_likelihoods:
                return (
                    f"`likelihood` {self.likelihood!r} is for audio, and "
                    f"{self.dataset!r} holds images; use 'mse' or "
                    "'discretized_logistic'. "
                    f"Received: likelihood={self.likelihood!r}"
                )
            return None
        if self.likelihood not in audio_likelihoods:
            return (
                f"`likelihood` {self.likelihood!r} is for images, and "
                f"{self.dataset!r} holds audio; use "
                f"{' or '.join(map(repr, audio_likelihoods))} (the audio "
                "defaults: `audio_train_config()`, or `vqvae train "
                "--dataset speech` without --config). "
                f"Received: likelihood={self.likelihood!r}"
            )
        if self.decoder == "wavenet" and self.likelihood != "mu_law":
            return (
                "`decoder` 'wavenet' models the 8-bit mu-law classes: use "
                "--likelihood mu_law. Received: decoder='wavenet', "
                f"likelihood={self.likelihood!r}"
            )
        if self.decoder == "wavenet" and self.spectral_loss_weight:
            return (
                "`spectral_loss_weight` is for the parallel decoder (the "
                "WaveNet decoder's output is teacher forced). Received: "
                f"spectral_loss_weight={self.spectral_loss_weight}, "
                "decoder='wavenet'"
            )
        if self.num_mixtures is not None and (
            self.likelihood != "mu_law_logistic"
        ):
            return (
                "`num_mixtures` is an option of --likelihood "
                f"mu_law_logistic. Received: num_mixtures={self.num_mixtures}"
                f" with likelihood={self.likelihood!r}"
            )
        if self.segment_length is None:
            return (
                "`segment_length` is needed for audio datasets "
                f"(--segment-length, e.g. {AUDIO_DEFAULTS['segment_length']})."
                f" Received: segment_length=None"
            )
        return None


@dataclasses.dataclass(frozen=True)
class PriorConfig(_Config):
    """Options of `vqvae train-prior` (an autoregressive prior over the
    codes: a gated PixelCNN for 2D code grids, a WaveNet for 1D code
    sequences, `tf_vqvae.options.PRIOR_KINDS`; each takes its own fields
    of those below, `prior_kwargs`)."""

    global_batch_size: int = _field(32, "Code grids per step.")
    skip_bad_files: bool = _skip_bad_files_field("the VQ-VAE's training image")
    epochs: int = _epochs_field()
    steps_per_epoch: int | None = _field(
        None, "Steps per epoch (default: one pass over the training codes)."
    )
    learning_rate: float = _field(3e-4, "Adam learning rate.", resumable=True)
    num_hiddens: int = _arg(
        64, "PixelCNN (images): channels of the gated stacks."
    )
    num_layers: int = _arg(
        8, "Gated PixelCNN blocks (images) or WaveNet layers (audio)."
    )
    kernel_size: int = _arg(
        3, "PixelCNN (images): odd size of the masked convolutions."
    )
    residual_channels: int = _arg(
        64, "WaveNet (audio): channels of the embedding and residual stream."
    )
    skip_channels: int = _arg(
        64, "WaveNet (audio): channels of the skip connections and the head."
    )
    dilation_cycle: int = _arg(
        10,
        "WaveNet (audio): dilations 1, 2, ..., 2**(n-1), repeated over the "
        "layers (receptive field 1 + sum of the dilations codes).",
    )
    seed: int = _field(0, "Seeds the weights and the order of the codes.")
    precision: str = _precision_field()
    checkpoint_steps: int = _checkpoint_steps_field()
    strategy: str = _strategy_field()
    devices: tuple[str, ...] | None = _devices_field()
    class_conditional: bool = _field(
        False,
        "Condition the prior on the training images' classes (tfds labels, "
        "the class folders of a folder dataset, the source photograph of "
        "the photos) or, for audio, on the speakers; the names go to "
        "MODEL_DIR/prior/classes.json.",
    )

    def __post_init__(self):
        self._check_fields(
            positive=(
                "num_hiddens",
                "num_layers",
                "residual_channels",
                "skip_channels",
                "dilation_cycle",
            )
        )
        if (
            isinstance(self.kernel_size, bool)
            or not isinstance(self.kernel_size, int)
            or self.kernel_size < 3
            or self.kernel_size % 2 == 0
        ):
            raise ConfigError(
                "`kernel_size` must be an odd integer >= 3. "
                f"Received: kernel_size={self.kernel_size!r}"
            )

    def prior_kwargs(self, kind: str = "pixelcnn") -> dict:
        """Constructor arguments of the prior of `kind` (a
        `tf_vqvae.options.PRIOR_KINDS` name), besides K, the grid and the
        classes, which come from the VQ-VAE and the data."""
        arguments = self._arguments()
        return {name: arguments[name] for name in PRIOR_KINDS[kind].arguments}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named pair of configs: `vqvae train --preset NAME` starts from
    `train`, `vqvae train-prior --preset NAME` from `prior`.

    Attributes:
        description: one line for `--help`.
        train: the `TrainConfig`.
        prior: the `PriorConfig`.
    """

    description: str
    train: TrainConfig
    prior: PriorConfig

    def config(self, config_class: type) -> _Config:
        """The preset's config of `config_class`."""
        return self.train if config_class is TrainConfig else self.prior


PRESETS = {
    "demo": Preset(
        description=(
            "a small VQ-VAE (K=128, D=16) and prior for the offline photos, "
            "a few minutes on 2 CPU cores (`vqvae demo`)"
        ),
        train=TrainConfig(
            dataset="photos",
            global_batch_size=32,
            epochs=8,
            learning_rate=1e-3,
            num_embeddings=128,
            embedding_dim=16,
            num_hiddens=64,
            num_residual_hiddens=32,
            num_residual_blocks=1,
            data_init="kmeans++",
            dead_code_restart_steps=20,
            checkpoint_steps=200,
        ),
        prior=PriorConfig(
            global_batch_size=32,
            epochs=8,
            learning_rate=1e-3,
            num_hiddens=32,
            num_layers=4,
            checkpoint_steps=200,
        ),
    ),
}


def audio_train_config(**overrides) -> TrainConfig:
    """The `TrainConfig` `vqvae train` starts from on an audio dataset:
    `AUDIO_DEFAULTS` over the defaults, then `overrides`."""
    return TrainConfig(**{**AUDIO_DEFAULTS, **overrides})


# The speech presets' VQ-VAE: 32 samples per code, one discretized logistic
# per sample (a location the decoder regresses; 3-4x faster per step than
# the 256-way categorical) and the multi-resolution STFT loss on the decoded
# waveform at weight 5. Measured on speech (200-1200 steps, `speech:test`,
# log-mel distance / SNR): the paper's 64x categorical without the STFT loss
# learns the marginal (0.0 dB SNR, the waveform 32 dB too quiet); at 16x the
# same gives 20.7 dB / 0.3 dB, with the STFT loss 11.5 dB / 1.7 dB; the
# logistic with the STFT loss at lr 2e-3 reached 10.1 dB / 2.4 dB in 600
# steps (155 s) at 32x, as good as 16x for half the codes (the prior's
# sequences).
_SPEECH_VQVAE = dict(
    num_downsamples=5,
    # Log-mel frames in, one per code: after 1000 steps phoneme discovery
    # reached 5.4x the baseline on `speech:test` against 3.2x with the
    # waveform in (the same reconstruction loss, 0.08 s a step against
    # 0.11); a wider waveform encoder (dilated blocks, 77 ms) gave 3.2x, 64
    # samples per code 2.3x. K=2048 over 512: 6.1x against 5.4x (one seed
    # each).
    encoder_input="log_mel",
    num_embeddings=2048,
    # k-means++ seeding: from a random choice of the first batch's vectors
    # (mostly near-silent ones) the demo's code perplexity fell to 3-8 for
    # its whole first epoch; seeded by k-means++ it recovered within 150
    # steps (test split after 600 steps: SNR 2.4 vs 0.1 dB, perplexity 193
    # vs 81, phoneme accuracy 25.1% vs 15.1%; one seed each; measured at
    # K=512). At K=2048 a batch holds exactly K vectors (8 x 8192 / 32), so
    # the seeding takes nearly all of the first batch; codes seeded with
    # duplicates (silent frames) are re-seeded by the dead-code restarts.
    data_init="kmeans++",
    likelihood="mu_law_logistic",
    num_mixtures=1,
    spectral_loss_weight=5.0,
    learning_rate=2e-3,
)

PRESETS["speech-demo"] = Preset(
    description=(
        "an audio VQ-VAE (log-mel encoder input, 32 samples per code, "
        "K=2048, STFT loss) and WaveNet "
        "prior on the offline speech corpus, a few minutes on 2 CPU cores "
        "(`vqvae demo --dataset speech`)"
    ),
    train=audio_train_config(
        **_SPEECH_VQVAE,
        epochs=2,
        steps_per_epoch=300,
        checkpoint_steps=300,
    ),
    prior=PriorConfig(
        global_batch_size=32,
        epochs=2,
        steps_per_epoch=100,
        learning_rate=1e-3,
        num_layers=7,
        residual_channels=32,
        skip_channels=32,
        dilation_cycle=7,
        checkpoint_steps=100,
    ),
)

PRESETS["speech"] = Preset(
    description=(
        "the speech-demo VQ-VAE trained 13x longer (8000 steps, about 13 "
        "minutes on 2 CPU cores; the prior 8 more) and a larger WaveNet "
        "prior: phoneme discovery and, with --speaker-conditioning, voice "
        "conversion (benchmarks/bench_speech.py)"
    ),
    # With speaker conditioning (bench_speech.py, 23 min in all): phoneme
    # discovery 6.86x the baseline on held-out sentences at 8000 steps,
    # 6.67x at 4000; conversions assigned the target voice 94% and 96%.
    # Before log-mel input and k-means++ seeding (4000 steps, waveform in,
    # K=512; 19.1 min on 2 cores shared with a benchmark; 24 held-out
    # utterances): SNR 3.0 dB, log-mel distance 7.5 dB, code perplexity 256
    # of 512, 5.86 bits per sample for -log2 p(x|z).
    # 128 channels (num_residual_hiddens 64) at lr 2e-3 stalled in the
    # one run tried: over its first hundred steps the STFT loss stayed near
    # its start (5.3) with a code perplexity of 5, at 1 s a step.
    train=audio_train_config(
        **_SPEECH_VQVAE,
        epochs=40,
        steps_per_epoch=200,
        checkpoint_steps=200,
    ),
    prior=PriorConfig(
        global_batch_size=32,
        epochs=10,
        steps_per_epoch=100,
        learning_rate=1e-3,
        num_layers=8,
        residual_channels=64,
        skip_channels=64,
        dilation_cycle=8,
        checkpoint_steps=100,
    ),
)


PRESETS["speech-wavenet"] = Preset(
    description=(
        "the speech VQ-VAE's encoder and codes (log-mel input, K=2048) with "
        "the paper's autoregressive WaveNet decoder (256-way mu-law), 3000 "
        "steps of 8 x 4096 samples, about 35 minutes on 2 CPU cores; the "
        "speech preset's prior (benchmarks/bench_speech.py --preset "
        "speech-wavenet)"
    ),
    # The decoder's categorical is the paper's likelihood; the STFT loss is
    # for the parallel decoder's expected value and does not apply. 8 x 4096
    # (0.63 s a step here) against the parallel decoder's 8 x 8192 (0.08 s):
    # the WaveNet's cost grows with the samples per batch, and 4096 samples
    # already hold four receptive fields of its 1024.
    train=audio_train_config(
        **{
            **_SPEECH_VQVAE,
            "likelihood": "mu_law",
            "num_mixtures": None,
            "spectral_loss_weight": None,
            "learning_rate": 1e-3,
        },
        decoder="wavenet",
        segment_length=4096,
        global_batch_size=8,
        epochs=3,
        steps_per_epoch=1000,
    ),
    prior=PRESETS["speech"].prior,
)


def int_or_off(text: str) -> int | str:
    """Parses a flag that takes an integer or `none` (`OFF`)."""
    if text.strip().lower() == OFF:
        return OFF
    return int(text)


def saved_config_path(model_dir: str, config_class: type) -> str:
    """Where a run of `config_class` in `model_dir` keeps its config
    (`model_dir/config.json`, the prior's `model_dir/prior/config.json`)."""
    if config_class is PriorConfig:
        return os.path.join(model_dir, PRIOR_DIR, CONFIG_FILE)
    return os.path.join(model_dir, CONFIG_FILE)


def load_config(path: str, config_class: type | None = None):
    """Reads a `config.json` written by `save_config` (a `TrainConfig`
    unless `config_class` says otherwise)."""
    config_class = config_class or TrainConfig
    try:
        with open(path) as file:
            values = json.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"`config` file does not exist; pass a config.json written by "
            f"`vqvae train`. Received: config={path!r}"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"`config` cannot be read ({error.strerror or error}); pass a "
            f"config.json written by `vqvae train`. Received: config={path!r}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"`config` is not valid JSON ({error}); pass a config.json "
            f"written by `vqvae train`. Received: config={path!r}"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"`config` must hold a JSON object. Received: config={path!r}"
        )
    return config_class.from_dict(values, source=path)


def save_config(config: _Config, model_dir: str) -> str:
    """Writes `model_dir/config.json` atomically (`tf_vqvae.atomic`)."""
    return atomic.write_text(
        os.path.join(model_dir, CONFIG_FILE), config.to_json()
    )
