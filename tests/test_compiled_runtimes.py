"""The compiled CPU paths: torch.compile with freezing and torch.export -> ONNX Runtime / OpenVINO compute the deploy
form's logits (eager PyTorch is the independent reference), and a program the runtimes do not match is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ghostnets
from ghostnets.runtime import ExportError, build_runtime, deploy_form
from ghostnets.runtime import compiled as compiled_module
from ghostnets.transforms import randomize_batchnorm

pytestmark = pytest.mark.slow


def _logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).max() / np.abs(b).max()) < 1e-4


def test_torch_compile_with_freezing_matches_eager():
    # a small conv net: inductor compiles each kernel in C++, so a whole GhostNet costs a minute here
    model = deploy_form(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(8, 4)).eval())
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    run = build_runtime("compile", model, x.shape, threads=1)
    assert _close(run(x), _logits(model, x))
    with pytest.raises(ValueError, match=r"compiled for batches of shape \(2, 3, 16, 16\)"):
        run(x[:1])  # refused, not recompiled without freezing


def test_a_runtime_whose_package_is_missing_is_refused_by_name(monkeypatch):
    import importlib.util

    from ghostnets.runtime import RuntimeUnavailableError, check_runtimes

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(RuntimeUnavailableError, match=r"export-onnxruntime needs the package\(s\) onnxscript"):
        check_runtimes(["eager", "export-onnxruntime"])


@pytest.mark.runtimes
def test_torch_export_to_openvino_matches_eager_on_a_ghostnet():
    model = deploy_form(randomize_batchnorm(ghostnets.create_model("ghostnet_050", num_classes=10).eval(), seed=2))
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    run = build_runtime("export-openvino", model, x.shape, threads=1)
    assert _close(run(x), _logits(model, x))


@pytest.mark.runtimes
def test_torch_export_to_onnxruntime_matches_eager():
    # the dynamo exporter's own passes take ~15 s on a whole GhostNet here: a Ghost module and a head suffice
    from ghostnets.layers.ghost import GhostModule

    model = deploy_form(randomize_batchnorm(nn.Sequential(GhostModule(3, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                          nn.Linear(8, 4)).eval(), seed=2))
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    run = build_runtime("export-onnxruntime", model, x.shape, threads=1)
    assert _close(run(x), _logits(model, x))


@pytest.mark.runtimes
def test_an_exported_program_that_disagrees_with_eager_is_refused(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    real = compiled_module.openvino_runner

    def off_by_one(*args, **kwargs):
        run = real(*args, **kwargs)
        return lambda x: run(x) + 1.0

    monkeypatch.setattr(compiled_module, "openvino_runner", off_by_one)
    with pytest.raises(ExportError, match="does not compute what the model computes"):
        build_runtime("export-openvino", model, (1, 3, 8, 8), threads=1)
    with pytest.raises(ValueError, match="onnxruntime or openvino"):
        compiled_module.exported_runner(model, (1, 3, 8, 8), "tensorrt", threads=1)
