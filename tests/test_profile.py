"""``profile_layers`` and ``ghostnets profile``: per-layer MAdds and memory traffic, checked against hand arithmetic
and against the model-level counters."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ghostnets
from ghostnets.cli import main
from ghostnets.counting import count_madds, count_params
from ghostnets.measure import ModelProfile, profile_layers
from ghostnets.registry import build_model, model_info

F32 = 4  # bytes per float32


def tiny() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                         nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
                         nn.Linear(8, 10))


def test_tiny_sequential_by_hand():
    p = profile_layers(tiny(), (32, 32))
    assert isinstance(p, ModelProfile)
    rows = {r.name: r for r in p.layers}
    assert list(rows) == ["0", "1", "2", "3", "6"]  # Flatten and Dropout (eval) are views: nothing moves
    conv = rows["0"]
    assert conv.type == "Conv2d" and conv.output_shape == (1, 8, 16, 16) and conv.params == 8 * 3 * 3 * 3
    assert conv.madds == 8 * 16 * 16 * 3 * 3 * 3 == 55296
    assert conv.bytes_read == (3 * 32 * 32 + 8 * 3 * 3 * 3) * F32 == 13152
    assert conv.bytes_written == 8 * 16 * 16 * F32 == 8192
    assert conv.intensity == pytest.approx(55296 / (13152 + 8192))
    bn = rows["1"]  # reads weight, bias, running mean and var (num_batches_tracked is an integer, unused in eval)
    assert (bn.params, bn.madds, bn.bytes_read, bn.bytes_written) == (16, 0, (2048 + 4 * 8) * F32, 2048 * F32)
    relu = rows["2"]
    assert relu.in_place and (relu.bytes_read, relu.bytes_written) == (2048 * F32, 2048 * F32)
    assert (rows["3"].bytes_read, rows["3"].bytes_written) == (2048 * F32, 8 * F32)
    fc = rows["6"]
    assert (fc.madds, fc.params, fc.bytes_read, fc.bytes_written) == (80, 90, (8 + 80 + 10) * F32, 10 * F32)
    assert p.madds == 55296 + 80
    assert p.params == 216 + 16 + 90
    assert p.activation_bytes == (2048 + 2048 + 8 + 10) * F32  # the in-place ReLU allocates nothing
    # input + conv output + BN output: Sequential holds the conv output until the BN returns
    assert p.peak_activation_bytes == (3 * 32 * 32 + 2048 + 2048) * F32
    assert p.bytes_moved == sum(r.bytes_read + r.bytes_written for r in p.layers)
    assert [r.name for r in p.top(2, "madds")] == ["0", "6"]
    assert [r.name for r in p.top(1, "bytes")] == ["0"]


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)
        self.weight = nn.Parameter(torch.ones(4, 1, 3, 3))  # used functionally, outside any leaf module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.conv(x)
        return F.conv2d(y, self.weight, padding=1, groups=4)


def test_ops_outside_leaf_modules():
    model = Residual()
    p = profile_layers(model, (8, 8), in_chans=4)
    rows = {r.name: r for r in p.layers}
    assert list(rows) == ["conv", "add", "conv2d"]  # a composite op is one row, with the MAdds of the ops it runs
    n = 4 * 8 * 8
    assert (rows["add"].madds, rows["add"].bytes_read, rows["add"].bytes_written) == (0, 2 * n * F32, n * F32)
    assert rows["conv2d"].madds == n * 9
    assert rows["conv2d"].bytes_read == (n + 36) * F32
    assert p.madds == n * 4 + n * 9 == count_madds(model, (8, 8), in_chans=4)
    assert p.params == count_params(model) == 16 + 36
    assert profile_layers(model, (8, 8), in_chans=4, batch=3).madds == 3 * p.madds


@pytest.fixture(scope="module")
def forms():
    out = {}
    for name in ("ghostnet_100", "repghostnet_100"):
        model = build_model(name)
        out[name] = (model, ghostnets.reparameterize(model))
    return out


@pytest.mark.parametrize("name", ["ghostnet_100", "repghostnet_100"])
def test_totals_match_the_counters(forms, name):
    for model in forms[name]:
        p = profile_layers(model)
        assert p.madds == count_madds(model)
        assert p.params == count_params(model) == sum(r.params for r in p.layers)  # every weight is in a leaf row
        assert p.input_size == (224, 224) and p.peak_activation_bytes <= p.activation_bytes + 3 * 224 * 224 * F32


def test_reference_param_counts(forms):
    ghost, ghost_deploy = forms["ghostnet_100"]
    rep, rep_deploy = forms["repghostnet_100"]
    assert profile_layers(ghost, 64).params == 5_182_508
    assert profile_layers(rep, 64).params == 4_073_604
    # docs/reference.md's 4,058,772: the official deploy file, folding only the RepGhost branches; ghostnets folds every
    # BatchNorm, each fold trading 2C BN parameters for a C bias: C less per BN outside the RepGhost branches
    assert model_info("repghostnet_100").deploy_params == 4_058_772
    kept = sum(m.num_features for n, m in rep.named_modules() if isinstance(m, nn.BatchNorm2d)
               and not any(part in n for part in (".fusion_bn.", ".cheap_operation.")))
    assert profile_layers(rep_deploy, 64).params == 4_058_772 - kept == 4_051_648
    assert profile_layers(ghost_deploy, 64).params == count_params(ghost_deploy)


@pytest.mark.parametrize("name", ["ghostnet_100", "repghostnet_100"])
def test_deploy_form_moves_fewer_bytes(forms, name):
    training, deploy = (profile_layers(m, 96) for m in forms[name])
    assert deploy.bytes_moved < training.bytes_moved
    assert deploy.activation_bytes < training.activation_bytes
    assert deploy.madds == training.madds
    assert not any(r.type == "BatchNorm2d" for r in deploy.layers)
    assert any(r.type == "BatchNorm2d" for r in training.layers)
    assert any(r.type == "aten.add_" for r in deploy.layers)  # the residual add is a row: bytes, no MAdds


def test_cli_json(capsys):
    assert main(["profile", "ghostnet_050", "--input-size", "64", "96", "--format", "json", "--top", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "ghostnet_050" and out["input_size"] == [64, 96]
    model = build_model("ghostnet_050")
    assert out["training"]["madds"] == out["deploy"]["madds"] == count_madds(model, (64, 96))
    assert out["training"]["params"] == count_params(model)
    assert out["deploy"]["bytes_moved"] < out["training"]["bytes_moved"]
    assert len(out["deploy"]["heaviest_by_madds"]) == 3
    assert out["deploy"]["layers"][0]["output_shape"][0] == 1


def test_cli_table_and_markdown(capsys):
    assert main(["profile", "repghostnet_050", "--input-size", "64", "64", "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "training" in text and "deploy" in text and "top 2 by MAdds" in text and "|" not in text
    assert main(["profile", "repghostnet_050", "--input-size", "64", "64", "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "| params |" in text and "---:|" in text and "### deploy form: top 10 by bytes moved" in text


def test_cli_checkpoint(tmp_path, capsys):
    path = tmp_path / "fm.safetensors"
    ghostnets.save_checkpoint(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1), path)
    assert main(["profile", "--checkpoint", str(path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input_size"] == [32, 32] and out["training"]["in_chans"] == 1  # the recorded grayscale input


@pytest.mark.parametrize("argv, message", [
    (["profile", "ghostnet_100", "--input-size", "16", "224"], "--input-size must be at least 32 32"),
    (["profile"], "name a model"),
    (["profile", "ghostnet_10"], "unknown model"),
    (["profile", "ghostnet_100", "--top", "0"], "--top must be >= 1"),
])
def test_cli_errors(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
