"""`tf_vqvae.options`: the choice lists the library and the CLI share."""

import dataclasses
import inspect
import json
import subprocess
import sys

import keras
import pytest

from tf_vqvae import options, vqvae
from tf_vqvae.quantizers import QUANTIZER_CLASSES, vector
from tf_vqvae.training import cli
from tf_vqvae.training.config import PRESETS, PriorConfig, TrainConfig


def test_library_registries_are_the_options():
    assert sorted(QUANTIZER_CLASSES) == sorted(options.QUANTIZERS)
    assert sorted(vqvae._LIKELIHOODS) == sorted(options.LIKELIHOODS)
    assert vector._DATA_INIT_CHOICES == (None, *options.DATA_INITS)


@pytest.mark.parametrize("kind", sorted(options.QUANTIZER_KINDS))
def test_quantizer_declarations_match_the_layers(kind):
    """Every declared argument and option is a constructor argument of the
    kind's layer, with the declared default where the layer has one."""
    declaration = options.QUANTIZER_KINDS[kind]
    # A subclass may pass arguments on to its base class in **kwargs.
    parameters = {}
    for cls in reversed(QUANTIZER_CLASSES[kind].__mro__):
        if "__init__" in vars(cls) and issubclass(cls, keras.layers.Layer):
            parameters.update(inspect.signature(cls.__init__).parameters)
    names = [option.layer_argument for option in declaration.options]
    for name in [*declaration.model_arguments.values(), *names]:
        assert name in parameters, (kind, name)
    for option in declaration.options:
        default = parameters[option.layer_argument].default
        if default is not inspect.Parameter.empty:
            assert default == option.default, (kind, option.name)


def test_decoder_declarations_match_the_layers():
    """The WaveNet decoder's options are `WaveNetDecoder` arguments with
    its defaults, the `VQVAE(decoder_options=...)` names; the parallel
    decoder has none."""
    from tf_vqvae.wavenet import WaveNetDecoder

    parameters = inspect.signature(WaveNetDecoder.__init__).parameters
    declared = options.DECODER_KINDS["wavenet"].options
    assert vqvae.WAVENET_DECODER_OPTIONS == tuple(o.name for o in declared)
    for option in declared:
        assert parameters[option.name].default == option.default, option.name
    assert options.DECODER_KINDS["parallel"].options == ()
    assert sorted(options.DECODERS) == sorted(options.DECODER_KINDS)


def test_decoder_options_resolve_with_defaults_and_checks():
    assert options.resolve_decoder_options("wavenet", {"num_layers": 3}) == {
        "residual_channels": 32,
        "skip_channels": 32,
        "condition_channels": 32,
        "num_layers": 3,
        "dilation_cycle": 10,
        "kernel_size": 2,
    }
    assert options.resolve_decoder_options("parallel", None) == {}
    cases = [
        (
            "parallel",
            {"num_layers": 3},
            "`decoder_options` has 'num_layers', which decoder 'parallel' "
            "does not take (its options: none). Received: num_layers=3",
        ),
        (
            "wavenet",
            {"residual_channels": 0},
            "`decoder_options['residual_channels']` must be an integer >= 1. "
            "Received: "
            "residual_channels=0 (of type int).",
        ),
        (
            "wavenet",
            {"kernel_size": 1},
            "`decoder_options['kernel_size']` must be an integer >= 2. "
            "Received: kernel_size=1 (of type int).",
        ),
    ]
    for kind, given, message in cases:
        with pytest.raises(ValueError) as error:
            options.resolve_decoder_options(kind, given)
        assert str(error.value) == message


def test_decoder_config_round_trip_and_model_kwargs():
    from tf_vqvae.training.config import audio_train_config

    config = audio_train_config(decoder="wavenet", decoder_options={})
    assert config.decoder_options == options.resolve_decoder_options(
        "wavenet", {}
    )
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    kwargs = config.model_kwargs("audio")
    assert kwargs["decoder"] == "wavenet"
    assert kwargs["decoder_options"] == config.decoder_options
    model = vqvae.VQVAE(**kwargs)
    assert model.decoder_type == "wavenet"
    # Image runs keep the parallel decoder and no options.
    assert TrainConfig().model_kwargs()["decoder"] == "parallel"
    assert TrainConfig().modality_errors("image") is None


def test_quantizer_options_resolve_with_defaults_and_checks():
    assert options.resolve_quantizer_options("rvq", {"num_quantizers": 2}) == {
        "num_quantizers": 2,
        "rvq_quantizer": "ema",
        "shared_codebook": False,
        "quantizer_dropout": 0.0,
        "rotation_trick": False,
        "distance": "l2",
        "codebook_dim": None,
    }
    assert options.resolve_quantizer_options("fsq", {"levels": [3, 3]}) == {
        "levels": (3, 3),
        "fsq_data_init": True,
        "fsq_saturation_penalty": 0.0,
    }
    cases = [
        (
            "ema",
            {"levels": [3]},
            "`quantizer_options` has 'levels', which quantizer 'ema' does "
            "not take (its options: ['codebook_dim', 'distance', "
            "'rotation_trick']). Received: levels=[3]",
        ),
        (
            "fsq",
            {"levels": [3, 2.5]},
            "`levels` must be a non-empty sequence of integers. Received: "
            "levels=[3, 2.5] (of type list).",
        ),
        (
            "vq",
            {"distance": "l1"},
            "`distance` must be 'l2' or 'cosine'. Received: distance='l1' "
            "(of type str).",
        ),
        (
            "rvq",
            {"num_quantizers": True},
            "`num_quantizers` must be an integer. Received: "
            "num_quantizers=True (of type bool).",
        ),
        (
            "vq",
            {"codebook_dim": "8"},
            "`codebook_dim` must be an integer or None. Received: "
            "codebook_dim='8' (of type str).",
        ),
    ]
    for kind, given, message in cases:
        with pytest.raises(ValueError) as error:
            options.resolve_quantizer_options(kind, given)
        assert str(error.value) == message


def test_every_quantizer_option_is_a_train_flag():
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["train"]
    flags = {flag for action in sub._actions for flag in action.option_strings}
    for name in options.quantizer_option_declarations():
        assert "--" + name.replace("_", "-") in flags
    for name in options.decoder_option_declarations():
        assert "--decoder-" + name.replace("_", "-") in flags


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
