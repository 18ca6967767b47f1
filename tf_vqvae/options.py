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

# `VQVAE(quantizer=...)`.
QUANTIZERS = {
    "ema": "codebook by exponential moving averages",
    "vq": "codebook by gradients",
}
# `VQVAE(likelihood=...)`: the reconstruction term of the loss.
LIKELIHOODS = {
    "mse": "mean squared error, the paper",
    "discretized_logistic": "a per-pixel likelihood, for honest bits/dim",
}
# `VQVAE(data_init=...)`: the codebook drawn from the first batch's encoder
# outputs (`None`: the quantizer's random codebook, the paper).
DATA_INITS = {
    "random": "a random choice of them",
    "kmeans++": "k-means++ seeding on them",
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
# How a user types "off" for an option whose library value is `None`.
OFF = "none"


def describe_choices(choices: dict) -> str:
    """`'a' (what a), 'b' (what b) or 'c' (what c)`, for help texts."""
    items = [f"{name!r} ({what})" for name, what in choices.items()]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]
