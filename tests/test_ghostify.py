"""``ghostify`` on torchvision models, ghostnets' own and user modules; its report, checkpoints and CLI."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.cli import main
from ghostnets.layers import GhostModule
from ghostnets.transforms import ghostify


class UserNet(nn.Module):
    """A user's CNN: a biased conv with no BN, a strided dilated conv + BN, a depthwise and a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 12, 3, 2, 2, dilation=2, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
                                  nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.Conv2d(12, 24, 1, groups=4),
                                  nn.Conv2d(24, 10, 1, bias=True))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.body(self.stem(x))).flatten(1)


def test_user_model_replaced_and_kept_layers_reported():
    model = UserNet()
    ghosted = ghostify(model, input_size=(20, 24))
    report = ghosted.record.report
    kept = {c.name: c.kept_because for c in report.kept}
    assert kept == {"stem": "skipped", "body.3": "depthwise", "body.4": "grouped (groups=4)"}
    assert [c.name for c in report.replaced] == ["body.0", "body.5"]
    assert isinstance(ghosted.body[0], GhostModule) and isinstance(ghosted.body[5], GhostModule)
    assert type(model.body[0]) is nn.Conv2d  # the input model is untouched
    assert ghosted.body[1] is not model.body[1] and isinstance(ghosted.body[1], nn.BatchNorm2d)
    x = torch.randn(2, 3, 20, 24)
    assert ghosted(x).shape == model(x).shape
    # stride/padding/dilation on the primary conv only; bias kept for a conv that had one (no BN inside: keep_bn)
    primary = ghosted.body[0].primary_conv[0]
    assert (primary.stride, primary.padding, primary.dilation) == ((2, 2), (2, 2), (2, 2))
    assert ghosted.body[0].cheap_operation[0].stride == (1, 1)
    # by hand: stem 3*8*9+8, body.0 8*12*9, BN 2*12, depthwise 12*9+12, grouped 24*3+24, last 24*10+10
    assert report.params_before == 224 + 864 + 24 + 120 + 96 + 250
    # Ghost body.0: primary 8*6*9 + BN 12, cheap 6*9 + BN 12; Ghost body.5: primary 24*5 + BN 10, cheap 5*9 + BN 10
    assert report.params_after == 224 + (432 + 12 + 54 + 12) + 24 + 120 + 96 + (120 + 10 + 45 + 10)
    # MAdds at 20x24: the stem's output is 20x24, the rest 10x12 (stride 2, dilation 2, padding 2)
    before = {"stem": 480 * 8 * 3 * 9, "body.0": 120 * 12 * 8 * 9, "body.3": 120 * 12 * 9, "body.4": 120 * 24 * 3,
              "body.5": 120 * 10 * 24}
    assert report.madds_before == sum(before.values())
    ghosts = {"body.0": 120 * (6 * 8 * 9 + 6 * 9), "body.5": 120 * (5 * 24 + 5 * 9)}
    assert report.madds_after == sum({**before, **ghosts}.values())
    assert ghostnets.count_madds(ghosted, (20, 24), in_chans=3) == report.madds_after  # the counter agrees
    layer = next(c for c in report.layers if c.name == "body.0")
    assert layer.madds_before == 10 * 12 * 12 * 8 * 9  # H_out x W_out x out x in x k x k
    assert layer.madds_after == 10 * 12 * (6 * 8 * 9 + 6 * 9)
    assert "body.0" in str(report) and "total" in str(report)


def test_keep_bn_false_and_skip_patterns():
    bare = ghostify(UserNet(), skip=("stem", "body.5"), keep_bn=False, input_size=20)
    assert [c.name for c in bare.record.report.replaced] == ["body.0"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bare.body[0].modules())
    everything = ghostify(torchvision.models.resnet18(), skip=(), input_size=32)
    assert isinstance(everything.conv1, GhostModule)
    layer4_kept = ghostify(torchvision.models.resnet18(), skip=("first conv", "layer4.*"), input_size=32)
    assert type(layer4_kept.layer4[0].conv1) is nn.Conv2d and isinstance(layer4_kept.layer3[0].conv1, GhostModule)


def test_bad_arguments():
    for ratio in (1, 0, 2.5, True, "2"):
        with pytest.raises(ValueError, match="ratio"):
            ghostify(UserNet(), ratio)
    with pytest.raises(ValueError, match="dw_size"):
        ghostify(UserNet(), 2, 4)
    with pytest.raises(ValueError, match="matches no convolution.*stem"):
        ghostify(UserNet(), skip=("trunk.*",))
    mlp = nn.Sequential(nn.Linear(4, 4))
    with pytest.warns(UserWarning, match="no nn.Conv2d"):
        assert ghostify(mlp) is mlp


# VGG is ghostified in tests/test_plug_and_play.py (vgg16_cifar); torchvision's vgg11_bn spent 13 s here on saving and
# rebuilding its 120M-parameter classifier, which ghostify leaves alone
@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:mobilenet_v2",
                                  pytest.param("torchvision:resnext50_32x4d", marks=pytest.mark.slow), "ghostnet_050"])
def test_ghostified_models_deploy_and_rebuild_from_checkpoint(name, tmp_path):
    model = ghostnets.create_model(name, num_classes=10)
    ghosted = randomize_bn(ghostify(model, input_size=64)).eval()
    if name == "torchvision:resnext50_32x4d":
        assert all(c.kept_because == "grouped (groups=32)" for c in ghosted.record.report.kept[1:])
    x = torch.randn(2, 3, 64, 64)
    deployed = ghostnets.reparameterize(ghosted)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    with torch.no_grad():
        ref = ghosted(x)
        torch.testing.assert_close(deployed(x), ref, rtol=1e-4, atol=1e-4 * max(1.0, ref.abs().max().item()))
        for form in (ghosted, deployed):
            path = ghostnets.save_checkpoint(form, tmp_path / "m.safetensors")
            rebuilt = ghostnets.create_model(checkpoint_path=path).eval()
            assert torch.equal(rebuilt(x), form(x))


def test_ghostify_trained_weights_survive_in_kept_layers():
    model = ghostnets.create_model("resnet56_cifar")
    ghosted = ghostify(model)
    assert torch.equal(ghosted.conv1.weight, model.conv1.weight) and torch.equal(ghosted.fc.weight, model.fc.weight)


def test_torchvision_name_errors():
    with pytest.raises(ghostnets.UnknownModelError, match="torchvision:resnet50"):
        ghostnets.create_model("torchvision:resnet5O")


def test_cli_ghostify_prints_table_and_saves(tmp_path, capsys):
    out = tmp_path / "g.safetensors"
    assert main(["ghostify", "--model", "resnet56_cifar", "--ratio", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layer1.0.conv1" in printed and "853,018" in printed and "442,186" in printed
    rebuilt = ghostnets.create_model(checkpoint_path=out)
    assert ghostnets.count_params(rebuilt) == 442_186
    assert main(["ghostify", "--model", "resnet56_cifar", "--out", str(out)]) == 2  # exists: refused
    assert "--force" in capsys.readouterr().err
    assert main(["ghostify", "--model", "resnet56_cifar", "--ratio", "1"]) == 2
    assert "ratio" in capsys.readouterr().err


def test_training_form_file_loads_in_deploy_form(tmp_path):
    ghosted = randomize_bn(ghostify(ghostnets.create_model("resnet56_cifar"))).eval()
    path = ghostnets.save_checkpoint(ghosted, tmp_path / "g.safetensors", class_names=list("abcdefghij"))
    deployed = ghostnets.create_model(checkpoint_path=path, deploy=True)
    assert deployed.deploy and deployed.record.class_names == list("abcdefghij")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), ghosted(x), rtol=1e-4, atol=1e-4)
    ghostnets.save_checkpoint(deployed, path)
    with pytest.raises(ghostnets.CheckpointError, match="deploy=True"):
        ghostnets.create_model(checkpoint_path=path, deploy=False)
