"""TFLite export: builtins-only files, LiteRT parity in a process without
tf_vqvae, int8 calibrated on real codes, manifest and signatures."""

import json
import os
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.export_testing import (
    IMAGE_SIZE,
    psnr,
    run_isolated,
    tiny_prior,
    trained_model,
)
from tf_vqvae import VQVAE, codebook_ops
from tf_vqvae.export import manifest, tflite, verify

FILES = [
    "decoder_float16.tflite",
    "decoder_float32.tflite",
    "decoder_int8.tflite",
    "encoder_float32.tflite",
    "prior_sampler_float32.tflite",
]
DECODE = {
    "decode": {
        "inputs": {"codes": {"dtype": "int32", "shape": [-1, 4, 4]}},
        "outputs": {"images": {"dtype": "float32", "shape": [-1, 16, 16, 3]}},
    }
}
CONTRACT = {
    "decoder_float16.tflite": DECODE,
    "decoder_float32.tflite": DECODE,
    "decoder_int8.tflite": DECODE,
    "encoder_float32.tflite": {
        "encode": {
            "inputs": {
                "images": {"dtype": "float32", "shape": [-1, 16, 16, 3]}
            },
            "outputs": {"codes": {"dtype": "int32", "shape": [-1, 4, 4]}},
        }
    },
    "prior_sampler_float32.tflite": {
        "sample": {
            "inputs": {"noise": {"dtype": "float32", "shape": [2, 4, 4, 16]}},
            "outputs": {"codes": {"dtype": "int32", "shape": [2, 4, 4]}},
        }
    },
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, images = trained_model()
    prior = tiny_prior()
    out = str(tmp_path_factory.mktemp("tflite") / "vqvae_tflite")
    files = tflite.export_tflite(
        model,
        out,
        IMAGE_SIZE,
        representative_images=images,
        prior=prior,
        sampler_batch_size=2,
    )
    return model, images, out, files, prior


def test_files_are_builtins_only(exported):
    _, _, out, files, _ = exported
    assert sorted(files) == FILES
    assert sorted(os.listdir(out)) == sorted(FILES + ["MANIFEST.json"])
    recorded = manifest.read_manifest(out)["ops"]
    for name in FILES:
        ops = tflite.op_names(files[name])
        assert recorded[name] == ops
        assert not [op for op in ops if op.startswith("Flex")], ops
        assert "CUSTOM" not in ops
        assert not {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} & set(ops)
    assert "GATHER" in recorded["decoder_float32.tflite"]
    assert "ARG_MIN" in recorded["encoder_float32.tflite"]
    assert "WHILE" in recorded["prior_sampler_float32.tflite"]


def test_signature_contract_and_verify(exported):
    _, _, out, _, _ = exported
    assert tflite.signature_contract(out) == CONTRACT
    result = verify(out)
    assert result["kind"] == "tflite"
    assert result["signatures"] == CONTRACT
    assert result["calibration_codes"] == 64


def test_int8_is_full_integer(exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=exported[3]["decoder_int8.tflite"])
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "TRANSPOSE_CONV", "ADD", "RELU"):
            out_dtype = tensors[op["outputs"][0]]["dtype"]
            assert out_dtype == np.int8, op


ISOLATED_LITERT = """
import json
import numpy as np
from ai_edge_litert.interpreter import Interpreter

out_dir, data_path, out_path = sys.argv[1:4]
data = np.load(data_path)
results = {}
for name in sorted(os.listdir(out_dir)):
    if not name.endswith(".tflite"):
        continue
    interpreter = Interpreter(model_path=os.path.join(out_dir, name))
    (key,) = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(key)
    if key == "decode":
        for n in (1, 5):
            results[f"{name}/{n}"] = runner(codes=data["codes"][:n])["images"]
    elif key == "encode":
        results[f"{name}/5"] = runner(images=data["images"][:5])["codes"]
    else:
        results[name] = runner(noise=data["noise"])["codes"]
# Out-of-range codes: LiteRT's GATHER rejects them on CPU (no asserts
# survive conversion, so this is all an app gets).
interpreter = Interpreter(
    model_path=os.path.join(out_dir, "decoder_float32.tflite"))
errors = []
for bad in (16, -1):
    runner = interpreter.get_signature_runner("decode")
    try:
        runner(codes=np.full((1, 4, 4), bad, np.int32))
        errors.append("no error")
    except RuntimeError as e:
        errors.append("gather index out of bounds" in str(e))
np.savez(out_path, **results)
print(json.dumps(errors))
"""


def test_litert_in_fresh_process_matches_keras(exported, tmp_path):
    model, images, out, _, prior = exported
    batch = images[:5]
    floats = (batch / 255.0).astype(np.float32)
    codes = np.asarray(model.encode(batch))
    noise = np.random.default_rng(0).random((2, 4, 4, 16), np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, images=floats, codes=codes, noise=noise)
    result_path = tmp_path / "out.npz"
    stdout = run_isolated(ISOLATED_LITERT, out, str(data), str(result_path))
    assert json.loads(stdout) == [True, True]
    r = np.load(result_path)
    reference = np.asarray(model.decode(codes))
    assert len(np.unique(codes)) > 1
    for n in (1, 5):
        fp32 = r[f"decoder_float32.tflite/{n}"]
        assert fp32.shape == (n, 16, 16, 3)
        np.testing.assert_allclose(fp32, reference[:n], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            r[f"decoder_float16.tflite/{n}"], reference[:n], rtol=0, atol=1e-3
        )
    int8 = r["decoder_int8.tflite/5"]
    fp32 = r["decoder_float32.tflite/5"]
    assert psnr(int8, fp32) > 35.0
    np.testing.assert_array_equal(r["encoder_float32.tflite/5"], codes)
    np.testing.assert_array_equal(
        r["prior_sampler_float32.tflite"], np.asarray(prior.sample_codes(noise))
    )


# What each calibration argument must be, for the 16x16 model of `exported`.
IMAGES_MUST = (
    "`representative_images` must be a non-empty batch of images "
    "(n, 16, 16, 3) of the export's image_size=(16, 16), uint8 in [0, 255] "
    "or floating point in [0, 1]. "
)
CODES_MUST = (
    "`representative_codes` must be a non-empty batch of integer codes in "
    "[0, 16) (num_embeddings=16) of shape (n, 4, 4), as the encoder gives "
    "for the export's image_size=(16, 16). "
)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(image_size=None),
            ValueError,
            "`image_size` is required for TFLite: (height, width). "
            "Received: image_size=None",
        ),
        (
            dict(quantization=("int4",)),
            ValueError,
            "`quantization` must be a non-empty subset of ['float32', "
            "'float16', 'int8']. Received: quantization=('int4',)",
        ),
        (
            dict(quantization="int4"),
            ValueError,
            "`quantization` must be a non-empty subset of ['float32', "
            "'float16', 'int8']. Received: quantization='int4'",
        ),
        (
            dict(quantization=("int8",)),
            ValueError,
            "int8 quantization needs real calibration data: pass "
            "`representative_images` (real images) or `representative_codes` "
            "(their codes from the encoder).",
        ),
        (
            dict(representative_images=np.zeros((4, 8, 8, 3), np.float32)),
            ValueError,
            IMAGES_MUST + "Received: representative_images of dtype float32 "
            "and shape (4, 8, 8, 3).",
        ),
        (
            dict(representative_images=np.zeros((2, 16, 16, 1), np.uint8)),
            ValueError,
            IMAGES_MUST + "Received: representative_images of dtype uint8 "
            "and shape (2, 16, 16, 1).",
        ),
        (
            dict(representative_images=np.zeros((2, 16, 16, 3), np.int32)),
            ValueError,
            IMAGES_MUST + "Received: representative_images of dtype int32 "
            "and shape (2, 16, 16, 3).",
        ),
        (
            dict(representative_images=np.zeros((0, 16, 16, 3), np.float32)),
            ValueError,
            IMAGES_MUST + "Received: representative_images of dtype float32 "
            "and shape (0, 16, 16, 3).",
        ),
        (
            dict(
                representative_images=np.linspace(
                    0.0, 255.0, 2 * 16 * 16 * 3
                ).reshape(2, 16, 16, 3)
            ),
            ValueError,
            IMAGES_MUST + "Received: values from 0 to 255 (divide 8-bit "
            "images by 255, or pass them as uint8).",
        ),
        (
            dict(representative_images=np.full((1, 16, 16, 3), np.nan)),
            ValueError,
            IMAGES_MUST + "Received: values from nan to nan (divide 8-bit "
            "images by 255, or pass them as uint8).",
        ),
        (
            dict(representative_codes=np.full((4, 4, 4), 99)),
            ValueError,
            CODES_MUST + "Received: values from 99 to 99.",
        ),
        (
            dict(representative_codes=np.full((4, 4, 4), -1, np.int32)),
            ValueError,
            CODES_MUST + "Received: values from -1 to -1.",
        ),
        (
            dict(representative_codes=np.full((4, 4, 4), 1.0)),
            ValueError,
            CODES_MUST + "Received: representative_codes of dtype float64 "
            "and shape (4, 4, 4).",
        ),
        (
            dict(representative_codes=np.zeros((2, 8, 8), np.int32)),
            ValueError,
            CODES_MUST + "Received: representative_codes of dtype int32 "
            "and shape (2, 8, 8).",
        ),
        (
            dict(representative_codes=np.zeros((0, 4, 4), np.int32)),
            ValueError,
            CODES_MUST + "Received: representative_codes of dtype int32 "
            "and shape (0, 4, 4).",
        ),
    ],
    ids=[
        "image-size",
        "quantization",
        "quantization-string",
        "calibration",
        "images-size",
        "images-channels",
        "images-dtype",
        "images-empty",
        "images-range",
        "images-nan",
        "codes-range",
        "codes-negative",
        "codes-dtype",
        "codes-shape",
        "codes-empty",
    ],
)
def test_bad_arguments(exported, tmp_path, kwargs, error, message):
    """Refused before any conversion (bad calibration data used to fail
    inside the TFLite calibrator), leaving nothing behind."""
    kwargs = dict(dict(image_size=IMAGE_SIZE, quantization=("int8",)), **kwargs)
    with pytest.raises(error) as info:
        tflite.export_tflite(exported[0], str(tmp_path / "out"), **kwargs)
    assert str(info.value) == message
    assert os.listdir(tmp_path) == []


def test_one_quantization_name_alone_is_a_tuple_of_one(exported, tmp_path):
    """`quantization="float32"` is `("float32",)`, not its letters."""
    out = str(tmp_path / "out")
    files = tflite.export_tflite(
        exported[0], out, quantization="float32", encoder=False
    )
    assert sorted(files) == ["decoder_float32.tflite"]
    assert manifest.read_manifest(out)["quantization"] == ["float32"]


def test_int8_calibrated_on_codes_equals_calibrated_on_their_images(
    exported, tmp_path
):
    """Checked `representative_codes` (any integer dtype) calibrate the
    int8 decoder exactly as the images they are the codes of."""
    model, images, _, files, _ = exported
    codes = np.asarray(model.encode(images)).astype(np.int64)
    (path,) = tflite.export_tflite(
        model,
        tmp_path / "out",
        quantization="int8",
        representative_codes=codes,
        encoder=False,
    ).values()
    with open(path, "rb") as got, open(files["decoder_int8.tflite"], "rb") as f:
        assert got.read() == f.read()


def test_audio_calibration_waveforms_and_one_size_alone(tmp_path):
    """An audio export takes `image_size=samples` as `(samples,)`, and its
    calibration waveforms are checked against that length and [-1, 1]."""
    model = VQVAE(
        modality="audio",
        spatial_dims=1,
        num_downsamples=2,
        num_embeddings=16,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_blocks=1,
        num_residual_hiddens=4,
    )
    model(np.zeros((1, 64, 1), np.float32))
    must = (
        "`representative_images` must be a non-empty batch of waveforms "
        "(n, 32) of the export's image_size=(32,), floating point in "
        "[-1, 1]. "
    )
    cases = [
        (
            np.zeros((2, 64), np.float32),
            must + "Received: representative_images of dtype float32 and "
            "shape (2, 64).",
        ),
        (
            np.full((2, 32, 1), 2.0, np.float32),
            must + "Received: values from 2 to 2 (divide 16-bit PCM by 32768).",
        ),
        (
            np.zeros((2, 32), np.int16),
            must + "Received: representative_images of dtype int16 and "
            "shape (2, 32).",
        ),
    ]
    for waveforms, message in cases:
        with pytest.raises(ValueError) as info:
            tflite.export_tflite(
                model,
                str(tmp_path / "out"),
                image_size=32,
                quantization="int8",
                representative_images=waveforms,
            )
        assert str(info.value) == message
    assert os.listdir(tmp_path) == []


def test_refuses_overwrite_and_cleans_up(exported, tmp_path, monkeypatch):
    model = exported[0]
    out = str(tmp_path / "out")
    tflite.export_tflite(
        model, out, IMAGE_SIZE, quantization=("float32",), encoder=False
    )
    with pytest.raises(FileExistsError) as info:
        tflite.export_tflite(model, out, IMAGE_SIZE, quantization=("float32",))
    assert str(info.value) == (
        f"{out!r} already exists. Pass `overwrite=True` to replace it."
    )

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(manifest, "write_manifest", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tflite.export_tflite(
            model,
            out,
            IMAGE_SIZE,
            quantization=("float16",),
            encoder=False,
            overwrite=True,
        )
    assert os.listdir(tmp_path) == ["out"]
    assert sorted(os.listdir(out)) == [
        "MANIFEST.json",
        "decoder_float32.tflite",
    ]
    monkeypatch.undo()
    verify(out)


@pytest.mark.slow
def test_benchmark_tiny_smoke_run(tmp_path):
    script = os.path.join(
        os.path.dirname(__file__), "..", "benchmarks", "bench_export.py"
    )
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, script, "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads(out.read_text())
    runtimes = {(r["task"], r["runtime"], r["batch"]) for r in bench["latency"]}
    for batch in (1, 4):
        for runtime in ("keras", "savedmodel", "tflite-int8"):
            assert ("decode", runtime, batch) in runtimes
        assert ("encode", "tflite-float32", batch) in runtimes
    assert all(
        0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        for r in bench["latency"]
    )
    assert set(bench["sizes_bytes"]) == {
        "keras (.keras)",
        "savedmodel (dir)",
        "decoder_float32.tflite",
        "decoder_float16.tflite",
        "decoder_int8.tflite",
        "encoder_float32.tflite",
    }
    parity = bench["parity"]
    assert parity["decode tflite-float32 max |error| vs keras"] < 1e-5
    assert parity["decode tflite-float16 max |error| vs keras"] < 1e-3
    assert parity["decode tflite-int8 PSNR vs tflite-float32 (dB)"] > 35
    assert parity["encode tflite-float32 codes equal keras (fraction)"] == 1
    assert "| decode | tflite-int8 | 1 |" in result.stdout


def test_image_size_from_the_model_and_permissions_under_umask(
    exported, tmp_path
):
    model = exported[0]
    out = str(tmp_path / "tflite")
    old = os.umask(0o022)
    try:
        files = tflite.export_tflite(
            model, out, quantization=("float32",), encoder=False
        )
    finally:
        os.umask(old)
    assert tflite.signature_contract(out) == {"decoder_float32.tflite": DECODE}
    assert manifest.read_manifest(out)["model"]["image_size"] == [16, 16]
    for path in (out, files["decoder_float32.tflite"], f"{out}/MANIFEST.json"):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & stat.S_IROTH, (path, oct(mode))


def _largest_tensor(interpreter) -> int:
    """Elements of the largest tensor in any subgraph, at its current size."""
    return max(
        int(np.prod(detail["shape"]))
        for index in range(interpreter.num_subgraphs())
        for detail in interpreter.get_tensor_details(index)
    )


def test_encoder_searches_in_chunks_like_the_layer(tmp_path):
    """K = 65536: the converted encoder is the layer's row-chunked search;
    no tensor, in any subgraph, holds more than one chunk of scores."""
    from ai_edge_litert.interpreter import Interpreter

    k = 65536
    keras.utils.set_random_seed(0)
    model = VQVAE(
        num_embeddings=k,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_blocks=1,
        num_residual_hiddens=4,
    )
    model(np.zeros((1, 32, 32, 3), np.float32))
    files = tflite.export_tflite(
        model, str(tmp_path / "out"), quantization=("float32",)
    )
    chunk_rows = codebook_ops._block_rows(
        k, model.quantizer.max_distance_elements
    )
    assert chunk_rows == 64
    interpreter = Interpreter(model_path=files["encoder_float32.tflite"])
    encode = interpreter.get_signature_runner("encode")
    images = np.random.default_rng(0).random((8, 32, 32, 3), np.float32)
    # 8 x 64 = 512 vectors (a whole-batch search would hold 512 x K
    # scores), then 64 vectors: one chunk.
    for n in (8, 1):
        codes = encode(images=images[:n])["codes"]
        np.testing.assert_array_equal(codes, model.encode(images[:n]))
        assert _largest_tensor(interpreter) <= chunk_rows * k
    assert len(np.unique(codes)) > 1
