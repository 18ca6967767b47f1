"""Tests for the `vqvae` command line: train, its artifacts and bad input."""

import dataclasses
import io
import json
import os
import shutil
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.testing import (
    TINY_MODEL_FLAGS,
    TINY_QUANTIZER_FLAGS,
    TINY_QUANTIZER_OPTIONS,
)
from tf_vqvae import PixelCNNPrior, options, precision
from tf_vqvae.data import load_images, load_labels, photo_crops, photo_tiles
from tf_vqvae.training import artifacts, cli, commands
from tf_vqvae.training.config import (
    ConfigError,
    PriorConfig,
    TrainConfig,
    load_config,
    save_config,
)
from tf_vqvae.training.interrupts import is_interrupt
from tf_vqvae.visualize import to_uint8

TINY = [
    "--epochs",
    "1",
    "--steps-per-epoch",
    "3",
    *TINY_MODEL_FLAGS,
    "--checkpoint-steps",
    "2",
]


def _train(model_dir, *flags):
    return cli.main(["train", "--model-dir", str(model_dir), *TINY, *flags])


def _write_png(path, size=(8, 8), mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = np.full((size[1], size[0], channels), 128, "uint8")
    Image.fromarray(pixels if channels == 3 else pixels[..., 0]).save(path)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(TrainConfig):
        if field.metadata.get("quantizer_options") or field.metadata.get(
            "decoder_options"
        ):
            continue
        assert "--" + field.name.replace("_", "-") in text
        assert " ".join(field.metadata["help"].split()) in text
    # The quantizer options, one flag each, with the kinds that take them.
    declarations = options.quantizer_option_declarations()
    for name, (option, kinds) in declarations.items():
        assert "--" + name.replace("_", "-") in text
        assert " ".join(option.help.split()) in text
        assert f"(--quantizer {'/'.join(kinds)}; default:" in text
    # The decoder options: --decoder-NAME.
    for name, (option, kinds) in options.decoder_option_declarations().items():
        assert "--decoder-" + name.replace("_", "-") in text
        assert " ".join(option.help.split()) in text
        assert f"(--decoder {'/'.join(kinds)}; default:" in text
    for flag in ("--model-dir", "--config", "--no-jit-compile"):
        assert flag in text


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "train" in capsys.readouterr().out


def test_train_writes_artifacts(tmp_path, capsys):
    model_dir = tmp_path / "run"
    flags = ["--quantizer", "vq", "--seed", "3"]
    flags += ["--likelihood", "discretized_logistic"]
    assert _train(model_dir, *flags) == 0
    out = capsys.readouterr().out
    for name in (
        "config.json",
        "model.keras",
        "calibration.npy",
        "reconstructions.png",
    ):
        path = model_dir / name
        assert path.is_file()
        assert str(path) in out
    assert "vqvae: trained 3 steps" in out
    assert (model_dir / "checkpoints" / "ckpt-3.index").is_file()
    assert (model_dir / "logs" / "train").is_dir()
    # Calibration images for int8 export: 256 training images spread evenly
    # over the split.
    tiles = photo_tiles("train")
    stride = len(tiles) // 256
    np.testing.assert_array_equal(
        np.load(model_dir / "calibration.npy"), tiles[::stride][:256]
    )
    leftovers = [n for n in os.listdir(model_dir) if n.startswith(".tmp")]
    assert leftovers == []

    config = load_config(str(model_dir / "config.json"))
    assert config == dataclasses.replace(
        TrainConfig(),
        epochs=1,
        steps_per_epoch=3,
        global_batch_size=8,
        num_embeddings=16,
        embedding_dim=4,
        num_hiddens=8,
        num_residual_hiddens=4,
        num_residual_blocks=1,
        checkpoint_steps=2,
        quantizer="vq",
        seed=3,
        likelihood="discretized_logistic",
    )
    model = keras.saving.load_model(str(model_dir / "model.keras"))
    assert model.num_embeddings == 16
    assert model.quantizer_type == "vq"
    assert model.likelihood == "discretized_logistic"
    # 16 validation images, original beside reconstruction, 8 per row.
    grid = np.asarray(Image.open(model_dir / "reconstructions.png"))
    assert grid.shape == (4 * 33 + 1, 8 * 33 + 1, 3)

    # The saved config is reloadable; flags given override it.
    args = cli.build_parser().parse_args(
        [
            "train",
            "--config",
            str(model_dir / "config.json"),
            "--model-dir",
            str(tmp_path / "other"),
            "--learning-rate",
            "0.01",
        ]
    )
    assert cli.config_from_args(args) == dataclasses.replace(
        config, learning_rate=0.01
    )

    # Running it again resumes: nothing left to train, and config.json
    # keeps the options the run trained with.
    # config.json keeps how it trained (the learning rate), not where its
    # data is (the tfds folder may have moved).
    saved = load_config(str(model_dir / "config.json"))
    argv = ["train", "--model-dir", str(model_dir), "--learning-rate", "0.5"]
    argv += ["--data-dir", str(tmp_path / "tfds")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "vqvae: trained no more steps (already at 3) in " in out
    assert (
        f"vqvae: {model_dir} is already trained (3 steps); raise --epochs "
        "to train it longer." in out
    )
    assert load_config(str(model_dir / "config.json")) == dataclasses.replace(
        saved, data_dir=str(tmp_path / "tfds")
    )


def test_bad_input_exits_2_and_leaves_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "train" / "cats").mkdir(parents=True)
    sizes = tmp_path / "sizes"
    _write_png(sizes / "train" / "a" / "0.png", size=(8, 8))
    _write_png(sizes / "train" / "b" / "0.png", size=(16, 8))
    modes = tmp_path / "modes"
    _write_png(modes / "train" / "a" / "0.png", mode="L")
    _write_png(modes / "train" / "b" / "0.png", mode="RGB")
    odd = tmp_path / "odd"
    _write_png(odd / "train" / "a" / "0.png", size=(10, 12))
    _write_png(odd / "train" / "a" / "1.png", size=(10, 12))
    existing = tmp_path / "existing"
    existing.mkdir()
    tiny = cli.config_from_args(
        cli.build_parser().parse_args(["train", "--model-dir", "x", *TINY])
    )
    save_config(dataclasses.replace(tiny, num_embeddings=32), str(existing))
    config_path = existing / "config.json"

    num_photos = len(photo_tiles("train"))
    cases = [
        (
            ["--dataset", "tfds:no_such_dataset"],
            "`dataset` names no TensorFlow Datasets dataset: "
            "'no_such_dataset' is unknown; use a name from "
            "`tfds.list_builders()`, e.g. 'tfds:cifar10'. "
            "Received: dataset='tfds:no_such_dataset'",
        ),
        (
            ["--dataset", "mnist"],
            "`dataset` must be 'photos[:split]', 'tfds:NAME[:split]' (e.g. "
            "'tfds:cifar10'), 'folder:PATH', 'speech[:split]' or "
            "'audio-folder:PATH'. Received: dataset='mnist'",
        ),
        (
            ["--dataset", f"folder:{empty}"],
            f"`dataset` folder {str(empty)!r} has no .jpg or .png images in "
            f"{empty}/train/LABEL/; lay it out as {empty}/train/LABEL/*.png. "
            f"Received: dataset='folder:{empty}'",
        ),
        (
            ["--dataset", f"folder:{sizes}"],
            f"`dataset` images must all have one size; {sizes}/train/a/0.png "
            f"is 8x8 but {sizes}/train/b/0.png is 16x8. Resize them to one "
            f"size. Received: dataset='folder:{sizes}'",
        ),
        (
            ["--dataset", f"folder:{modes}"],
            "`dataset` images must be all grayscale or all RGB; "
            f"{modes}/train/a/0.png has 1 channel(s) but "
            f"{modes}/train/b/0.png has 3. Convert them to one mode. "
            f"Received: dataset='folder:{modes}'",
        ),
        (
            [
                "--strategy",
                "mirrored",
                "--devices",
                "/cpu:0",
                "/cpu:1",
                "--global-batch-size",
                "7",
            ],
            "`global_batch_size` must be divisible by the number of replicas "
            "(2); pass a multiple of 2. Received: global_batch_size=7",
        ),
        (
            ["--strategy", "multi-worker"],
            "`strategy` 'multi-worker' needs the TF_CONFIG environment "
            "variable (cluster and task, see README's Command line). "
            "Received: strategy='multi-worker'",
        ),
        (
            ["--dataset", f"folder:{odd}", "--global-batch-size", "2"],
            "`dataset` images are 12x10, not divisible by "
            "2**num_downsamples=4; crop or resize them (e.g. into a "
            "'folder:' dataset) or change --num-downsamples. "
            "Received: image_shape=(12, 10, 3)",
        ),
        (
            ["--epochs", "0"],
            "`epochs` must be a positive integer. Received: epochs=0",
        ),
        (
            ["--devices", "/cpu:0"],
            "`devices` needs --strategy mirrored. "
            "Received: devices=['/cpu:0'], strategy='default'",
        ),
        (
            ["--global-batch-size", "100000"],
            "`global_batch_size` must be at most the number of training "
            f"images ({num_photos}). Received: global_batch_size=100000",
        ),
        (
            ["--config", str(tmp_path / "nowhere.json")],
            "`config` file does not exist; pass a config.json written by "
            "`vqvae train`. Received: config="
            f"{str(tmp_path / 'nowhere.json')!r}",
        ),
    ]
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    try:
        for flags, message in cases:
            model_dir = tmp_path / "run"
            assert _train(model_dir, *flags) == cli.EXIT_USAGE, flags
            assert capsys.readouterr().err == (
                f"vqvae train: error: {message}\n"
            )
            assert not model_dir.exists(), flags
    finally:
        monkeypatch.undo()

    # A model dir from an incompatible config: error, and it is untouched.
    before = {p: p.stat().st_mtime_ns for p in existing.iterdir()}
    assert _train(existing) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f"vqvae train: error: `model_dir` {str(existing)!r} holds a run with "
        f"num_embeddings=32; resume it with the same options (--config "
        f"{config_path}) or use a new --model-dir. "
        "Received: num_embeddings=16\n"
    )
    assert {p: p.stat().st_mtime_ns for p in existing.iterdir()} == before


def test_codebook_health_defaults_and_how_to_turn_them_off(tmp_path):
    assert TrainConfig().model_kwargs()["data_init"] == "random"
    assert TrainConfig().model_kwargs()["dead_code_restart_steps"] == 100
    args = cli.build_parser().parse_args(
        [
            "train",
            "--model-dir",
            str(tmp_path / "run"),
            "--data-init",
            "none",
            "--dead-code-restart-steps",
            "0",
        ]
    )
    config = cli.config_from_args(args)
    kwargs = config.model_kwargs()
    assert (kwargs["data_init"], kwargs["dead_code_restart_steps"]) == (
        None,
        None,
    )
    # Config files of earlier versions wrote `null` for "off".
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps({"data_init": None, "dead_code_restart_steps": None})
    )
    assert load_config(str(path)) == config
    # One spelling of "off" where users type it: `none` (0 means the same).
    args = cli.build_parser().parse_args(
        ["train", "--model-dir", str(tmp_path / "run")]
        + ["--data-init", "none", "--dead-code-restart-steps", "none"]
    )
    assert cli.config_from_args(args) == config
    assert json.loads(config.to_json())["dead_code_restart_steps"] == "none"
    assert json.loads(config.to_json())["data_init"] == "none"
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(config, dead_code_restart_steps=-1)
    assert str(info.value) == (
        "`dead_code_restart_steps` must be a positive integer or 'none'. "
        "Received: dead_code_restart_steps=-1"
    )


def test_unknown_config_key(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochs": 2, "batch_size": 8}))
    assert _train(tmp_path / "run", "--config", str(path)) == cli.EXIT_USAGE
    names = sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert capsys.readouterr().err == (
        f"vqvae train: error: `{path}` has unknown options ['batch_size']; "
        f"the options are {names}. Received: batch_size=8\n"
    )


def test_non_finite_loss_stops_with_good_weights(tmp_path, capsys):
    model_dir = tmp_path / "run"
    code = _train(
        model_dir,
        "--learning-rate",
        "1e30",
        "--quantizer",
        "vq",
        "--steps-per-epoch",
        "6",
    )
    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    checkpoints = model_dir / "checkpoints"
    assert err.startswith("vqvae train: error: Training stopped at step ")
    assert err.endswith(
        f"is not finite (loss=nan); the model was restored to the last good "
        f"checkpoint (step 0) in {checkpoints}; run again with a lower "
        "--learning-rate (now 1e+30) to resume from there.\n"
    )
    assert not (model_dir / "model.keras").exists()
    reader = tf.train.load_checkpoint(str(checkpoints))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


PRIOR_TINY = [
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--global-batch-size",
    "8",
    "--num-hiddens",
    "8",
    "--num-layers",
    "2",
]


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    assert _train(model_dir) == 0
    return model_dir


def test_prior_sample_evaluate(trained_dir, capsys):
    model_dir = str(trained_dir)
    argv = ["train-prior", "--model-dir", model_dir, *PRIOR_TINY]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "vqvae: trained the prior 2 steps" in out
    prior_path = trained_dir / "prior" / "prior.keras"
    assert prior_path.is_file() and str(prior_path) in out
    assert (trained_dir / "prior" / "checkpoints" / "ckpt-2.index").is_file()
    assert (trained_dir / "prior" / "logs" / "prior_samples").is_dir()
    # Again: resumes, nothing left to train.
    assert cli.main(argv) == 0
    assert (
        "vqvae: trained the prior no more steps (already at 2) in "
        in capsys.readouterr().out
    )
    # Options that shape the prior must match the saved ones.
    prior_dir = trained_dir / "prior"
    assert cli.main([*argv, "--num-layers", "3"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f"vqvae train-prior: error: `model_dir` {model_dir!r} holds a prior "
        "with num_layers=2; resume it with the same options (--config "
        f"{prior_dir}/config.json) or delete {prior_dir}. "
        "Received: num_layers=3\n"
    )

    grids = []
    for name in ("a.png", "b.png"):
        output = str(trained_dir / name)
        argv = ["sample", "--model-dir", model_dir, "--n", "4"]
        assert cli.main([*argv, "--seed", "3", "--output", output]) == 0
        assert capsys.readouterr().out == f"vqvae: 4 samples in {output}\n"
        grids.append(np.asarray(Image.open(output)))
    assert grids[0].shape == (34, 133, 3)
    np.testing.assert_array_equal(grids[0], grids[1])
    # More than 64 samples: drawn, decoded and written 64 per grid.
    argv = ["sample", "--model-dir", model_dir, "--seed", "3"]
    one = str(trained_dir / "one.png")
    assert cli.main([*argv, "--n", "64", "--output", one]) == 0
    many = str(trained_dir / "many.png")
    assert cli.main([*argv, "--n", "130", "--output", many]) == 0
    paths = [str(trained_dir / f"many-00{i}.png") for i in range(3)]
    assert capsys.readouterr().out == (
        f"vqvae: 64 samples in {one}\n"
        f"vqvae: 130 samples in {paths[0]} ... {paths[2]} (3 grids)\n"
    )
    assert not os.path.exists(many)
    grids = [np.asarray(Image.open(path)) for path in paths]
    assert [grid.shape for grid in grids] == [(265, 265, 3)] * 2 + [(34, 67, 3)]
    np.testing.assert_array_equal(grids[0], np.asarray(Image.open(one)))
    assert not np.array_equal(grids[0], grids[1])

    assert cli.main(["evaluate", "--model-dir", model_dir]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((trained_dir / "evaluation.json").read_text())
    assert set(metrics) == {
        "dataset",
        "split",
        "likelihood",
        "gaussian_scale",
        "num_images",
        "bits_per_dim_uniform_prior",
        "bits_per_dim_pixelcnn_prior",
        "reconstruction_bits_per_dim",
        "mse",
        "psnr",
        "num_levels",
        "bits_per_position_uniform_prior",
        "perplexity",
        "codebook_usage",
        "dead_codes",
    }
    assert metrics["num_levels"] == 1
    assert metrics["bits_per_position_uniform_prior"] == 4.0
    assert (metrics["dataset"], metrics["split"]) == ("photos", "test")
    assert metrics["likelihood"] == "discretized_gaussian"
    assert metrics["num_images"] == len(photo_tiles("test"))
    assert 0 < metrics["mse"] < 0.5
    assert 1 <= metrics["perplexity"] <= 16
    assert metrics["dead_codes"] == round(16 * (1 - metrics["codebook_usage"]))
    assert 0 < metrics["bits_per_dim_pixelcnn_prior"] < 9
    assert "bits_per_dim_pixelcnn_prior" in out and "psnr" in out


def test_evaluate_matches_the_model(trained_dir):
    """`evaluate`'s MSE is the model's own reconstruction error."""
    metrics = commands.evaluate(str(trained_dir), split="test")
    model = keras.saving.load_model(str(trained_dir / "model.keras"))
    tiles = photo_tiles("test")
    x = tiles.astype("float32") / 255.0
    reconstructions = np.clip(model(tiles, training=False).numpy(), 0, 1)
    mse = float(np.mean((reconstructions - x) ** 2))
    np.testing.assert_allclose(metrics["mse"], mse, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["psnr"], 10 * np.log10(1 / mse), rtol=1e-5
    )


def test_commands_need_their_inputs(tmp_path, trained_dir, capsys):
    gray = tmp_path / "gray"
    _write_png(gray / "test" / "a" / "0.png", size=(32, 32), mode="L")
    empty = str(tmp_path / "nothing")
    cases = [
        (
            ["train-prior", "--model-dir", empty],
            f"`model_dir` {empty!r} holds no trained VQ-VAE (model.keras); "
            f"run `vqvae train --model-dir {empty}` first. "
            f"Received: model_dir={empty!r}",
        ),
        (
            ["sample", "--model-dir", empty],
            f"`model_dir` {empty!r} holds no trained VQ-VAE (model.keras); "
            f"run `vqvae train --model-dir {empty}` first. "
            f"Received: model_dir={empty!r}",
        ),
        *[
            (
                ["sample", "--model-dir", str(trained_dir), "--n", n],
                f"`n` must be an integer from 1 to 65536. Received: n={n}",
            )
            for n in ("0", "-1", "65537")
        ],
        *[
            (
                ["sample", "--model-dir", str(trained_dir)]
                + ["--temperature", value],
                "`temperature` must be a positive number. "
                f"Received: temperature={float(value)!r}",
            )
            for value in ("0", "-1", "nan", "inf")
        ],
        *[
            (
                ["sample", "--model-dir", str(trained_dir), "--output", path],
                "`output` must be a .png path in an existing directory "
                f"(the model in {str(trained_dir)!r} is an image model). "
                f"Received: output={path!r}",
            )
            for path in (f"{empty}/a.png", str(tmp_path / "a.jpg"))
        ],
        (
            [
                "evaluate",
                "--model-dir",
                str(trained_dir),
                "--dataset",
                f"folder:{gray}",
            ],
            f"`dataset` 'folder:{gray}' has 1-channel images but the model "
            f"in {str(trained_dir)!r} was trained on 3-channel (RGB) images; "
            "evaluate it on a dataset like the one it was trained on. "
            "Received: image_shape=(32, 32, 1)",
        ),
        (
            ["evaluate", "--model-dir", str(trained_dir), "--split", "val"],
            "The 'photos' dataset has splits 'train' and 'test'. "
            "Received: split='val'",
        ),
    ]
    for argv, message in cases:
        assert cli.main(argv) == cli.EXIT_USAGE, argv
        command = argv[0]
        assert capsys.readouterr().err == (
            f"vqvae {command}: error: {message}\n"
        )
    assert not os.path.exists(empty)


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    model_dir = tmp_path / "demo"
    argv = ["demo", "--model-dir", str(model_dir), "--epochs", "1"]
    argv += ["--prior-epochs", "1", "--steps-per-epoch", "3"]
    # bfloat16 through every stage, export included (`--precision auto`
    # picks it on CPUs with bfloat16 instructions; the default float32 runs
    # in test_benchmarks.py's demo test).
    assert cli.main([*argv, "--precision", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert load_config(str(model_dir / "config.json")).precision == "bfloat16"
    prior_config = load_config(
        str(model_dir / "prior" / "config.json"), PriorConfig
    )
    assert prior_config.precision == "bfloat16"
    for line in (
        "vqvae demo: 1/5 train the VQ-VAE",
        "vqvae demo: 5/5 export a SavedModel and TFLite files",
        "vqvae demo: done in",
        "bits_per_dim_pixelcnn_prior",
    ):
        assert line in out
    for path in (
        "model.keras",
        "reconstructions.png",
        "prior/prior.keras",
        "samples.png",
        "evaluation.json",
        "export/vqvae/1/saved_model.pb",
        "export/vqvae_tflite/decoder_int8.tflite",
        "export/vqvae_tflite/prior_sampler_float32.tflite",
    ):
        assert (model_dir / path).exists(), path
        assert str(model_dir / os.path.dirname(path)) in out
    # Run again without --precision: it resumes in the run's own (a
    # different precision would be refused).
    assert cli.main(argv) == 0
    assert load_config(str(model_dir / "config.json")).precision == "bfloat16"


def test_demo_refuses_another_precision_in_one_line(tmp_path, capsys):
    model_dir = tmp_path / "demo"
    model_dir.mkdir()
    save_config(TrainConfig(precision="float32"), str(model_dir))
    argv = ["demo", "--model-dir", str(model_dir), "--precision", "bfloat16"]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        f"vqvae demo: error: `model_dir` {str(model_dir)!r} holds a demo "
        "trained in float32; run `vqvae demo` without --precision to resume "
        "it, or pass a new --model-dir. Received: precision='bfloat16'\n"
    )
    assert sorted(os.listdir(model_dir)) == ["config.json"]


def test_float16_resume_keeps_the_loss_scale(tmp_path, capsys):
    model_dir = tmp_path / "run"
    flags = ["--precision", "float16", "--quantizer", "vq"]
    assert _train(model_dir, *flags) == 0
    assert keras.mixed_precision.global_policy().name == "float32"
    config = load_config(str(model_dir / "config.json"))
    assert config.precision == "float16" and not config.jit_compile
    out = capsys.readouterr().out
    assert "vqvae: precision float16 (chosen; Keras policy mixed_float16)." in (
        out
    )
    argv = ["train", "--model-dir", str(model_dir), "--epochs", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"resuming {model_dir} at step 3 of 6" in out
    assert "vqvae: trained 3 more steps (now at 6) in " in out
    reader = tf.train.load_checkpoint(str(model_dir / "checkpoints"))
    names = reader.get_variable_to_shape_map()
    assert any("loss_scale" in name or "scale" in name for name in names)
    model = keras.saving.load_model(str(model_dir / "model.keras"))
    assert model.dtype_policy.name == "mixed_float16"
    assert model.decoder.compute_dtype == "float16"


def test_precision_auto_is_saved_as_what_it_chose(tmp_path, capsys):
    model_dir = tmp_path / "run"
    chosen = precision.resolve("auto")
    assert _train(model_dir, "--precision", "auto") == 0
    out = capsys.readouterr().out
    assert (
        f"vqvae: precision {chosen.precision} ({chosen.reason}; Keras "
        f"policy {chosen.policy})." in out
    )
    config_path = model_dir / "config.json"
    assert load_config(str(config_path)).precision == chosen.precision
    model = keras.saving.load_model(str(model_dir / "model.keras"))
    assert model.encoder.compute_dtype == (
        "float32" if chosen.precision == "float32" else chosen.precision
    )
    other = "float16" if chosen.precision != "float16" else "float32"
    assert _train(model_dir, "--precision", other) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f"vqvae train: error: `model_dir` {str(model_dir)!r} holds a run "
        f"with precision={chosen.precision!r}; resume it with the same "
        f"options (--config {config_path}) or use a new --model-dir. "
        f"Received: precision={other!r}\n"
    )


def test_old_configs_mixed_precision_is_float16(tmp_path):
    for mixed, expected in ((True, "float16"), (False, "float32")):
        path = tmp_path / "old.json"
        path.write_text(json.dumps({"mixed_precision": mixed, "epochs": 3}))
        assert load_config(str(path)) == TrainConfig(
            precision=expected, epochs=3
        )
    with pytest.raises(ConfigError) as info:
        TrainConfig(precision="fp16")
    assert str(info.value) == (
        "`precision` must be one of 'float32', 'bfloat16', 'float16', "
        "'auto'. Received: precision='fp16'"
    )


def test_export_and_verify(trained_dir, tmp_path, capsys):
    out = str(tmp_path / "models")
    argv = ["export", "--model-dir", str(trained_dir), "--out", out]
    assert cli.main([*argv, "--tflite", "--quantization", "float32"]) == 0
    printed = capsys.readouterr().out
    version_dir = os.path.join(out, "vqvae", "1")
    tflite_dir = os.path.join(out, "vqvae_tflite")
    assert version_dir in printed and tflite_dir in printed
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isfile(os.path.join(tflite_dir, "decoder_float32.tflite"))
    assert not os.path.exists(os.path.join(tflite_dir, "decoder_int8.tflite"))

    for path in (version_dir, os.path.join(out, "vqvae"), tflite_dir):
        assert cli.main(["verify", path]) == 0
        assert capsys.readouterr().out == (
            f"vqvae verify: {path} matches its manifest\n"
        )

    # The same version again is refused (exit 2), and nothing changes.
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        f"vqvae export: error: {version_dir!r} exists; pass --overwrite to "
        "replace it or choose another --version. Received: version=1\n"
    )
    assert cli.main([*argv, "--version", "2"]) == 0
    assert os.path.isdir(os.path.join(out, "vqvae", "2"))

    # A tampered file fails verification with exit 1.
    with open(os.path.join(tflite_dir, "decoder_float32.tflite"), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    capsys.readouterr()
    assert cli.main(["verify", tflite_dir]) == 1
    assert "decoder_float32.tflite" in capsys.readouterr().err
    assert cli.main(["verify", str(tmp_path / "missing")]) == 2


def test_export_is_all_or_nothing(trained_dir, tmp_path, capsys, monkeypatch):
    # Ctrl-C while the TFLite files are written: the SavedModel version
    # written before is removed, so the same command runs again.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "export_tflite", interrupted)
    out = tmp_path / "models"
    argv = ["export", "--model-dir", str(trained_dir), "--out", str(out)]
    argv += ["--tflite", "--quantization", "float32"]
    assert cli.main(argv) == 130
    assert capsys.readouterr().err.endswith("vqvae export: interrupted\n")
    assert not out.exists()
    monkeypatch.undo()
    assert cli.main(argv) == 0
    assert sorted(os.listdir(out)) == ["vqvae", "vqvae_tflite"]


def test_export_reads_no_dataset(tmp_path, capsys):
    """`vqvae export` needs only the model dir: int8 is calibrated on the
    sample `vqvae train` wrote, or on --calibration-data."""
    crops = photo_crops(8, 24, seed=1)
    folder = tmp_path / "images"
    (folder / "train" / "a").mkdir(parents=True)
    for index, crop in enumerate(crops):
        Image.fromarray(crop).save(folder / "train" / "a" / f"{index}.png")
    model_dir = tmp_path / "run"
    assert _train(model_dir, "--dataset", f"folder:{folder}") == 0
    sample = np.load(model_dir / "calibration.npy")
    assert sample.dtype == np.uint8 and sample.shape == (24, 8, 8, 3)
    assert sorted(map(bytes, sample)) == sorted(map(bytes, crops))

    def export(out, *flags):
        argv = ["export", "--model-dir", str(model_dir), "--out", str(out)]
        argv += ["--tflite", "--quantization", "int8", *flags]
        return cli.main(argv)

    # --calibration-data folder:PATH samples the dataset as training did.
    np.testing.assert_array_equal(
        artifacts.calibration_images(
            str(model_dir), f"folder:{folder}", (8, 8, 3)
        ),
        sample,
    )
    shutil.rmtree(folder)
    assert export(tmp_path / "b") == 0
    tflite_dir = tmp_path / "b" / "vqvae_tflite"
    assert (tflite_dir / "decoder_int8.tflite").is_file()
    capsys.readouterr()

    os.remove(model_dir / "calibration.npy")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 16, 16, 3), "uint8"))
    cases = [
        (
            [],
            "`quantization` 'int8' needs calibration images, and "
            f"{model_dir}/calibration.npy (written by `vqvae train`) is "
            "missing; pass --calibration-data (a .npy file of images or a "
            "dataset such as folder:PATH) or leave out int8. "
            "Received: quantization=('int8',)",
        ),
        (
            ["--calibration-data", str(wrong)],
            "`calibration_data` must hold images of the model's shape "
            f"(n, 8, 8, 3). Received: calibration_data={str(wrong)!r} of "
            "shape (4, 16, 16, 3)",
        ),
    ]
    for flags, message in cases:
        assert export(tmp_path / "c", *flags) == cli.EXIT_USAGE
        assert capsys.readouterr().err == (f"vqvae export: error: {message}\n")
        assert not (tmp_path / "c").exists()
    # An existing TFLite directory is refused like an existing version.
    assert export(tmp_path / "b", "--version", "2") == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f"vqvae export: error: {str(tflite_dir)!r} exists; pass --overwrite "
        "to replace it or choose another --out. "
        f"Received: out={str(tmp_path / 'b')!r}\n"
    )


def test_codebook_collapse_warns_or_stops(tmp_path, capsys):
    """`vqvae train` checks the codebook every epoch (CodebookHealth):
    the paper's plain algorithm collapses here; with --on-collapse stop
    the run stops after that epoch and exits 1, checkpointed, without
    model.keras."""
    model_dir = tmp_path / "run"
    collapsing = ["--data-init", "none", "--dead-code-restart-steps", "none"]
    flags = [*collapsing, "--epochs", "2", "--on-collapse", "stop"]
    assert _train(model_dir, *flags) == cli.EXIT_FAILED
    err = capsys.readouterr().err.splitlines()
    summary = json.loads((model_dir / "codebook_health.json").read_text())
    assert summary["healthy"] is False and summary["on_collapse"] == "stop"
    [verdict] = summary["epochs"]
    assert err[0] == verdict["message"]
    assert verdict["message"].startswith(
        "CodebookHealth: epoch 1: codebook collapse: "
        f"{verdict['used_codes']} of 16 codes used"
    )
    assert err[1] == (
        "vqvae train: error: Training stopped after epoch 1 of 2 (step 3, "
        f"checkpointed in {model_dir}/checkpoints). {verdict['message']} "
        "Train again in a new --model-dir with those options, or resume "
        "this one with --on-collapse warn."
    )
    assert (model_dir / "checkpoints" / "ckpt-3.index").is_file()
    assert not (model_dir / "model.keras").exists()
    # Resumed with a warning only: trains on, and the verdicts of both
    # invocations are kept.
    resume = [*collapsing, "--epochs", "2", "--on-collapse", "warn"]
    assert _train(model_dir, *resume) == 0
    out, err = capsys.readouterr()
    assert str(model_dir / "codebook_health.json") in out
    assert err.startswith("CodebookHealth: epoch 2: codebook collapse: ")
    summary = json.loads((model_dir / "codebook_health.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [0, 1]
    assert summary["on_collapse"] == "warn"


def _class_folders(root, classes=("cat", "dog", "fish"), per_class=8):
    """`root/{train,test}/CLASS/i.png`: 16x16 photo crops, one photo per
    class."""
    for split, count in (("train", per_class), ("test", 2)):
        for c, name in enumerate(classes):
            crops = photo_crops(16, count, seed=c + (split == "test") * 10)
            for i, crop in enumerate(crops):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(crop).save(path)
    return f"folder:{root}"


def test_class_conditional_prior_and_samples_by_label(tmp_path, capsys):
    dataset = _class_folders(tmp_path / "data")
    model_dir = tmp_path / "run"
    assert _train(model_dir, "--dataset", dataset) == 0
    argv = ["train-prior", "--model-dir", str(model_dir), *PRIOR_TINY]
    assert cli.main([*argv, "--class-conditional"]) == 0
    out = capsys.readouterr().out
    classes_file = model_dir / "prior" / "classes.json"
    assert str(classes_file) in out
    assert json.loads(classes_file.read_text()) == {
        "dataset": dataset,
        "class_names": ["cat", "dog", "fish"],
    }
    prior = artifacts.load_prior(str(model_dir))
    assert prior.num_classes == 3
    assert load_config(
        str(model_dir / "prior" / "config.json"), PriorConfig
    ).class_conditional

    # By name or id: the same samples.
    grids = []
    for label in ("dog", "1"):
        output = str(tmp_path / f"{label}.png")
        sample = ["sample", "--model-dir", str(model_dir), "--n", "3"]
        assert cli.main([*sample, "--label", label, "--output", output]) == 0
        assert capsys.readouterr().out == (
            f"vqvae: 3 samples of class {label} in {output}\n"
        )
        grids.append(np.asarray(Image.open(output)))
    assert grids[0].shape == (18, 3 * 17 + 1, 3)
    np.testing.assert_array_equal(grids[0], grids[1])
    # The same codes as the prior's own distribution for class 1.
    vqvae = keras.saving.load_model(str(model_dir / "model.keras"))
    codes = prior.distribution(labels=1).sample(3, seed=0)
    expected = to_uint8(vqvae.decode(codes).numpy())
    np.testing.assert_array_equal(grids[0][1:17, 1:17], expected[0])

    # No label: every class, one row each, named on the left.
    output = tmp_path / "all.png"
    sample = ["sample", "--model-dir", str(model_dir), "--n", "2"]
    assert cli.main([*sample, "--output", str(output)]) == 0
    assert capsys.readouterr().out == (
        f"vqvae: 2 samples of each of 3 classes (a row each) in {output}\n"
    )
    grid = np.asarray(Image.open(output))
    assert grid.shape[0] == 3 * 17 + 1 and grid.shape[1] > 2 * 17 + 1
    margin = grid.shape[1] - (2 * 17 + 1)
    assert grid[:, :margin].max() > 0  # the class names

    # Unknown label; a label for an unconditional prior.
    sample = ["sample", "--model-dir", str(model_dir), "--label"]
    for label in ("bird", "3", "-1"):
        assert cli.main([*sample, label]) == cli.EXIT_USAGE
        assert capsys.readouterr().err == (
            "vqvae sample: error: `label` must be a class name of "
            f"{model_dir}'s prior (cat, dog, fish) or an id in [0, 3). "
            f"Received: label={label!r}\n"
        )
    plain_dir = tmp_path / "plain"
    (plain_dir / "prior").mkdir(parents=True)
    for name in ("model.keras", "config.json"):
        shutil.copy(model_dir / name, plain_dir / name)
    plain = PixelCNNPrior(16, prior.grid_shape, num_hiddens=8, num_layers=2)
    plain.build((None, *prior.grid_shape))
    plain.save(str(plain_dir / "prior" / "prior.keras"))
    argv = ["sample", "--model-dir", str(plain_dir), "--label", "dog"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "vqvae sample: error: `label` needs a class-conditional prior, and "
        f"{plain_dir}'s prior is unconditional; train one with `vqvae "
        "train-prior --class-conditional` or leave out --label. "
        "Received: label='dog'\n"
    )

    # evaluate scores the test split's codes under their own classes.
    metrics = commands.evaluate(str(model_dir))
    images = load_images(dataset, "test")
    labels = load_labels(dataset, "test").labels
    x = np.stack([image.numpy() for image in images.dataset])
    nats = -prior.distribution(labels=labels).log_prob(vqvae.encode(x))
    np.testing.assert_allclose(
        metrics["bits_per_dim_pixelcnn_prior"]
        - metrics["bits_per_dim_uniform_prior"],
        (float(np.sum(nats)) - len(x) * 16 * np.log(16))
        / (len(x) * 16 * 16 * 3 * np.log(2)),
        rtol=1e-4,
    )


def _assert_nearest_recounted(model, images, summary, count):
    """Each shown code's patches in `usage.json` are the positions whose
    z_e is nearest to its vector (the first level's for residual VQ),
    recounted in float64 numpy over all the images' positions."""
    z = np.asarray(model.latents(images), "float64")
    grid = z.shape[:-1]
    z = z.reshape(-1, z.shape[-1])
    shown = sorted({*summary["top_codes"], *summary["bottom_codes"]})
    assert sorted(map(int, summary["nearest"])) == shown
    levels = model.quantizer.num_levels > 1
    for code in shown:
        query = [[code]] if levels else [code]
        vector = np.asarray(model.quantizer.lookup(query), "float64")
        distances = ((z - vector) ** 2).sum(-1)
        order = np.argsort(distances, kind="stable")[:count]
        nearest = summary["nearest"][str(code)]
        expected = np.stack(np.unravel_index(order, grid), -1)
        np.testing.assert_array_equal(nearest["positions"], expected)
        np.testing.assert_allclose(
            nearest["distances"], distances[order], rtol=1e-5
        )


def test_inspect_writes_the_per_code_view(trained_dir, capsys):
    model_dir = str(trained_dir)
    argv = ["inspect", "--model-dir", model_dir, "--num-codes", "3"]
    argv += ["--patches-per-code", "4", "--max-images", "200"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    codes_dir = trained_dir / "codes"
    for name in ("usage.png", "top_codes.png", "bottom_codes.png"):
        assert str(codes_dir / name) in out
    assert np.asarray(Image.open(codes_dir / "usage.png")).shape == (
        240,
        640,
        3,
    )

    # The same images and codes, recounted with numpy.
    model = keras.saving.load_model(str(trained_dir / "model.keras"))
    images = artifacts.spread_sample(load_images("photos"), 200)
    codes = model.encode(images).numpy()
    counts = np.bincount(codes.reshape(-1), minlength=16)
    summary = json.loads((codes_dir / "usage.json").read_text())
    assert summary["counts"] == counts.tolist()
    assert summary["num_images"] == 200
    used = np.flatnonzero(counts)
    top = summary["top_codes"]
    assert top[0] == int(np.argmax(counts)) and len(top) == min(3, len(used))
    assert summary["bottom_codes"][0] == int(used[np.argmin(counts[used])])

    _assert_nearest_recounted(model, images, summary, count=4)

    # Each row: 4 tiles of a 12x12 patch (the code's 4x4 region and 4
    # pixels around it) enlarged 3 times, after the row names; the first
    # row is the most used code's nearest patches, nearest first.
    grid = np.asarray(Image.open(codes_dir / "top_codes.png"))
    assert grid.shape[0] == len(top) * 37 + 1
    margin = grid.shape[1] - (4 * 37 + 1)
    assert margin > 0
    for tile, (n, i, j) in enumerate(
        summary["nearest"][str(top[0])]["positions"]
    ):
        left = margin + 1 + tile * 37
        inner = grid[1 + 13 : 1 + 23, left + 13 : left + 23]
        region = images[n, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
        enlarged = region.repeat(3, axis=0).repeat(3, axis=1)
        np.testing.assert_array_equal(inner, enlarged[1:11, 1:11])

    assert cli.main([*argv, "--num-codes", "0"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "vqvae inspect: error: `num_codes` must be a positive integer. "
        "Received: num_codes=0\n"
    )


@pytest.mark.parametrize("kind", ["rvq", "fsq"])
def test_inspect_for_grid_and_residual_quantizers(tmp_path, kind, capsys):
    """FSQ codes by their grid points; residual VQ by its first level."""
    model_dir = tmp_path / "run"
    assert _train(model_dir, *TINY_QUANTIZER_FLAGS[kind]) == 0
    argv = ["inspect", "--model-dir", str(model_dir), "--num-codes", "2"]
    argv += ["--patches-per-code", "3", "--max-images", "50"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    model = keras.saving.load_model(str(model_dir / "model.keras"))
    images = artifacts.spread_sample(load_images("photos"), 50)
    codes = model.encode(images).numpy()
    if kind == "rvq":
        codes = codes[..., 0]
    summary = json.loads((model_dir / "codes" / "usage.json").read_text())
    k = model.num_embeddings
    assert summary["counts"] == np.bincount(codes.ravel(), minlength=k).tolist()
    _assert_nearest_recounted(model, images, summary, count=3)
    grid = np.asarray(Image.open(model_dir / "codes" / "top_codes.png"))
    assert grid.shape[0] == len(summary["top_codes"]) * 37 + 1


# ------------------------------------------------------- bad image files
def _png_header_only(width, height):
    """A PNG whose header claims `width x height` RGB pixels: what a
    decompression bomb looks like before it is decoded."""

    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _folder_with_bad_files(root, split="train"):
    """24 good 8x8 PNGs in `root/train/a` and `root/test/a`, and in
    `root/SPLIT/b` a 0-byte .png, a text file named .jpg, a truncated PNG
    and a decompression bomb's header; returns the bad files' paths."""
    for name in ("train", "test"):
        folder = root / name / "a"
        folder.mkdir(parents=True)
        for index, crop in enumerate(photo_crops(8, 24, seed=1)):
            Image.fromarray(crop).save(folder / f"{index}.png")
    buffer = io.BytesIO()
    Image.fromarray(photo_crops(8, 1, seed=2)[0]).save(buffer, "PNG")
    png = buffer.getvalue()
    bad = {
        "a-empty.png": b"",
        "b-text.jpg": b"hello world\n",
        "c-truncated.png": png[: len(png) // 2],
        "d-bomb.png": _png_header_only(10_000, 10_000),
    }
    (root / split / "b").mkdir()
    for name, content in bad.items():
        (root / split / "b" / name).write_bytes(content)
    return [str(root / split / "b" / name) for name in bad]


@pytest.mark.parametrize("split", ["train", "test"])
def test_bad_image_files_exit_2_naming_the_file(tmp_path, capsys, split):
    """Bad files in the training split, or in the test split that the
    validation images come from: one line, exit 2, no model dir."""
    folder = tmp_path / "images"
    first, *_ = _folder_with_bad_files(folder, split)
    model_dir = tmp_path / "run"
    code = _train(model_dir, "--dataset", f"folder:{folder}")
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        f"vqvae train: error: `dataset` file {first!r} is not a readable "
        "image: empty file (0 bytes) (4 bad files in all). Fix or remove "
        "them, or pass --skip-bad-files (skip_bad_files=True). "
        f"Received: dataset='folder:{folder}'\n"
    )
    assert not model_dir.exists()


def test_skip_bad_files_trains_and_counts_them(tmp_path, capsys):
    folder = tmp_path / "images"
    first, *_ = _folder_with_bad_files(folder)
    model_dir = tmp_path / "run"
    dataset = f"folder:{folder}"
    assert _train(model_dir, "--dataset", dataset, "--skip-bad-files") == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"vqvae: Skipped 4 bad image files of {dataset!r} split 'train' "
        f"(first: {first}: empty file (0 bytes))."
    ]
    assert "vqvae: trained 3 steps" in captured.out
    assert load_config(str(model_dir / "config.json")).skip_bad_files
    assert np.load(model_dir / "calibration.npy").shape == (24, 8, 8, 3)
    # The option is kept with the run, like --data-dir: evaluate skips too.
    assert cli.main(["evaluate", "--model-dir", str(model_dir)]) == 0
    assert capsys.readouterr().err == ""
    # Its training split has them: skipped as trained, or an error with
    # --no-skip-bad-files.
    evaluate = ["evaluate", "--model-dir", str(model_dir), "--split", "train"]
    assert cli.main(evaluate) == 0
    assert "Skipped 4 bad image files" in capsys.readouterr().err
    assert cli.main([*evaluate, "--no-skip-bad-files"]) == cli.EXIT_USAGE
    assert "is not a readable image" in capsys.readouterr().err
    # A class-conditional prior's labels follow the same files.
    prior = ["train-prior", "--model-dir", str(model_dir), *PRIOR_TINY]
    assert cli.main([*prior, "--class-conditional"]) == 0
    assert cli.main(evaluate) == 0
    assert "bits_per_dim_pixelcnn_prior" in capsys.readouterr().out
    # It may change on resume (it does not change the model).
    argv = ["train", "--model-dir", str(model_dir), "--no-skip-bad-files"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "is not a readable image" in capsys.readouterr().err


# ------------------------------------------------------ damaged .keras
_TRUNCATED = "not a complete zip archive: File is not a zip file; truncated?"


def _truncate(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def test_damaged_model_keras_falls_back_to_the_newest_checkpoint(
    trained_dir, tmp_path, capsys
):
    model_dir = tmp_path / "run"
    shutil.copytree(trained_dir, model_dir)
    intact = keras.saving.load_model(str(model_dir / "model.keras"))
    tiles = photo_tiles("test")[:8]
    expected = intact(tiles, training=False).numpy()
    _truncate(model_dir / "model.keras")
    checkpoint = model_dir / "checkpoints" / "ckpt-3"
    # The library's loader names the damage (Keras says "File not found").
    with pytest.raises(artifacts.DamagedModelError) as info:
        artifacts.load_vqvae(str(model_dir))
    assert str(info.value) == (
        f"`model_dir` {str(model_dir)!r}: model.keras is damaged "
        f"({_TRUNCATED}); `vqvae train --model-dir {model_dir}` writes it "
        "again from the newest checkpoint. "
        f"Received: model_dir={str(model_dir)!r}"
    )
    # The commands rebuild it from the newest checkpoint and say so.
    model, _ = artifacts.load_vqvae(str(model_dir), fallback=True)
    assert capsys.readouterr().err == (
        f"vqvae: model.keras is damaged ({_TRUNCATED}); using the newest "
        f"readable checkpoint instead, {checkpoint} (step 3).\n"
    )
    assert model.example_shape == (32, 32, 3)
    np.testing.assert_array_equal(model(tiles, training=False), expected)
    # Without calibration.npy the image channels come from the checkpoint.
    os.remove(model_dir / "calibration.npy")
    model, _ = artifacts.load_vqvae(str(model_dir), fallback=True)
    assert model.example_shape == (None, None, 3)
    np.testing.assert_array_equal(model(tiles, training=False), expected)
    # Without a readable checkpoint: one line, exit 2.
    shutil.rmtree(model_dir / "checkpoints")
    capsys.readouterr()
    assert cli.main(["evaluate", "--model-dir", str(model_dir)]) == 2
    assert capsys.readouterr().err == (
        f"vqvae evaluate: error: `model_dir` {str(model_dir)!r}: model.keras "
        f"is damaged ({_TRUNCATED}) and no checkpoint can be read; `vqvae "
        f"train --model-dir {model_dir}` writes it again from the newest "
        f"checkpoint. Received: model_dir={str(model_dir)!r}\n"
    )


@pytest.mark.slow
def test_sample_and_evaluate_with_damaged_keras_files(
    trained_dir, tmp_path, capsys
):
    model_dir = tmp_path / "run"
    shutil.copytree(trained_dir, model_dir)
    argv = ["train-prior", "--model-dir", str(model_dir), *PRIOR_TINY]
    assert cli.main(argv) == 0
    sample = ["sample", "--model-dir", str(model_dir), "--n", "4"]
    assert cli.main([*sample, "--output", str(tmp_path / "intact.png")]) == 0
    capsys.readouterr()
    _truncate(model_dir / "model.keras")
    _truncate(model_dir / "prior" / "prior.keras")
    assert cli.main([*sample, "--output", str(tmp_path / "fallback.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("vqvae: model.keras is damaged")
    assert err[-1] == (
        f"vqvae: prior/prior.keras is damaged ({_TRUNCATED}); using the "
        "newest readable checkpoint instead, "
        f"{model_dir / 'prior' / 'checkpoints' / 'ckpt-2'} (step 2)."
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "fallback.png")),
        np.asarray(Image.open(tmp_path / "intact.png")),
    )
    assert cli.main(["evaluate", "--model-dir", str(model_dir)]) == 0
    assert "model.keras is damaged" in capsys.readouterr().err


# ------------------------------------------------ one line, never a traceback
def test_every_bad_option_is_one_line_exit_2(trained_dir, tmp_path, capsys):
    run = str(trained_dir)
    folder = tmp_path / "folder"
    folder.mkdir()
    text_file = tmp_path / "file.txt"
    text_file.write_text("hi\n")
    png = tmp_path / "image.png"
    _write_png(str(png))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    configs = {
        "devices": {"devices": 5},
        "data_dir": {"data_dir": 5},
        "dataset": {"dataset": 5},
        "skip": {"skip_bad_files": "yes"},
    }
    for name, values in configs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(values))
    export = ["export", "--model-dir", run, "--out", str(tmp_path / "out")]
    int8 = [*export, "--tflite", "--quantization", "int8"]
    int8 += ["--calibration-data"]
    max_seed = 2**31 - 1
    cases = [
        *[
            (
                ["train", "--seed", seed],
                f"`seed` must be a non-negative integer at most {max_seed}. "
                f"Received: seed={seed}",
            )
            for seed in ("-1", str(2**31))
        ],
        (
            ["train", "--num-embeddings", "100000000"],
            "`num_embeddings` must be a positive integer at most 1048576. "
            "Received: num_embeddings=100000000",
        ),
        # The quantizers' own checks, at the model's construction.
        (
            ["train", "--quantizer", "fsq", "--levels", "1", "5"],
            "`levels` must be a non-empty sequence of integers >= 2. "
            "Received: levels=(1, 5) (of type tuple).",
        ),
        (
            ["train", "--quantizer", "lfq", "--num-embeddings", "1000"],
            "`num_embeddings` (the 'lfq' quantizer's `codebook_size`) must be "
            "a power of two from 2 to 2**30. Received: codebook_size=1000 (of "
            "type int).",
        ),
        (
            ["train", "--quantizer", "rvq", "--quantizer-dropout", "1.5"],
            "`quantizer_dropout` must be a number in [0, 1]. "
            "Received: quantizer_dropout=1.5 (of type float).",
        ),
        (
            ["train", "--config", str(folder)],
            "`config` cannot be read (Is a directory); pass a config.json "
            f"written by `vqvae train`. Received: config={str(folder)!r}",
        ),
        (
            ["train", "--config", str(tmp_path / "devices.json")],
            "`devices` must be a list of device names such as /gpu:0. "
            "Received: devices=5",
        ),
        (
            ["train", "--config", str(tmp_path / "data_dir.json")],
            "`data_dir` must be a string or null. Received: data_dir=5",
        ),
        (
            ["train", "--config", str(tmp_path / "dataset.json")],
            "`dataset` must be a string. Received: dataset=5",
        ),
        (
            ["train", "--config", str(tmp_path / "skip.json")],
            "`skip_bad_files` must be true or false. "
            "Received: skip_bad_files='yes'",
        ),
        *[
            (
                ["train", "--strategy", "mirrored", "--devices", device],
                "`devices` must name devices of this machine (/cpu:0, "
                f"/cpu:1). Received: devices=[{device!r}] (of type list).",
            )
            for device in ("/gpu:7", "/cpu:9", "bogus")
        ],
        *[
            (
                ["sample", "--model-dir", run, "--seed", seed],
                f"`seed` must be an integer from 0 to {max_seed}. "
                f"Received: seed={seed}",
            )
            for seed in ("-5", str(2**31))
        ],
        *[
            (
                ["evaluate", "--model-dir", run, "--batch-size", size],
                "`batch_size` must be a positive integer. "
                f"Received: batch_size={size}",
            )
            for size in ("0", "-3")
        ],
        *[
            (
                [*export, flag, value],
                f"`{name}` must be a positive integer. "
                f"Received: {name}={value} (of type int).",
            )
            for flag, name in (
                ("--version", "version"),
                ("--max-batch-size", "max_batch_size"),
            )
            for value in ("0", "-1")
        ],
        *[
            (
                [*export, "--model-name", name],
                "`model_name` must be a non-empty name of letters, digits, "
                "'_', '.' or '-' (it becomes a directory). "
                f"Received: model_name={name!r} (of type str).",
            )
            for name in ("", "a/b", "..")
        ],
        (
            ["export", "--model-dir", run, "--out", str(text_file)],
            f"`out` must be a directory; {str(text_file)!r} is a file. "
            f"Received: out={str(text_file)!r}",
        ),
        (
            [*int8, str(png)],
            "`calibration_data` must be a .npy file of images (n, height, "
            "width, channels) or a dataset such as folder:PATH; the file is "
            "not a .npy file (its first bytes: b'\\x89PNG\\r\\n'). "
            f"Received: calibration_data={str(png)!r}",
        ),
        (
            [*int8, str(objects)],
            "`calibration_data` must be a readable .npy file of images "
            "(Object arrays cannot be loaded when allow_pickle=False). "
            f"Received: calibration_data={str(objects)!r}",
        ),
        (
            [*int8, str(folder)],
            "`calibration_data` must be a .npy file of images or a dataset "
            f"string; {str(folder)!r} is a directory (for a folder of images "
            f"laid out {folder}/train/LABEL/*.png, pass folder:{folder}). "
            f"Received: calibration_data={str(folder)!r}",
        ),
        *[
            (
                [command, "--model-dir", run, "--dataset", "speech"],
                f"`dataset` 'speech' holds audio, and {run!r} holds an image "
                f"model; {command} it on image data (default: its training "
                "dataset). Received: dataset='speech'",
            )
            for command in ("evaluate", "inspect")
        ],
        (
            [
                "evaluate",
                "--model-dir",
                run,
                "--dataset",
                "tfds:mnist",
                "--data-dir",
                str(folder),
            ],
            f"`dataset` 'mnist' is not prepared in {folder}; run `tfds build "
            "mnist` on a machine with network access and pass its folder as "
            "--data-dir. Received: dataset='tfds:mnist'",
        ),
        (
            ["verify", str(text_file)],
            "`path` must be an export directory. "
            f"Received: path={str(text_file)!r}",
        ),
    ]
    for argv, message in cases:
        if argv[0] == "train":
            argv = [*argv[:1], "--model-dir", str(tmp_path / "run"), *argv[1:]]
        assert cli.main(argv) == cli.EXIT_USAGE, argv
        assert capsys.readouterr().err == (
            f"vqvae {argv[0]}: error: {message}\n"
        ), argv
        assert not (tmp_path / "run").exists()
        assert not (tmp_path / "out").exists()


def test_a_bug_in_building_the_model_is_not_a_usage_error(
    tmp_path, capsys, monkeypatch
):
    """Only the library's argument checks (`... Received: ...`) become
    exit 2; another ValueError at the model's construction is a bug."""

    def broken(**kwargs):
        raise ValueError("an internal error")

    monkeypatch.setattr(commands, "VQVAE", broken)
    monkeypatch.delenv("VQVAE_DEBUG", raising=False)
    assert _train(tmp_path / "run") == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        "vqvae train: error: ValueError: an internal error (run with --debug "
        "for the traceback)\n"
    )
    assert not (tmp_path / "run").exists()


def test_export_refuses_tflite_options_without_tflite(trained_dir, capsys):
    export = ["export", "--model-dir", str(trained_dir)]
    out = str(trained_dir / "unwritten")
    for flags, message in (
        (
            ["--quantization", "int8"],
            "--quantization is an option of --tflite (the TFLite decoders); "
            "add --tflite or leave it out.",
        ),
        (
            ["--quantization", "int8", "--calibration-data", "x.npy"],
            "--quantization and --calibration-data are options of --tflite "
            "(the TFLite decoders); add --tflite or leave them out.",
        ),
    ):
        assert cli.main([*export, "--out", out, *flags]) == cli.EXIT_USAGE
        assert capsys.readouterr().err == f"vqvae export: error: {message}\n"
    assert not os.path.exists(out)


def test_argument_errors_are_one_line_exit_2(capsys):
    cases = [
        (
            ["train", "--model-dir", "x", "--epochs", "1.5"],
            "vqvae train: error: argument --epochs: invalid int value: '1.5' "
            "(see vqvae train --help)",
        ),
        (
            ["sample"],
            "vqvae sample: error: the following arguments are required: "
            "--model-dir (see vqvae sample --help)",
        ),
        (
            ["train", "--model-dir", "x", "--nope", "3"],
            "vqvae train: error: unrecognized arguments: --nope 3 (see vqvae "
            "train --help)",
        ),
        (
            ["--debug", "verify", "x"],
            "vqvae: error: unrecognized arguments: --debug (a command's "
            "options go after the command) (see vqvae --help)",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as raised:
            cli.main(argv)
        assert raised.value.code == cli.EXIT_USAGE, argv
        assert capsys.readouterr().err == message + "\n", argv


@pytest.fixture
def broken_verify(monkeypatch):
    """`vqvae verify` with a bug: `commands.verify` raises what no command
    expects."""

    def verify(path):
        raise RuntimeError(f"unexpected\nsecond line of {path}")

    monkeypatch.setattr(commands, "verify", verify)
    monkeypatch.delenv("VQVAE_DEBUG", raising=False)
    return monkeypatch


def test_unexpected_error_is_one_line_unless_debug(broken_verify, capsys):
    assert cli.main(["verify", "x"]) == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        "vqvae verify: error: RuntimeError: unexpected (run with --debug for "
        "the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="unexpected"):
        cli.main(["verify", "--debug", "x"])
    for value in ("1", "yes"):
        broken_verify.setenv("VQVAE_DEBUG", value)
        with pytest.raises(RuntimeError, match="unexpected"):
            cli.main(["verify", "x"])
    broken_verify.setenv("VQVAE_DEBUG", "0")
    assert cli.main(["verify", "x"]) == cli.EXIT_FAILED


# What pybind11 raises when SIGINT lands while TensorFlow's C++ code
# translates one of the errors it raises and catches itself (seen on a real
# Ctrl-C during `vqvae evaluate`'s tracing).
PYBIND_INTERRUPT = RuntimeError(
    "pybind11::error_already_set: MISMATCH of original and normalized active "
    "exception types: ORIGINAL InvalidArgumentError REPLACED BY "
    "KeyboardInterrupt: <EMPTY MESSAGE>"
)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), PYBIND_INTERRUPT])
def test_ctrl_c_outside_training_exits_130(monkeypatch, capsys, interrupt):
    def interrupted(path):
        raise interrupt

    monkeypatch.setattr(commands, "verify", interrupted)
    monkeypatch.delenv("VQVAE_DEBUG", raising=False)
    assert cli.main(["verify", "x"]) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "vqvae verify: interrupted\n"
    with pytest.raises(type(interrupt)):
        cli.main(["verify", "--debug", "x"])
    assert is_interrupt(interrupt)
    assert not is_interrupt(RuntimeError("unexpected"))


def test_ctrl_c_a_library_swallowed_still_exits_130(monkeypatch, capsys):
    """A real SIGINT whose KeyboardInterrupt library code catches (Keras'
    deserialization catches every Exception; TensorFlow's error handling
    may turn it into pybind11's RuntimeError), the command failing later
    for it: reported as the interruption, not as that failure."""
    import signal
    import time

    def swallowing(path):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise AttributeError("'PixelCNNPrior' object has no attribute 'x'")

    monkeypatch.setattr(commands, "verify", swallowing)
    monkeypatch.delenv("VQVAE_DEBUG", raising=False)
    before = signal.getsignal(signal.SIGINT)
    if before is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    assert cli.main(["verify", "x"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "vqvae verify: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is before

    # Without a Ctrl-C the same failure is the command's error.
    def broken(path):
        raise AttributeError("broken")

    monkeypatch.setattr(commands, "verify", broken)
    assert cli.main(["verify", "x"]) == cli.EXIT_FAILED
    assert "AttributeError: broken" in capsys.readouterr().err


@pytest.mark.parametrize(
    "quantizer",
    [
        "rvq",
        pytest.param("fsq", marks=pytest.mark.slow),
        pytest.param("lfq", marks=pytest.mark.slow),
        pytest.param("ema", marks=pytest.mark.slow),
    ],
)
def test_every_quantizer_kind_through_the_commands(tmp_path, capsys, quantizer):
    """`vqvae train --quantizer KIND` with the kind's flags, recorded in
    config.json and resumed; evaluate, and the prior (over the levels of
    the codes for rvq)."""
    model_dir = tmp_path / "run"
    assert _train(model_dir, *TINY_QUANTIZER_FLAGS[quantizer]) == 0
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["quantizer"] == quantizer
    expected = options.resolve_quantizer_options(
        quantizer, TINY_QUANTIZER_OPTIONS[quantizer]
    )
    assert load_config(str(model_dir / "config.json")).quantizer_options == (
        expected
    )
    model = keras.saving.load_model(str(model_dir / "model.keras"))
    assert model.quantizer_type == quantizer
    assert model.quantizer_options == expected
    levels = model.quantizer.num_levels
    # Resuming with the saved options, and refusing other ones.
    capsys.readouterr()
    assert cli.main(["train", "--model-dir", str(model_dir)]) == 0
    assert "is already trained (3 steps)" in capsys.readouterr().out
    other = ["--quantizer", "rvq", "--num-quantizers", "3"]
    if quantizer == "rvq":
        other = ["--num-quantizers", "3"]
    assert cli.main(["train", "--model-dir", str(model_dir), *other]) == 2
    assert "Received: quantizer" in capsys.readouterr().err

    assert cli.main(["evaluate", "--model-dir", str(model_dir)]) == 0
    metrics = json.loads((model_dir / "evaluation.json").read_text())
    assert metrics["num_levels"] == levels
    assert metrics["bits_per_position_uniform_prior"] == levels * 4.0
    assert 0 < metrics["mse"] < 0.5
    if levels > 1:
        assert len(metrics["level_perplexity"]) == levels
        assert len(metrics["level_codebook_usage"]) == levels
    assert (model_dir / "logs" / "codebook").is_dir()

    # Export of every kind (the level axis, TFLite):
    # tests/test_export_quantizers.py.

    # The prior: over the levels of residual VQ codes for rvq.
    prior = ["train-prior", "--model-dir", str(model_dir), *PRIOR_TINY]
    assert cli.main(prior) == 0
    restored = keras.saving.load_model(str(model_dir / "prior" / "prior.keras"))
    assert restored.num_levels == levels
    argv = ["sample", "--model-dir", str(model_dir), "--n", "2"]
    assert cli.main(argv) == 0
    assert (model_dir / "samples.png").is_file()
    assert cli.main(["evaluate", "--model-dir", str(model_dir)]) == 0
    metrics = json.loads((model_dir / "evaluation.json").read_text())
    assert (
        metrics["bits_per_dim_pixelcnn_prior"]
        > (metrics["reconstruction_bits_per_dim"])
    )


def test_quantizer_flags_of_another_kind_exit_2(tmp_path, capsys):
    model_dir = tmp_path / "run"
    assert _train(model_dir, "--quantizer", "ema", "--levels", "4", "4") == 2
    assert capsys.readouterr().err == (
        "vqvae train: error: --levels is an option of --quantizer fsq, not "
        "of 'ema'. Received: levels=[4, 4]\n"
    )
    assert not model_dir.exists()


def test_pictures_of_an_overshooting_model_are_clipped(tmp_path):
    """The `"mse"` mean image is unbounded: a young model's reconstructions
    far above 1 still make a picture (white), not a refused float scale."""
    from tf_vqvae import VQVAE

    model = VQVAE(
        num_embeddings=8, embedding_dim=4, num_hiddens=8, num_residual_hiddens=4
    )
    images = photo_crops(8, 4, seed=0)
    model(images)
    bias = model.decoder.upsamples[-1].bias
    bias.assign(tf.fill(bias.shape, 3.0))
    assert float(tf.reduce_min(model(images))) > 1.5
    path = str(tmp_path / "r.png")
    commands._save_reconstructions(model, images, path)
    from tf_vqvae.visualize import image_grid, side_by_side

    white = np.ones(images.shape, "float32")
    expected = image_grid(side_by_side(images, white), ncols=8)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
