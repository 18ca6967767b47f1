"""Quantizers: layers that snap encoder outputs to a finite set of codes.

One module per kind; each layer meets `tf_vqvae.contracts.Quantizer`, the
only part of it that `VQVAE`, export, evaluation and the callbacks use.

- `vector`: `VectorQuantizer` (codebook by gradients, the paper) and
  `VectorQuantizerEMA` (codebook by moving averages, appendix A.1).
- `residual`: `ResidualVectorQuantizer` (a stack of vector quantizers, each
  on the residual of the ones before; codes with a level axis).
"""

from tf_vqvae.quantizers.residual import ResidualVectorQuantizer
from tf_vqvae.quantizers.vector import VectorQuantizer, VectorQuantizerEMA

__all__ = [
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "VectorQuantizerEMA",
]
