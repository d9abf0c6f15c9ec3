"""fuse_for_inference: exact against the deploy form (its independent twin: the unfused modules), and the DFC
pooling really leaves the exported graph."""

from __future__ import annotations

import pytest
import torch

import ghostnets
from ghostnets.layers.dfc import DFCAttention
from ghostnets.runtime import export_model
from ghostnets.transforms import randomize_batchnorm
from ghostnets.transforms.runtime_fusions import PooledConvDFC, fuse_for_inference


def _deploy(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return ghostnets.reparameterize(randomize_batchnorm(ghostnets.create_model(name, num_classes=10).eval())).eval()


@pytest.fixture(scope="module")
def v2() -> torch.nn.Module:
    return _deploy("ghostnetv2_100")


@pytest.mark.parametrize("size", [64, 32])  # 32 px: the last stage's DFC sees a 1x1 input and pools by 1
def test_folded_dfc_pooling_equals_the_deploy_form(v2, size):
    fused = fuse_for_inference(v2)
    dfcs = sum(isinstance(m, DFCAttention) for m in v2.modules())
    assert dfcs > 10 and sum(isinstance(m, PooledConvDFC) for m in fused.modules()) == dfcs
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        reference = v2(x)
        assert (fused(x) - reference).abs().max() <= 1e-4 * reference.abs().max()


def test_a_model_without_dfc_is_an_equal_copy_and_a_training_form_is_refused():
    deploy = _deploy("ghostnet_050")
    fused = fuse_for_inference(deploy)
    assert fused is not deploy and not any(isinstance(m, PooledConvDFC) for m in fused.modules())
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(fused(x), deploy(x))
    with pytest.raises(ValueError, match="reparameterize"):
        fuse_for_inference(ghostnets.create_model("ghostnet_050", num_classes=10))


@pytest.mark.runtimes
def test_the_exported_graph_has_no_dfc_pooling(v2, tmp_path):
    onnx = pytest.importorskip("onnx")
    counts = {}
    for key, model in (("deploy", v2), ("fused", fuse_for_inference(v2))):
        path = tmp_path / f"{key}.onnx"
        export_model(model, path, format="onnx", input_size=(64, 64))
        counts[key] = sum(node.op_type == "AveragePool" for node in onnx.load(str(path)).graph.node)
    dfcs = sum(isinstance(m, DFCAttention) for m in v2.modules())
    assert counts["deploy"] - counts["fused"] == dfcs  # every DFC's 2x2 pool gone, nothing else touched
