"""Quantizers: layers that snap encoder outputs to a finite set of codes.

One module per kind; each layer meets `tf_vqvae.contracts.Quantizer`, the
only part of it that `VQVAE`, export, evaluation and the callbacks use.

- `vector`: `VectorQuantizer` (codebook by gradients, the paper) and
  `VectorQuantizerEMA` (codebook by moving averages, appendix A.1).
- `scalar`: `FiniteScalarQuantizer` (FSQ: each channel rounded to a few
  values, no codebook).
- `lookup_free`: `LookupFreeQuantizer` (LFQ: each channel's sign, with an
  entropy penalty).
- `grid`: what FSQ and LFQ share (mixed-radix codes, projections, usage).
"""

from tf_vqvae.quantizers.lookup_free import LookupFreeQuantizer
from tf_vqvae.quantizers.scalar import FiniteScalarQuantizer
from tf_vqvae.quantizers.vector import VectorQuantizer, VectorQuantizerEMA

__all__ = [
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "VectorQuantizer",
    "VectorQuantizerEMA",
]
