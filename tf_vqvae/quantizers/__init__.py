"""Quantizers: layers that snap encoder outputs to a finite set of codes.

One module per kind; each layer meets `tf_vqvae.contracts.Quantizer`, the
only part of it that `VQVAE`, export, evaluation and the callbacks use.

- `vector`: `VectorQuantizer` (codebook by gradients, the paper) and
  `VectorQuantizerEMA` (codebook by moving averages, appendix A.1).
- `residual`: `ResidualVectorQuantizer` (a stack of vector quantizers, each
  on the residual of the ones before; codes with a level axis).
- `scalar`: `FiniteScalarQuantizer` (FSQ: each channel rounded to a few
  values, no codebook).
- `lookup_free`: `LookupFreeQuantizer` (LFQ: each channel's sign, with an
  entropy penalty).
- `grid`: what FSQ and LFQ share (mixed-radix codes, projections, usage).

The kinds `VQVAE(quantizer=...)` builds, their options and which `VQVAE`
arguments each takes are declared once, TensorFlow-free, in
`tf_vqvae.options.QUANTIZER_KINDS` (the command line reads them from
there); `QUANTIZER_CLASSES` binds each kind to its layer class, and
`make_quantizer` builds one.
"""

from __future__ import annotations

import keras

from tf_vqvae import options
from tf_vqvae.quantizers.lookup_free import LookupFreeQuantizer
from tf_vqvae.quantizers.residual import ResidualVectorQuantizer
from tf_vqvae.quantizers.scalar import FiniteScalarQuantizer
from tf_vqvae.quantizers.vector import VectorQuantizer, VectorQuantizerEMA

# Kind (`tf_vqvae.options.QUANTIZER_KINDS`) -> layer class.
QUANTIZER_CLASSES = {
    "ema": VectorQuantizerEMA,
    "vq": VectorQuantizer,
    "rvq": ResidualVectorQuantizer,
    "fsq": FiniteScalarQuantizer,
    "lfq": LookupFreeQuantizer,
}


def make_quantizer(
    kind: str,
    model_arguments: dict,
    quantizer_options: dict | None = None,
    name: str = "quantizer",
    dtype=None,
) -> keras.layers.Layer:
    """The layer of quantizer `kind` (a key of `QUANTIZER_CLASSES`).

    Args:
        kind: e.g. `"ema"`.
        model_arguments: `VQVAE`'s arguments by their `VQVAE` name
            (`num_embeddings`, `embedding_dim`, `commitment_cost`, ...); the
            kind takes those its `QuantizerKind.model_arguments` name, under
            the layer's argument names.
        quantizer_options: the kind's own options (see
            `tf_vqvae.options.resolve_quantizer_options`).
        name: the layer's name.
        dtype: the layer's dtype policy (default: the global one).
    """
    declaration = options.QUANTIZER_KINDS[kind]
    kwargs = {
        argument: model_arguments[model_name]
        for model_name, argument in declaration.model_arguments.items()
    }
    resolved = options.resolve_quantizer_options(kind, quantizer_options)
    for option in declaration.options:
        kwargs[option.layer_argument] = resolved[option.name]
    try:
        return QUANTIZER_CLASSES[kind](name=name, dtype=dtype, **kwargs)
    except (ValueError, TypeError) as error:
        # The layer names its own argument; say which one the user set.
        renamed = {
            argument: model_name
            for model_name, argument in declaration.model_arguments.items()
            if argument != model_name
        }
        renamed.update(
            (option.layer_argument, option.name)
            for option in declaration.options
            if option.layer_argument != option.name
        )
        message = str(error)
        for argument, model_name in renamed.items():
            message = message.replace(
                f"`{argument}`",
                f"`{model_name}` (the {kind!r} quantizer's `{argument}`)",
                1,
            )
        if message == str(error):
            raise
        raise type(error)(message) from None


__all__ = [
    "QUANTIZER_CLASSES",
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "VectorQuantizerEMA",
    "make_quantizer",
]
