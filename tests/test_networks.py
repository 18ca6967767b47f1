"""Encoder, Decoder and ResidualStack."""

import numpy as np
import pytest

from tests.testing import run_layer_test
from tf_vqvae import Decoder, Encoder, ResidualStack

SMALL = {"num_hiddens": 8, "num_residual_blocks": 1, "num_residual_hiddens": 4}


@pytest.mark.parametrize(
    "spatial_dims, in_shape, out_shape",
    [
        (1, (2, 16, 1), (2, 4, 5)),
        (2, (2, 16, 16, 3), (2, 4, 4, 5)),
        (3, (1, 8, 8, 8, 3), (1, 2, 2, 2, 5)),
    ],
    ids=["1d", "2d", "3d"],
)
def test_encoder_decoder_conformance(spatial_dims, in_shape, out_shape):
    kwargs = {**SMALL, "spatial_dims": spatial_dims}
    data = np.random.default_rng(0).normal(size=in_shape).astype("float32")
    run_layer_test(
        Encoder,
        {"embedding_dim": 5, **kwargs},
        data,
        out_shape,
        expected_num_trainable_weights=2 * 2 + 2 + 4 + 2,
        expected_num_non_trainable_weights=0,
    )
    latent = np.zeros(out_shape, "float32")
    run_layer_test(
        Decoder,
        {"output_channels": in_shape[-1], **kwargs},
        latent,
        in_shape,
        expected_num_trainable_weights=2 + 4 + 2 * 2,
        expected_num_non_trainable_weights=0,
    )


def test_paper_defaults_downsample_by_four():
    encoder = Encoder(embedding_dim=64)
    assert encoder(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 8, 8, 64)
    assert encoder.num_hiddens == 256 and encoder.num_residual_blocks == 2
    decoder = Decoder(output_channels=3)
    assert decoder(np.zeros((1, 8, 8, 64), "float32")).shape == (1, 32, 32, 3)


def test_no_downsampling_keeps_resolution():
    kwargs = {**SMALL, "num_downsamples": 0}
    z = Encoder(4, **kwargs)(np.zeros((1, 5, 5, 3), "float32"))
    assert z.shape == (1, 5, 5, 4)
    assert Decoder(3, **kwargs)(z).shape == (1, 5, 5, 3)


def test_residual_stack_conformance():
    run_layer_test(
        ResidualStack,
        {"num_hiddens": 6, "num_residual_blocks": 2, "num_residual_hiddens": 3},
        np.ones((2, 4, 4, 6), "float32"),
        (2, 4, 4, 6),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (
            lambda: Encoder(4, name="enc", **SMALL),
            (2, 16, 3),
            "`enc` expects inputs of shape (batch, height, width, channels) "
            "(rank 4, spatial_dims=2). Received: inputs.shape=(2, 16, 3)",
        ),
        (
            lambda: Encoder(4, name="enc", **SMALL),
            (2, 18, 16, 3),
            "`enc` expects spatial sizes divisible by 2**num_downsamples=4. "
            "Received: inputs.shape=(2, 18, 16, 3)",
        ),
        (
            lambda: Decoder(3, name="dec", spatial_dims=1, **SMALL),
            (2, 4, 4, 3),
            "`dec` expects inputs of shape (batch, length, channels) "
            "(rank 3, spatial_dims=1). Received: inputs.shape=(2, 4, 4, 3)",
        ),
    ],
    ids=["rank", "divisible", "decoder-rank"],
)
def test_bad_input_messages(layer, shape, message):
    with pytest.raises(ValueError) as error:
        layer()(np.zeros(shape, "float32"))
    assert str(error.value) == message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"num_hiddens": 0},
            "`num_hiddens` must be a positive integer. "
            "Received: num_hiddens=0 (of type int).",
        ),
        (
            {"spatial_dims": 4},
            "`spatial_dims` must be 1, 2 or 3. "
            "Received: spatial_dims=4 (of type int).",
        ),
        (
            {"num_downsamples": -1},
            "`num_downsamples` must be a non-negative integer. "
            "Received: num_downsamples=-1 (of type int).",
        ),
    ],
    ids=["hiddens", "spatial-dims", "downsamples"],
)
def test_bad_argument_messages(kwargs, message):
    with pytest.raises(ValueError) as error:
        Encoder(4, **kwargs)
    assert str(error.value) == message


def test_empty_batch_gives_empty_outputs():
    # oneDNN's convolutions return the input's shape for an empty batch.
    encoder = Encoder(embedding_dim=5, **SMALL)
    decoder = Decoder(output_channels=3, **SMALL)
    z = encoder(np.zeros((0, 16, 16, 3), "float32"))
    assert tuple(z.shape) == (0, 4, 4, 5)
    assert tuple(decoder(z).shape) == (0, 16, 16, 3)


def test_speaker_embedding_is_a_per_speaker_bias_of_every_hidden_layer():
    """A speaker-conditioned decoder equals the unconditioned one whose
    hidden layers' biases are shifted by that speaker's embedding rows: the
    3-wide conv, each residual block's output (its 1x1 conv) and each
    hidden upsampling; the output layer is not conditioned."""
    kwargs = dict(
        output_channels=5,
        num_hiddens=6,
        num_residual_blocks=2,
        num_residual_hiddens=3,
        num_downsamples=3,
        spatial_dims=1,
    )
    conditioned = Decoder(num_speakers=3, **kwargs)
    plain = Decoder(**kwargs)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 4, 7)).astype("float32")
    speaker = np.array([2, 2], "int32")
    conditioned(z, speaker=speaker)
    plain(z)
    for variable in conditioned.weights:
        variable.assign(rng.normal(size=variable.shape) * 0.5)
    tables = [np.asarray(e.embeddings) for e in conditioned.speaker_embeddings]
    assert len(tables) == 1 + 2 + 2
    shifted = {
        "conv": tables[0],
        "res0_1x1": tables[1],
        "res1_1x1": tables[2],
        "up0": tables[3],
        "up1": tables[4],
    }
    by_path = {v.path: v for v in conditioned.weights}
    for variable in plain.weights:
        source = by_path[variable.path.replace(plain.name, conditioned.name)]
        value = np.asarray(source)
        layer = variable.path.split("/")[-2]
        if variable.name == "bias" and layer in shifted:
            value = value + shifted[layer][2]
        variable.assign(value)
    np.testing.assert_allclose(
        conditioned(z, speaker=speaker), plain(z), rtol=1e-5, atol=1e-5
    )
    config = conditioned.get_config()
    assert config["num_speakers"] == 3
    assert Decoder.from_config(config).get_config() == config


def test_decoder_speaker_argument_is_checked():
    z = np.zeros((1, 4, 7), "float32")
    kwargs = dict(output_channels=5, spatial_dims=1, **SMALL)
    cases = [
        (
            lambda: Decoder(num_speakers=2, name="dec", **kwargs)(z),
            "`dec` is conditioned on num_speakers=2 speakers; pass "
            "`speaker` ids (batch,).",
        ),
        (
            lambda: Decoder(name="dec", **kwargs)(z, speaker=np.array([0])),
            "`dec` has no speaker embedding (num_speakers=None); call it "
            "without `speaker`.",
        ),
        (
            lambda: Decoder(num_speakers=0, **kwargs),
            "`num_speakers` must be a positive integer. "
            "Received: num_speakers=0 (of type int).",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as error:
            call()
        assert message in str(error.value)
