"""RMNet's residual removal (Meng et al., arXiv 2111.00687) against independent truths: the converted torchvision
ResNet-18's parameter count from the official conversion (docs/reference.md "RMNet": 20,176,360 with the stem's
BatchNorm kept), the outputs of the residual model it came from, a hand count of the widened convs, and the FX
graph of the result (no addition left)."""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers.resnet_blocks import BasicBlock, Bottleneck
from ghostnets.models.resnet import ResNet
from ghostnets.transforms import RemoveResidualsError, remove_residuals
from ghostnets.transforms.remove_residuals import CarriedGhost, PlainBlock, convert_block

OFFICIAL_RESNET18_RM_PARAMS = 20_176_360  # docs/reference.md "RMNet": fxmeng/RMNet easy_resnet2vgg on ResNet-18
STEM_BN_PARAMS, STEM_BIAS = 2 * 64, 64  # the official conversion keeps the stem BN; ghostnets folds it (a bias)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@functools.cache
def _resnet18() -> nn.Module:
    return randomize_bn(torchvision.models.resnet18(), torch.Generator().manual_seed(1)).eval()


def _additions(model: nn.Module, size: tuple[int, ...] = (1, 3, 32, 32)) -> list[str]:
    """The addition nodes of ``model``'s exported ATen graph (a residual sum is one)."""
    graph = torch.export.export(model, (torch.randn(size),)).graph
    adds = {torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}
    return [n.name for n in graph.nodes if n.op == "call_function" and n.target in adds]


def test_torchvision_resnet18_becomes_plain_with_the_same_logits_and_the_official_count():
    model = _resnet18()
    plain = remove_residuals(model)
    assert len(_additions(model)) == 8 and _additions(plain) == []  # 8 basic blocks, no sum left
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _rel(plain(x), model(x)) < 1e-4
    assert ghostnets.count_params(plain) - STEM_BIAS + STEM_BN_PARAMS == OFFICIAL_RESNET18_RM_PARAMS
    assert model.layer1[0].conv1.weight.shape == (64, 64, 3, 3)  # the source is untouched
    assert model.training is False and isinstance(model.layer1[0], torchvision.models.resnet.BasicBlock)


def test_hand_count_of_a_downsample_basic_block():
    """in 64 -> out 128, stride 2, 1x1 projection: conv1 64 -> 64+128 (3x3, bias), conv2 192 -> 128 (3x3, bias)."""
    block = randomize_bn(BasicBlock(64, 128, 2, nn.Conv2d, option_a=False)).eval()
    plain = convert_block(block, (0.0, float("inf")))
    assert isinstance(plain, PlainBlock) and plain.carried == 64
    assert ghostnets.count_params(plain) == (64 * 192 * 9 + 192) + (192 * 128 * 9 + 128)
    x = torch.relu(torch.randn(2, 64, 9, 11))  # odd sizes: the Dirac centre tap must subsample as the 1x1 does
    with torch.no_grad():
        assert _rel(plain(x), block(x)) < 1e-5


@pytest.mark.parametrize("groups", [1, 4])
def test_bottlenecks_with_projection_and_grouped_convs(groups):
    """ResNet-50's bottleneck (stride on the 3x3) and ResNeXt's grouped one, in a small ghostnets ResNet."""
    model = ResNet(block=Bottleneck, depths=(2, 2), planes=(16, 32), block_kwargs=dict(groups=groups, base_width=32),
                   num_classes=7)
    model = randomize_bn(model, torch.Generator().manual_seed(2)).eval()
    plain = remove_residuals(model)
    assert _additions(plain) == []
    x = torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        assert _rel(plain(x), model(x)) < 1e-4


def test_cifar_resnet56_zero_padding_shortcuts():
    model = randomize_bn(ghostnets.create_model("resnet56_cifar")).eval()
    plain = remove_residuals(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _rel(plain(x), model(x)) < 1e-4
    assert plain.layer2[0][0].out_channels == 16 + 32  # 16 carried channels + the branch's 32


def test_relu6_networks_convert_only_when_the_clip_cannot_be_exceeded():
    model = torchvision.models.resnet18(num_classes=5)
    for block in [model] + [b for s in (model.layer1, model.layer2, model.layer3, model.layer4) for b in s]:
        block.relu = nn.ReLU6(inplace=True)
    model = randomize_bn(model).eval()
    x = torch.randn(1, 3, 48, 48) * 3
    with torch.no_grad():  # every block input is a ReLU6 output, in [0, 6]: the carried channels pass unclipped
        assert _rel(remove_residuals(model)(x), model(x)) < 1e-4
    model.relu = nn.ReLU(inplace=True)  # now layer1.0's input may exceed 6
    with pytest.raises(RemoveResidualsError, match=r"layer1\.0.*ReLU6.*exceed the clip"):
        remove_residuals(model)


def test_refusals_name_the_reason():
    with pytest.raises(RemoveResidualsError, match="eval mode"):
        remove_residuals(torchvision.models.resnet18())
    with pytest.raises(RemoveResidualsError, match="no residual block"):
        remove_residuals(ghostnets.create_model("vgg16_cifar").eval())
    se = ResNet(block=Bottleneck, depths=(1,), planes=(16,), block_kwargs=dict(attn_layer=nn.Identity), num_classes=3)
    se.layer1[0].se = nn.Sequential(nn.AdaptiveAvgPool2d(1))  # any gate that multiplies the branch
    with pytest.raises(RemoveResidualsError, match="attention gate"):
        remove_residuals(se.eval())
    ghosted = ghostnets.ghostify(ghostnets.create_model("resnet56_cifar"), report=False).eval()
    with pytest.raises(RemoveResidualsError, match=r"layer1\.0\.conv2 is a GhostModule.*adds the shortcut"):
        remove_residuals(ghosted)
    with pytest.raises(RemoveResidualsError, match="features_only"):
        remove_residuals(ghostnets.create_model("resnet56_cifar", features_only=True).eval())

    class Wrapped(nn.Module):  # a block whose input is not shown to be post-ReLU
        def __init__(self):
            super().__init__()
            self.block = BasicBlock(8, 8, 1, nn.Conv2d, option_a=True)

        def forward(self, x):
            return self.block(x)

    with pytest.raises(RemoveResidualsError, match="non-negative"):
        remove_residuals(Wrapped().eval())


@pytest.mark.parametrize(("name", "plain_convs"), [("resnet56_cifar", ["*.conv2"]),
                                                  pytest.param("resnet50", ["*.conv3", "*.downsample.*"],
                                                               marks=pytest.mark.slow)])
def test_ghostified_model_converts_where_the_math_allows(name, plain_convs):
    """Ghost modules before the last conv of a branch stay Ghost modules beside the copied input; the last conv and
    the downsample, which take the shortcut, must be plain."""
    ghosted = ghostnets.ghostify(ghostnets.create_model(name, width=0.25 if name == "resnet50" else 1.0),
                                 skip=["first conv", *plain_convs], report=False)
    ghosted = randomize_bn(ghosted, torch.Generator().manual_seed(3)).eval()
    plain = remove_residuals(ghosted)
    assert sum(isinstance(m, CarriedGhost) for m in plain.modules()) == (27 if name == "resnet56_cifar" else 32)
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        assert _rel(plain(x), ghosted(x)) < 1e-4
    assert _additions(plain) == []


def test_checkpoint_rebuilds_the_plain_form_and_it_prunes(tmp_path):
    model = randomize_bn(ghostnets.create_model("resnet18", stem="cifar", in_chans=1, num_classes=10, width=0.25))
    model = model.eval()
    plain = remove_residuals(model)
    assert [e.op for e in plain.record.edits] == ["remove_residuals"]
    path = ghostnets.save_checkpoint(plain, tmp_path / "rm.safetensors")
    rebuilt = ghostnets.create_model(checkpoint_path=path).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), plain(x))
    target = ghostnets.count_madds(model, 32) // 2  # the paper's point: RM makes the residual channels prunable
    pruned = ghostnets.prune_channels(plain, target, torch.randn(8, 1, 32, 32), samples_per_image=4)
    assert ghostnets.count_madds(pruned, 32) <= target
    assert pruned.layer1[0][0].out_channels < 16 + 16  # a first conv's carried + branch channels were cut
    again = ghostnets.create_model(checkpoint_path=ghostnets.save_checkpoint(pruned, tmp_path / "p.safetensors"))
    assert [e.op for e in again.record.edits] == ["remove_residuals", "prune"]
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), pruned(x))


@pytest.mark.runtimes
def test_the_plain_form_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ghostnets.data.transforms import InputSpec
    from ghostnets.runtime import export_model

    plain = remove_residuals(randomize_bn(ghostnets.create_model("resnet56_cifar")).eval())
    export_model(plain, tmp_path / "rm.onnx", format="onnx", spec=InputSpec(size=32, resize=32))
    x = torch.randn(1, 3, 32, 32)
    got = ort.InferenceSession(str(tmp_path / "rm.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert _rel(torch.from_numpy(got), plain(x)) < 1e-4


def test_cli_writes_a_verified_plain_checkpoint(tmp_path, capsys):
    from ghostnets.cli import main

    model = randomize_bn(ghostnets.create_model("resnet56_cifar", width=0.5)).eval()
    source = ghostnets.save_checkpoint(model, tmp_path / "r56.safetensors")
    assert main(["remove-residuals", str(source), "--out", str(tmp_path / "rm.safetensors")]) == 0
    assert "no residual addition left" in capsys.readouterr().out
    plain = ghostnets.create_model(checkpoint_path=tmp_path / "rm.safetensors").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert _rel(plain(x), model(x)) < 1e-4
    assert main(["remove-residuals", str(tmp_path / "rm.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "already the plain form" in capsys.readouterr().err
