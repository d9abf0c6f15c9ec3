"""GhostNetV3 against independent truths: timm's implementation (same weights, same logits), a file in the official
layout (written from timm's weights with the official ``bn`` names, wrapped as a timm training checkpoint), the
official conversion's parameter counts (docs/reference.md "GhostNetV3"), and the branch sums by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers.ghost_v3 import GhostModuleV3
from ghostnets.layers.rep_branches import conv_branches, fuse_branches, identity_kernel, sum_branches
from ghostnets.record import is_deploy

timm = pytest.importorskip("timm")

# docs/reference.md "GhostNetV3": the official reparameterize() (branches summed, only their BNs folded).
OFFICIAL_DEPLOY_PARAMS = {"ghostnetv3_050": 2_853_176, "ghostnetv3_100": 6_147_588, "ghostnetv3_130": 8_948_296,
                          "ghostnetv3_160": 12_377_778}
SWEEP = ["ghostnetv3_050"] + [pytest.param(n, marks=pytest.mark.slow) for n in sorted(OFFICIAL_DEPLOY_PARAMS)[1:]]


def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    """timm's model with non-trivial BatchNorms, and ours holding its weights."""
    theirs = randomize_bn(timm.create_model(name)).eval()
    ours = ghostnets.create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    return (a - b).abs().max().item() <= rel * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("name", SWEEP)
def test_same_logits_as_timm_with_the_same_weights(name):
    ours, theirs = _pair(name)
    x = torch.randn(2, 3, 96, 80)  # non-square
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert b.abs().max().item() > 0.1
    assert _close(a, b, 1e-5)


@pytest.mark.parametrize("name", SWEEP)
def test_official_conversion_param_count(name):
    """timm's reparameterize_model is the official conversion; its count is the card's deploy_params."""
    from timm.utils.model import reparameterize_model

    official = reparameterize_model(timm.create_model(name))
    assert ghostnets.count_params(official) == OFFICIAL_DEPLOY_PARAMS[name]
    assert ghostnets.model_info(name).deploy_params == OFFICIAL_DEPLOY_PARAMS[name]
    ours = ghostnets.reparameterize(ghostnets.create_model(name))
    assert ghostnets.count_params(ours) < OFFICIAL_DEPLOY_PARAMS[name]  # ours folds the remaining BNs too


def test_reparameterize_is_equivalent_and_is_ghostnetv2():
    """The deployed GhostNetV3 is GhostNetV2: its state dict loads strictly into ghostnetv2(deploy=True)."""
    ours, _ = _pair("ghostnetv3_050")
    deployed = ghostnets.reparameterize(ours)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert not any("_rpr_" in k for k in deployed.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = ours(x), deployed(x)
        v2 = ghostnets.create_model("ghostnetv2_100", width=0.5, deploy=True).eval()
        v2.load_state_dict(deployed.state_dict(), strict=True)
        as_v2 = v2(x)
    assert _close(out, ref, 1e-4)
    assert torch.equal(as_v2, out)


def test_official_file_loads(tmp_path):
    """An official release file: a timm training checkpoint whose branch BNs are named ``bn``, EMA beside it."""
    ours_ref, theirs = _pair("ghostnetv3_050")
    ema = {k.replace(".bn1.", ".bn.") if "_rpr_" in k else k: v for k, v in theirs.state_dict().items()}
    assert any("primary_rpr_conv.0.bn.weight" in k for k in ema)
    noise = {k: v + 1 if v.is_floating_point() else v for k, v in ema.items()}
    path = tmp_path / "ghostnetv3-0.5.pth.tar"
    torch.save({"epoch": 3, "arch": "ghostnetv3", "state_dict": noise, "state_dict_ema": ema}, path)
    loaded = ghostnets.create_model("ghostnetv3_050", checkpoint_path=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _close(loaded(x), theirs(x), 1e-5)  # the EMA weights, as the published accuracy is
    deployed = ghostnets.create_model("ghostnetv3_050", checkpoint_path=path, deploy=True).eval()
    assert is_deploy(deployed)
    with torch.no_grad():
        assert _close(deployed(x), theirs(x), 1e-4)


def test_deploy_build_loads_own_deploy_file(tmp_path):
    ours, theirs = _pair("ghostnetv3_050")
    path = tmp_path / "v3_deploy.safetensors"
    ghostnets.save_checkpoint(ghostnets.reparameterize(ours), path)
    again = ghostnets.create_model(checkpoint_path=path).eval()
    assert is_deploy(again)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _close(again(x), theirs(x), 1e-4)


@pytest.mark.parametrize(("groups", "stride", "with_scale", "with_skip"),
                         [(1, 1, True, True), (8, 1, True, True), (8, 2, True, False), (1, 2, False, False)])
def test_branches_fuse_into_one_conv(groups, stride, with_scale, with_skip):
    """sum of k conv+BN branches (+1x1 scale +BN identity) == one conv, on a module built here by hand."""
    from ghostnets.layers.rep_branches import ConvBn

    convs = randomize_bn(conv_branches(3, 8, 8, 3, stride, groups=groups)).eval()
    scale = randomize_bn(ConvBn(8, 8, 1, stride, groups=groups)).eval() if with_scale else None
    skip = randomize_bn(nn.BatchNorm2d(8)).eval() if with_skip else None
    x = torch.randn(2, 8, 11, 9)
    with torch.no_grad():
        expected = sum(b(x) for b in convs) + (scale(x) if scale else 0) + (skip(x) if skip else 0)
        assert torch.allclose(sum_branches(x, convs, scale, skip), expected, atol=1e-6)
        assert torch.allclose(fuse_branches(convs, scale, skip)(x), expected, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 4])
def test_identity_kernel_copies_its_input(groups):
    x = torch.randn(1, 8, 5, 5)
    kernel = identity_kernel(8, groups, 3, x)
    assert torch.equal(torch.nn.functional.conv2d(x, kernel, padding=1, groups=groups), x)


def test_module_keys_and_branches_are_the_papers():
    """ghost1 of a DFC block: 3 primary and 3 cheap branches, a depthwise 1x1 cheap scale branch, a BN identity
    branch on the cheap op (init == new), no primary scale (1x1 primary) and no primary identity (in != init)."""
    m = GhostModuleV3(24, 72, use_dfc=True)
    keys = m.state_dict()
    assert keys["primary_rpr_conv.2.conv.weight"].shape == (36, 24, 1, 1)
    assert keys["cheap_rpr_conv.0.conv.weight"].shape == (36, 1, 3, 3)
    assert keys["cheap_rpr_scale.conv.weight"].shape == (36, 1, 1, 1)
    assert "cheap_rpr_skip.running_var" in keys and "primary_rpr_skip.weight" not in keys
    assert "primary_rpr_scale.conv.weight" not in keys and "primary_rpr_conv.3.conv.weight" not in keys
    assert keys["short_conv.4.weight"].shape == (72, 1, 5, 1)
    assert GhostModuleV3(36, 72).primary_rpr_skip is not None  # in == init at stride 1: the official condition


def test_num_branches_ablation():
    one = ghostnets.create_model("ghostnetv3_050", num_branches=1)
    three = ghostnets.create_model("ghostnetv3_050")
    assert ghostnets.count_params(one) < ghostnets.count_params(three)
    deployed = [ghostnets.count_params(ghostnets.reparameterize(m)) for m in (one, three)]
    assert deployed[0] == deployed[1]  # the branches are gone after fusing
    with pytest.raises(ValueError, match="num_branches"):
        ghostnets.create_model("ghostnetv3_050", num_branches=0)


def test_trains_and_features():
    model = ghostnets.create_model("ghostnetv3_050", num_classes=5, drop_path_rate=0.1).train()
    loss = model(torch.randn(2, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "_rpr_conv.2" in n)
    features = ghostnets.create_model("ghostnetv3_050", features_only=True).eval()
    maps = features(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in features.feature_info]


def test_official_deploy_form_file_loads(tmp_path):
    """A file of the official conversion (timm's reparameterize_model: summed biased convs, the DFC, shortcut and stem
    BNs kept) loads into ghostnetv3 in either form and computes what timm's deployed model computes."""
    from timm.utils.model import reparameterize_model

    _, theirs = _pair("ghostnetv3_050")
    official = reparameterize_model(theirs).eval()
    assert "blocks.1.0.conv_dw.bias" in official.state_dict()
    assert any(isinstance(m, nn.BatchNorm2d) for m in official.modules())  # the official deploy keeps these BNs
    path = tmp_path / "ghostnetv3_050_deploy.pth"
    torch.save(official.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    with pytest.warns(UserWarning, match="official deploy-form"):
        loaded = ghostnets.create_model("ghostnetv3_050", checkpoint_path=path)
    built_deployed = ghostnets.create_model("ghostnetv3_050", checkpoint_path=path, deploy=True).eval()
    with torch.no_grad():
        ref = official(x)
        assert is_deploy(loaded) and _close(loaded.eval()(x), ref, 1e-4)
        assert _close(built_deployed(x), ref, 1e-4)
