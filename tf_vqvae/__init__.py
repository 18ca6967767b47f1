"""tf-vqvae: VQ-VAE for TensorFlow/Keras."""

from tf_vqvae.evaluation import bits_per_dim
from tf_vqvae.metrics import CodebookUsage
from tf_vqvae.networks import Decoder, Encoder, ResidualStack
from tf_vqvae.prior import GatedPixelCNNBlock, MaskedConv2D, PixelCNNPrior
from tf_vqvae.quantizers import VectorQuantizer, VectorQuantizerEMA
from tf_vqvae.version import __version__
from tf_vqvae.vqvae import VQVAE

__all__ = [
    "CodebookUsage",
    "Decoder",
    "Encoder",
    "GatedPixelCNNBlock",
    "MaskedConv2D",
    "PixelCNNPrior",
    "ResidualStack",
    "VQVAE",
    "VectorQuantizer",
    "VectorQuantizerEMA",
    "__version__",
    "bits_per_dim",
]
