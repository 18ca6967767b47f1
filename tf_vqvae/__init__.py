"""tf-vqvae: VQ-VAE for TensorFlow/Keras.

The public names load their modules (and TensorFlow) when first used, so
TensorFlow-free parts such as `tf_vqvae.options` and `vqvae --help` start
fast. When TensorFlow is already imported, `import tf_vqvae` loads them at
once, which also registers the Keras classes for `keras.saving.load_model`
(otherwise use a name first, e.g. `from tf_vqvae import VQVAE`).
"""

import importlib
import sys

from tf_vqvae.version import __version__

# Public name -> the module that defines it.
_PUBLIC = {
    "CodebookUsage": "tf_vqvae.metrics",
    "Decoder": "tf_vqvae.networks",
    "Encoder": "tf_vqvae.networks",
    "FiniteScalarQuantizer": "tf_vqvae.quantizers",
    "GatedPixelCNNBlock": "tf_vqvae.prior",
    "LogMelFrames": "tf_vqvae.spectral",
    "LookupFreeQuantizer": "tf_vqvae.quantizers",
    "MaskedConv2D": "tf_vqvae.prior",
    "PixelCNNPrior": "tf_vqvae.prior",
    "ResidualVectorQuantizer": "tf_vqvae.quantizers",
    "ResidualStack": "tf_vqvae.networks",
    "SpeakerClassifier": "tf_vqvae.speech_metrics",
    "VQVAE": "tf_vqvae.vqvae",
    "VectorQuantizer": "tf_vqvae.quantizers",
    "VectorQuantizerEMA": "tf_vqvae.quantizers",
    "WaveNetDecoder": "tf_vqvae.wavenet",
    "WaveNetPrior": "tf_vqvae.wavenet",
    "bits_per_dim": "tf_vqvae.evaluation",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if "tensorflow" in sys.modules:
    for _name in _PUBLIC:
        __getattr__(_name)
