"""SavedModel export of 1D audio models: the signature contract, parity with
Keras, speaker conditioning, in-graph validation of bad requests."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests import serving
from tests.export_testing import assertion_message, run_isolated
from tests.test_audio_model import TINY_AUDIO, chirp
from tf_vqvae import VQVAE
from tf_vqvae.export import manifest, saved_model, tflite

SAMPLES = 512
CODES = SAMPLES // 64
MAX_BATCH = 4


def _contract(speakers: bool) -> dict:
    speaker = {"speaker": {"dtype": "int32", "shape": [-1]}} if speakers else {}
    waveforms = {"dtype": "float32", "shape": [-1, SAMPLES]}
    codes = {"dtype": "int32", "shape": [-1, CODES]}
    convert = {
        "convert": {
            "inputs": {"waveforms": waveforms, **speaker},
            "outputs": {"waveforms": waveforms},
        }
    }
    return {
        **(convert if speakers else {}),
        "decode": {
            "inputs": {"codes": codes, **speaker},
            "outputs": {"waveforms": waveforms},
        },
        "encode": {
            "inputs": {"waveforms": waveforms},
            "outputs": {"codes": codes},
        },
        "serving_default": {
            "inputs": {"waveforms": waveforms, **speaker},
            "outputs": {"codes": codes, "reconstructions": waveforms},
        },
    }


@pytest.fixture(scope="module", params=[None, 2], ids=["plain", "speakers"])
def exported(request, tmp_path_factory):
    num_speakers = request.param
    model = VQVAE(num_speakers=num_speakers, **TINY_AUDIO)
    waves = chirp(batch=3)
    speaker = None if num_speakers is None else np.array([1, 0, 1], "int32")
    model(waves if speaker is None else {"audio": waves, "speaker": speaker})
    out = tmp_path_factory.mktemp("models")
    version_dir = saved_model.export_saved_model(
        model, out, "speech", version=1, max_batch_size=MAX_BATCH
    )
    return model, waves[..., 0], speaker, version_dir


def test_contract_manifest_and_parity_with_keras(exported):
    model, waves, speaker, version_dir = exported
    assert saved_model.signature_contract(version_dir) == _contract(
        speaker is not None
    )
    recorded = manifest.read_manifest(version_dir)["model"]
    assert recorded["modality"] == "audio"
    assert recorded["num_speakers"] == model.num_speakers
    assert recorded["image_size"] == [SAMPLES]
    assert recorded["code_size"] == [CODES]

    loaded = saved_model.load(version_dir)
    with_speaker = {} if speaker is None else {"speaker": tf.constant(speaker)}
    codes = model.encode(waves[..., None])
    out = loaded.signatures["encode"](waveforms=tf.constant(waves))
    np.testing.assert_array_equal(out["codes"], codes)
    out = loaded.signatures["decode"](codes=codes, **with_speaker)
    np.testing.assert_allclose(
        out["waveforms"], model.decode(codes, speaker)[..., 0], atol=1e-6
    )
    out = loaded.signatures["serving_default"](
        waveforms=tf.constant(waves), **with_speaker
    )
    np.testing.assert_array_equal(out["codes"], codes)
    np.testing.assert_allclose(
        out["reconstructions"], model.decode(codes, speaker)[..., 0], atol=1e-6
    )


def test_decoding_as_another_speaker(exported):
    model, waves, speaker, version_dir = exported
    if speaker is None:
        pytest.skip("the model has no speakers")
    loaded = saved_model.load(version_dir)
    codes = model.encode(waves[..., None])
    other = 1 - speaker
    out = loaded.signatures["decode"](codes=codes, speaker=tf.constant(other))
    np.testing.assert_allclose(
        out["waveforms"], model.decode(codes, other)[..., 0], atol=1e-6
    )


def test_convert_signature(exported):
    """`convert` (a plain `tf.saved_model.load`, as TF Serving sees it) is
    `VQVAE.convert_voice`; as the source's own speaker it is
    `serving_default`'s reconstruction."""
    model, waves, speaker, version_dir = exported
    if speaker is None:
        assert "convert" not in saved_model.signature_contract(version_dir)
        pytest.skip("the model has no speakers")
    convert = tf.saved_model.load(str(version_dir)).signatures["convert"]
    other = 1 - speaker
    out = convert(waveforms=tf.constant(waves), speaker=tf.constant(other))
    np.testing.assert_allclose(
        out["waveforms"], model.convert_voice(waves, other), atol=1e-6
    )
    same = convert(waveforms=tf.constant(waves), speaker=tf.constant(speaker))
    codes = model.encode(waves[..., None])
    np.testing.assert_allclose(
        same["waveforms"], model.decode(codes, speaker)[..., 0], atol=1e-6
    )
    assert np.max(np.abs(out["waveforms"] - same["waveforms"])) > 1e-5


def test_convert_signature_any_length(tmp_path):
    """Exported with `image_size=None`, `convert` takes any length: padded
    to a multiple of 64 inside, cropped back."""
    model = VQVAE(num_speakers=2, **TINY_AUDIO)
    model.encode(chirp(batch=1))
    version_dir = saved_model.export_saved_model(
        model, tmp_path, "speech", image_size=None, max_batch_size=MAX_BATCH
    )
    convert = tf.saved_model.load(str(version_dir)).signatures["convert"]
    waves = chirp(batch=2, samples=700)[..., 0]
    speaker = np.array([1, 0], "int32")
    out = convert(waveforms=tf.constant(waves), speaker=tf.constant(speaker))
    # The numpy reference of padding and cropping: 700 -> 704 samples.
    codes = model.encode(np.pad(waves, [(0, 0), (0, 4)])[..., None])
    expected = np.asarray(model.decode(codes, speaker))[:, :700, 0]
    assert out["waveforms"].shape == (2, 700)
    np.testing.assert_allclose(out["waveforms"], expected, atol=1e-6)
    session = serving.ServingSession(version_dir)
    try:
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            session.run(
                "convert",
                {"waveforms": np.zeros((2, 0), "float32"), "speaker": speaker},
            )
        assert assertion_message(info.value.message) == (
            "`waveforms` must have shape (batch, samples) with samples "
            "positive. Received: waveforms.shape=(2, 0)"
        )
    finally:
        session.close()


def _bad_requests(num_speakers):
    good = np.zeros((2, SAMPLES), "float32")
    codes = np.zeros((2, CODES), "int32")
    speaker = {} if num_speakers is None else {"speaker": np.array([0, 1])}
    cases = [
        (
            "encode",
            {"waveforms": np.full((2, SAMPLES), 1.5, "float32")},
            "`waveforms` must be in [-1, 1] (divide 16-bit PCM by 32768). "
            "Received: min=1.5, max=1.5.",
        ),
        (
            "encode",
            {"waveforms": np.zeros((2, 256), "float32")},
            f"`waveforms` must have shape (batch, {SAMPLES}). "
            "Received: waveforms.shape=(2, 256)",
        ),
        (
            "serving_default",
            {"waveforms": np.zeros((2, SAMPLES, 1), "float32"), **speaker},
            f"`waveforms` must have shape (batch, {SAMPLES}). "
            f"Received: waveforms.shape=(2, {SAMPLES}, 1)",
        ),
        (
            "encode",
            {"waveforms": np.zeros((MAX_BATCH + 1, SAMPLES), "float32")},
            f"`waveforms` must have a batch size from 1 to {MAX_BATCH} "
            "(max_batch_size of this export). "
            f"Received: waveforms.shape=({MAX_BATCH + 1}, {SAMPLES})",
        ),
        (
            "decode",
            {"codes": np.full((2, CODES), 16, "int32"), **speaker},
            "`codes` must be integers in [0, 16) (num_embeddings=16). "
            "Received: min=16, max=16.",
        ),
    ]
    if num_speakers is not None:
        cases += [
            (
                "decode",
                {"codes": codes, "speaker": np.array([0, 2], "int32")},
                "`speaker` must be integers in [0, 2) (num_speakers=2). "
                "Received: min=0, max=2.",
            ),
            (
                "serving_default",
                {"waveforms": good, "speaker": np.array([0], "int32")},
                "`speaker` must have shape (batch,). Received: "
                "speaker.shape=(1,), batch=2.",
            ),
            (
                "convert",
                {"waveforms": good, "speaker": np.array([0], "int32")},
                "`speaker` must have shape (batch,). Received: "
                "speaker.shape=(1,), batch=2.",
            ),
            (
                "convert",
                {"waveforms": good, "speaker": np.array([2, 0], "int32")},
                "`speaker` must be integers in [0, 2) (num_speakers=2). "
                "Received: min=0, max=2.",
            ),
            (
                "convert",
                {"waveforms": np.zeros((2, 256), "float32"), **speaker},
                f"`waveforms` must have shape (batch, {SAMPLES}). "
                "Received: waveforms.shape=(2, 256)",
            ),
            (
                "convert",
                {
                    "waveforms": np.full((2, SAMPLES), -2.0, "float32"),
                    **speaker,
                },
                "`waveforms` must be in [-1, 1] (divide 16-bit PCM by 32768). "
                "Received: min=-2, max=-2.",
            ),
        ]
    return cases


def test_bad_requests_are_invalid_argument(exported):
    model, _, _, version_dir = exported
    session = serving.ServingSession(version_dir)
    try:
        for signature, inputs, message in _bad_requests(model.num_speakers):
            with pytest.raises(tf.errors.InvalidArgumentError) as info:
                session.run(signature, inputs)
            assert assertion_message(info.value.message) == message
    finally:
        session.close()


_ISOLATED_LITERT = """
import json
import numpy as np
from ai_edge_litert.interpreter import Interpreter

out_dir, data_path, out_path = sys.argv[1:4]
data = np.load(data_path)
extra = {"speaker": data["speaker"]} if "speaker" in data else {}
results = {}
for name in sorted(os.listdir(out_dir)):
    if not name.endswith(".tflite"):
        continue
    interpreter = Interpreter(model_path=os.path.join(out_dir, name))
    (key,) = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(key)
    if key == "decode":
        results[name] = runner(codes=data["codes"], **extra)["waveforms"]
        if "other" in data:
            # On a device: the encoder's codes decoded as another speaker.
            encode = Interpreter(
                model_path=os.path.join(out_dir, "encoder_float32.tflite")
            ).get_signature_runner("encode")
            codes = encode(waveforms=data["waveforms"])["codes"]
            results["converted_" + name] = runner(
                codes=codes, speaker=data["other"]
            )["waveforms"]
    else:
        results[name] = runner(waveforms=data["waveforms"])["codes"]
np.savez(out_path, **results)
print(json.dumps(sorted(results)))
"""


@pytest.mark.parametrize(
    "num_speakers, options",
    [
        pytest.param(None, {}, marks=pytest.mark.slow),
        (2, {}),
        pytest.param(
            None,
            dict(
                likelihood="mu_law_logistic",
                num_mixtures=3,
                encoder_input="mu_law",
            ),
            marks=pytest.mark.slow,
        ),
        (2, dict(encoder_input="log_mel")),
    ],
    ids=["plain", "speakers", "logistic", "log_mel"],
)
def test_tflite_builtins_match_keras_in_litert(num_speakers, options, tmp_path):
    """Decoding speech in another voice on a device: the speaker model in
    the default suite, the plain one (the same path without `speaker`)
    and the logistic mixture decoder with a companding encoder with the
    slow tests."""
    model = VQVAE(num_speakers=num_speakers, **TINY_AUDIO, **options)
    waves = chirp(batch=3)[..., 0]
    speaker = None if num_speakers is None else np.array([1, 0, 1], "int32")
    model.encode(waves[..., None])
    files = tflite.export_tflite(
        model,
        tmp_path / "tflite",
        quantization=("float32", "float16", "int8"),
        representative_images=chirp(batch=8, seed=1)[..., 0],
    )
    names = [
        "decoder_float16.tflite",
        "decoder_float32.tflite",
        "decoder_int8.tflite",
        "encoder_float32.tflite",
    ]
    assert sorted(files) == names
    speaker_spec = (
        {}
        if speaker is None
        else {"speaker": {"dtype": "int32", "shape": [-1]}}
    )
    contract = tflite.signature_contract(tmp_path / "tflite")
    assert contract["decoder_float32.tflite"] == {
        "decode": {
            "inputs": {
                "codes": {"dtype": "int32", "shape": [-1, CODES]},
                **speaker_spec,
            },
            "outputs": {
                "waveforms": {"dtype": "float32", "shape": [-1, SAMPLES]}
            },
        }
    }
    assert contract["encoder_float32.tflite"] == {
        "encode": {
            "inputs": {
                "waveforms": {"dtype": "float32", "shape": [-1, SAMPLES]}
            },
            "outputs": {"codes": {"dtype": "int32", "shape": [-1, CODES]}},
        }
    }
    ops = manifest.read_manifest(tmp_path / "tflite")["ops"]
    for name in names:
        assert not any(op.startswith("Flex") for op in ops[name]), ops[name]

    codes = np.asarray(model.encode(waves[..., None]))
    data = {"waveforms": waves, "codes": codes}
    if speaker is not None:
        data["speaker"] = speaker
        data["other"] = 1 - speaker
    np.savez(tmp_path / "data.npz", **data)
    stdout = run_isolated(
        _ISOLATED_LITERT,
        str(tmp_path / "tflite"),
        str(tmp_path / "data.npz"),
        str(tmp_path / "out.npz"),
    )
    decoders = [name for name in names if name.startswith("decoder")]
    converted = [] if speaker is None else ["converted_" + n for n in decoders]
    assert json.loads(stdout) == sorted(names + converted)
    results = np.load(tmp_path / "out.npz")
    reference = np.asarray(model.decode(codes, speaker))[..., 0]
    np.testing.assert_array_equal(results["encoder_float32.tflite"], codes)
    np.testing.assert_allclose(
        results["decoder_float32.tflite"], reference, rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        results["decoder_float16.tflite"], reference, rtol=0, atol=1e-3
    )
    int8 = results["decoder_int8.tflite"]
    assert int8.shape == reference.shape
    # Within a few percent of the waveforms' full scale [-1, 1].
    assert float(np.max(np.abs(int8 - reference))) < 0.05
    if speaker is not None:
        # Voice conversion on a device: encoder file, then decoder file with
        # another speaker's id, as `VQVAE.convert_voice`.
        converted = np.asarray(model.convert_voice(waves, 1 - speaker))
        np.testing.assert_allclose(
            results["converted_decoder_float32.tflite"],
            converted,
            rtol=0,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            results["converted_decoder_float16.tflite"],
            converted,
            rtol=0,
            atol=1e-3,
        )
        assert (
            float(
                np.max(
                    np.abs(results["converted_decoder_int8.tflite"] - converted)
                )
            )
            < 0.05
        )
        assert not np.allclose(converted, reference, atol=1e-5)


def test_sample_signature_decodes_as_the_requested_speaker(tmp_path):
    """`sample` with a sampler of one's own (`sample_fn`; a WaveNet prior
    plugs in the same way): codes, and their waveforms as `speaker`."""
    model = VQVAE(num_speakers=2, **TINY_AUDIO)
    model.encode(chirp(batch=1))

    def sample_fn(num, seed):
        shape = tf.stack([num, CODES])
        return tf.random.stateless_uniform(
            shape, tf.stack([seed, 0]), maxval=16, dtype="int32"
        )

    version_dir = saved_model.export_saved_model(
        model, tmp_path, "speech", sample_fn=sample_fn, max_batch_size=4
    )
    assert saved_model.signature_contract(version_dir)["sample"] == {
        "inputs": {
            "num": {"dtype": "int32", "shape": []},
            "seed": {"dtype": "int32", "shape": []},
            "speaker": {"dtype": "int32", "shape": [-1]},
        },
        "outputs": {
            "codes": {"dtype": "int32", "shape": [-1, CODES]},
            "waveforms": {"dtype": "float32", "shape": [-1, SAMPLES]},
        },
    }
    sample = saved_model.load(version_dir).signatures["sample"]
    speaker = tf.constant([1, 0, 1])
    out = sample(num=tf.constant(3), seed=tf.constant(7), speaker=speaker)
    expected = sample_fn(tf.constant(3), tf.constant(7))
    np.testing.assert_array_equal(out["codes"], expected)
    np.testing.assert_allclose(
        out["waveforms"], model.decode(expected, speaker)[..., 0], atol=1e-6
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        sample(num=tf.constant(2), seed=tf.constant(7), speaker=speaker)
    assert assertion_message(info.value.message) == (
        "`speaker` must have shape (num,). Received: speaker.shape=(3,), num=2."
    )
