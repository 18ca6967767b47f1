"""Training and sampling precision: float32, bfloat16, float16 or auto.

A precision names a Keras dtype policy (`POLICIES`): variables stay float32
and the convolutions compute in bfloat16 or float16. What must stay exact
stays float32 under every policy: the codebook, the distances and the
nearest-code search, the EMA statistics, the losses and their reductions,
the prior's logits and the sampler's Gumbel noise. `float16` needs loss
scaling; `keras.Model.compile` wraps the optimizer in
`keras.mixed_precision.LossScaleOptimizer` for a model whose policy is
`mixed_float16`.

`"auto"` picks what the hardware runs fast (`resolve`):

    GPUs present:  all of compute capability >= 8.0 -> bfloat16
                   all >= 7.0                      -> float16
                   otherwise                       -> float32
    CPU only:      flags amx_bf16 or avx512_bf16    -> bfloat16
                   otherwise                       -> float32

Use it without touching Keras' global policy, by passing the policy to a
model, whose layers all take it:

    model = tf_vqvae.VQVAE(dtype=tf_vqvae.precision.dtype_policy("auto"))

or by building inside `policy_scope`, which restores the global policy on
exit:

    with tf_vqvae.precision.policy_scope("bfloat16"):
        prior = tf_vqvae.PixelCNNPrior(512, (8, 8))
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import keras

from tf_vqvae.arg_checks import describe
from tf_vqvae.options import PRECISIONS

# Concrete precision -> Keras dtype policy name.
POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix instructions.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Minimum GPU compute capabilities of bfloat16 and float16 tensor cores.
BF16_GPU_CAPABILITY = (8, 0)
FP16_GPU_CAPABILITY = (7, 0)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """A concrete precision and why it was chosen.

    Attributes:
        precision: `"float32"`, `"bfloat16"` or `"float16"`.
        reason: one line, e.g. `"auto: the CPU reports avx512_bf16"`.
    """

    precision: str
    reason: str

    @property
    def policy(self) -> str:
        """The Keras dtype policy name, e.g. `"mixed_bfloat16"`."""
        return POLICIES[self.precision]


def _choices() -> str:
    return ", ".join(repr(p) for p in PRECISIONS)


def check_precision(precision: str) -> None:
    """Raises `ValueError` unless `precision` is one of `PRECISIONS`."""
    # Not a string: `in` on the dict would hash it (a DTypePolicy cannot be).
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {_choices()}. "
            f"{describe('precision', precision)}"
        )


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty where `path` does not exist)."""
    try:
        with open(path) as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the GPUs TensorFlow sees (none: `[]`)."""
    import tensorflow as tf

    capabilities = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def resolve(
    precision: str = "auto",
    flags: frozenset[str] | None = None,
    gpus: Sequence[tuple[int, int]] | None = None,
) -> Resolution:
    """The concrete precision `precision` names on this machine.

    Args:
        precision: one of `PRECISIONS`; only `"auto"` looks at the hardware.
        flags: the CPU flags (default: `cpu_flags()`).
        gpus: the GPUs' compute capabilities (default:
            `gpu_capabilities()`).

    Returns:
        A `Resolution`.

    Raises:
        ValueError: for an unknown `precision`.
    """
    check_precision(precision)
    if precision != "auto":
        return Resolution(precision, "chosen")
    gpus = gpu_capabilities() if gpus is None else list(gpus)
    if gpus:
        lowest = min(tuple(g) for g in gpus)
        shown = f"GPU compute capability {lowest[0]}.{lowest[1]}"
        if lowest >= BF16_GPU_CAPABILITY:
            return Resolution("bfloat16", f"auto: {shown} >= 8.0")
        if lowest >= FP16_GPU_CAPABILITY:
            return Resolution("float16", f"auto: {shown} >= 7.0, < 8.0")
        return Resolution("float32", f"auto: {shown} < 7.0")
    flags = cpu_flags() if flags is None else flags
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if found:
        return Resolution(
            "bfloat16", f"auto: no GPU; the CPU reports {', '.join(found)}"
        )
    neither = " nor ".join(BF16_CPU_FLAGS)
    return Resolution(
        "float32", f"auto: no GPU, and the CPU reports neither {neither}"
    )


def dtype_policy(
    precision: str | keras.DTypePolicy = "auto",
) -> keras.DTypePolicy:
    """The Keras dtype policy of `precision` (resolved if `"auto"`), for
    `VQVAE(dtype=...)` / `PixelCNNPrior(dtype=...)`.

    Args:
        precision: one of `PRECISIONS`, or a Keras dtype policy (returned
            as it is).

    Raises:
        ValueError: anything else.
    """
    if isinstance(precision, keras.DTypePolicy):
        return precision
    if not isinstance(precision, str):
        raise ValueError(
            f"`precision` must be one of {_choices()}, or a "
            f"`keras.DTypePolicy`. {describe('precision', precision)}"
        )
    return keras.DTypePolicy(resolve(precision).policy)


@contextlib.contextmanager
def policy_scope(
    precision: str | keras.DTypePolicy,
) -> Iterator[keras.DTypePolicy]:
    """Sets Keras' global dtype policy inside the block, then restores it.

    Args:
        precision: one of `PRECISIONS`, or a Keras dtype policy.

    Yields:
        The policy in force.

    Raises:
        ValueError: `precision` is neither.
    """
    policy = dtype_policy(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` if it computes in float32, else a float32 copy of it.

    The copy has the same config (but `dtype="float32"`) and the same
    weights, which are float32 under every policy: e.g. for converters
    without bfloat16 or float16 kernels, such as TFLite's.

    Args:
        model: a built Keras model of a registered class (`VQVAE`,
            `PixelCNNPrior`).

    Returns:
        A built `keras.Model` whose layers all compute in float32.
    """
    if model.compute_dtype == "float32":
        return model
    copy = type(model).from_config({**model.get_config(), "dtype": "float32"})
    copy.build_from_config(model.get_build_config())
    copy.set_weights(model.get_weights())
    return copy
