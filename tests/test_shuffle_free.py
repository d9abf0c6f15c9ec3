"""ShuffleNet V2 without channel shuffles: exact against the deploy form (its independent twin: the units as
torchvision writes them, shuffle and split included), and the exported graph really loses them (counts from the
paper's Table 5: 4 + 8 + 4 units, one shuffle each)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ghostnets
from ghostnets.layers.shufflenet_v2 import ShuffleV2Block
from ghostnets.runtime import export_model
from ghostnets.runtime.export import write_onnx_file
from ghostnets.transforms import is_equivalent, randomize_batchnorm
from ghostnets.transforms.runtime_fusions import fuse_for_inference
from ghostnets.transforms.shuffle_free import ShuffleFreeUnits, remove_channel_shuffles


def _deploy(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return ghostnets.reparameterize(randomize_batchnorm(module.eval())).eval()


def _max_error(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        reference = b(x)
        return float((a(x) - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("name", ["shufflenetv2_x0_5", "shufflenetv2_x1_0"])  # x1_0: odd quarters (116 / 4 = 29)
def test_the_network_without_shuffles_equals_the_deploy_form(name):
    deploy = _deploy(ghostnets.create_model(name, num_classes=10))
    free = fuse_for_inference(deploy, ghost=False, dfc=False, se=False)
    assert isinstance(free.stage2, ShuffleFreeUnits) and len(free.stage2.units) == 16  # Table 5: 4 + 8 + 4
    assert isinstance(free.stage3, nn.Identity) and free.stage2.restore is None  # conv5 reads the stored order
    assert _max_error(free, deploy, torch.randn(2, 3, 64, 64)) <= 1e-5
    # a stride-1 unit reads only its branch's half: 58 of 116 channels (stage2 of x1_0), 24 of 48 (x0_5)
    reads = free.stage2.reads[1]
    assert sum(stop - start for _, start, stop in reads) == deploy.stage2[1].in_chs // 2


def test_a_run_inside_a_sequential_restores_the_deploy_order():
    units = nn.Sequential(ShuffleV2Block(16, 32, 2), ShuffleV2Block(32, 32), ShuffleV2Block(32, 32),
                          ShuffleV2Block(32, 64, 2), ShuffleV2Block(64, 64), nn.ReLU())
    deploy = _deploy(units)
    free = fuse_for_inference(deploy)
    assert isinstance(free[0], ShuffleFreeUnits) and free[0].restore is not None
    assert all(isinstance(free[i], nn.Identity) for i in range(1, 5)) and isinstance(free[5], nn.ReLU)
    assert _max_error(free, deploy, torch.randn(2, 16, 20, 20)) <= 1e-5


def test_a_lone_unit_and_a_training_form_are_left_alone():
    single = nn.Sequential(_deploy(ShuffleV2Block(8, 16, 2)), nn.ReLU())
    assert remove_channel_shuffles(single) == 0
    training = nn.Sequential(ShuffleV2Block(8, 16, 2), ShuffleV2Block(16, 16))
    assert remove_channel_shuffles(training) == 0
    with pytest.raises(ValueError, match="reparameterize"):
        ShuffleFreeUnits(list(training), 8)


@pytest.mark.runtimes
def test_ghostnets_export_writes_the_graph_without_shuffles(tmp_path):
    onnx = pytest.importorskip("onnx")
    deploy = _deploy(ghostnets.create_model("shufflenetv2_x0_5", num_classes=10))
    traced, exported = tmp_path / "traced.onnx", tmp_path / "exported.onnx"
    write_onnx_file(deploy, torch.randn(1, 3, 64, 64), traced, True, {})  # the deploy form as the exporter sees it
    report = export_model(deploy, exported, format="onnx", input_size=(64, 64))  # checked against the deploy form
    counts = {}
    for key, path in (("traced", traced), ("exported", exported)):
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        counts[key] = (ops.count("Transpose"), ops.count("Reshape") > 0, ops.count("Shape") > 0)
    # one shuffle (a Transpose between two Reshapes, their shapes computed from the input's) per unit
    assert counts == {"traced": (16, True, True), "exported": (0, False, False)}
    assert all(is_equivalent(diff, scale) for diff, scale in report.checks.values())
