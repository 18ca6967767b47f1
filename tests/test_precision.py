"""`tf_vqvae.precision`: the auto rule, policy scopes, and the models under
each precision (what stays float32, a finite fit step, loss scaling)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import VQVAE, PixelCNNPrior, precision, sampling
from tf_vqvae.options import PRECISIONS

VQVAE_TINY = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_hiddens=4,
    num_residual_blocks=1,
)
PRIOR_TINY = dict(
    num_embeddings=7, grid_shape=(3, 4), num_hiddens=8, num_layers=2
)
CONCRETE = ("float32", "bfloat16", "float16")
# float32 and float16 models are also tested in test_vqvae.py/test_prior.py:
# here they run with the slow tests, to keep the default suite's time.
EACH_PRECISION = [
    pytest.param("float32", marks=pytest.mark.slow),
    "bfloat16",
    pytest.param("float16", marks=pytest.mark.slow),
]
COMPUTE = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


@pytest.mark.parametrize(
    "flags, gpus, expected, reason",
    [
        (
            {"fpu", "avx512_bf16"},
            [],
            "bfloat16",
            "auto: no GPU; the CPU reports avx512_bf16",
        ),
        (
            {"amx_bf16", "avx512_bf16"},
            [],
            "bfloat16",
            "auto: no GPU; the CPU reports amx_bf16, avx512_bf16",
        ),
        (
            {"fpu", "avx2"},
            [],
            "float32",
            "auto: no GPU, and the CPU reports neither amx_bf16 nor "
            "avx512_bf16",
        ),
        (
            set(),
            [(8, 0), (9, 0)],
            "bfloat16",
            "auto: GPU compute capability 8.0 >= 8.0",
        ),
        (
            {"avx512_bf16"},
            [(7, 5)],
            "float16",
            "auto: GPU compute capability 7.5 >= 7.0, < 8.0",
        ),
        (
            {"avx512_bf16"},
            [(8, 6), (7, 0)],
            "float16",
            "auto: GPU compute capability 7.0 >= 7.0, < 8.0",
        ),
        (
            {"avx512_bf16"},
            [(6, 1)],
            "float32",
            "auto: GPU compute capability 6.1 < 7.0",
        ),
    ],
    ids=[
        "avx512",
        "amx",
        "plain-cpu",
        "ampere",
        "turing",
        "mixed-gpus",
        "pascal",
    ],
)
def test_auto_rule(flags, gpus, expected, reason):
    resolution = precision.resolve("auto", flags=frozenset(flags), gpus=gpus)
    assert resolution == precision.Resolution(expected, reason)
    assert resolution.policy == precision.POLICIES[expected]


@pytest.mark.parametrize("name", CONCRETE)
def test_concrete_precisions_resolve_to_themselves(name):
    resolution = precision.resolve(name, flags=frozenset(), gpus=[(9, 0)])
    assert resolution == precision.Resolution(name, "chosen")
    assert precision.dtype_policy(name).name == precision.POLICIES[name]


def test_bad_precision_message():
    for bad in ("fp16", None, "BFLOAT16"):
        with pytest.raises(ValueError) as info:
            precision.resolve(bad)
        assert str(info.value) == (
            "`precision` must be one of 'float32', 'bfloat16', 'float16', "
            f"'auto'. Received: precision={bad!r} (of type "
            f"{type(bad).__name__})."
        )
    assert tuple(PRECISIONS) == (*CONCRETE, "auto")


def test_cpu_flags_reads_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(
        "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert precision.cpu_flags(str(path)) == {
        "fpu",
        "avx512f",
        "avx512_bf16",
        "amx_bf16",
    }
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_this_machine_resolves():
    resolution = precision.resolve("auto")
    assert resolution.precision in CONCRETE
    flags = precision.cpu_flags()
    if not tf.config.list_physical_devices("GPU") and (
        "avx512_bf16" in flags or "amx_bf16" in flags
    ):
        assert resolution.precision == "bfloat16"


def test_policy_scope_restores_the_global_policy():
    with precision.policy_scope("bfloat16") as policy:
        assert policy.name == "mixed_bfloat16"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with precision.policy_scope("float16"):
            raise RuntimeError("inside")
    assert keras.config.dtype_policy().name == "float32"


def test_dtype_policy_takes_a_policy_object():
    policy = keras.DTypePolicy("mixed_bfloat16")
    assert precision.dtype_policy(policy) is policy
    with precision.policy_scope(policy) as inside:
        assert inside is policy
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    # `resolve` takes names only, and says so for a policy too.
    with pytest.raises(ValueError, match="^`precision` must be one of"):
        precision.resolve(policy)


@pytest.mark.parametrize("bad", [None, 16, ["float32"]])
def test_dtype_policy_refuses_other_objects(bad):
    expected = (
        "`precision` must be one of 'float32', 'bfloat16', 'float16', "
        f"'auto', or a `keras.DTypePolicy`. Received: precision={bad!r} "
        f"(of type {type(bad).__name__})."
    )
    with pytest.raises(ValueError) as info:
        precision.dtype_policy(bad)
    assert str(info.value) == expected
    with pytest.raises(ValueError) as info:
        with precision.policy_scope(bad):
            pass
    assert str(info.value) == expected
    assert keras.config.dtype_policy().name == "float32"


def _images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 16, 16, 3)).astype("uint8")


def _compute_dtypes(model) -> set:
    return {layer.compute_dtype for layer in model._flatten_layers()}


@pytest.mark.parametrize("name", EACH_PRECISION)
def test_vqvae_under_each_precision(name, tmp_path):
    """`dtype=` reaches every layer (the global policy stays float32);
    variables, codebook, losses and outputs are float32; a fit step gives a
    finite loss; float16 trains through a LossScaleOptimizer."""
    model = VQVAE(dtype=precision.dtype_policy(name), **VQVAE_TINY)
    images = _images()
    model(images[:1])
    assert keras.config.dtype_policy().name == "float32"
    assert _compute_dtypes(model) == {COMPUTE[name]}
    for variable in model.variables:
        assert variable.dtype in ("float32", "int64"), variable.path
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    scaled = isinstance(
        model.optimizer, keras.mixed_precision.LossScaleOptimizer
    )
    assert scaled == (name == "float16")
    history = model.fit(images, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(loss.dtype == tf.float32 for loss in model.losses)
    assert model(images[:2]).dtype == tf.float32
    assert model.quantizer.distances(
        model.encoder(images[:1].astype("float32") / 255.0 - 0.5)
    ).dtype == (tf.float32)

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _compute_dtypes(loaded) == {COMPUTE[name]}
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))


def test_float_images_stay_float32_under_bfloat16():
    """Float images are the loss's targets: the model does not round them
    to bfloat16 (only the encoder computes in it)."""
    model = VQVAE(dtype="mixed_bfloat16", **VQVAE_TINY)
    images = _images(4)
    as_float = images.astype("float32") / 255.0
    np.testing.assert_array_equal(model(images), model(as_float))
    model(as_float)
    from_float = float(model.losses[0])
    model(images)
    assert float(model.losses[0]) == from_float


@pytest.mark.parametrize("name", EACH_PRECISION)
def test_prior_under_each_precision(name):
    """Convolutions in the compute dtype; logits and the sampler's noise
    float32; cached and naive samplers give the same codes; a fit step
    gives a finite loss."""
    prior = PixelCNNPrior(dtype=precision.dtype_policy(name), **PRIOR_TINY)
    codes = np.random.default_rng(0).integers(0, 7, size=(8, 3, 4))
    codes = codes.astype("int32")
    logits = prior(codes)
    assert logits.dtype == tf.float32
    assert prior.blocks[1].horizontal_conv.compute_dtype == COMPUTE[name]
    for variable in prior.variables:
        assert variable.dtype == "float32", variable.path
    noise = sampling.prior_noise(prior, 3, seed=1)
    assert noise.dtype == tf.float32
    if name == "bfloat16":
        # float32 and float16: tests/test_prior.py.
        np.testing.assert_array_equal(
            prior.sample_codes(noise),
            prior.sample_codes(noise, method="naive"),
        )
    prior.compile(optimizer=keras.optimizers.Adam(1e-3))
    scaled = isinstance(
        prior.optimizer, keras.mixed_precision.LossScaleOptimizer
    )
    assert scaled == (name == "float16")
    history = prior.fit(codes, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_float32_copy_has_the_same_weights():
    images = _images(4)
    model = VQVAE(dtype="mixed_bfloat16", **VQVAE_TINY)
    model(images)
    prior = PixelCNNPrior(dtype="mixed_bfloat16", **PRIOR_TINY)
    prior.build((None, 3, 4))
    for original in (model, prior):
        copy = precision.float32_copy(original)
        assert _compute_dtypes(copy) == {"float32"}
        assert original.compute_dtype == "bfloat16"
        for ours, theirs in zip(
            original.get_weights(), copy.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)
    float32 = precision.float32_copy(model)
    expected = VQVAE(**VQVAE_TINY)
    expected(images)
    expected.set_weights(model.get_weights())
    np.testing.assert_array_equal(float32(images), expected(images))
    assert precision.float32_copy(expected) is expected


@pytest.mark.slow
def test_bfloat16_models_export_to_tflite(tmp_path):
    """TFLite has no bfloat16 convolutions: the export converts the float32
    copy, whose decoder gives the float32 model's images."""
    from tests.export_testing import run_isolated
    from tf_vqvae.export import export_tflite

    images = _images(4)
    model = VQVAE(dtype="mixed_bfloat16", **VQVAE_TINY)
    model(images)
    # Non-zero biases: the converter turns an all-zero transposed
    # convolution bias into one LiteRT then refuses (also in float32).
    rng = np.random.default_rng(0)
    model.set_weights(
        [
            w + rng.normal(0, 0.01, w.shape).astype(w.dtype)
            if w.dtype == np.float32
            else w
            for w in model.get_weights()
        ]
    )
    prior = PixelCNNPrior(
        dtype="mixed_bfloat16",
        **dict(PRIOR_TINY, num_embeddings=16, grid_shape=(4, 4)),
    )
    prior.build((None, 4, 4))
    files = export_tflite(
        model, tmp_path / "tflite", quantization=("float32",), prior=prior
    )
    assert sorted(files) == [
        "decoder_float32.tflite",
        "encoder_float32.tflite",
        "prior_sampler_float32.tflite",
    ]
    codes = model.encode(images).numpy()
    np.save(tmp_path / "codes.npy", codes)
    script = (
        "import sys, numpy as np\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("
        "'decode')\n"
        "out = runner(codes=np.load(sys.argv[2]))['images']\n"
        "np.save(sys.argv[3], out)\n"
    )
    run_isolated(
        script,
        files["decoder_float32.tflite"],
        str(tmp_path / "codes.npy"),
        str(tmp_path / "images.npy"),
    )
    expected = precision.float32_copy(model).decode(codes).numpy()
    np.testing.assert_allclose(
        np.load(tmp_path / "images.npy"), expected, atol=1e-5
    )
