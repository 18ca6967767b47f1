"""Smoke tests of benchmarks/: every script runs at tiny sizes.

No timing is asserted (benchmarks are scripts, BENCHMARKS.md has the
numbers); these only keep the scripts from rotting, check the shape of their
JSON and the tables run.py writes from it. Peers (Sonnet, torch) are only
exercised where they are installed. Also the blockwise nearest-code search
that the VQ benchmark measures, against a float64 numpy brute force.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import audio, codebook_ops, data
from tf_vqvae.training import artifacts

BENCH_DIR = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, os.path.abspath(BENCH_DIR))

import bench_import  # noqa: E402
import bench_quality  # noqa: E402
import bench_sampling  # noqa: E402
import bench_speech  # noqa: E402
import bench_train_step  # noqa: E402
import bench_vq_layer  # noqa: E402
import bench_wavenet_decoder  # noqa: E402
import common  # noqa: E402
import run  # noqa: E402

HAVE_SONNET = importlib.util.find_spec("sonnet") is not None
HAVE_TORCH = all(
    importlib.util.find_spec(name) is not None
    for name in ("torch", "vector_quantize_pytorch")
)


def _tf_impls():
    impls = ["tf_vqvae", "tf_vqvae_ema", "kerasio"]
    if HAVE_SONNET:
        impls += ["sonnet", "sonnet_noppl", "sonnet_ema"]
    return impls


def test_vq_layer_round_robin(tmp_path):
    out = tmp_path / "vq.json"
    impls = _tf_impls()
    result = bench_vq_layer.main(
        ["--impl", ",".join(impls), "--k", "8", "--n", "64", "--d", "4"]
        + ["--warmup", "1", "--repeats", "2", "--out", str(out)]
    )
    assert json.loads(out.read_text())["k"] == 8
    assert sorted(result["results"]) == sorted(impls)
    for res in result["results"].values():
        assert len(res["seconds"]) == 2
        assert res["vectors_per_s"]["min"] <= res["vectors_per_s"]["max"]
        assert "peak_extra_mb" not in res  # only for a single --impl


def test_vq_layer_single_impl_reports_memory():
    result = bench_vq_layer.main(
        ["--impl", "tf_vqvae_ema", "--k", "16", "--n", "32", "--d", "4"]
        + ["--warmup", "1", "--repeats", "1"]
    )
    assert result["results"]["tf_vqvae_ema"]["peak_extra_mb"] >= 0


def test_vq_layer_max_seconds_stops_after_the_minimum_rounds():
    result = bench_vq_layer.main(
        ["--impl", "tf_vqvae", "--k", "8", "--n", "64", "--d", "4"]
        + ["--warmup", "1", "--repeats", "1000", "--max-seconds", "1e-9"]
    )
    runs = result["results"]["tf_vqvae"]
    assert len(runs["seconds"]) == common.MIN_TIMED_ROUNDS
    assert runs["vectors_per_s"]["runs"] == common.MIN_TIMED_ROUNDS


def test_vq_layer_rejects_unknown_impl():
    with pytest.raises(SystemExit):
        bench_vq_layer.main(["--impl", "tf_vqvae,nope"])
    with pytest.raises(SystemExit):
        bench_vq_layer.main(["--impl", "tf_vqvae", "--max-seconds", "-1"])


def test_quantizer_kinds_round_robin():
    impls = ["tf_vqvae_rvq", "tf_vqvae_fsq", "tf_vqvae_lfq"]
    result = bench_vq_layer.main(
        ["--impl", ",".join(impls), "--k", "16", "--n", "64", "--d", "8"]
        + ["--num-quantizers", "3", "--levels", "4", "4"]
        + ["--warmup", "1", "--repeats", "2"]
    )
    assert sorted(result["results"]) == sorted(impls)
    assert result["num_quantizers"] == 3
    assert result["levels"] == [4, 4]
    for res in result["results"].values():
        assert len(res["seconds"]) == 2
        assert res["vectors_per_s"]["min"] > 0


@pytest.mark.skipif(not HAVE_TORCH, reason="vector-quantize-pytorch absent")
@pytest.mark.parametrize("impl", bench_vq_layer.TORCH_IMPLS)
def test_vector_quantize_pytorch_peers(impl):
    result = bench_vq_layer.main(
        ["--impl", impl, "--k", "16", "--n", "64", "--d", "8"]
        + ["--num-quantizers", "3", "--levels", "4", "4"]
        + ["--warmup", "1", "--repeats", "1"]
    )
    assert result["results"][impl]["peak_extra_mb"] >= 0


def test_torch_impls_run_alone():
    with pytest.raises(SystemExit):
        bench_vq_layer.main(["--impl", "tf_vqvae_rvq,vqtorch_rvq"])


def _layer_result(impl, median, memory, **sizes):
    stats = dict(min=median / 2, median=median, max=2 * median, runs=3)
    return {
        "k": 1024,
        "num_quantizers": 8,
        "levels": [8, 5, 5, 5],
        **sizes,
        "results": {impl: {"vectors_per_s": stats, "peak_extra_mb": memory}},
    }


def test_quantizers_section_from_results():
    ours = {
        "rvq": _layer_result("tf_vqvae_rvq", 3e5, 100.0),
        "fsq": _layer_result("tf_vqvae_fsq", 2e6, 20.0),
        "lfq": _layer_result("tf_vqvae_lfq", 1e5, 300.0, k=2**14),
    }
    peers = {
        "rvq": _layer_result("vqtorch_rvq", 1e5, 400.0),
        "fsq": _layer_result("vqtorch_fsq", 4e6, 10.0),
        "lfq": None,  # failed
    }
    lines, targets = run.quantizers_section(ours, peers)
    table = "\n".join(lines)
    assert lines[0] == "## 8. Quantizers vs vector-quantize-pytorch (issue 13)"
    assert (
        "| rvq | 8 levels x K=1024 | vector-quantize-pytorch ResidualVQ "
        "| 50 k / 100 k / 200 k (3 steps) | 400 MiB | 3.00x |"
    ) in table
    assert (
        "| fsq | levels (8, 5, 5, 5) (K=1000) | tf_vqvae "
        "FiniteScalarQuantizer | 1.00 M / 2.00 M / 4.00 M (3 steps) | 20 MiB "
        "| - |"
    ) in table
    assert "| lfq | K=2**14 | vector-quantize-pytorch LFQ (failed) |" in table
    assert [
        (label, round(ratio, 3), need) for label, ratio, need in targets
    ] == [
        (
            "tf_vqvae ResidualVectorQuantizer vs vector-quantize-pytorch "
            "ResidualVQ, 8 levels x K=1024, forward + backward (issue 13; "
            "peak memory 100 vs 400 MiB)",
            3.0,
            2.0,
        ),
        (
            "tf_vqvae FiniteScalarQuantizer vs vector-quantize-pytorch FSQ, "
            "levels (8, 5, 5, 5) (K=1000), forward + backward (issue 13; "
            "peak memory 20 vs 10 MiB)",
            0.5,
            1.0,
        ),
    ]
    summary = "\n".join(
        run.summary_section({}, {}, {}, None, None, None, (ours, peers))
    )
    assert (
        "- Quantizers, forward + backward (N = 16384, D = 64) against "
        "vector-quantize-pytorch: ResidualVectorQuantizer (8 levels x "
        "K=1024) 3.0x, FiniteScalarQuantizer (levels (8, 5, 5, 5) (K=1000)) "
        "0.5x."
    ) in summary
    lines, targets = run.quantizers_section({"fsq": ours["fsq"]}, {})
    assert targets == []
    assert "not run (no torch interpreter: `--torch-python`)" in lines[-2]


@pytest.mark.slow
def test_run_quantizers_section_tiny(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    args = ["--tiny", "--only", "quantizers", "--out", str(out)]
    args += ["--results-dir", str(tmp_path / "results")]
    if HAVE_TORCH:
        args += ["--torch-python", sys.executable]
    run.main(args)
    text = out.read_text()
    assert "## 8. Quantizers vs vector-quantize-pytorch (issue 13)" in text
    assert (
        "| rvq | 3 levels x K=16 | tf_vqvae ResidualVectorQuantizer |" in text
    )
    assert (
        "| fsq | levels (4, 4) (K=16) | tf_vqvae FiniteScalarQuantizer |"
        in (text)
    )
    assert "| lfq | K=2**6 | tf_vqvae LookupFreeQuantizer |" in text
    assert "(failed)" not in text


@pytest.mark.slow
def test_train_step_tiny():
    impls = ["tf_vqvae", "kerasio", "tf_vqvae_bf16"]
    if HAVE_SONNET:
        impls += ["sonnet", "sonnet_bf16"]
    result = bench_train_step.main(
        ["--tiny", "--config", "sonnet", "--impl", ",".join(impls)]
    )
    assert sorted(result["results"]) == sorted(impls)
    assert result["matmul_peak_gflops"] > 0
    assert result["matmul_peak_bf16_gflops"] > 0
    for impl, res in result["results"].items():
        assert res["gflops_per_s"] > 0
        assert res["dtype"] == ("bfloat16" if "bf16" in impl else "float32")


def test_flop_count_of_the_paper_config():
    # 713 MFLOP forward per 32x32 image: encoder 386, decoder 327 (by hand).
    flops = bench_train_step.models.forward_flops_per_image(
        bench_train_step.models.CONFIGS["paper"]
    )
    assert flops == pytest.approx(7.13e8, rel=0.01)


def test_bf16_rows_timed_where_auto_picks_bfloat16():
    from tf_vqvae.precision import resolve

    assert run.bf16_timing("on", tiny=False).timed
    assert not run.bf16_timing("off", tiny=True).timed
    assert run.bf16_timing("auto", tiny=True).timed
    auto = run.bf16_timing("auto", tiny=False)
    resolution = resolve("auto")
    assert auto.timed == (resolution.precision == "bfloat16")
    assert resolution.reason in auto.reason
    off = run.Bf16Timing(False, "not timed (no bfloat16 here)")
    lines, _ = run.step_section({}, off)
    assert "bfloat16 rows: not timed (no bfloat16 here)." in lines
    lines, _ = run.step_section({}, run.Bf16Timing(True, "timed"))
    assert not any(line.startswith("bfloat16 rows") for line in lines)
    # Results kept by --resume that hold bf16 rows are shown as they are,
    # without the note.
    times = [1.0, 1.0]
    row = {
        "seconds": times,
        "images_per_s": {"min": 1.0, "median": 1.0, "max": 1.0},
        "gflops_per_s": 1.0,
        "fraction_of_peak": 0.5,
    }
    kept = {
        "paper": {
            "results": {"tf_vqvae": row, "tf_vqvae_bf16": row},
            "config_values": bench_train_step.models.CONFIGS["paper"].__dict__,
            "train_step_gflop_per_image": 2.1,
            "matmul_peak_gflops": 100.0,
            "steps_per_epoch": 4,
        }
    }
    lines, _ = run.step_section(kept, off)
    assert not any(line.startswith("bfloat16 rows") for line in lines)
    assert any("| paper | tf_vqvae_bf16 |" in line for line in lines)
    # Issue 14's 2.0x target is the paper config's; other configs report
    # the ratio.
    fast = dict(row, seconds=[0.4, 0.5])
    both = {
        name: {
            **kept["paper"],
            "results": {"tf_vqvae": row, "sonnet": row, "tf_vqvae_bf16": fast},
            "config_values": bench_train_step.models.CONFIGS[name].__dict__,
        }
        for name in ("paper", "sonnet")
    }
    lines, targets = run.step_section(both, off)
    labels = [label for label, _, _ in targets]
    assert (
        "full step tf_vqvae_bf16 vs sonnet, paper config (bf16: issue 14)"
        in labels
    )
    assert not any(
        "tf_vqvae_bf16 vs sonnet, sonnet config" in x for x in labels
    )
    assert "- `sonnet`: tf_vqvae_bf16 ran at 2.25x sonnet." in lines


def test_run_main_ends_an_interrupt_with_one_line(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["bench_demo.py"])
    with pytest.raises(SystemExit) as exit_info:
        common.run_main(interrupted)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "bench_demo.py: interrupted\n"
    # An integer `main` returns is the exit status; anything else is 0.
    with pytest.raises(SystemExit) as exit_info:
        common.run_main(lambda: 3)
    assert exit_info.value.code == 3
    assert common.run_main(lambda: {"result": 1}) is None


def test_import_does_not_load_heavy_modules():
    result = bench_import.main(["--tiny"])
    assert result["heavy_modules"] == []
    assert result["import_s"]["runs"] == 1


def _fake_cifar_archive(path):
    """A tar.gz in the CIFAR-10 JPEG layout, 4 images per class and split."""
    import tarfile

    root = path / "src" / "cifar10_jpeg"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                jpeg = tf.io.encode_jpeg(tf.constant(pixels)).numpy()
                (folder / f"{i:04d}.jpg").write_bytes(jpeg)
    archive = path / "cifar10_jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar10_jpeg")
    return archive


@pytest.mark.slow
def test_quality_tiny(tmp_path):
    archive = _fake_cifar_archive(tmp_path)
    impls = ["tf_vqvae", "tf_vqvae_bf16"] + (["sonnet"] if HAVE_SONNET else [])
    result = bench_quality.main(
        ["--tiny", "--data", str(archive), "--impl", ",".join(impls)]
        + ["--prior-steps", "2"]
    )
    assert result["test_images"] == 8
    for res in result["results"].values():
        assert res["mse"] > 0
        assert 1.0 <= res["perplexity"] <= 512
        assert 0 <= res["dead_codes"] <= 512
    ours = result["results"]["tf_vqvae"]
    assert 0.0 <= ours["codes_bf16_agreement"] <= 1.0
    assert ours["mse_fp32_decoder_bf16_codes"] > 0
    assert ours["mse_bf16_inference"] > 0
    for precision in ("float32", "bfloat16", "float32_weights_in_bfloat16"):
        prior = ours["prior"][precision]
        # 8x8 codes of 32x32x3 images: bits/dim = bits/code * 64 / 3072.
        assert prior["prior_bits_per_dim"] == pytest.approx(
            prior["bits_per_code"] * 64 / 3072
        )
        assert 0 < prior["bits_per_code"] < 2 * np.log2(512)
    lines, targets = run.precision_quality_section([result])
    assert lines[0] == "## 7. Precision: bfloat16 vs float32"
    assert len(targets) == 4


@pytest.mark.slow
def test_quality_quantizers_tiny(tmp_path):
    archive = _fake_cifar_archive(tmp_path)
    impls = bench_quality.QUANTIZER_IMPLS
    result = bench_quality.main(
        [
            "--tiny",
            "--data",
            str(archive),
            "--impl",
            ",".join(impls),
            "--prior-steps",
            "2",
        ]
    )
    res = result["results"]
    sizes = bench_quality.TINY_QUANTIZER_SIZES
    assert result["quantizer_sizes"] == sizes
    expected_k = {
        "q_ema_k1024": sizes["k"],
        "q_fsq": int(np.prod(sizes["fsq"])),
        "q_fsq_penalty": int(np.prod(sizes["fsq"])),
        "q_fsq_paper": int(np.prod(sizes["fsq"])),
        "q_rvq": sizes["rvq_k"],
        "q_plain_k8192": sizes["big_k"],
        "q_rotcos_k8192": sizes["big_k"],
        "q_lfq": sizes["lfq_k"],
        "q_ema_k16384": sizes["lfq_k"],
        "q_fsq_k15360": int(np.prod(sizes["big_fsq"])),
    }
    assert {impl: r["num_embeddings"] for impl, r in res.items()} == expected_k
    for impl, r in res.items():
        levels = sizes["rvq_levels"] if impl == "q_rvq" else 1
        assert r["num_levels"] == levels
        assert r["mse"] > 0
        # 8 test images of 8x8 positions (x levels).
        used = levels * r["num_embeddings"] - r["dead_codes"]
        assert 1 <= used <= 8 * 64 * levels
    rvq = res["q_rvq"]
    assert len(rvq["levels"]) == sizes["rvq_levels"]
    assert len(rvq["mse_by_levels"]) == sizes["rvq_levels"]
    # All levels: the same decode as the pooled test MSE.
    assert rvq["mse_by_levels"][-1] == pytest.approx(rvq["mse"], rel=1e-5)
    # The prior over the levels: per-level bits add up to the total.
    prior = rvq["levels_prior"]
    assert prior["num_levels"] == sizes["rvq_levels"]
    assert len(prior["bits_per_code_by_level"]) == sizes["rvq_levels"]
    assert prior["bits_per_code"] == pytest.approx(
        np.mean(prior["bits_per_code_by_level"]), rel=1e-6
    )
    assert prior["uniform_bits_per_code"] == np.log2(sizes["rvq_k"])
    assert 0 < prior["bits_per_code"] < 3 * prior["uniform_bits_per_code"]
    assert "levels_prior" not in res["q_ema_k1024"]
    lines, targets = run.quantizer_quality_section(result)
    assert lines[0] == "## 9. Quantizer quality (issue 13)"
    assert len(targets) == 6


def _run(mse, k, dead, num_levels=1, **extra):
    return dict(
        mse=mse,
        psnr_db=-10 * np.log10(mse),
        perplexity=10.0,
        num_embeddings=k,
        num_levels=num_levels,
        dead_codes=dead,
        dead_fraction=dead / (k * num_levels),
        train_seconds=60.0,
        **extra,
    )


def test_quantizer_quality_targets_from_results():
    data = {
        "config": "sonnet",
        "config_values": bench_quality.models.CONFIGS["sonnet"].__dict__,
        "steps": 1500,
        "seed": 0,
        "train_images": 48000,
        "test_images": 10000,
        "results": {
            "q_ema_k1024": _run(0.0100, 1024, 24),
            "q_fsq": _run(0.0104, 1000, 5),
            "q_rvq": _run(
                0.0060,
                256,
                48,
                8,
                mse_by_levels=[0.02, 0.015, 0.012, 0.01]
                + [0.009, 0.008, 0.0065, 0.0060],
                levels=[{"perplexity": 10.0}] * 8,
                levels_prior=dict(
                    num_levels=8,
                    steps=1500,
                    num_hiddens=64,
                    num_layers=8,
                    batch_size=32,
                    train_seconds=90.0,
                    bits_per_code=6.5,
                    bits_per_code_by_level=[5.0, 6.0, 6.5, 6.75]
                    + [7.0, 7.0, 6.75, 7.0],
                    uniform_bits_per_code=8.0,
                    prior_bits_per_dim=1.083,
                    uniform_prior_bits_per_dim=1.333,
                ),
            ),
            "q_plain_k8192": _run(0.0120, 8192, 8192 - 400),
            "q_rotcos_k8192": _run(0.0110, 8192, 8192 - 1300),
            "q_lfq": _run(0.0130, 2**14, 2**14 - 3000),
            "q_ema_k16384": _run(0.0095, 2**14, 2**14 - 5000),
            "q_fsq_k15360": _run(0.0110, 15360, 15360 - 4000),
        },
    }
    lines, targets = run.quantizer_quality_section(data)
    table = "\n".join(lines)
    assert "| `q_rvq` | residual VQ, quantizer dropout 0.5 | 8 x 256 " in table
    assert "| 2000 (97.7%) | 60 |" in table  # 8 x 256 - 48 used
    assert "| MSE | 0.02000 | 0.01500 |" in table
    assert (
        "A `PixelCNNPrior(num_levels=8)` trained 1500 steps on these codes "
        "(hidden 64, 8 layers, batch 32; 90 s): 6.500 bits per test code "
        "against the uniform prior's 8, so 1.083 bits/dim for the codes "
        "instead of 1.333." in table
    )
    assert "| bits per code under the prior | 5.000 | 6.000 | 6.500 |" in table
    # Each level's own code entropy (log2 perplexity, 10.0 here) beside it.
    assert "| entropy of the level's codes | 3.322 | 3.322 |" in table
    assert "| `q_fsq_k15360` | FSQ (8, 8, 8, 6, 5) | 15360 | 0.01100 |" in table
    labels = {label: (round(value, 4), need) for label, value, need in targets}
    assert labels == {
        "FSQ uses >= 99% of its codes on the test set (99.5%, issue 13)": (
            round(0.995 / 0.99, 4),
            1.0,
        ),
        "FSQ test MSE within 5% of VQ-EMA's at K=1024 (+4.0%, issue 13)": (
            round(1.05 / 1.04, 4),
            1.0,
        ),
        "residual VQ test MSE does not increase from 1 to 8 levels "
        "(smallest step ratio, issue 13)": (round(0.0065 / 0.006, 4), 1.0),
        "residual VQ at 8 levels: test MSE below VQ-EMA's at K=1024 "
        "(0.00600 vs 0.01000, issue 13)": (round(0.01 / 0.006, 4), 1.0),
        "rotation trick + cosine: used codes >= 3x the straight-through "
        "baseline's at K=8192 (1300 vs 400, issue 13)": (3.25, 3.0),
        "rotation trick + cosine: test MSE not worse than the baseline's "
        "(issue 13)": (round(0.012 / 0.011, 4), 1.0),
    }
    assert run.quantizer_quality_section(None)[1] == []
    assert run.quantizer_quality_summary(data) == (
        "Quantizers at an equal budget (CIFAR-10 JPEG, 1500 steps, 10000 "
        "test images): FSQ uses 995 of its 1000 codes (99.5%), test MSE "
        "0.01040 vs VQ-EMA's 0.01000 at K = 1024; residual VQ (8 x 256) "
        "test MSE 0.02000 at 1 level to 0.00600 at 8; at K = 8192 without "
        "data init or restarts, the rotation trick with cosine distance uses "
        "1300 codes vs 400 (MSE 0.01100 vs 0.01200); LFQ at K = 16384 uses "
        "3000 codes (MSE 0.01300) vs VQ-EMA's 5000 (0.00950); FSQ at "
        "K = 15360 uses 4000 codes (MSE 0.01100) vs VQ-EMA's 5000 at "
        "K = 16384."
    )
    assert run.quantizer_quality_summary(None) is None
    partial = {**data, "results": {"q_fsq": data["results"]["q_fsq"]}}
    assert run.quantizer_quality_summary(partial) == (
        "Quantizers at an equal budget (CIFAR-10 JPEG, 1500 steps, 10000 "
        "test images): FSQ uses 995 of its 1000 codes (99.5%)."
    )
    summary = run.summary_section({}, {}, {}, None, None, None, None, data)
    assert f"- {run.quantizer_quality_summary(data)}" in summary


def _quality(seed, mse, perplexity, agreement, prior=None, **same_weights):
    ours = dict(
        mse=0.01,
        perplexity=100.0,
        codes_bf16_agreement=agreement,
        **same_weights,
    )
    if prior:
        ours["prior"] = prior
    return {
        "seed": seed,
        "steps": 1500,
        "config": "sonnet",
        "results": {
            "tf_vqvae": ours,
            "tf_vqvae_bf16": dict(mse=mse, perplexity=perplexity),
        },
    }


def test_precision_targets_from_results():
    prior = {
        "float32": dict(bits_per_code=6.0, prior_bits_per_dim=0.125),
        "bfloat16": dict(bits_per_code=6.01, prior_bits_per_dim=0.12502),
    }
    same = {"float32_weights_in_bfloat16": dict(prior_bits_per_dim=0.1251)}
    second_prior = {
        "float32": dict(bits_per_code=6.0, prior_bits_per_dim=0.125),
        "bfloat16": dict(bits_per_code=5.97, prior_bits_per_dim=0.1245),
        **same,
    }
    runs = [
        _quality(0, 0.0102, 104.0, 0.998, prior),
        _quality(
            1,
            0.0100,
            98.0,
            0.996,
            second_prior,
            mse_fp32_decoder_bf16_codes=0.01002,
            mse_bf16_inference=0.01003,
        ),
        None,
    ]
    lines, targets = run.precision_quality_section(runs)
    table = "\n".join(lines)
    assert (
        "| 0 | 0.01000 | 0.01020 | 1.020 | 100.0 | 104.0 | 1.040 | 99.80% "
        "| - | - |" in table
    )
    assert "| 99.60% | 0.01002 | 0.01003 |" in table
    assert "| 0 | 6.0000 | 6.0100 | 0.12500 | 0.12502 | 1.0002 | - | - |" in (
        table
    )
    assert "| 1 | 6.0000 | 5.9700 | 0.12500 | 0.12450 | 0.9960 " in table
    assert "| 0.12510 | 1.00080 |" in table
    labels = {label: value >= needed for label, value, needed in targets}
    # The prior: the mean of the seeds' ratios, (1.00016 + 0.996) / 2.
    assert labels == {
        "bf16 test MSE within 3% of fp32 (mean of seeds +1.00%)": True,
        "bf16 perplexity within 5% of fp32 (mean of seeds +1.00%)": True,
        "bf16 codes equal fp32 codes on >= 99.5% of test positions "
        "(99.60%, lowest seed)": True,
        "bf16 prior bits/dim within 0.5% of fp32 (mean of seeds -0.192%)": True,
    }
    _, one = run.precision_quality_section(runs[:1])
    assert one[-1][0] == (
        "bf16 prior bits/dim within 0.5% of fp32 (seed 0: +0.016%)"
    )
    _, targets = run.precision_quality_section(
        [_quality(0, 0.0110, 100.0, 0.99)]
    )
    assert [value >= needed for _, value, needed in targets] == [
        False,
        True,
        False,
    ]
    assert run.precision_quality_section([None])[1] == []


def test_sampling_precision_table():
    args = bench_sampling.parse_args(["--tiny"])
    rows = [
        dict(
            grid=4,
            precision=precision,
            cached=[seconds, seconds],
            codes_agreement=agreement,
            train_step=[2 * seconds, 2 * seconds],
        )
        for precision, seconds, agreement in (
            ("float32", 0.2, 1.0),
            ("bfloat16", 0.1, 0.995),
        )
    ]
    text = bench_sampling.precision_markdown(args, rows)
    assert (
        "| 4x4 | bfloat16 | 0.100 / 0.100 / 0.100 | 2.00x | 99.50% "
        "| 0.2000 / 0.2000 / 0.2000 | 2.00x |"
    ) in text


def test_wavenet_target_and_summary():
    sampling = {
        "args": {"num_embeddings": 512, "batch": 16, "wavenet_batch": 4},
        "rows": [],
        "wavenet_rows": [
            {"length": 1024, "speedup": 80.0},
            {"length": 4096, "speedup": 310.4},
        ],
    }
    assert run.wavenet_targets(sampling) == [
        ("WaveNet cached vs naive sampling, 4096 codes", 310.4, 20.0)
    ]
    assert run.wavenet_targets(None) == []
    lines = run.summary_section({}, {}, {}, None, sampling, None)
    assert (
        "- WaveNet prior sampling of 4096 codes (K = 512, batch 4): the "
        "cached sampler is 310x faster than the naive one." in lines
    )


def test_run_writes_markdown(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    run.main(
        ["--tiny", "--only", "import", "--out", str(out)]
        + ["--results-dir", str(tmp_path / "results")]
    )
    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "## 5. Import overhead" in text
    assert text.count("import overhead <= 0.1 s") == 1  # one targets table


def test_run_skips_quantizer_quality_without_the_archive(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    missing = tmp_path / "absent.tar.gz"
    run.main(
        ["--tiny", "--only", "quantizer_quality", "--out", str(out)]
        + ["--quality-data", str(missing)]
        + ["--results-dir", str(tmp_path / "results")]
    )
    text = out.read_text()
    assert "## 9. Quantizer quality (issue 13)" in text
    assert f"Not run: no CIFAR-10 archive at `{missing}`." in text


def test_tables_from_results():
    vq = bench_vq_layer.main(
        ["--impl", ",".join(_tf_impls()), "--k", "8", "--n", "64", "--d", "4"]
        + ["--warmup", "1", "--repeats", "2"]
    )
    memory = {(8, impl): 1.0 for impl in _tf_impls()}
    lines, targets = run.vq_section({8: vq}, memory, {})
    table = "\n".join(lines)
    assert "tf_vqvae VectorQuantizerEMA" in table
    assert "keras-io example design" in table
    if HAVE_SONNET:
        assert len(targets) == 3  # VQ vs both Sonnet variants, EMA vs EMA


REPO = os.path.join(os.path.dirname(__file__), "..")


def test_readme_quotes_the_benchmarks_summary_verbatim():
    with open(os.path.join(REPO, "BENCHMARKS.md")) as f:
        block = run.readme_block(f.read())
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert block in readme, "run `python benchmarks/run.py --sync-readme`"
    assert "From BENCHMARKS.md, written 20" in block


def test_summary_from_results_and_readme_sync(tmp_path):
    vq = bench_vq_layer.main(
        ["--impl", ",".join(_tf_impls()), "--k", "8", "--n", "64", "--d", "4"]
        + ["--warmup", "1", "--repeats", "2"]
    )
    sampling = {
        "args": {"num_embeddings": 512, "batch": 16},
        "rows": [
            {"grid": 8, "speedup": 2.8},
            {"grid": 32, "speedup": 33.2, "tfp_ratio": 40.0},
        ],
    }
    export = {
        "latency": [
            dict(task="decode", runtime="tflite-int8", batch=1, median_ms=0.52),
            dict(task="decode", runtime="tflite-int8", batch=16, median_ms=0.4),
        ]
    }
    lines = run.summary_section({512: vq}, {}, {}, None, sampling, export)
    text = "\n".join(lines)
    assert lines[0] == run.SUMMARY_TITLE
    assert "32x32 codes (K = 512, batch 16)" in text
    assert "33x faster than the naive one and 40x faster" in text
    assert "tflite-int8 0.52 ms." in text
    if HAVE_SONNET:
        ratio = run.paired_ratio(vq["results"], "tf_vqvae", "sonnet")
        assert f"K = 512: {ratio:.1f}x Sonnet's" in text

    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text(
        "# Benchmarks\n\nWritten by `x` on 2026-01-02 03:04 UTC.\n\n"
        + "\n".join(lines)
        + "\n## Targets (issue 6)\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(
        f"intro\n{run.README_BEGIN}\nold\n{run.README_END}\nrest\n"
    )
    assert run.sync_readme(str(benchmarks), str(readme))
    synced = readme.read_text()
    assert "old" not in synced and synced.endswith("rest\n")
    assert "written 2026-01-02 03:04 UTC" in synced
    assert "tflite-int8 0.52 ms." in synced
    assert not run.sync_readme(str(benchmarks), str(readme))


@pytest.mark.parametrize(
    "num_embeddings, n, max_distance_elements",
    [
        (7, 20, 2**24),  # one block
        (7, 100, 30),  # 25 unrolled blocks of 4 rows
        (7, 1000, 30),  # 250 blocks: the while_loop
        (300, 700, 2**24),
    ],
    ids=["one_block", "unrolled", "while_loop", "k300"],
)
def test_nearest_codes_blocks_match_brute_force(
    num_embeddings, n, max_distance_elements
):
    rng = np.random.default_rng(num_embeddings + n)
    flat = rng.normal(size=(n, 5)).astype(np.float32)
    embeddings = rng.normal(size=(num_embeddings, 5)).astype(np.float32)
    diff = flat[:, None, :].astype(np.float64) - embeddings[None]
    expected = np.argmin((diff**2).sum(-1), axis=1)

    static = codebook_ops.nearest_codes(
        tf.constant(flat), tf.constant(embeddings), max_distance_elements
    )
    dynamic = tf.function(
        lambda x: codebook_ops.nearest_codes(
            x, tf.constant(embeddings), max_distance_elements
        ),
        input_signature=[tf.TensorSpec([None, 5])],
    )(tf.constant(flat))
    assert static.dtype == tf.int32
    np.testing.assert_array_equal(static.numpy(), expected)
    np.testing.assert_array_equal(dynamic.numpy(), expected)


@pytest.mark.slow
def test_wavenet_decoder_tiny():
    # Also checks that the cached and naive samplers agree (it raises).
    result = bench_wavenet_decoder.main(["--tiny", "--repeats", "1"])
    generation = result["generation"]
    assert generation["samples"] == 1024
    assert generation["cached_samples_per_second"] > 0
    assert generation["naive_samples"] == 128
    training = result["training"]
    assert training["wavenet"]["step_seconds"] > 0
    assert training["parallel"]["decoder_parameters"] > 0


def test_speech_frames_are_centred_on_the_codes():
    """`bench_speech.code_frames`' frame i is the log-mel of the 400
    samples centred on code i's centre (sample 64 i + 32), zero outside
    the waveform: checked window by window."""
    from tf_vqvae.speech_metrics import log_mel_spectrogram

    rng = np.random.default_rng(0)
    waveform = rng.uniform(-0.5, 0.5, 1000).astype(np.float32)
    frames = bench_speech.code_frames(waveform)
    assert frames.shape == (16, 40)  # ceil(1000 / 64) codes
    padded = np.concatenate([np.zeros(200), waveform, np.zeros(600)])
    for i in range(16):
        centre = 64 * i + 32 + 200  # in `padded`
        window = padded[centre - 200 : centre + 200].astype(np.float32)
        expected = log_mel_spectrogram(window, frame_step=400).numpy()[0]
        np.testing.assert_allclose(frames[i], expected, rtol=1e-5, atol=1e-4)


def _speech_results(ratio_test=7.5, target_voice=0.85, content=0.9):
    phonemes = {
        "accuracy": 0.3 * ratio_test / 7.5,
        "baseline_accuracy": 0.04,
        "ratio": ratio_test,
        "num_classes": 60,
        "num_scored": 1000,
    }
    return {
        "preset": "speech-demo",
        "steps": 600,
        "config": {
            "global_batch_size": 8,
            "segment_length": 8192,
            "num_embeddings": 512,
            "num_downsamples": 6,
            "num_hiddens": 128,
        },
        "corpus": {
            "train": {"utterances": 960, "hours": 0.9, "speakers": 8},
            "test": {"utterances": 240, "hours": 0.2, "speakers": 8},
            "test_voices": {"utterances": 90, "hours": 0.1, "speakers": 3},
        },
        "paper": bench_speech.PAPER,
        "targets": bench_speech.TARGETS,
        "phonemes": {"test": phonemes, "test_voices": phonemes},
        "kmeans_logmel": {
            "k": 512,
            "test": phonemes,
            "test_voices": phonemes,
        },
        "classifier": {"accuracy": 0.99, "num_test": 240},
        "conversion": {
            "target_voice_accuracy": target_voice,
            "converted_phoneme_accuracy": 0.27,
            "reconstruction_phoneme_accuracy": 0.3,
            "content_ratio": content,
            "num_utterances": 48,
            "reconstruction_snr_db_mean": 1.5,
            "reconstruction_target_voice_accuracy": 0.9,
        },
        "timings": {"total": 1500.0},
    }


def test_speech_section_and_targets():
    lines, targets = run.speech_section(_speech_results(6.0, 0.5, 0.95))
    text = "\n".join(lines)
    assert text.startswith(
        "## 10. Speech: phoneme discovery and voice conversion (issue 16)"
    )
    assert "| ratio to the baseline | 6.8x | 6.00x | >= 6.8x |" in text
    assert "| phoneme classes | 41 | 60 | |" in text
    assert "25 min in all" in text
    assert (
        "| no model: k-means (K=512) on log-mel frames, held-out sentences; "
        "held-out voices | - | 24.0% (6.00x); 24.0% (6.00x) | |" in text
    )
    assert [(round(r, 3), t) for _, r, t in targets] == [
        (6.0, 6.8),
        (0.5, 0.8),
        (0.95, 0.8),
    ]
    assert "WaveNet prior" not in text  # no prior_test: no rows
    # The prior's test bits, one level and several (residual VQ).
    one = dict(
        num_levels=1,
        bits_per_code=7.25,
        bits_per_code_by_level=[7.25],
        entropy_by_level=[9.5],
        uniform_bits_per_code=11.0,
    )
    text = "\n".join(
        run.speech_section({**_speech_results(), "prior_test": one})[0]
    )
    assert (
        "| WaveNet prior, bits per held-out code (uniform: 11) | - "
        "| 7.250 | |\n"
        "| entropy of the held-out codes (a prior without context) | - "
        "| 9.500 | |" in text
    )
    levels = dict(
        num_levels=2,
        bits_per_code=6.5,
        bits_per_code_by_level=[5.0, 8.0],
        entropy_by_level=[7.0, 8.5],
        uniform_bits_per_code=9.0,
    )
    text = "\n".join(
        run.speech_section({**_speech_results(), "prior_test": levels})[0]
    )
    assert (
        "| WaveNet prior, bits per held-out code (uniform: 9) | - "
        "| 6.500 | |\n"
        "| the same per level (in brackets: the level's code entropy) | - "
        "| 5.000 (7.000); 8.000 (8.500) | |" in text
    )
    assert run.speech_section(None) == (
        [
            "## 10. Speech: phoneme discovery and voice conversion (issue 16)",
            "",
            "(failed)",
            "",
        ],
        [],
    )


@pytest.mark.slow
def test_speech_tiny(tmp_path):
    """The whole experiment at tiny sizes through run.py, artifacts too."""
    out = tmp_path / "BENCHMARKS.md"
    run.main(
        ["--tiny", "--only", "speech", "--out", str(out)]
        + ["--results-dir", str(tmp_path / "results")]
    )
    text = out.read_text()
    assert "## 10. Speech: phoneme discovery and voice conversion" in text
    assert text.count("speech: content ratio") == 1
    docs = tmp_path / "docs"
    result = bench_speech.main(
        ["--tiny", "--docs-dir", str(docs), "--work-dir", str(tmp_path / "w")]
    )
    files = result["artifacts"]["files"]
    assert sorted(files) == sorted(
        ["source", "reconstruction", "prior_sample", "mels"]
        + [
            "converted_" + name.replace("+", "_")
            for name in result["artifacts"]["targets"]
        ]
    )
    for name, path in files.items():
        if name != "mels":
            waveform, rate = audio.read_wav(path)
            assert rate == 16000 and 0 < len(waveform) <= 32000
    assert result["conversion"]["num_utterances"] == 3
    assert result["phonemes"]["test"]["num_scored"] > 0
    # The prior's test bits: -log2 p of the held-out codes, recomputed
    # with the prior's distribution over the same segments.
    run_dir = str(tmp_path / "w" / "run")
    vqvae, _ = artifacts.load_vqvae(run_dir)
    prior = artifacts.load_prior(run_dir)
    test = data.load_audio(f"audio-folder:{tmp_path / 'w' / 'corpus'}", "test")
    segments = np.concatenate(
        [
            np.pad(w, (0, -len(w) % 1024)).reshape(-1, 1024, 1)
            for w in test.waveforms
        ]
    )
    codes = vqvae.encode(segments)
    bits = -np.sum(prior.distribution().log_prob(codes)) / np.log(2)
    scored = result["prior_test"]
    assert scored["num_codes"] == codes.numpy().size
    assert scored["bits_per_code"] == pytest.approx(
        bits / codes.numpy().size, rel=1e-4
    )
    counts = (
        np.bincount(codes.numpy().ravel(), minlength=16) / codes.numpy().size
    )
    used = counts[counts > 0]
    assert scored["entropy_by_level"] == [
        pytest.approx(-np.sum(used * np.log2(used)), rel=1e-5)
    ]
    assert scored["uniform_bits_per_code"] == 4.0
    for waveforms in result["conversion"]["periodicity"].values():
        assert waveforms["frames"] > 0
        assert 0 <= waveforms["pitched_fraction"] <= 1
    # A trained run is scored as it is: no training, no prior with
    # --prior-steps 0, files under another name.
    again = bench_speech.main(
        ["--tiny", "--model-dir", str(tmp_path / "w" / "run")]
        + ["--prior-steps", "0", "--docs-dir", str(docs), "--name", "again"]
    )
    assert "train" not in again["timings"] and "prior" not in again["timings"]
    assert again["steps"] == result["steps"]
    assert again["phonemes"] == result["phonemes"]
    assert sorted(again["artifacts"]["files"]) == sorted(
        set(files) - {"prior_sample"}
    )
    assert all(
        os.path.basename(path).startswith("again_")
        for path in again["artifacts"]["files"].values()
    )


def test_command_shows_no_path_outside_the_repository():
    inside = os.path.join(run.REPO, "benchmarks", "results")
    shown = run.shown_command(
        [
            "--resume",
            "--results-dir",
            inside,
            "--venv-dir=/somewhere/venvs",
            "--quality-data",
            "/elsewhere/shared/data/cifar10_jpeg.tar.gz",
            "--only",
            "vq,step",
        ]
    )
    assert shown == (
        "python benchmarks/run.py --resume --results-dir benchmarks/results "
        "--venv-dir DIR --quality-data cifar10_jpeg.tar.gz --only vq,step"
    )


def test_resume_keeps_only_results_of_this_cpu(tmp_path, capsys):
    """`--resume` re-runs a result recorded on another CPU, keeps one of
    this CPU, and keeps (with a note) one from before the record; a run
    records its CPU."""
    import types

    results = tmp_path / "results"
    results.mkdir()
    for name in ("same", "other", "unrecorded"):
        (results / f"{name}.json").write_text("{}")
    (results / run.MACHINES_FILE).write_text(
        json.dumps({"same": run.cpu(), "other": "Another CPU, 64 cores"})
    )
    runner = run.Runner(
        types.SimpleNamespace(results_dir=str(results), resume=True)
    )
    kept = {
        name: runner.keep(name, str(results / f"{name}.json"))
        for name in ("same", "other", "unrecorded", "missing")
    }
    assert kept == {
        "same": True,
        "other": False,
        "unrecorded": True,
        "missing": False,
    }
    out = capsys.readouterr().out
    assert "other: measured on Another CPU, 64 cores; re-running" in out
    assert "unrecorded: kept (its CPU was not recorded)" in out
    runner._record("other")
    recorded = json.loads((results / run.MACHINES_FILE).read_text())
    assert recorded["other"] == run.cpu()
    fresh = run.Runner(
        types.SimpleNamespace(results_dir=str(results), resume=False)
    )
    assert not fresh.keep("same", str(results / "same.json"))


def test_speech_model_dir_without_a_model_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="holds no trained VQ-VAE"):
        bench_speech.main(["--model-dir", str(tmp_path), "--prior-steps", "0"])


def test_failed_fragment_leaves_nothing_resume_would_keep(
    tmp_path, monkeypatch
):
    script = tmp_path / "bench_fail.py"
    script.write_text("print('| half a table |')\nraise SystemExit(3)\n")
    monkeypatch.setattr(run, "HERE", str(tmp_path))
    results = tmp_path / "results"
    args = type("Args", (), {"results_dir": str(results), "resume": True})()
    runner = run.Runner(args)
    assert runner.run_fragment("bench_fail.py", "fail") is None
    assert sorted(os.listdir(results)) == ["run.log"]


def _demo_result(float32_s: float, auto_s: float) -> dict:
    def one(seconds, resolved):
        return {
            "seconds": seconds,
            "train_s": 10.0,
            "train_prior_s": 5.0,
            "resolved": [resolved],
            "metrics": {
                "mse": 0.01,
                "psnr": 20.0,
                "perplexity": 50.0,
                "bits_per_dim_pixelcnn_prior": 4.5,
            },
        }

    return {
        "results": {
            "float32": one(float32_s, "float32"),
            "auto": one(auto_s, "bfloat16"),
        }
    }


def test_demo_section_and_summary():
    data = _demo_result(120.0, 80.0)
    assert run.demo_speedup(data) == 1.5
    lines, targets = run.demo_section(data)
    assert targets == []
    assert (
        "| `auto` | bfloat16 | 80 | 10 | 5 | 0.01000 | 20.00 | 50.0 | 4.500 |"
        in lines
    )
    assert (
        "- `--precision auto` (here bfloat16) ran the demo 1.50x as fast "
        "as float32 (median of 1 run each)." in lines
    )
    summary = run.summary_section({}, {}, {}, None, None, None, demo=data)
    assert (
        "- `vqvae demo` from a fresh model directory: 80 s with `--precision "
        "auto` (bfloat16 here) vs 120 s in float32 (1.50x)." in summary
    )
    assert run.demo_speedup({"results": {"float32": {}}}) is None
    # Metrics a demo's evaluation.json lacks show as "-".
    del data["results"]["auto"]["metrics"]["psnr"]
    lines, _ = run.demo_section(data)
    assert (
        "| `auto` | bfloat16 | 80 | 10 | 5 | 0.01000 | - | 50.0 | 4.500 |"
        in (lines)
    )
    assert run.demo_section(None)[0][2] == "(not run or failed)"


@pytest.mark.slow
def test_run_demo_section_tiny(tmp_path):
    from tf_vqvae.precision import resolve

    out = tmp_path / "BENCHMARKS.md"
    run.main(
        ["--tiny", "--only", "demo", "--out", str(out)]
        + ["--results-dir", str(tmp_path / "results")]
    )
    text = out.read_text()
    assert run.DEMO_TITLE in text
    data = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert set(data["results"]) == {"float32", "auto"}
    assert data["results"]["float32"]["resolved"] == ["float32"]
    assert data["results"]["auto"]["resolved"] == [resolve("auto").precision]
    for result in data["results"].values():
        assert result["seconds"] > 0 and result["metrics"]["mse"] > 0
