"""Export of every quantizer kind: SavedModel and builtins-only TFLite
encoder and decoder, matching Keras in a fresh process without tf_vqvae, and
the level axis of multi-level (residual VQ) codes with its in-graph checks."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.export_testing import (
    IMAGE_SIZE,
    TINY,
    assertion_message,
    run_isolated,
)
from tests.testing import TINY_QUANTIZER_OPTIONS, photo_patches
from tf_vqvae import VQVAE
from tf_vqvae.export import export_saved_model, export_tflite
from tf_vqvae.export.tflite import op_names

ISOLATED = """
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

version_dir, tflite_dir, data_path, out_path = sys.argv[1:5]
data = np.load(data_path)
sigs = tf.saved_model.load(version_dir).signatures
results = {
    "saved_model/encode": sigs["encode"](
        images=tf.constant(data["images"]))["codes"].numpy(),
    "saved_model/decode": sigs["decode"](
        codes=tf.constant(data["codes"]))["images"].numpy(),
}
bad = data["codes"].copy()
bad[..., -1] = 99
try:
    sigs["decode"](codes=tf.constant(bad))
except tf.errors.InvalidArgumentError as e:
    results["bad_codes_error"] = np.array(e.message)
for name, key, inputs in (
    ("encoder_float32.tflite", "encode", {"images": data["images"]}),
    ("decoder_float32.tflite", "decode", {"codes": data["codes"]}),
):
    interpreter = Interpreter(model_path=os.path.join(tflite_dir, name))
    runner = interpreter.get_signature_runner(key)
    (value,) = runner(**inputs).values()
    results[f"tflite/{key}"] = value
# Levels: every prefix, one decoder (LiteRT resizes the level axis); codes
# of one level have no level axis.
levels = data["codes"].shape[-1] if data["codes"].ndim == 4 else 0
for n in range(1, levels + 1):
    prefix = np.ascontiguousarray(data["codes"][..., :n])
    results[f"saved_model/decode_{n}"] = sigs["decode"](
        codes=tf.constant(prefix))["images"].numpy()
    (results[f"tflite/decode_{n}"],) = runner(codes=prefix).values()
np.savez(out_path, **results)
"""


def _model(quantizer: str, seed: int = 0):
    """A tiny model of `quantizer`, fitted one epoch on real patches."""
    images = photo_patches(size=16, count=32, seed=seed)
    keras.utils.set_random_seed(seed)
    model = VQVAE(
        **TINY,
        quantizer=quantizer,
        quantizer_options=TINY_QUANTIZER_OPTIONS[quantizer],
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(images, batch_size=16, epochs=1, verbose=0)
    return model, images


@pytest.mark.slow
@pytest.mark.parametrize("quantizer", ["rvq", "fsq", "lfq", "vq"])
def test_every_kind_exports_and_matches_keras_without_tf_vqvae(
    quantizer, tmp_path
):
    model, images = _model(quantizer)
    levels = model.quantizer.num_levels
    version_dir = export_saved_model(model, tmp_path, warmup=False)
    tflite_dir = tmp_path / "tflite"
    files = export_tflite(model, tflite_dir, quantization=("float32",))
    for path in files.values():
        ops = op_names(path)
        assert not [op for op in ops if op.startswith("Flex")], ops
        assert "CUSTOM" not in ops, ops

    batch = (images[:5] / 255.0).astype(np.float32)
    codes = np.asarray(model.encode(batch))
    grid = (4, 4) + ((levels,) if levels > 1 else ())
    assert codes.shape == (5, *grid)
    data = tmp_path / "data.npz"
    np.savez(data, images=batch, codes=codes)
    out = tmp_path / "out.npz"
    run_isolated(ISOLATED, version_dir, str(tflite_dir), str(data), str(out))
    r = np.load(out)
    reference = np.asarray(model.decode(codes))
    np.testing.assert_array_equal(r["saved_model/encode"], codes)
    np.testing.assert_array_equal(r["tflite/encode"], codes)
    np.testing.assert_allclose(
        r["saved_model/decode"], reference, rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(r["tflite/decode"], reference, rtol=0, atol=1e-5)
    if levels > 1:
        for n in range(1, levels + 1):
            prefix = np.asarray(model.decode(codes[..., :n]))
            for runtime in ("saved_model", "tflite"):
                np.testing.assert_allclose(
                    r[f"{runtime}/decode_{n}"], prefix, rtol=0, atol=1e-5
                )
    # The last level (or, for one level, the last code column) set to 99.
    if levels > 1:
        expected = (
            f"`codes` must be integers in [0, 16) at each of the {levels} "
            f"levels (num_embeddings=16). Received: level {levels - 1} has "
            "min=99, max=99."
        )
    else:
        expected = (
            "`codes` must be integers in [0, 16) (num_embeddings=16). "
            f"Received: min={codes[..., :-1].min()}, max=99."
        )
    assert assertion_message(str(r["bad_codes_error"])) == expected


def test_level_axis_in_the_signatures_and_its_checks(tmp_path):
    """Residual VQ codes carry a trailing level axis in every signature;
    `decode` takes any prefix of the levels, `(batch, h, w, n)` with
    `1 <= n <= L`, and checks the level count and each level's range."""
    keras.utils.set_random_seed(0)
    model = VQVAE(
        **TINY, quantizer="rvq", quantizer_options={"num_quantizers": 3}
    )
    images = photo_patches(size=16, count=4, seed=0)
    model(images)
    version_dir = export_saved_model(model, tmp_path, warmup=False)
    loaded = tf.saved_model.load(version_dir)
    sigs = loaded.signatures
    assert sigs["decode"].structured_input_signature[1]["codes"].shape == (
        tf.TensorShape([None, *model.code_shape((*IMAGE_SIZE, 3)), None])
    )
    codes = sigs["encode"](images=tf.constant(images / 255.0, tf.float32))
    codes = codes["codes"].numpy()
    np.testing.assert_array_equal(codes, model.encode(images))
    assert codes.shape == (4, 4, 4, 3)
    for n in (1, 2, 3):
        np.testing.assert_allclose(
            sigs["decode"](codes=tf.constant(codes[..., :n]))["images"],
            model.decode(codes[..., :n]),
            rtol=0,
            atol=1e-5,
        )

    bad_level = codes.copy()
    bad_level[0, 1, 2, 1] = 16
    bad_level[1, 0, 0, 2] = -4
    levels = (
        "`codes` must have shape (batch, 4, 4, levels) with levels from 1 "
        "to 3. Received: codes.shape="
    )
    cases = [
        (codes[..., :0], levels + "(4, 4, 4, 0)"),
        (np.concatenate([codes, codes[..., :1]], -1), levels + "(4, 4, 4, 4)"),
        (codes[..., 0], levels + "(4, 4, 4)"),
        (
            bad_level,
            "`codes` must be integers in [0, 16) at each of the 3 levels "
            f"(num_embeddings=16). Received: level 1 has "
            f"min={codes[..., 1].min()}, max=16.",
        ),
        (
            bad_level[..., :2],
            "`codes` must be integers in [0, 16) at each of the 3 levels "
            f"(num_embeddings=16). Received: level 1 has "
            f"min={codes[..., 1].min()}, max=16.",
        ),
        (
            np.full((1, 4, 4, 1), -1, np.int32),
            "`codes` must be integers in [0, 16) at each of the 3 levels "
            "(num_embeddings=16). Received: level 0 has min=-1, max=-1.",
        ),
    ]
    for request, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            sigs["decode"](codes=tf.constant(request, tf.int32))
        assert assertion_message(error.value.message) == message


def test_tflite_decoder_takes_any_prefix_of_the_levels(tmp_path):
    """One decoder file for every bitrate: the level axis of its codes is
    dynamic (LiteRT resizes it per call), and the first n levels decode as
    `model.decode(codes[..., :n])` does."""
    from ai_edge_litert.interpreter import Interpreter

    model, images = _model("rvq")
    levels = model.quantizer.num_levels
    (path,) = export_tflite(
        model, tmp_path / "tflite", quantization=("float32",), encoder=False
    ).values()
    runner = Interpreter(model_path=path).get_signature_runner("decode")
    details = runner.get_input_details()["codes"]
    assert list(details["shape_signature"]) == [-1, 4, 4, -1]
    codes = np.asarray(model.encode(images[:3]))
    assert codes.shape == (3, 4, 4, levels) and levels > 1
    for n in range(1, levels + 1):
        prefix = np.ascontiguousarray(codes[..., :n])
        (got,) = runner(codes=prefix).values()
        np.testing.assert_allclose(got, model.decode(prefix), rtol=0, atol=1e-5)


def test_calibration_codes_carry_the_level_axis(tmp_path):
    """`representative_codes` of a residual VQ are checked as the decoder
    takes them, `(n, h, w, levels)` with 1 to L levels, before conversion
    (they used to fail in the TFLite calibrator)."""
    model = VQVAE(
        **TINY, quantizer="rvq", quantizer_options={"num_quantizers": 3}
    )
    model(photo_patches(size=16, count=2, seed=0))
    must = (
        "`representative_codes` must be a non-empty batch of integer codes "
        "in [0, 16) (num_embeddings=16) of shape (n, 4, 4, levels) with "
        "levels from 1 to 3, as the encoder gives for the export's "
        "image_size=(16, 16). "
    )
    codes = np.zeros((2, 4, 4, 3), np.int32)
    out_of_range = codes.copy()
    out_of_range[1, 2, 3, 2] = 16
    cases = [
        (
            codes[..., 0],
            "representative_codes of dtype int32 and shape (2, 4, 4).",
        ),
        (
            codes[..., :0],
            "representative_codes of dtype int32 and shape (2, 4, 4, 0).",
        ),
        (
            np.concatenate([codes, codes[..., :1]], -1),
            "representative_codes of dtype int32 and shape (2, 4, 4, 4).",
        ),
        (out_of_range, "values from 0 to 16."),
    ]
    for bad, received in cases:
        with pytest.raises(ValueError) as error:
            export_tflite(
                model,
                tmp_path / "tflite",
                quantization="int8",
                representative_codes=bad,
            )
        assert str(error.value) == f"{must}Received: {received}"
    assert not os.path.exists(tmp_path / "tflite")


def test_a_prior_over_levels_exports_its_sampler(tmp_path):
    # Residual VQ codes: a prior over their levels gives the `sample`
    # signature (codes with the level axis, decoded); a prior over one code
    # per position is refused.
    from tf_vqvae.prior import PixelCNNPrior

    model = VQVAE(**TINY, quantizer="rvq")
    model(photo_patches(size=16, count=2, seed=0))
    levels = model.quantizer.num_levels
    flat = PixelCNNPrior(num_embeddings=16, grid_shape=(4, 4), num_layers=1)
    with pytest.raises(ValueError) as error:
        export_saved_model(model, tmp_path, prior=flat, warmup=False)
    assert str(error.value) == (
        f"`prior` must model {levels} code(s) per position, the levels of "
        "`model`'s codes (a PixelCNNPrior(num_levels=...) for residual VQ). "
        f"Received: prior.num_levels=1, model num_levels={levels}"
    )
    assert not os.path.exists(tmp_path / "vqvae")

    prior = PixelCNNPrior(16, (4, 4), num_layers=1, num_levels=levels)
    prior(np.zeros((1, 4, 4, levels), "int32"))
    version_dir = export_saved_model(model, tmp_path, prior=prior, warmup=False)
    sample = tf.saved_model.load(version_dir).signatures["sample"]
    out = sample(num=tf.constant(3), seed=tf.constant(5))
    expected = prior.distribution().sample(3, seed=5)
    assert out["codes"].shape == (3, 4, 4, levels)
    np.testing.assert_array_equal(out["codes"], expected)
    np.testing.assert_allclose(out["images"], model.decode(expected), atol=1e-5)


@pytest.mark.slow
def test_a_prior_over_levels_exports_its_tflite_sampler(tmp_path):
    # The TFLite sampler over levels, run by LiteRT: the prior's codes.
    from ai_edge_litert.interpreter import Interpreter

    from tf_vqvae import sampling
    from tf_vqvae.prior import PixelCNNPrior

    model = VQVAE(**TINY, quantizer="rvq")
    model(photo_patches(size=16, count=2, seed=0))
    levels = model.quantizer.num_levels
    prior = PixelCNNPrior(16, (4, 4), num_layers=1, num_levels=levels)
    prior(np.zeros((1, 4, 4, levels), "int32"))
    tflite_dir = tmp_path / "tflite"
    export_tflite(model, tflite_dir, quantization=("float32",), prior=prior)
    path = str(tflite_dir / "prior_sampler_float32.tflite")
    runner = Interpreter(model_path=path).get_signature_runner("sample")
    noise = sampling.prior_noise(prior, 1, 3)
    codes = runner(noise=noise.numpy())["codes"]
    assert codes.shape == (1, 4, 4, levels)
    np.testing.assert_array_equal(codes, prior.sample_codes(noise))
