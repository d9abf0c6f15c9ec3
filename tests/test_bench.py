"""``ghostnets bench`` and its parts: Pareto fronts, the runtime registry (whose callables must compute what the
PyTorch model computes), name resolution, and one tiny end-to-end run that writes CSV, JSON and plots."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torchvision.models import ShuffleNet_V2_X0_5_Weights

import ghostnets
import ghostnets.runtime.runtimes as latency
from ghostnets.cli import main
from ghostnets.data.transforms import InputSpec
from ghostnets.errors import UnknownModelError
from ghostnets.measure import pareto_front
from ghostnets.measure.bench import resolve_names
from ghostnets.measure.machine import MachineLimits
from ghostnets.runtime import (
    RuntimeContext,
    RuntimeUnavailableError,
    build_runtime,
    check_runtimes,
    deploy_form,
    measure,
)
from ghostnets.transforms import randomize_batchnorm

pytestmark = pytest.mark.runtimes  # run in their own pytest process: see the Makefile's test target

SPEC = InputSpec(size=64, resize=73)


def test_pareto_front_of_a_hand_made_set():
    points = [(1.0, 50.0), (2.0, 60.0), (2.0, 55.0), (3.0, 60.0), (4.0, 70.0), (0.5, 40.0), (5.0, 65.0), (4.0, 70.0),
              (0.4, math.nan), (6.0, 71.0)]
    # by hand: (2, 55) and (3, 60) lose to (2, 60); (5, 65) to (4, 70); the two (4, 70) do not dominate each other;
    # (6, 71) is the most accurate; the NaN point is never on the front
    assert pareto_front(points) == [5, 0, 1, 4, 7, 9]
    assert pareto_front([]) == []
    assert pareto_front([(3.0, 1.0)]) == [0]
    assert pareto_front([(1.0, 1.0), (1.0, 2.0)]) == [1]  # same cost, more accurate


def test_unknown_and_unavailable_runtimes_are_named(monkeypatch, capsys):
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime 'tensorrt'.*eager, compile, compile-max, "
                       "export-onnxruntime, export-openvino, onnxruntime, openvino, int8"):
        check_runtimes(["eager", "tensorrt"])
    real = latency.importlib.util.find_spec
    monkeypatch.setattr(latency.importlib.util, "find_spec", lambda name: None if name == "openvino" else real(name))
    with pytest.raises(RuntimeUnavailableError, match=r"openvino needs the package\(s\) openvino: pip install "
                       r"'ghostnets\[deploy\]'"):
        check_runtimes(["eager", "openvino"])
    assert main(["bench", "ghostnet_050", "--runtimes", "eager,tpu"]) == 2
    assert "unknown runtime 'tpu'" in capsys.readouterr().err


def test_names_resolve_to_registered_models_and_baselines():
    assert resolve_names(["ghostnet_050", "tv:shufflenet_v2_x1*", "mobilenet_v2", "ghostnet_050"]) == [
        "ghostnet_050", "tv:shufflenet_v2_x1_0", "tv:shufflenet_v2_x1_5", "tv:mobilenet_v2"]
    assert resolve_names(["repghostnet_0[58]*"]) == ["repghostnet_050", "repghostnet_058", "repghostnet_080"]
    with pytest.raises(UnknownModelError, match="no model matches 'ghostnet_0500'.*Did you mean"):
        resolve_names(["ghostnet_0500"])
    with pytest.raises(UnknownModelError, match="no model matches 'tv:resnet50'.*baselines: tv:mobilenet_v2"):
        resolve_names(["tv:resnet50"])


def _logits(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("kind", ["ghostnets", "torchvision"])
def test_runtime_callables_compute_the_models_logits(kind, tmp_path):
    pytest.importorskip("onnxruntime")
    if kind == "ghostnets":  # BatchNorm that is not the identity, so a wrong fold on any path would show
        reference = randomize_batchnorm(ghostnets.create_model("ghostnet_050").eval(), seed=1)
    else:
        reference = randomize_batchnorm(ghostnets.create_model("tv:shufflenet_v2_x0_5").eval(), seed=1)
    model = deploy_form(reference)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5)).numpy()
    expected = _logits(reference, x)  # the training form in eval mode: independent of every runtime
    ctx = RuntimeContext(tmp_path)
    runtimes = ["eager", "onnxruntime"] + (["openvino"] if latency.importlib.util.find_spec("openvino") else [])
    for name in runtimes:
        got = build_runtime(name, model, x.shape, threads=2, context=ctx)(x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * max(1.0, np.abs(expected).max()),
                                   err_msg=name)
    one = build_runtime("onnxruntime", model, (1, 3, 64, 64), threads=1, context=ctx)  # the same file, batch 1
    np.testing.assert_allclose(one(x[:1]), expected[:1], rtol=0, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_measure_reports_median_p90_and_throughput():
    calls = []
    result = measure(lambda: calls.append(1), 4, warmup=2, runs=5)
    assert len(calls) == 7 and set(result) == {"median_ms", "p90_ms", "images_per_s"}
    assert result["p90_ms"] >= result["median_ms"] > 0
    assert result["images_per_s"] == pytest.approx(4 / (result["median_ms"] / 1e3))


def test_bench_end_to_end_writes_rows_json_and_plots(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out, plots = tmp_path / "tmp" / "results.csv", tmp_path / "tmp" / "plots"
    code = main(["bench", "ghostnet_050", "tv:shufflenet_v2_x0_5", "--runtimes", "eager,onnxruntime", "--batch", "1",
                 "--input-size", "64", "64", "--runs", "3", "--warmup", "1", "--threads", "2", "--out", str(out),
                 "--plot", str(plots)])
    printed = capsys.readouterr().out
    assert code == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["runtime"], r["batch"]) for r in rows] == [
        ("ghostnet_050", "eager", "1"), ("ghostnet_050", "onnxruntime", "1"),
        ("tv:shufflenet_v2_x0_5", "eager", "1"), ("tv:shufflenet_v2_x0_5", "onnxruntime", "1")]
    for r in rows:
        assert not r["error"] and float(r["median_ms"]) > 0 and float(r["p90_ms"]) >= float(r["median_ms"])
        assert float(r["max_rel_diff"]) <= 1e-4  # each runtime's output on the timed batch against eager PyTorch
        assert float(r["bound_ms"]) > 0 and int(r["madds"]) > 0 and r["input_size"] == "64x64"
    torchvision_top1 = ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert {float(r["top1"]) for r in rows} == {ghostnets.model_info("ghostnet_050").top1, torchvision_top1}
    assert json.loads(out.with_suffix(".json").read_text())[0]["model"] == "ghostnet_050"
    for runtime in ("eager", "onnxruntime"):
        for kind in ("latency_vs_madds", "accuracy_vs_latency"):
            assert (plots / f"{kind}_{runtime}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ghostnet_050 | onnxruntime | 1 |" in printed and "machine:" in printed
    assert main(["bench", "ghostnet_050", "--out", str(out)]) == 2  # refuses to overwrite without --force


def test_a_failing_runtime_is_a_row_with_its_error(monkeypatch, tmp_path, capsys):
    def broken(artifact, shape, threads):
        raise RuntimeError("no such kernel")

    monkeypatch.setitem(latency.RUNTIMES, "onnxruntime", latency.Runtime(
        "onnxruntime", "broken", (), lambda m, size, ctx: m, broken))
    monkeypatch.setattr(MachineLimits, "measure", classmethod(lambda cls, threads: cls(threads, 100.0, 10.0)))
    code = main(["bench", "ghostnet_050", "--runtimes", "eager,onnxruntime", "--input-size", "32", "32", "--runs",
                 "2", "--warmup", "0", "--threads", "1", "--out", str(tmp_path / "r.csv")])
    captured = capsys.readouterr()
    assert code == 1 and "no such kernel" in captured.err
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["error"] for r in rows] == ["", "RuntimeError: no such kernel"]


def test_a_checkpoint_is_timed_at_its_own_input(monkeypatch, tmp_path, capsys):
    model = ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1)
    ghostnets.save_checkpoint(model, tmp_path / "fm.safetensors", class_names=[str(i) for i in range(10)])
    monkeypatch.setattr(MachineLimits, "measure", classmethod(lambda cls, threads: cls(threads, 100.0, 10.0)))
    code = main(["bench", "--checkpoint", str(tmp_path / "fm.safetensors"), "--runs", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(tmp_path / "r.csv")])
    assert code == 0, capsys.readouterr().err
    with open(tmp_path / "r.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["model"], row["runtime"], row["input_size"]) == ("ghostnet_050", "eager", "32x32")  # Fashion-MNIST's
    assert int(row["madds"]) == ghostnets.count_madds(model, 32)
    assert main(["bench", "ghostnet_050", "ghostnet_100", "--checkpoint", str(tmp_path / "fm.safetensors")]) == 2
