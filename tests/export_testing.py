"""Helpers of the export tests: a small trained model, isolated subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np

from tests.testing import photo_patches
from tf_vqvae import VQVAE

TINY = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
    num_downsamples=2,
)
IMAGE_SIZE = (16, 16)
CODE_SIZE = (4, 4)

# Put first in a subprocess: `import tf_vqvae` then fails, so the artifact
# is shown to load with TensorFlow / LiteRT alone.
BLOCK_TF_VQVAE = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

    class _BlockTfVqvae:
        def find_spec(self, name, path=None, target=None):
            if name == "tf_vqvae" or name.startswith("tf_vqvae."):
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, _BlockTfVqvae())
    try:
        import tf_vqvae  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("tf_vqvae is importable")
    """
)


def trained_model(seed: int = 0) -> tuple[VQVAE, np.ndarray]:
    """A tiny VQ-VAE fitted for one epoch on real 16x16 photo patches."""
    images = photo_patches(size=16, count=64, seed=seed)
    keras.utils.set_random_seed(seed)
    model = VQVAE(**TINY, data_init="random")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(images, batch_size=16, epochs=2, verbose=0)
    return model, images


def tiny_prior(num_classes: int | None = None):
    """An untrained tiny `PixelCNNPrior` over the codes of `trained_model`."""
    from tf_vqvae.prior import PixelCNNPrior

    keras.utils.set_random_seed(1)
    prior = PixelCNNPrior(
        num_embeddings=TINY["num_embeddings"],
        grid_shape=CODE_SIZE,
        num_hiddens=8,
        num_layers=2,
        num_classes=num_classes,
    )
    if num_classes is None:
        prior.build((None, *CODE_SIZE))
    else:
        prior.build({"codes": (None, *CODE_SIZE), "labels": (None,)})
    return prior


def run_isolated(script: str, *args: str, timeout: int = 300) -> str:
    """Runs `script` in a fresh `python -I` with `tf_vqvae` blocked."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-I", "-c", BLOCK_TF_VQVAE + script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
    )
    if result.returncode != 0:
        raise AssertionError(
            f"isolated process failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def assertion_message(error_message: str) -> str:
    """The message of a failed in-graph `Assert`, without TF's decorations."""
    match = re.search(r"assertion failed: \[(.*?)\]\n", error_message)
    if match is None:
        raise AssertionError(f"not an assertion failure: {error_message!r}")
    return match.group(1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of `a` against `b`, images in [0, 1]."""
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
