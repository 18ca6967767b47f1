"""The training configuration: one frozen dataclass, saved with the model.

Every field carries its documentation in `metadata["help"]`, which is also the
`--help` text of the matching `vqvae train` flag, so defaults and docs live
in one place. `model_dir/config.json` holds the config a run used;
`vqvae train --config model_dir/config.json --model-dir NEW` repeats it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from tf_vqvae.data import DEFAULT_DATASET

CONFIG_FILE = "config.json"

STRATEGIES = ("default", "mirrored", "multi-worker")
PRIOR_STRATEGIES = ("default", "mirrored")
QUANTIZERS = ("ema", "vq")
LIKELIHOODS = ("mse", "discretized_logistic")
DATA_INITS = ("random", "kmeans++", "none")


class ConfigError(ValueError):
    """A configuration that cannot be used, with what to do instead."""


def _field(default, help: str, **metadata):
    return dataclasses.field(
        default=default, metadata={"help": help, **metadata}
    )


class _Config:
    """JSON round trip and resume checks shared by the configs."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict, source: str = "config"):
        """A config from a dict; unknown keys are an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"`{source}` has unknown options {unknown}; the options are "
                f"{sorted(names)}. Received: {unknown[0]}="
                f"{values[unknown[0]]!r}"
            )
        if values.get("devices") is not None:
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
    global_batch_size: int = _field(
        64, "Examples per step over all replicas (split across them)."
    )
    epochs: int = _field(
        10,
        "Epochs to train in total (raise it to train a run longer).",
        resumable=True,
    )
    steps_per_epoch: int | None = _field(
        None, "Steps per epoch (default: one pass over the training split)."
    )
    learning_rate: float = _field(
        2e-4, "Adam learning rate (2e-4 in the paper).", resumable=True
    )
    num_embeddings: int = _field(512, "K, the codebook size.")
    embedding_dim: int = _field(64, "D, the size of each code vector.")
    num_hiddens: int = _field(128, "Channels of the encoder and decoder.")
    num_residual_hiddens: int = _field(
        32, "Channels inside each residual block."
    )
    num_residual_blocks: int = _field(
        2, "Residual blocks in the encoder and in the decoder."
    )
    num_downsamples: int = _field(
        2, "Stride-2 convolutions: codes are 2**n times smaller per axis."
    )
    commitment_cost: float = _field(0.25, "beta, the commitment loss weight.")
    quantizer: str = _field(
        "ema",
        "'ema' (codebook by exponential moving averages) or 'vq' "
        "(codebook by gradients).",
    )
    data_init: str = _field(
        "random",
        "Initialise the codebook from the first batch's encoder outputs: "
        "'random', 'kmeans++' or 'none' (the paper's random codebook).",
    )
    dead_code_restart_steps: int = _field(
        100,
        "Re-seed codes unused for this many steps (0: never, the paper).",
    )
    likelihood: str = _field(
        "mse",
        "Reconstruction loss: 'mse' (the paper) or 'discretized_logistic' "
        "(a per-pixel likelihood, for honest bits/dim).",
    )
    seed: int = _field(
        0, "Seeds the weights, the codebook and the order of the data."
    )
    mixed_precision: bool = _field(
        False, "Compute in float16 with float32 variables (GPUs)."
    )
    jit_compile: bool = _field(
        False,
        "Compile the train step with XLA (slower on CPU).",
        resumable=True,
    )
    strategy: str = _field(
        "default",
        "'default' (one device), 'mirrored' (all local GPUs or --devices) "
        "or 'multi-worker' (machines listed in TF_CONFIG).",
        resumable=True,
    )
    devices: tuple[str, ...] | None = _field(
        None,
        "Devices for --strategy mirrored, e.g. /gpu:0 /gpu:1.",
        resumable=True,
    )
    checkpoint_steps: int = _field(
        100,
        "Write a checkpoint every this many steps (and after each epoch).",
        resumable=True,
    )

    def __post_init__(self):
        for name in (
            "global_batch_size",
            "epochs",
            "num_embeddings",
            "embedding_dim",
            "num_hiddens",
            "num_residual_hiddens",
            "num_residual_blocks",
            "checkpoint_steps",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("num_downsamples", self.num_downsamples, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        # Older config files say `null` for "off".
        if self.data_init is None:
            object.__setattr__(self, "data_init", "none")
        if self.dead_code_restart_steps is None:
            object.__setattr__(self, "dead_code_restart_steps", 0)
        if self.steps_per_epoch is not None:
            _check_int("steps_per_epoch", self.steps_per_epoch, minimum=1)
        _check_int(
            "dead_code_restart_steps", self.dead_code_restart_steps, minimum=0
        )
        for name in ("learning_rate", "commitment_cost"):
            _check_rate(name, getattr(self, name))
        _check_choice("quantizer", self.quantizer, QUANTIZERS)
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("data_init", self.data_init, DATA_INITS)
        _check_devices(self)

    def model_kwargs(self) -> dict:
        """Constructor arguments of `tf_vqvae.VQVAE`."""
        return dict(
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            num_hiddens=self.num_hiddens,
            num_residual_blocks=self.num_residual_blocks,
            num_residual_hiddens=self.num_residual_hiddens,
            num_downsamples=self.num_downsamples,
            commitment_cost=self.commitment_cost,
            quantizer=self.quantizer,
            data_init=None if self.data_init == "none" else self.data_init,
            dead_code_restart_steps=self.dead_code_restart_steps or None,
            likelihood=self.likelihood,
            seed=self.seed,
        )


@dataclasses.dataclass(frozen=True)
class PriorConfig(_Config):
    """Options of `vqvae train-prior` (a PixelCNN prior over the codes)."""

    global_batch_size: int = _field(32, "Code grids per step.")
    epochs: int = _field(
        10,
        "Epochs to train in total (raise it to train a run longer).",
        resumable=True,
    )
    steps_per_epoch: int | None = _field(
        None, "Steps per epoch (default: one pass over the training codes)."
    )
    learning_rate: float = _field(3e-4, "Adam learning rate.", resumable=True)
    num_hiddens: int = _field(64, "Channels of the gated PixelCNN stacks.")
    num_layers: int = _field(8, "Gated PixelCNN blocks.")
    kernel_size: int = _field(3, "Odd size of the masked convolutions.")
    seed: int = _field(0, "Seeds the weights and the order of the codes.")
    checkpoint_steps: int = _field(
        100,
        "Write a checkpoint every this many steps (and after each epoch).",
        resumable=True,
    )
    strategy: str = _field(
        "default",
        "'default' (one device) or 'mirrored' (all local GPUs or --devices).",
        resumable=True,
    )
    devices: tuple[str, ...] | None = _field(
        None,
        "Devices for --strategy mirrored, e.g. /gpu:0 /gpu:1.",
        resumable=True,
    )

    def __post_init__(self):
        for name in (
            "global_batch_size",
            "epochs",
            "num_hiddens",
            "num_layers",
            "checkpoint_steps",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_choice("strategy", self.strategy, PRIOR_STRATEGIES)
        _check_devices(self)
        _check_int("seed", self.seed, minimum=0)
        if self.steps_per_epoch is not None:
            _check_int("steps_per_epoch", self.steps_per_epoch, minimum=1)
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
        _check_rate("learning_rate", self.learning_rate)

    def prior_kwargs(self) -> dict:
        """Constructor arguments of `tf_vqvae.PixelCNNPrior` (besides K and
        the grid shape, which come from the VQ-VAE)."""
        return dict(
            num_hiddens=self.num_hiddens,
            num_layers=self.num_layers,
            kernel_size=self.kernel_size,
        )


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
    """Writes `model_dir/config.json` atomically (temp file + rename)."""
    path = os.path.join(model_dir, CONFIG_FILE)
    write_atomic(path, config.to_json())
    return path


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive" if minimum == 1 else "a non-negative"
        raise ConfigError(
            f"`{name}` must be {what} integer. Received: {name}={value!r}"
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


def _check_devices(config) -> None:
    if config.devices is not None and config.strategy != "mirrored":
        raise ConfigError(
            "`devices` needs --strategy mirrored. "
            f"Received: devices={list(config.devices)}, "
            f"strategy={config.strategy!r}"
        )


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(
            f"`{name}` must be one of {', '.join(map(repr, choices))}. "
            f"Received: {name}={value!r}"
        )
