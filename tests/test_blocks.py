"""The block registry: one keyword interface for every block, checked against the blocks the published networks
hold (their parameter counts in docs/reference.md's tables), and generic properties every registered block keeps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.cli import main
from ghostnets.layers.block_registry import block_info, create_block, list_blocks


def test_the_ghost_family_is_registered():
    assert {"ghost", "ghostv2", "ghostv3", "repghost"} <= set(list_blocks())
    assert block_info("ghost").arxiv == "1911.11907"


@pytest.mark.parametrize(("block", "model", "index"), [("ghost", "ghostnet_100", "3.0"),
                                                         ("ghostv2", "ghostnetv2_100", "3.0"),
                                                         ("ghostv3", "ghostnetv3_100", "3.0"),
                                                         ("repghost", "repghostnet_100", "3.0")])
def test_registry_builds_the_networks_own_block(block, model, index):
    """GhostNet's blocks.3.0 (docs/reference.md §1: k 5, exp 72, out 40, SE 0.25, stride 2, in 24), through the
    shared interface, has the same state-dict shapes as the one inside the registered network."""
    mid = 36 if block == "repghost" else 72  # RepGhostNet halves the hidden width (§4)
    built = create_block(block, 24, 40, 2, kernel_size=5, mid_chs=mid, se_ratio=0.25)
    net = ghostnets.create_model(model)
    inside = dict(net.named_modules())[f"blocks.{index}"]
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in inside.state_dict().items()}


@pytest.mark.parametrize("name", list_blocks())
@pytest.mark.parametrize("stride", [1, 2])
def test_every_block_keeps_the_interface_and_deploys(name, stride):
    """Any registered block: the shared signature, the output shape, and reparameterize folding every BatchNorm
    into the same function (eval mode)."""
    in_chs, out_chs = block_info(name).example
    in_chs = in_chs if stride == 2 else out_chs  # as networks use blocks: widths change at the strided block
    block = randomize_bn(create_block(name, in_chs, out_chs, stride, kernel_size=3)).eval()
    x = torch.randn(2, in_chs, 12, 10)
    with torch.no_grad():
        out = block(x)
        assert out.shape == (2, out_chs, 12 // stride, 10 // stride)
        deployed = ghostnets.reparameterize(block)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        assert (deployed(x) - out).abs().max() <= 1e-4 * max(1.0, out.abs().max().item())


def test_refused_by_name():
    with pytest.raises(ValueError, match=r"'ghost' cannot honour act_layer=.*takes expansion, kernel_size"):
        create_block("ghost", 16, 24, act_layer=nn.SiLU)
    with pytest.raises(TypeError, match="groups: not keywords of the block interface"):
        create_block("ghost", 16, 24, groups=2)
    with pytest.raises(ValueError, match="expansion or mid_chs, not both"):
        create_block("ghost", 16, 24, expansion=3, mid_chs=48)
    with pytest.raises(ValueError, match="Did you mean ghost"):
        create_block("ghots", 16, 24)


def test_expansion_sets_the_hidden_width():
    assert create_block("ghost", 16, 16, expansion=6).ghost1.out_channels == 96


def test_cli_lists_blocks(capsys):
    assert main(["blocks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_blocks()) and "1911.11907" in out
