"""The library's classes against `tf_vqvae.contracts`, and the code that may
use only the contracts (export, evaluation, TensorBoard callbacks) against
reaching into model internals."""

import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import photo_patches
from tf_vqvae import VQVAE, PixelCNNPrior, VectorQuantizer, VectorQuantizerEMA
from tf_vqvae.contracts import CodeModel, CodePrior, Quantizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
)


@pytest.mark.parametrize(
    "cls", [VectorQuantizer, VectorQuantizerEMA], ids=["vq", "ema"]
)
def test_quantizers_implement_the_quantizer_contract(cls):
    layer = cls(8, 3, data_init=None, dead_code_restart_steps=None)
    assert isinstance(layer, Quantizer)
    assert layer.num_levels == 1
    z = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    codes = layer.encode(z)
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (2, 5)
    assert 0 <= int(tf.reduce_min(codes)) and int(tf.reduce_max(codes)) < 8
    np.testing.assert_array_equal(layer.lookup(codes), layer(z, training=False))
    codebook = np.asarray(layer.codebook())
    assert codebook.shape == (layer.num_embeddings, layer.embedding_dim)
    # The codes are the nearest codebook rows (numpy reference).
    distances = ((z[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_array_equal(codes, distances.argmin(-1))


@pytest.mark.parametrize("likelihood", ["mse", "discretized_logistic"])
def test_vqvae_implements_the_code_model_contract(likelihood):
    images = photo_patches(size=16, count=3, seed=0)
    model = VQVAE(likelihood=likelihood, **TINY)
    assert model.example_shape is None
    model(images)
    assert isinstance(model, CodeModel)
    assert isinstance(model.quantizer, Quantizer)
    assert model.example_shape == (16, 16, 3)
    assert model.likelihood == likelihood
    assert model.num_embeddings == model.quantizer.num_embeddings == 16
    codes = model.encode(images)
    assert tuple(codes.shape[1:]) == model.code_shape(model.example_shape)
    assert (
        model.code_shape((16, 16, 3)) == (16 // model.downsampling_factor,) * 2
    )
    decoded = model.decode(codes)
    assert decoded.dtype == tf.float32
    assert tuple(decoded.shape) == (3, *model.example_shape)
    np.testing.assert_array_equal(decoded, model(images, training=False))
    outputs = model.decoder_outputs(codes)
    assert tuple(outputs.shape[:-1]) == (3, 16, 16)


@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_vqvae_latents_are_what_the_codes_are_nearest_to(distance):
    """`lookup(encode(x))` is the codebook row nearest to `latents(x)`
    (numpy), and `encode` is the quantizer's `encode` of the latents."""
    images = photo_patches(size=16, count=3, seed=2)
    model = VQVAE(
        quantizer="vq", quantizer_options={"distance": distance}, **TINY
    )
    model(images)
    latents = model.latents(images)
    assert latents.dtype == tf.float32
    assert tuple(latents.shape) == (3, 4, 4, 4)
    codes = model.encode(images)
    np.testing.assert_array_equal(model.quantizer.encode(latents), codes)

    z = np.asarray(latents, "float64")
    codebook = np.asarray(model.quantizer.codebook(), "float64")
    if distance == "cosine":
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        codebook = codebook / np.linalg.norm(codebook, axis=-1, keepdims=True)
    distances = ((z[..., None, :] - codebook) ** 2).sum(-1)
    # float32 in the layer: a code is "nearest" if its float64 distance is
    # the minimum up to float32 rounding (cosine ties differ by ~1e-7).
    chosen = np.take_along_axis(distances, np.asarray(codes)[..., None], -1)
    np.testing.assert_allclose(chosen[..., 0], distances.min(-1), atol=1e-5)
    lookup = np.asarray(model.quantizer.lookup(codes), "float64")
    rows = np.asarray(model.quantizer.codebook(), "float64")[np.asarray(codes)]
    np.testing.assert_allclose(lookup, rows, rtol=1e-6)


def test_image_vqvae_declares_its_modality():
    model = VQVAE(**TINY)
    assert model.modality == "image" and model.num_speakers is None


@pytest.mark.parametrize("num_speakers", [None, 2], ids=["plain", "speakers"])
def test_audio_vqvae_implements_the_code_model_contract(num_speakers):
    rng = np.random.default_rng(0)
    waves = rng.uniform(-1, 1, size=(3, 256, 1)).astype("float32")
    speaker = None if num_speakers is None else tf.constant([0, 1, 1])
    model = VQVAE(
        modality="audio",
        spatial_dims=1,
        num_downsamples=6,
        num_speakers=num_speakers,
        **TINY,
    )
    inputs = waves if speaker is None else {"audio": waves, "speaker": speaker}
    reconstruction = model(inputs, training=False)
    assert isinstance(model, CodeModel)
    assert model.modality == "audio" and model.num_speakers == num_speakers
    assert model.likelihood == "mu_law"
    assert model.example_shape == (256, 1)
    assert model.downsampling_factor == 64
    codes = model.encode(waves)
    assert codes.dtype == tf.int32
    assert tuple(codes.shape[1:]) == model.code_shape(model.example_shape)
    assert model.code_shape((256, 1)) == (4,)
    decoded = model.decode(codes, speaker=speaker)
    assert decoded.dtype == tf.float32
    assert tuple(decoded.shape) == (3, *model.example_shape)
    assert float(tf.reduce_max(tf.abs(decoded))) <= 1.0
    np.testing.assert_array_equal(decoded, reconstruction)
    outputs = model.decoder_outputs(codes, speaker=speaker)
    assert tuple(outputs.shape) == (3, 256, 256)


@pytest.mark.parametrize("num_classes", [None, 3], ids=["plain", "labels"])
def test_pixelcnn_prior_implements_the_code_prior_contract(num_classes):
    keras.utils.set_random_seed(0)
    prior = PixelCNNPrior(
        num_embeddings=6,
        grid_shape=(3, 3),
        num_hiddens=8,
        num_layers=2,
        num_classes=num_classes,
    )
    assert isinstance(prior, CodePrior)
    assert prior.num_embeddings == 6 and prior.grid_shape == (3, 3)
    assert prior.num_classes == num_classes
    labels = None if num_classes is None else tf.constant([0, 2])
    noise = np.random.default_rng(0).random((2, 3, 3, 6), np.float32)
    codes = prior.sample_codes(noise, labels)
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (2, 3, 3)
    np.testing.assert_array_equal(prior.sample_codes(noise, labels), codes)
    log_prob = prior.distribution(labels=labels).log_prob(codes)
    assert tuple(log_prob.shape) == (2,)
    assert np.all(np.isfinite(log_prob)) and np.all(np.asarray(log_prob) < 0)


def _sources(*paths: str) -> dict[str, str]:
    files = []
    for path in paths:
        path = ROOT / path
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return {str(f.relative_to(ROOT)): f.read_text() for f in files}


# Members of the model, quantizer or prior outside the contracts.
_INTERNALS = re.compile(
    r"\.(encoder|decoder|num_downsamples|image_channels|spatial_dims"
    r"|sampling_function)\b|quantizer\.embeddings\b"
)


def test_contract_users_touch_no_model_internals():
    users = _sources(
        "export", "tf_vqvae/evaluation.py", "training/callbacks.py"
    )
    found = [
        f"{name}:{number}: {line.strip()}"
        for name, text in users.items()
        for number, line in enumerate(text.splitlines(), start=1)
        if _INTERNALS.search(line)
    ]
    assert found == []


def test_installed_code_uses_no_private_tensorflow_api():
    private = re.compile(
        r"tensorflow\.python|_pywrap|_call_tf_sessionrun|_get_ops_details"
    )
    found = [
        name
        for name, text in _sources("tf_vqvae", "export", "training").items()
        if private.search(text)
    ]
    assert found == []
