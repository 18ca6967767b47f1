"""SavedModel export: layout, signatures, parity in a process without
tf_vqvae, in-graph validation of bad requests, manifest, atomic writes."""

import ast
import importlib.util
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tests import serving
from tests.export_testing import (
    IMAGE_SIZE,
    assertion_message,
    run_isolated,
    tiny_prior,
    trained_model,
)
from tf_vqvae import VQVAE
from tf_vqvae.export import manifest, saved_model, verify

MAX_BATCH = 8
# Warm-up requests need the optional `[serving]` extra.
WARMUP_FILES = (
    ["assets.extra/tf_serving_warmup_requests"]
    if importlib.util.find_spec("tensorflow_serving") is not None
    else []
)

# The documented contract (README, "Export and serving"): a change to any
# name, dtype or shape must be deliberate.
CONTRACT = {
    "decode": {
        "inputs": {"codes": {"dtype": "int32", "shape": [-1, 4, 4]}},
        "outputs": {"images": {"dtype": "float32", "shape": [-1, 16, 16, 3]}},
    },
    "encode": {
        "inputs": {"images": {"dtype": "float32", "shape": [-1, 16, 16, 3]}},
        "outputs": {"codes": {"dtype": "int32", "shape": [-1, 4, 4]}},
    },
    "encode_uint8": {
        "inputs": {"images": {"dtype": "uint8", "shape": [-1, 16, 16, 3]}},
        "outputs": {"codes": {"dtype": "int32", "shape": [-1, 4, 4]}},
    },
    "serving_default": {
        "inputs": {"images": {"dtype": "float32", "shape": [-1, 16, 16, 3]}},
        "outputs": {
            "codes": {"dtype": "int32", "shape": [-1, 4, 4]},
            "reconstructions": {
                "dtype": "float32",
                "shape": [-1, 16, 16, 3],
            },
        },
    },
    "serving_uint8": {
        "inputs": {"images": {"dtype": "uint8", "shape": [-1, 16, 16, 3]}},
        "outputs": {
            "codes": {"dtype": "int32", "shape": [-1, 4, 4]},
            "reconstructions": {
                "dtype": "float32",
                "shape": [-1, 16, 16, 3],
            },
        },
    },
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, images = trained_model()
    out = tmp_path_factory.mktemp("models")
    version_dir = saved_model.export_saved_model(
        model,
        out,
        model_name="vqvae",
        version=1,
        max_batch_size=MAX_BATCH,
        image_size=IMAGE_SIZE,
    )
    return model, images, str(out), version_dir


@pytest.fixture(scope="module")
def session(exported):
    session = serving.ServingSession(exported[3])
    yield session
    session.close()


def test_tf_serving_layout(exported):
    _, _, out, version_dir = exported
    assert version_dir == os.path.join(out, "vqvae", "1")
    assert os.listdir(os.path.join(out, "vqvae")) == ["1"]
    files = sorted(
        os.path.relpath(os.path.join(d, f), version_dir)
        for d, _, names in os.walk(version_dir)
        for f in names
    )
    assert files == [
        "MANIFEST.json",
        *WARMUP_FILES,
        "fingerprint.pb",
        "saved_model.pb",
        "variables/variables.data-00000-of-00001",
        "variables/variables.index",
    ]


def test_signature_contract_is_pinned(exported):
    version_dir = exported[3]
    assert saved_model.signature_contract(version_dir) == CONTRACT
    assert manifest.read_manifest(version_dir)["signatures"] == CONTRACT


def _parse_saved_model_cli(text: str) -> dict:
    """`{signature: {"inputs"/"outputs": {name: {"dtype", "shape"}}}}`."""
    parsed, current, section, name = {}, None, None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("signature_def['"):
            key = line.split("'")[1]
            current = (
                None if key.startswith("__") else parsed.setdefault(key, {})
            )
        elif line.startswith("Concrete Functions"):
            current = None
        elif current is None:
            continue
        elif line.startswith("The given SavedModel SignatureDef contains"):
            section = "inputs" if "input(s)" in line else "outputs"
        elif line.startswith(("inputs['", "outputs['")):
            name = line.split("'")[1]
        elif line.startswith("dtype:"):
            enum = types_pb2.DataType.Value(line.split()[1])
            dtype = tf.dtypes.as_dtype(enum).name
            current.setdefault(section, {})[name] = {"dtype": dtype}
        elif line.startswith("shape:"):
            shape = ast.literal_eval(line.split(":", 1)[1].strip())
            current[section][name]["shape"] = list(shape)
    return parsed


def test_saved_model_cli_lists_the_contract(exported):
    version_dir = exported[3]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--dir", version_dir, "--all"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert _parse_saved_model_cli(result.stdout) == CONTRACT


ISOLATED_SAVED_MODEL = """
import numpy as np
import tensorflow as tf

export_dir, data_path, out_path = sys.argv[1:4]
data = np.load(data_path)
loaded = tf.saved_model.load(export_dir)
sigs = loaded.signatures
results = {}
r = sigs["serving_default"](images=tf.constant(data["images"]))
results["serving_default/reconstructions"] = r["reconstructions"].numpy()
results["serving_default/codes"] = r["codes"].numpy()
r = sigs["serving_uint8"](images=tf.constant(data["images_uint8"]))
results["serving_uint8/reconstructions"] = r["reconstructions"].numpy()
results["serving_uint8/codes"] = r["codes"].numpy()
results["encode/codes"] = sigs["encode"](
    images=tf.constant(data["images"]))["codes"].numpy()
results["encode_uint8/codes"] = sigs["encode_uint8"](
    images=tf.constant(data["images_uint8"]))["codes"].numpy()
results["decode/images"] = sigs["decode"](
    codes=tf.constant(data["codes"]))["images"].numpy()
try:
    sigs["decode"](codes=tf.constant(np.full((1, 4, 4), 99, np.int32)))
except tf.errors.InvalidArgumentError as e:
    results["bad_codes_error"] = np.array(e.message)
np.savez(out_path, **results)
print(sorted(sigs))
"""


def test_fresh_process_without_tf_vqvae_matches_keras(exported, tmp_path):
    model, images, _, version_dir = exported
    batch = images[:5]
    floats = (batch / 255.0).astype(np.float32)
    codes = np.asarray(model.encode(batch))
    data = tmp_path / "data.npz"
    np.savez(data, images=floats, images_uint8=batch, codes=codes)
    out = tmp_path / "out.npz"
    stdout = run_isolated(
        ISOLATED_SAVED_MODEL, version_dir, str(data), str(out)
    )
    assert stdout.strip() == str(sorted(CONTRACT))
    r = np.load(out)
    reference = np.asarray(model(floats, training=False))
    for name in ("serving_default", "serving_uint8"):
        np.testing.assert_allclose(
            r[f"{name}/reconstructions"], reference, rtol=0, atol=1e-5
        )
        np.testing.assert_array_equal(r[f"{name}/codes"], codes)
    np.testing.assert_array_equal(r["encode/codes"], codes)
    np.testing.assert_array_equal(r["encode_uint8/codes"], codes)
    np.testing.assert_allclose(
        r["decode/images"], np.asarray(model.decode(codes)), rtol=0, atol=1e-5
    )
    assert len(np.unique(codes)) > 1
    assert assertion_message(str(r["bad_codes_error"])) == (
        "`codes` must be integers in [0, 16) (num_embeddings=16). "
        "Received: min=99, max=99."
    )


def _images(shape, value=0.5, dtype=np.float32):
    return np.full(shape, value, dtype)


BAD_REQUESTS = [
    (
        "serving_default",
        {"images": _images((16, 16, 3))},
        "`images` must have shape (batch, 16, 16, 3). "
        "Received: images.shape=(16, 16, 3)",
    ),
    (
        "encode",
        {"images": _images((48,))},
        "`images` must have shape (batch, 16, 16, 3). "
        "Received: images.shape=(48,)",
    ),
    (
        "serving_default",
        {"images": _images((1, 2, 16, 16, 3))},
        "`images` must have shape (batch, 16, 16, 3). "
        "Received: images.shape=(1, 2, 16, 16, 3)",
    ),
    (
        "encode",
        {"images": _images((2, 8, 8, 3))},
        "`images` must have shape (batch, 16, 16, 3). "
        "Received: images.shape=(2, 8, 8, 3)",
    ),
    (
        "serving_uint8",
        {"images": _images((2, 16, 16, 1), 3, np.uint8)},
        "`images` must have shape (batch, 16, 16, 3). "
        "Received: images.shape=(2, 16, 16, 1)",
    ),
    (
        "encode_uint8",
        {"images": _images((MAX_BATCH + 1, 16, 16, 3), 3, np.uint8)},
        "`images` must have a batch size from 1 to 8 (max_batch_size of "
        "this export). Received: images.shape=(9, 16, 16, 3)",
    ),
    (
        "serving_default",
        {"images": _images((2, 16, 16, 3)) * np.array([1, np.nan, np.inf])},
        "`images` must be finite (no NaN or infinity). "
        "Received: 1024 non-finite values.",
    ),
    (
        "encode",
        {"images": _images((2, 16, 16, 3), 2.0)},
        "`images` must be in [0, 1] (float pixels; uint8 images go to the "
        "_uint8 signatures). Received: min=2, max=2.",
    ),
    (
        "serving_default",
        {"images": _images((2, 16, 16, 3)) * np.array([1, -0.5, 0.25])},
        "`images` must be in [0, 1] (float pixels; uint8 images go to the "
        "_uint8 signatures). Received: min=-0.25, max=0.5.",
    ),
    (
        "decode",
        {"codes": np.full((2, 4, 4), 16, np.int32)},
        "`codes` must be integers in [0, 16) (num_embeddings=16). "
        "Received: min=16, max=16.",
    ),
    (
        "decode",
        {"codes": np.array([[[-1, 0, 0, 0]] * 4], np.int32)},
        "`codes` must be integers in [0, 16) (num_embeddings=16). "
        "Received: min=-1, max=0.",
    ),
    (
        "decode",
        {"codes": np.zeros((4, 4), np.int32)},
        "`codes` must have shape (batch, 4, 4). Received: codes.shape=(4, 4)",
    ),
    (
        "decode",
        {"codes": np.zeros((1, 4, 5), np.int32)},
        "`codes` must have shape (batch, 4, 4). "
        "Received: codes.shape=(1, 4, 5)",
    ),
    (
        "decode",
        {"codes": np.zeros((MAX_BATCH + 1, 4, 4), np.int32)},
        "`codes` must have a batch size from 1 to 8 (max_batch_size of "
        "this export). Received: codes.shape=(9, 4, 4)",
    ),
    (
        "encode",
        {"images": _images((0, 16, 16, 3))},
        "`images` must have a batch size from 1 to 8 (max_batch_size of "
        "this export). Received: images.shape=(0, 16, 16, 3)",
    ),
    (
        "decode",
        {"codes": np.zeros((1, 4, 4, 1), np.int32) + 99},
        "`codes` must have shape (batch, 4, 4). "
        "Received: codes.shape=(1, 4, 4, 1)",
    ),
]
BAD_IDS = [
    "images-rank3",
    "images-rank1",
    "images-rank5",
    "images-spatial",
    "images-channels",
    "images-batch",
    "images-nonfinite",
    "images-above-one",
    "images-negative",
    "codes-too-large",
    "codes-negative",
    "codes-rank2",
    "codes-spatial",
    "codes-batch",
    "images-empty",
    "codes-rank4-out-of-range",
]


@pytest.mark.parametrize(
    "signature, inputs, message", BAD_REQUESTS, ids=BAD_IDS
)
def test_bad_request_is_invalid_argument(session, signature, inputs, message):
    # Fed like TF Serving feeds: no client-side shape check.
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        session.run(signature, inputs)
    assert assertion_message(info.value.message) == message
    if any(v.size == 0 for v in inputs.values()):
        return  # JSON cannot carry the shape of an empty batch
    status, body = serving.rest_predict(
        session,
        {
            "signature_name": signature,
            "inputs": {k: v.tolist() for k, v in inputs.items()},
        },
    )
    assert status == 400
    assert assertion_message(body["error"]) == message


def test_bad_values_rejected_by_tf_saved_model_load(exported):
    loaded = tf.saved_model.load(exported[3])
    for signature, inputs, message in BAD_REQUESTS:
        spec = loaded.signatures[signature].structured_input_signature[1]
        (key,) = inputs
        if not spec[key].shape.is_compatible_with(inputs[key].shape):
            continue  # rejected by Python before the graph
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            loaded.signatures[signature](
                **{
                    k: tf.constant(v, dtype=spec[k].dtype)
                    for k, v in inputs.items()
                }
            )
        assert assertion_message(info.value.message) == message


def test_good_requests_through_serving_session(exported, session):
    model, images, _, _ = exported
    batch = images[:3]
    out = session.run("serving_uint8", {"images": batch})
    np.testing.assert_array_equal(out["codes"], np.asarray(model.encode(batch)))
    out = session.run("decode", {"codes": out["codes"]})
    np.testing.assert_allclose(
        out["images"], np.asarray(model(batch, training=False)), atol=1e-5
    )


def test_rest_instances_and_inputs_forms(exported, session):
    model, images, _, _ = exported
    batch = images[:2]
    codes = np.asarray(model.encode(batch))
    status, body = serving.rest_predict(
        session,
        {"signature_name": "encode_uint8", "instances": batch.tolist()},
    )
    assert status == 200
    assert body == {"predictions": codes.tolist()}
    status, body = serving.rest_predict(
        session,
        {"signature_name": "decode", "inputs": {"codes": codes.tolist()}},
    )
    assert status == 200
    np.testing.assert_allclose(
        body["outputs"], np.asarray(model.decode(codes)), atol=1e-5
    )
    status, body = serving.rest_predict(
        session, {"instances": (batch / 255.0).tolist()}
    )
    assert status == 200
    assert [sorted(p) for p in body["predictions"]] == [
        ["codes", "reconstructions"]
    ] * 2
    assert body["predictions"][1]["codes"] == codes[1].tolist()


def test_warmup_requests_cover_every_signature(exported, session):
    prediction_log_pb2 = pytest.importorskip(
        "tensorflow_serving.apis.prediction_log_pb2",
        reason="tensorflow-serving-api (the [serving] extra) not installed",
    )

    path = os.path.join(exported[3], saved_model.WARMUP_PATH)
    names = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "vqvae"
        names.append(request.model_spec.signature_name)
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        session.run(request.model_spec.signature_name, inputs)
    assert sorted(names) == sorted(CONTRACT)


def test_no_warmup_requests_without_serving_api(
    exported, monkeypatch, tmp_path
):
    functions = saved_model.ServingFunctions(exported[0], IMAGE_SIZE)
    for name in ("tensorflow_serving", "tensorflow_serving.apis"):
        monkeypatch.setitem(sys.modules, name, None)
    assert (
        saved_model.write_warmup_requests(str(tmp_path), functions, "m") is None
    )
    assert os.listdir(tmp_path) == []


def test_verify_and_tampering(exported, tmp_path):
    version_dir = exported[3]
    result = verify(version_dir)
    assert result["kind"] == "saved_model"
    assert result["model"]["num_embeddings"] == 16
    assert set(result["files"]) == {
        *WARMUP_FILES,
        "fingerprint.pb",
        "saved_model.pb",
        "variables/variables.data-00000-of-00001",
        "variables/variables.index",
    }
    assert list(verify(os.path.dirname(version_dir))) == ["1"]

    copy = str(tmp_path / "1")
    shutil.copytree(version_dir, copy)
    data = os.path.join(copy, "variables", "variables.data-00000-of-00001")
    content = bytearray(open(data, "rb").read())
    content[len(content) // 2] ^= 0x01
    with open(data, "wb") as f:
        f.write(content)
    expected = result["files"]["variables/variables.data-00000-of-00001"]
    actual = manifest.sha256_file(data)
    message = (
        f"{copy!r} does not match its MANIFEST.json: "
        f"'variables/variables.data-00000-of-00001' was modified "
        f"(SHA-256 {actual}, expected {expected['sha256']})."
    )
    with pytest.raises(manifest.VerificationError) as info:
        verify(copy)
    assert str(info.value) == message
    with pytest.raises(manifest.VerificationError) as info:
        saved_model.load(copy)
    assert str(info.value) == message

    os.remove(data)
    open(os.path.join(copy, "extra.txt"), "w").close()
    with pytest.raises(manifest.VerificationError) as info:
        verify(copy)
    assert str(info.value) == (
        f"{copy!r} does not match its MANIFEST.json: missing file "
        "'variables/variables.data-00000-of-00001'; unexpected file "
        "'extra.txt'."
    )


def test_refuses_overwrite_then_replaces(exported, tmp_path):
    model, _, _, version_dir = exported
    first = str(tmp_path / "vqvae" / "3")
    shutil.copytree(version_dir, first)
    stamp = manifest.read_manifest(first)["files"]
    with pytest.raises(FileExistsError) as info:
        saved_model.export_saved_model(model, tmp_path, version=3)
    assert str(info.value) == (
        f"Version directory {first!r} already exists. Pass a new `version`, "
        "or `overwrite=True` to replace it."
    )
    again = saved_model.export_saved_model(
        model,
        tmp_path,
        version=3,
        overwrite=True,
        image_size=None,
        warmup=False,
    )
    assert again == first
    assert os.listdir(tmp_path / "vqvae") == ["3"]
    assert manifest.read_manifest(first)["files"] != stamp
    contract = saved_model.signature_contract(first)
    assert contract["encode"]["inputs"]["images"]["shape"] == [-1, -1, -1, 3]
    # Any size divisible by 4 is accepted; others are named.
    session = serving.ServingSession(first)
    out = session.run("encode", {"images": np.zeros((1, 8, 12, 3))})
    assert out["codes"].shape == (1, 2, 3)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        session.run("encode", {"images": np.zeros((1, 8, 10, 3))})
    assert assertion_message(info.value.message) == (
        "`images` must have shape (batch, height, width, 3) with height and "
        "width positive multiples of 4. Received: images.shape=(1, 8, 10, 3)"
    )
    session.close()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["write_warmup_requests", "write_manifest"])
def test_interrupted_export_leaves_no_version(
    exported, tmp_path, monkeypatch, where
):
    model = exported[0]
    target = saved_model if where == "write_warmup_requests" else manifest
    monkeypatch.setattr(target, where, _interrupt)
    with pytest.raises(KeyboardInterrupt):
        saved_model.export_saved_model(model, tmp_path, version=2)
    # Not even the model directory it created.
    assert os.listdir(tmp_path) == []


def test_interrupted_overwrite_keeps_old_version(
    exported, tmp_path, monkeypatch
):
    model, _, _, version_dir = exported
    kept = str(tmp_path / "vqvae" / "1")
    shutil.copytree(version_dir, kept)
    files = manifest.read_manifest(kept)["files"]
    monkeypatch.setattr(manifest, "write_manifest", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        saved_model.export_saved_model(
            model, tmp_path, version=1, overwrite=True
        )
    assert os.listdir(tmp_path / "vqvae") == ["1"]
    assert manifest.verify_files(kept)["files"] == files


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(version=0),
            ValueError,
            "`version` must be a positive integer. "
            "Received: version=0 (of type int).",
        ),
        (
            dict(model_name="a/b"),
            ValueError,
            "`model_name` must be a non-empty name of letters, digits, '_', "
            "'.' or '-' (it becomes a directory). "
            "Received: model_name='a/b' (of type str).",
        ),
        (
            dict(image_size=(16, 18)),
            ValueError,
            "`image_size` must be None or (height, width), positive integers "
            "divisible by 2**num_downsamples=4. "
            "Received: image_size=(16, 18) (of type tuple).",
        ),
        (
            dict(max_batch_size=0),
            ValueError,
            "`max_batch_size` must be a positive integer. "
            "Received: max_batch_size=0 (of type int).",
        ),
    ],
    ids=["version", "model-name", "image-size", "max-batch"],
)
def test_bad_export_arguments(exported, tmp_path, kwargs, error, message):
    with pytest.raises(error) as info:
        saved_model.export_saved_model(exported[0], tmp_path, **kwargs)
    assert str(info.value) == message
    assert not os.path.exists(tmp_path / "vqvae" / "1")


SAMPLE_CONTRACT = {
    "inputs": {
        "labels": {"dtype": "int32", "shape": [-1]},
        "num": {"dtype": "int32", "shape": []},
        "seed": {"dtype": "int32", "shape": []},
    },
    "outputs": {
        "codes": {"dtype": "int32", "shape": [-1, 4, 4]},
        "images": {"dtype": "float32", "shape": [-1, 16, 16, 3]},
    },
}


@pytest.fixture(scope="module")
def exported_with_prior(exported, tmp_path_factory):
    model = exported[0]
    prior = tiny_prior(num_classes=3)
    out = tmp_path_factory.mktemp("with_prior")
    version_dir = saved_model.export_saved_model(
        model,
        out,
        prior=prior,
        max_batch_size=MAX_BATCH,
        image_size=IMAGE_SIZE,
    )
    return model, prior, version_dir


@pytest.fixture(scope="module")
def prior_session(exported_with_prior):
    session = serving.ServingSession(exported_with_prior[2])
    yield session
    session.close()


ISOLATED_SAMPLE = """
import numpy as np
import tensorflow as tf

export_dir, out_path = sys.argv[1:3]
sample = tf.saved_model.load(export_dir).signatures["sample"]
r = sample(num=tf.constant(3), seed=tf.constant(7),
           labels=tf.constant([0, 2, 1]))
np.savez(out_path, codes=r["codes"].numpy(), images=r["images"].numpy())
"""


def test_sample_signature_matches_prior(exported_with_prior, tmp_path):
    model, prior, version_dir = exported_with_prior
    contract = saved_model.signature_contract(version_dir)
    assert contract == dict(CONTRACT, sample=SAMPLE_CONTRACT)
    out = tmp_path / "out.npz"
    run_isolated(ISOLATED_SAMPLE, version_dir, str(out))
    r = np.load(out)
    labels = tf.constant([0, 2, 1])
    expected = prior.distribution(labels=labels).sample(seed=7)
    np.testing.assert_array_equal(r["codes"], np.asarray(expected))
    np.testing.assert_allclose(
        r["images"], np.asarray(model.decode(expected)), atol=1e-5
    )


@pytest.mark.parametrize(
    "inputs, message",
    [
        (
            dict(num=0, seed=1, labels=[]),
            "`num` must be an integer from 1 to 8. Received: num=0.",
        ),
        (
            dict(num=[2, 2], seed=1, labels=[0, 1]),
            "`num` must be a single integer. Received: 2 values.",
        ),
        (
            dict(num=2, seed=[], labels=[0, 1]),
            "`seed` must be a single integer. Received: 0 values.",
        ),
        (
            dict(num=2, seed=-5, labels=[0, 1]),
            "`seed` must be an integer from 0 to 2147483647. "
            "Received: seed=-5.",
        ),
        (
            dict(num=2, seed=1, labels=[0, 1, 2]),
            "`labels` must have shape (num,). "
            "Received: labels.shape=(3,), num=2.",
        ),
        (
            dict(num=2, seed=1, labels=[0, 3]),
            "`labels` must be integers in [0, 3) (num_classes=3). "
            "Received: min=0, max=3.",
        ),
    ],
    ids=[
        "num-zero",
        "num-two-values",
        "seed-empty",
        "seed-negative",
        "labels-shape",
        "labels-range",
    ],
)
def test_bad_sample_requests(prior_session, inputs, message):
    session = prior_session
    arrays = {k: np.asarray(v, np.int32) for k, v in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        session.run("sample", arrays)
    assert assertion_message(info.value.message) == message


KILLED_EXPORT = """
import os
import signal
import sys

import numpy as np

from tf_vqvae import VQVAE
from tf_vqvae.export import manifest, saved_model


def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


model = VQVAE(num_embeddings=8, embedding_dim=2, num_hiddens=4,
              num_residual_blocks=1, num_residual_hiddens=2)
model(np.zeros((1, 8, 8, 3), np.float32))
manifest.write_manifest = kill
saved_model.export_saved_model(model, sys.argv[1], version=1)
"""


@pytest.mark.slow
def test_sigkilled_export_leaves_no_version(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", KILLED_EXPORT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == -9, result.stderr[-2000:]
    names = os.listdir(tmp_path / "vqvae")
    # Only the hidden temporary directory, whose name TF Serving ignores
    # (it loads integer directory names only).
    assert len(names) == 1 and names[0].startswith(".tmp-1@"), names
    assert not any(n.isdigit() for n in names)

    # The next export into the same place removes the dead process's
    # leftover.
    model = VQVAE(
        num_embeddings=8,
        embedding_dim=2,
        num_hiddens=4,
        num_residual_blocks=1,
        num_residual_hiddens=2,
    )
    model(np.zeros((1, 8, 8, 3), np.float32))
    saved_model.export_saved_model(model, tmp_path, version=1)
    assert os.listdir(tmp_path / "vqvae") == ["1"]


def test_image_size_from_the_model_and_permissions_under_umask(
    exported, tmp_path
):
    """Without `image_size` the signatures take the size the model was
    trained on; the version directory and its files are readable by other
    users when the umask allows it (TF Serving may run as another user)."""
    model = exported[0]
    old = os.umask(0o022)
    try:
        version_dir = saved_model.export_saved_model(
            model, tmp_path, version=5, warmup=False
        )
    finally:
        os.umask(old)
    assert model.example_shape == (16, 16, 3)
    assert saved_model.signature_contract(version_dir) == CONTRACT
    assert manifest.read_manifest(version_dir)["model"]["image_size"] == [
        16,
        16,
    ]
    for path in (
        tmp_path / "vqvae",
        version_dir,
        os.path.join(version_dir, "variables"),
        os.path.join(version_dir, "saved_model.pb"),
        os.path.join(version_dir, "MANIFEST.json"),
    ):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & stat.S_IROTH, (path, oct(mode))
        if os.path.isdir(path):
            assert mode & stat.S_IXOTH, (path, oct(mode))
