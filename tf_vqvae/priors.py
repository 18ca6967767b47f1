"""The prior classes of `tf_vqvae.options.PRIOR_KINDS`, chosen by the code
grid: `make_prior` builds the kind whose grid rank is the grid's.

    prior = make_prior(512, (8, 8))        # PixelCNNPrior (images)
    prior = make_prior(512, (256,), num_classes=8, num_layers=10)
                                           # WaveNetPrior (audio, speakers)
    prior = make_prior(256, (8, 8), num_levels=4)
                                           # PixelCNNPrior over 4 levels
                                           # (residual VQ codes)

The CLI (`vqvae train-prior`) and `tf_vqvae.training.artifacts` build priors
only through here, so a new kind of prior is one entry in `PRIOR_KINDS` and
one in `PRIOR_CLASSES`.
"""

from __future__ import annotations

from tf_vqvae.autoregressive import AutoregressivePrior
from tf_vqvae.options import PRIOR_KINDS, prior_kind_for_rank
from tf_vqvae.prior import PixelCNNPrior
from tf_vqvae.wavenet import WaveNetPrior

# `PRIOR_KINDS` name -> the class.
PRIOR_CLASSES = {"pixelcnn": PixelCNNPrior, "wavenet": WaveNetPrior}


def make_prior(
    num_embeddings: int,
    grid_shape: tuple[int, ...],
    num_classes: int | None = None,
    num_levels: int = 1,
    **arguments,
) -> AutoregressivePrior:
    """A new prior over code grids of `grid_shape`, of the kind for its rank.

    Args:
        num_embeddings: K, the number of codes.
        grid_shape: the code grid, `(h, w)` (PixelCNN) or `(length,)`
            (WaveNet).
        num_classes: `None`, or the number of class labels (e.g. speakers)
            to condition on.
        num_levels: codes per position (residual VQ's levels).
        **arguments: the kind's own constructor arguments
            (`PRIOR_KINDS[kind].arguments`); others are an error.

    Returns:
        An unbuilt `tf_vqvae.contracts.CodePrior`.

    Raises:
        ValueError: no kind models grids of that rank, an argument the kind
            does not take, or the class's own checks.
    """
    grid_shape = tuple(grid_shape)
    kind = prior_kind_for_rank(len(grid_shape))
    unknown = sorted(set(arguments) - set(PRIOR_KINDS[kind].arguments))
    if unknown:
        raise ValueError(
            f"`{unknown[0]}` is not an argument of the {kind!r} prior (its "
            f"arguments: {list(PRIOR_KINDS[kind].arguments)}). "
            f"Received: {unknown[0]}={arguments[unknown[0]]!r}"
        )
    return PRIOR_CLASSES[kind].for_grid(
        num_embeddings,
        grid_shape,
        num_classes=num_classes,
        num_levels=num_levels,
        **arguments,
    )
