"""Tests for `tf_vqvae.priors` and `options.PRIOR_KINDS`: the prior kind
follows the code grid's rank, with the CLI's options of that kind."""

import pytest

from tf_vqvae import PixelCNNPrior, WaveNetPrior, options, priors
from tf_vqvae.training.config import PriorConfig


def test_the_kind_follows_the_grid_rank():
    assert options.prior_kind_for_rank(2) == "pixelcnn"
    assert options.prior_kind_for_rank(1) == "wavenet"
    with pytest.raises(ValueError) as error:
        options.prior_kind_for_rank(3)
    assert str(error.value) == (
        "No prior models 3-D code grids (priors exist for ranks [1, 2]). "
        "Received: rank=3"
    )
    assert set(priors.PRIOR_CLASSES) == set(options.PRIOR_KINDS)


def test_make_prior_with_the_configs_options_of_each_kind():
    config = PriorConfig(
        num_hiddens=12,
        num_layers=3,
        kernel_size=5,
        residual_channels=6,
        skip_channels=10,
        dilation_cycle=2,
    )
    assert config.prior_kwargs("pixelcnn") == {
        "num_hiddens": 12,
        "num_layers": 3,
        "kernel_size": 5,
    }
    assert config.prior_kwargs("wavenet") == {
        "residual_channels": 6,
        "skip_channels": 10,
        "num_layers": 3,
        "dilation_cycle": 2,
    }
    image = priors.make_prior(
        16, (4, 4), num_classes=3, **config.prior_kwargs("pixelcnn")
    )
    assert isinstance(image, PixelCNNPrior)
    assert (image.grid_shape, image.num_classes) == ((4, 4), 3)
    assert (image.num_hiddens, image.num_layers, image.kernel_size) == (
        12,
        3,
        5,
    )
    sound = priors.make_prior(32, (20,), **config.prior_kwargs("wavenet"))
    assert isinstance(sound, WaveNetPrior)
    assert (sound.num_embeddings, sound.length, sound.num_classes) == (
        32,
        20,
        None,
    )
    assert sound.dilations == (1, 2, 1)
    assert (sound.residual_channels, sound.skip_channels) == (6, 10)


def test_make_prior_refuses_another_kinds_options():
    with pytest.raises(ValueError) as error:
        priors.make_prior(16, (8,), kernel_size=3)
    assert str(error.value) == (
        "`kernel_size` is not an argument of the 'wavenet' prior (its "
        "arguments: ['residual_channels', 'skip_channels', 'num_layers', "
        "'dilation_cycle']). Received: kernel_size=3"
    )
    with pytest.raises(ValueError) as error:
        WaveNetPrior.for_grid(16, (4, 4))
    assert str(error.value) == (
        "`grid_shape` must be (length,) for a WaveNetPrior. "
        "Received: grid_shape=(4, 4)"
    )
