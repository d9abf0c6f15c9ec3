"""fuse_for_inference: exact against the deploy form (its independent twin: the unfused modules); the rewrites
really change the exported graph (node counts by hand from GhostNet's table)."""

from __future__ import annotations

import pytest
import torch

import ghostnets
from ghostnets.layers.dfc import DFCAttention
from ghostnets.layers.ghost import GhostBottleneck
from ghostnets.runtime import export_model
from ghostnets.transforms import randomize_batchnorm
from ghostnets.transforms.runtime_fusions import (
    InterleavedGhost,
    LinearSE,
    PooledConvDFC,
    SplitReadBottleneck,
    fuse_for_inference,
)


def _deploy(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return ghostnets.reparameterize(randomize_batchnorm(ghostnets.create_model(name, num_classes=10).eval())).eval()


def _close(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> bool:
    with torch.inference_mode():
        reference = b(x)
        return bool((a(x) - reference).abs().max() <= 1e-4 * reference.abs().max())


@pytest.mark.parametrize("name", ["ghostnet_050", pytest.param("ghostnetv2_100", marks=pytest.mark.slow)])
def test_every_rewrite_together_equals_the_deploy_form(name):
    deploy = _deploy(name)
    fused = fuse_for_inference(deploy)
    assert _close(fused, deploy, torch.randn(2, 3, 64, 64))
    kinds = {type(m) for m in fused.modules()}
    assert {InterleavedGhost, LinearSE} <= kinds and (PooledConvDFC in kinds) == name.startswith("ghostnetv2")
    if name.startswith("ghostnetv2"):  # 32 px: the last stage's DFC sees a 1x1 input and pools by 1
        assert sum(isinstance(m, PooledConvDFC) for m in fused.modules()) == \
            sum(isinstance(m, DFCAttention) for m in deploy.modules())
        assert _close(fused, deploy, torch.randn(1, 3, 32, 32))


def test_odd_width_ghost_module_interleaves_and_drops_the_trimmed_ghost():
    torch.manual_seed(0)
    block = randomize_batchnorm(GhostBottleneck(8, 9, 8, stride=2, se_ratio=0.25).eval())  # 5 intrinsic + 4 ghosts
    deploy = ghostnets.reparameterize(block).eval()
    fused = fuse_for_inference(deploy)
    assert isinstance(fused.ghost1, InterleavedGhost)
    assert fused.ghost1.perm == [0, 5, 1, 6, 2, 7, 3, 8, 4]  # [p0, c0, ..., p4]: c4 was the trimmed 10th channel
    assert _close(fused, deploy, torch.randn(2, 8, 12, 12))


def test_split_read_variant_equals_the_deploy_form():
    deploy = _deploy("ghostnet_050")
    fused = fuse_for_inference(deploy, ghost="split", dfc=False, se=False)
    # stride-1 rows without SE in GhostNet's Table 1 (counted by hand): exp 16, 72, 200, 184, 184, 960, 960 -> 7
    assert sum(isinstance(m, SplitReadBottleneck) for m in fused.modules()) == 7
    assert _close(fused, deploy, torch.randn(2, 3, 64, 64))


def test_a_training_form_is_refused():
    with pytest.raises(ValueError, match="reparameterize"):
        fuse_for_inference(ghostnets.create_model("ghostnet_050", num_classes=10))


@pytest.mark.runtimes
def test_the_exported_graph_loses_ghost1s_concats(tmp_path):
    onnx = pytest.importorskip("onnx")
    deploy = _deploy("ghostnet_050")
    counts = {}
    for key, model in (("deploy", deploy), ("fused", fuse_for_inference(deploy, dfc=False, se=False))):
        path = tmp_path / f"{key}.onnx"
        export_model(model, path, format="onnx", input_size=(32, 32))
        counts[key] = sum(node.op_type == "Concat" for node in onnx.load(str(path)).graph.node)
    # GhostNet's table has 16 bottlenecks of two Ghost modules each; only ghost2's concat (before the add) is left
    assert counts == {"deploy": 32, "fused": 16}
