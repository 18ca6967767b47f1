"""Export of an audio model with its WaveNet prior: the SavedModel's
`sample` signature and the TFLite prior sampler give the codes of
`WaveNetPrior.sample_codes` for the same seed / noise."""

import numpy as np
import pytest
import tensorflow as tf

from tests.export_testing import run_isolated
from tests.test_audio_model import TINY_AUDIO, chirp
from tf_vqvae import VQVAE, PixelCNNPrior, WaveNetPrior, sampling
from tf_vqvae.export import common, manifest, saved_model, tflite

SAMPLES = 512
CODES = SAMPLES // 64


def _model_and_prior(num_classes=None, num_speakers=None, levels=1):
    rvq = (
        dict(quantizer="rvq", quantizer_options={"num_quantizers": levels})
        if levels > 1
        else {}
    )
    model = VQVAE(num_speakers=num_speakers, **TINY_AUDIO, **rvq)
    model.encode(chirp(batch=1, samples=SAMPLES))
    codes_shape = (None, CODES) + ((levels,) if levels > 1 else ())
    prior = WaveNetPrior(
        num_embeddings=16,
        length=CODES,
        residual_channels=8,
        skip_channels=8,
        num_layers=3,
        dilation_cycle=2,
        num_classes=num_classes,
        num_levels=levels,
    )
    prior.build(
        codes_shape
        if num_classes is None
        else {"codes": codes_shape, "labels": (None,)}
    )
    return model, prior


@pytest.mark.parametrize(
    "num_classes, num_speakers, levels",
    [
        pytest.param(None, None, 1, marks=pytest.mark.slow),
        pytest.param(2, 2, 1, marks=pytest.mark.slow),
        (2, 2, 2),
    ],
    ids=["plain", "speakers", "speakers-rvq-levels"],
)
def test_sample_signature_is_the_priors_sampler(
    num_classes, num_speakers, levels, tmp_path
):
    # With residual VQ codes the prior models their levels: codes (num,
    # length, L), decoded by every level.
    model, prior = _model_and_prior(num_classes, num_speakers, levels)
    version_dir = saved_model.export_saved_model(
        model, tmp_path, "speech", prior=prior, max_batch_size=4
    )
    contract = saved_model.signature_contract(version_dir)["sample"]
    level_axis = [levels] if levels > 1 else []
    assert contract["outputs"] == {
        "codes": {"dtype": "int32", "shape": [-1, CODES, *level_axis]},
        "waveforms": {"dtype": "float32", "shape": [-1, SAMPLES]},
    }
    sample = saved_model.load(version_dir).signatures["sample"]
    labels = np.array([1, 0, 1], "int32")
    extra, prior_labels, speaker = {}, None, None
    if num_classes is not None:
        extra = {"labels": tf.constant(labels), "speaker": tf.constant(labels)}
        prior_labels = speaker = labels
    out = sample(num=tf.constant(3), seed=tf.constant(11), **extra)
    noise = sampling.prior_noise(prior, 3, 11)
    expected = prior.sample_codes(noise, prior_labels)
    np.testing.assert_array_equal(out["codes"], expected)
    # What Python's `distribution().sample(seed=11)` draws, too.
    distribution = prior.distribution(labels=prior_labels)
    drawn = (
        distribution.sample(3, seed=11)
        if prior_labels is None
        else distribution.sample(seed=11)
    )
    np.testing.assert_array_equal(out["codes"], drawn)
    np.testing.assert_allclose(
        out["waveforms"], model.decode(expected, speaker)[..., 0], atol=1e-6
    )


_ISOLATED_SAMPLER = """
import numpy as np
from ai_edge_litert.interpreter import Interpreter

model_path, data_path, out_path = sys.argv[1:4]
data = np.load(data_path)
runner = Interpreter(model_path=model_path).get_signature_runner("sample")
np.save(out_path, runner(noise=data["noise"])["codes"])
print("ok")
"""


@pytest.mark.slow
def test_tflite_prior_sampler_in_litert(tmp_path):
    """The app's sampler (a fresh LiteRT process: ~20 s, so slow; the
    WaveNet's conversion to builtins is in test_wavenet's default tests)."""
    model, prior = _model_and_prior()
    files = tflite.export_tflite(
        model, tmp_path / "tflite", quantization=("float32",), prior=prior
    )
    assert "prior_sampler_float32.tflite" in files
    contract = tflite.signature_contract(tmp_path / "tflite")
    assert contract["prior_sampler_float32.tflite"] == {
        "sample": {
            "inputs": {"noise": {"dtype": "float32", "shape": [1, CODES, 16]}},
            "outputs": {"codes": {"dtype": "int32", "shape": [1, CODES]}},
        }
    }
    ops = manifest.read_manifest(tmp_path / "tflite")["ops"]
    sampler_ops = ops["prior_sampler_float32.tflite"]
    assert not any(op.startswith("Flex") for op in sampler_ops)
    noise = sampling.prior_noise(prior, 1, 3).numpy()
    np.savez(tmp_path / "data.npz", noise=noise)
    stdout = run_isolated(
        _ISOLATED_SAMPLER,
        str(tmp_path / "tflite" / "prior_sampler_float32.tflite"),
        str(tmp_path / "data.npz"),
        str(tmp_path / "codes.npy"),
    )
    assert stdout.strip() == "ok"
    np.testing.assert_array_equal(
        np.load(tmp_path / "codes.npy"), prior.sample_codes(noise)
    )


def test_check_prior_compares_grids_of_any_rank():
    model, prior = _model_and_prior()
    shapes = common.export_shapes(model)
    common.check_prior(prior, shapes)
    image_prior = PixelCNNPrior(num_embeddings=16, grid_shape=(2, 4))
    longer = WaveNetPrior(num_embeddings=16, length=CODES * 2)
    for other, grid in ((image_prior, (2, 4)), (longer, (CODES * 2,))):
        with pytest.raises(ValueError) as error:
            common.check_prior(other, shapes)
        assert str(error.value) == (
            "`prior` must model the codes of `model`: num_embeddings=16 "
            f"and a code grid of ({CODES},). Received: "
            f"prior.num_embeddings=16, prior.grid_shape={grid}"
        )
    with pytest.raises(TypeError) as error:
        common.check_prior(object(), shapes)
    assert str(error.value).startswith(
        "`prior` must be a tf_vqvae prior (a tf_vqvae.contracts.CodePrior, "
        "e.g. PixelCNNPrior or WaveNetPrior)."
    )


def test_check_prior_compares_levels_of_audio_codes():
    model, prior = _model_and_prior(levels=2)
    shapes = common.export_shapes(model)
    common.check_prior(prior, shapes)
    one_level = WaveNetPrior(num_embeddings=16, length=CODES)
    with pytest.raises(ValueError) as error:
        common.check_prior(one_level, shapes)
    assert str(error.value) == (
        "`prior` must model 2 code(s) per position, the levels of `model`'s "
        "codes (a WaveNetPrior(num_levels=...) for residual VQ). Received: "
        "prior.num_levels=1, model num_levels=2"
    )
