"""Quantizers: layers that snap encoder outputs to a finite set of codes.

One module per kind; each layer meets `tf_vqvae.contracts.Quantizer`, the
only part of it that `VQVAE`, export, evaluation and the callbacks use.

- `vector`: `VectorQuantizer` (codebook by gradients, the paper) and
  `VectorQuantizerEMA` (codebook by moving averages, appendix A.1).
"""

from tf_vqvae.quantizers.vector import VectorQuantizer, VectorQuantizerEMA

__all__ = ["VectorQuantizer", "VectorQuantizerEMA"]
