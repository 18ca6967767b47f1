"""`tf_vqvae.options`: the choice lists the library and the CLI share."""

import dataclasses
import subprocess
import sys

import pytest

from tf_vqvae import options, vqvae
from tf_vqvae.quantizers import vector
from tf_vqvae.training import cli
from tf_vqvae.training.config import PRESETS, PriorConfig, TrainConfig


def test_library_registries_are_the_options():
    assert sorted(vqvae._QUANTIZERS) == sorted(options.QUANTIZERS)
    assert sorted(vqvae._LIKELIHOODS) == sorted(options.LIKELIHOODS)
    assert vector._DATA_INIT_CHOICES == (None, *options.DATA_INITS)


def _choices(parser, command, flag):
    sub = parser._subparsers._group_actions[0].choices[command]
    (action,) = [a for a in sub._actions if flag in a.option_strings]
    return action.choices


@pytest.mark.parametrize("command", ["train", "train-prior"])
def test_cli_choices_come_from_the_options(command):
    parser = cli.build_parser()
    assert _choices(parser, command, "--strategy") == tuple(options.STRATEGIES)
    precisions = _choices(parser, command, "--precision")
    assert precisions == tuple(options.PRECISIONS)
    assert _choices(parser, command, "--preset") == sorted(PRESETS)
    if command == "train":
        for flag, names in (
            ("--quantizer", tuple(options.QUANTIZERS)),
            ("--likelihood", tuple(options.LIKELIHOODS)),
            ("--data-init", (*options.DATA_INITS, options.OFF)),
            ("--on-collapse", (*options.ON_COLLAPSE, options.OFF)),
        ):
            assert _choices(parser, command, flag) == names
    export_choices = _choices(parser, "export", "--quantization")
    assert export_choices == tuple(options.TFLITE_QUANTIZATIONS)


def test_describe_choices():
    assert options.describe_choices({"a": "x"}) == "'a' (x)"
    assert options.describe_choices({"a": "x", "b": "y", "c": "z"}) == (
        "'a' (x), 'b' (y) or 'c' (z)"
    )


def test_help_imports_no_tensorflow():
    """`vqvae --help` and `vqvae COMMAND --help` parse flags without
    loading TensorFlow (or Keras)."""
    for args in ([], ["train"], ["train-prior"], ["export"]):
        result = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "tf_vqvae.training.cli",
                *args,
                "--help",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = [
            line.rsplit("|", 1)[-1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:")
        ]
        assert "tf_vqvae.training.config" in loaded, args
        heavy = [
            m for m in loaded if m.split(".")[0] in ("tensorflow", "keras")
        ]
        assert heavy == [], args


def test_presets_are_configs_of_both_commands():
    demo = PRESETS["demo"]
    assert isinstance(demo.train, TrainConfig)
    assert isinstance(demo.prior, PriorConfig)
    assert (demo.train.num_embeddings, demo.train.embedding_dim) == (128, 16)
    args = cli.build_parser().parse_args(
        ["train", "--model-dir", "x", "--preset", "demo", "--epochs", "2"]
    )
    assert cli.config_from_args(args) == dataclasses.replace(
        demo.train, epochs=2
    )
    args = cli.build_parser().parse_args(
        ["train-prior", "--model-dir", "x", "--preset", "demo"]
    )
    assert cli.config_from_args(args, PriorConfig) == demo.prior
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(
            ["train", "--model-dir", "x", "--preset", "demo", "--config", "c"]
        )
