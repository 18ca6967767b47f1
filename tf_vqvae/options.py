"""The values users choose from, declared once and free of TensorFlow.

The library checks its arguments against these (`VQVAE(quantizer=...,
likelihood=..., data_init=...)`), and the `vqvae` command line derives its
flags' choices and help from them, so `vqvae --help` needs no TensorFlow.
Each mapping goes from the name a user types to a short description.

Where a user types "off" (`vqvae train --data-init none`,
`--dead-code-restart-steps none`), the spelling is `OFF`; the library's
arguments take `None` for it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# How a user types "off" for an option whose library value is `None`.
OFF = "none"


@dataclasses.dataclass(frozen=True)
class QuantizerOption:
    """One option of a quantizer kind (or of a decoder kind), as users see
    it.

    `VQVAE(quantizer=KIND, quantizer_options={name: value})` and the flag
    `vqvae train --NAME` (underscores as dashes) take it; the quantizer
    layer receives it as its constructor argument `argument`. A decoder's
    options: `VQVAE(decoder=KIND, decoder_options={name: value})` and
    `vqvae train --decoder-NAME`, the decoder layer's argument `name`.

    Attributes:
        name: what users type (unique over all kinds; a kind that shares an
            option uses the same declaration).
        type: `int`, `float`, `bool`, `str` or `tuple` (of ints).
        default: the value when not given.
        help: one sentence for `--help` and the README.
        choices: the allowed values of a `str` option.
        off: the option takes `None` (typed `OFF` on the command line).
        argument: the layer's constructor argument (default: `name`).
        minimum: the least value of an `int` option (default: any).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    off: bool = False
    argument: str | None = None
    minimum: int | None = None

    @property
    def layer_argument(self) -> str:
        return self.argument or self.name


@dataclasses.dataclass(frozen=True)
class QuantizerKind:
    """A kind of quantizer `VQVAE(quantizer=...)` can build.

    Attributes:
        description: one line for `--help`.
        model_arguments: `VQVAE` argument -> the layer's constructor
            argument, for the `VQVAE` arguments this kind uses (the others,
            e.g. `decay` for `"vq"`, are not used by it).
        options: the kind's own options (`VQVAE(quantizer_options=...)`).
        codes_per_position: `"one"` (an index in `[0, K)` per latent
            position) or `"levels"` (one per level, a trailing axis).
    """

    description: str
    model_arguments: dict
    options: tuple = ()
    codes_per_position: str = "one"


# Options of the codebook quantizers (`VectorQuantizer`,
# `VectorQuantizerEMA`, and each stage of `ResidualVectorQuantizer`).
_VECTOR_OPTIONS = (
    QuantizerOption(
        "rotation_trick",
        bool,
        False,
        "Gradients pass through the rotation and rescaling from z_e to z_q "
        "(Fifty et al., 2024) instead of the identity.",
    ),
    QuantizerOption(
        "distance",
        str,
        "l2",
        "Nearest code by 'l2' distance or by 'cosine' similarity "
        "(normalised inputs and codes).",
        choices=("l2", "cosine"),
    ),
    QuantizerOption(
        "codebook_dim",
        int,
        None,
        "Look codes up in this smaller dimension, with learned projections "
        f"in and out (ViT-VQGAN; {OFF!r}: D itself).",
        off=True,
    ),
)
_VECTOR_ARGUMENTS = (
    "num_embeddings",
    "embedding_dim",
    "commitment_cost",
    "data_init",
    "dead_code_restart_steps",
    "seed",
)
_EMA_ARGUMENTS = (*_VECTOR_ARGUMENTS, "decay", "epsilon")

# `VQVAE(quantizer=...)`: every kind, declared once. The layer classes are
# bound in `tf_vqvae.quantizers.QUANTIZER_CLASSES`.
QUANTIZER_KINDS = {
    "ema": QuantizerKind(
        "codebook by exponential moving averages",
        {name: name for name in _EMA_ARGUMENTS},
        _VECTOR_OPTIONS,
    ),
    "vq": QuantizerKind(
        "codebook by gradients",
        {name: name for name in _VECTOR_ARGUMENTS},
        _VECTOR_OPTIONS,
    ),
    "rvq": QuantizerKind(
        "residual VQ: a codebook per level, each coding what the levels "
        "before left",
        {name: name for name in _EMA_ARGUMENTS},
        (
            QuantizerOption(
                "num_quantizers",
                int,
                4,
                "Residual VQ levels (codes per latent position).",
            ),
            QuantizerOption(
                "rvq_quantizer",
                str,
                "ema",
                "Each residual level's codebook: 'ema' (moving averages) "
                "or 'vq' (gradients).",
                choices=("ema", "vq"),
                argument="quantizer",
            ),
            QuantizerOption(
                "shared_codebook",
                bool,
                False,
                "All residual levels share one codebook.",
            ),
            QuantizerOption(
                "quantizer_dropout",
                float,
                0.0,
                "Probability that a training batch uses only the first n "
                "residual levels, n uniform (one model for every bitrate).",
            ),
            *_VECTOR_OPTIONS,
        ),
        codes_per_position="levels",
    ),
    "fsq": QuantizerKind(
        "finite scalar quantization: channels rounded, no codebook",
        {"embedding_dim": "embedding_dim", "seed": "seed"},
        (
            QuantizerOption(
                "levels",
                tuple,
                (8, 5, 5, 5),
                "Values per FSQ channel; K is their product.",
            ),
            QuantizerOption(
                "fsq_data_init",
                bool,
                True,
                "Scale and shift each FSQ channel to mean 0, variance 1 "
                "from the first training batch (keeps small encoder "
                "outputs from all rounding to one code).",
                argument="data_init",
            ),
            QuantizerOption(
                "fsq_saturation_penalty",
                float,
                0.0,
                "Weight of a loss on FSQ's tanh arguments beyond +-2 (keeps "
                "channels out of the flat tails, where they stop coding; "
                "off by default: it cost test MSE on CIFAR-10).",
                argument="saturation_penalty",
            ),
        ),
    ),
    "lfq": QuantizerKind(
        "lookup free quantization: channel signs are the code bits",
        {
            "num_embeddings": "codebook_size",
            "embedding_dim": "embedding_dim",
            "commitment_cost": "commitment_cost",
            "seed": "seed",
        },
        (
            QuantizerOption(
                "entropy_loss_weight",
                float,
                0.1,
                "Weight of the LFQ entropy penalty (entropy per sample "
                "minus batch code entropy).",
            ),
            QuantizerOption(
                "diversity_gamma",
                float,
                1.0,
                "Weight of the batch code entropy inside the LFQ entropy "
                "penalty (higher: codes used more evenly).",
            ),
        ),
    ),
}
# `VQVAE(quantizer=...)`: name -> description.
QUANTIZERS = {name: kind.description for name, kind in QUANTIZER_KINDS.items()}


@dataclasses.dataclass(frozen=True)
class PriorKind:
    """A kind of autoregressive prior over codes, chosen by the code grid.

    `vqvae train-prior` trains the kind whose `grid_rank` is the rank of
    the VQ-VAE's code grid (`prior_kind_for_rank`); the classes are bound
    in `tf_vqvae.priors.PRIOR_CLASSES`.

    Attributes:
        description: one line for `--help` and the README.
        grid_rank: the rank of the code grids it models (2: images, 1:
            audio).
        arguments: the `vqvae train-prior` options (`PriorConfig` fields)
            its constructor takes, besides K, the grid and the classes.
    """

    description: str
    grid_rank: int
    arguments: tuple[str, ...]


# `vqvae train-prior`: every prior kind, declared once.
PRIOR_KINDS = {
    "pixelcnn": PriorKind(
        "gated PixelCNN over 2D code grids (images)",
        2,
        ("num_hiddens", "num_layers", "kernel_size"),
    ),
    "wavenet": PriorKind(
        "WaveNet of dilated causal convolutions over 1D code sequences (audio)",
        1,
        ("residual_channels", "skip_channels", "num_layers", "dilation_cycle"),
    ),
}


def prior_kind_for_rank(rank: int) -> str:
    """The name of the `PRIOR_KINDS` entry for code grids of `rank`.

    Raises:
        ValueError: when no prior models grids of that rank.
    """
    for name, kind in PRIOR_KINDS.items():
        if kind.grid_rank == rank:
            return name
    ranks = sorted(kind.grid_rank for kind in PRIOR_KINDS.values())
    raise ValueError(
        f"No prior models {rank}-D code grids (priors exist for ranks "
        f"{ranks}). Received: rank={rank}"
    )


# `VQVAE(likelihood=...)`: the reconstruction term of the loss.
LIKELIHOODS = {
    "mse": "mean squared error, the paper",
    "discretized_logistic": "a per-pixel likelihood, for honest bits/dim",
    "mu_law": "a 256-way categorical over 8-bit mu-law audio samples",
    "mu_law_logistic": (
        "a discretized logistic mixture over 8-bit mu-law audio samples"
    ),
}
# `VQVAE(encoder_input=...)`: what an audio encoder reads (images: always
# "linear", their [-0.5, 0.5] shift).
ENCODER_INPUTS = {
    "mu_law": "the waveform mu-law companded (the audio default)",
    "linear": "the waveform as it is",
    "log_mel": (
        "log-mel frames (25 ms windows, 40 bands), one per code, read by "
        "an encoder without strided convolutions"
    ),
}
# `VQVAE(modality=...)`: what the model's inputs are.
MODALITIES = {
    "image": "images (batch, *spatial, channels) in [0, 1] or uint8",
    "audio": "waveforms (batch, samples, 1) in [-1, 1]",
}


@dataclasses.dataclass(frozen=True)
class DecoderKind:
    """A kind of decoder `VQVAE(decoder=...)` can build.

    Attributes:
        description: one line for `--help`.
        options: its own options (`VQVAE(decoder_options=...)`, `vqvae
            train --decoder-NAME`), each the decoder layer's argument of
            that name.
    """

    description: str
    options: tuple = ()


# `VQVAE(decoder=...)`: how an audio model's decoder produces p(x | z),
# declared once. The defaults are `tf_vqvae.WaveNetDecoder`'s (a test
# keeps them equal).
DECODER_KINDS = {
    "parallel": DecoderKind(
        "transposed convolutions, all samples at once (fast)"
    ),
    "wavenet": DecoderKind(
        "the paper's autoregressive WaveNet (slow generation)",
        (
            QuantizerOption(
                "residual_channels",
                int,
                32,
                "WaveNet decoder: channels of the embedded samples and the "
                "residual stream.",
                minimum=1,
            ),
            QuantizerOption(
                "skip_channels",
                int,
                32,
                "WaveNet decoder: channels of the skip connections and the "
                "output head.",
                minimum=1,
            ),
            QuantizerOption(
                "condition_channels",
                int,
                32,
                "WaveNet decoder: channels of the upsampled code features "
                "(local conditioning).",
                minimum=1,
            ),
            QuantizerOption(
                "num_layers",
                int,
                10,
                "WaveNet decoder: dilated causal layers.",
                minimum=1,
            ),
            QuantizerOption(
                "dilation_cycle",
                int,
                10,
                "WaveNet decoder: dilations 1, 2, ..., 2**(n-1), repeated "
                "over the layers.",
                minimum=1,
            ),
            QuantizerOption(
                "kernel_size",
                int,
                2,
                "WaveNet decoder: taps of each dilated convolution.",
                minimum=2,
            ),
        ),
    ),
}
# `VQVAE(decoder=...)`: name -> description.
DECODERS = {name: kind.description for name, kind in DECODER_KINDS.items()}
# `VQVAE(data_init=...)`: the codebook drawn from the first batch's encoder
# outputs (`None`: the quantizer's random codebook, the paper).
DATA_INITS = {
    "random": "a random choice of them",
    "kmeans++": "k-means++ seeding on them",
}
# `VectorQuantizer(distance=...)`: what "nearest code" means.
DISTANCES = {
    "l2": "squared Euclidean distance, the paper",
    "cosine": "angle: inputs and codes l2-normalised",
}
# `vqvae train --strategy` (implemented by `tf_vqvae.training.runs`).
STRATEGIES = {
    "default": "one device",
    "mirrored": "all local GPUs or --devices",
    "multi-worker": "the machines listed in TF_CONFIG",
}
# `tf_vqvae.export.export_tflite(quantization=...)`: decoder variants.
TFLITE_QUANTIZATIONS = {
    "float32": "float32 weights and compute",
    "float16": "float16 weights, float32 compute",
    "int8": "full-integer ops, calibrated on real images",
}
# `CodebookHealth(on_collapse=...)` (`tf_vqvae.training.callbacks`): what
# happens when an epoch's code usage falls below its thresholds.
ON_COLLAPSE = {
    "warn": "print one line naming the numbers and what to try",
    "stop": "also stop training",
}
# `vqvae train --precision`, `tf_vqvae.precision` (Keras dtype policies).
PRECISIONS = {
    "float32": "float32 throughout",
    "bfloat16": "bfloat16 compute, float32 variables",
    "float16": "float16 compute with loss scaling, float32 variables",
    "auto": "bfloat16 on CPUs with AMX/AVX512-BF16 and GPUs of compute "
    "capability >= 8.0, float16 on GPUs >= 7.0, else float32",
}
# The dataset the command line trains on by default (`tf_vqvae.data`).
DEFAULT_DATASET = "photos"
# The default audio dataset (`tf_vqvae.speech`, offline).
DEFAULT_AUDIO_DATASET = "speech"
# `--dataset`: the forms of a dataset string (`tf_vqvae.data.parse_dataset`).
DATASETS = {
    "photos[:SPLIT]": "32x32 tiles of scikit-image's photographs, offline "
    "(images; splits train, test)",
    "folder:PATH": "images laid out PATH/split/label/*.png|jpg",
    "tfds:NAME[:SPLIT]": "a prepared TensorFlow Datasets dataset, images or "
    "audio (an Audio feature)",
    "speech[:SPLIT]": "English sentences spoken by eSpeak NG voices at "
    "16 kHz with phoneme alignments, offline (audio; splits train, test, "
    "test_voices)",
    "audio-folder:PATH": "WAV files laid out PATH/split/SPEAKER/*.wav, "
    "down-mixed and resampled to 16 kHz",
}


def quantizer_option_declarations() -> dict:
    """Every quantizer option: name -> `(QuantizerOption, kinds)`, the
    kinds that take it in `QUANTIZER_KINDS` order (one flag each)."""
    declared = {}
    for kind_name, kind in QUANTIZER_KINDS.items():
        for option in kind.options:
            if option.name in declared:
                declared[option.name][1].append(kind_name)
            else:
                declared[option.name] = (option, [kind_name])
    return {
        name: (opt, tuple(kinds)) for name, (opt, kinds) in declared.items()
    }


def decoder_option_declarations() -> dict:
    """Every decoder option: name -> `(QuantizerOption, kinds)`, as
    `quantizer_option_declarations` (one `--decoder-NAME` flag each)."""
    declared = {}
    for kind_name, kind in DECODER_KINDS.items():
        for option in kind.options:
            declared.setdefault(option.name, (option, []))[1].append(kind_name)
    return {
        name: (opt, tuple(kinds)) for name, (opt, kinds) in declared.items()
    }


def resolve_quantizer_options(kind: str, given: dict | None) -> dict:
    """The options of quantizer `kind`: `given` over the declared defaults,
    every option present, in declaration order (`tuple` options as tuples).

    Raises:
        ValueError: for a name `kind` does not take, or a value of the
            wrong type.
    """
    return _resolve_options(
        "quantizer", kind, QUANTIZER_KINDS[kind].options, given
    )


def resolve_decoder_options(kind: str, given: dict | None) -> dict:
    """The options of decoder `kind` (a `DECODER_KINDS` name), as
    `resolve_quantizer_options`: `{}` for `"parallel"`.

    Raises:
        ValueError: for a name `kind` does not take, a value of the wrong
            type or below the option's minimum.
    """
    return _resolve_options("decoder", kind, DECODER_KINDS[kind].options, given)


def _resolve_options(
    what: str, kind: str, options: tuple, given: dict | None
) -> dict:
    declared = {option.name: option for option in options}
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = sorted(declared) or "none"
        raise ValueError(
            f"`{what}_options` has {unknown[0]!r}, which {what} "
            f"{kind!r} does not take (its options: {takes}). Received: "
            f"{unknown[0]}={given[unknown[0]]!r}"
        )
    resolved = {}
    for name, option in declared.items():
        value = given.get(name, option.default)
        # A decoder's options share names with other layers' arguments
        # (`num_layers`, `kernel_size`): its messages say whose they are.
        label = f"{what}_options['{name}']" if what == "decoder" else name
        resolved[name] = _checked_option(option, value, label)
    return resolved


def _checked_option(option: QuantizerOption, value, label: str):
    if value is None and option.off:
        return None
    if option.type is tuple:
        ok = (
            isinstance(value, (tuple, list))
            and len(value) > 0
            and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
        )
        value = tuple(value) if ok else value
        expected = "a non-empty sequence of integers"
    elif option.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        expected = "a number"
    elif option.type is int:
        ok = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (option.minimum is None or value >= option.minimum)
        )
        expected = (
            "an integer"
            if option.minimum is None
            else f"an integer >= {option.minimum}"
        )
    elif option.type is bool:
        ok = isinstance(value, bool)
        expected = "True or False"
    else:
        ok = isinstance(value, str) and (
            option.choices is None or value in option.choices
        )
        expected = (
            "a string"
            if option.choices is None
            else " or ".join(map(repr, option.choices))
        )
    if not ok:
        if option.off:
            expected += " or None"
        raise ValueError(
            f"`{label}` must be {expected}. Received: "
            f"{option.name}={value!r} (of type {type(value).__name__})."
        )
    return value


def describe_choices(choices: dict) -> str:
    """`'a' (what a), 'b' (what b) or 'c' (what c)`, for help texts."""
    items = [f"{name!r} ({what})" for name, what in choices.items()]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]
