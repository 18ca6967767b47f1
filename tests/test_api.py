"""The public API: names, registration, and a light `import tf_vqvae`."""

import inspect
import os
import subprocess
import sys

import keras
import pytest

import tf_vqvae

PUBLIC = [
    "CodebookUsage",
    "Decoder",
    "Encoder",
    "FiniteScalarQuantizer",
    "GatedPixelCNNBlock",
    "LogMelFrames",
    "LookupFreeQuantizer",
    "MaskedConv2D",
    "PixelCNNPrior",
    "ResidualVectorQuantizer",
    "ResidualStack",
    "SpeakerClassifier",
    "VQVAE",
    "VectorQuantizer",
    "VectorQuantizerEMA",
    "WaveNetDecoder",
    "WaveNetPrior",
    "__version__",
    "bits_per_dim",
]


def test_all_is_pinned():
    assert sorted(tf_vqvae.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(tf_vqvae, name), name


def test_every_public_class_is_registered_and_documented():
    for name in PUBLIC:
        obj = getattr(tf_vqvae, name)
        if not inspect.isclass(obj):
            continue
        assert keras.saving.get_registered_name(obj) == f"tf_vqvae>{name}"
        assert keras.saving.get_registered_object(f"tf_vqvae>{name}") is obj
        doc = obj.__doc__ or ""
        assert "Args:" in doc, f"{name} docstring has no Args section"


def test_import_stays_light():
    """TFP, tfds, scikit-image and matplotlib load only when used."""
    heavy = [
        "tensorflow_probability",
        "tensorflow_datasets",
        "skimage",
        "matplotlib",
    ]
    code = (
        "import sys, tf_vqvae; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_saved_models_load_in_either_import_order(tmp_path):
    """Keras finds only registered classes: `import tf_vqvae` before
    TensorFlow and Keras must register them once those are imported."""
    import numpy as np

    model = tf_vqvae.VQVAE(
        num_embeddings=8, embedding_dim=4, num_hiddens=8, num_residual_hiddens=4
    )
    model(np.zeros((1, 8, 8, 3), "float32"))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loads = {
        "import tf_vqvae, keras": "keras.saving.load_model",
        "import tf_vqvae, tensorflow as tf": "tf.keras.models.load_model",
        "import keras, tf_vqvae": "keras.saving.load_model",
        # A submodule first: it imports TensorFlow while half imported.
        "from tf_vqvae import data; import keras": "keras.saving.load_model",
        "from tf_vqvae import precision; import keras": (
            "keras.saving.load_model"
        ),
        "import tf_vqvae.vqvae, keras": "keras.saving.load_model",
    }
    for imports, load in loads.items():
        code = f"{imports}; print(type({load}({path!r})).__name__)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True
        )
        assert out.stdout.strip() == "VQVAE", (imports, out.stderr[-2000:])
    # `import tf_vqvae` alone still imports neither.
    code = "import sys, tf_vqvae; print('keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_version_is_a_string():
    assert isinstance(tf_vqvae.__version__, str)
    assert tf_vqvae.__version__.count(".") == 2


def test_console_script_help_and_version():
    import shutil

    vqvae = shutil.which("vqvae", path=os.path.dirname(sys.executable))
    assert vqvae, "the `vqvae` console script is not installed"
    version = subprocess.run(
        [vqvae, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"vqvae {tf_vqvae.__version__}"
    usage = subprocess.run(
        [vqvae, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "train-prior", "sample", "evaluate", "demo"):
        assert command in usage
