"""The paper's plug-and-play models (GhostNet §4.1, docs/reference.md §7) and the drop-in Ghost module.

Independent truths: parameter counts from a closed-form count of the published layer tables (written out here, not
read from the package), torchvision's ResNet-50 (same weights, same outputs), a Ghost module computed with
``F.conv2d`` by hand, and eager PyTorch for every deploy form.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers import GhostModule
from ghostnets.transforms import ghostify

CIFAR_MODELS = ["resnet56_cifar", "ghost_resnet56_cifar_s2", "vgg16_cifar", "ghost_vgg16_cifar_s2",
                "ghost_vgg16_cifar_s3", "ghost_vgg16_cifar_s4", "ghost_vgg16_cifar_s5"]
IMAGENET_MODELS = ["resnet50", "ghost_resnet50_s2", "ghost_resnet50_s4"]
# docs/reference.md §7: the paper's (params M, MAdds M)
PAPER = {"vgg16_cifar": (15, 313), "ghost_vgg16_cifar_s2": (7.7, 158), "ghost_vgg16_cifar_s3": (5.2, 107),
         "ghost_vgg16_cifar_s4": (4.0, 80), "ghost_vgg16_cifar_s5": (3.3, 65), "resnet56_cifar": (0.85, 125),
         "ghost_resnet56_cifar_s2": (0.43, 63), "resnet50": (25.6, 4100), "ghost_resnet50_s2": (13.0, 2200),
         "ghost_resnet50_s4": (6.5, 1200)}
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def conv_params(cin: int, cout: int, k: int, s: int | None, d: int = 3) -> int:
    """Weights + BN of a conv (s=None) or of its Ghost module (k x k primary, d x d cheap, BN after each)."""
    if s is None:
        return cin * cout * k * k + 2 * cout
    init = math.ceil(cout / s)
    return cin * init * k * k + 2 * init + init * (s - 1) * d * d + 2 * init * (s - 1) + 2 * cout


def vgg_params(s: int | None, classes: int = 10) -> int:
    total, cin = 0, 3
    for i, c in enumerate(x for x in VGG16 if x != "M"):
        total += conv_params(cin, c, 3, None if i == 0 else s)
        cin = c
    return total + 512 * 512 + 512 + 512 * classes + classes


def resnet56_params(s: int | None, classes: int = 10) -> int:
    total, cin = conv_params(3, 16, 3, None), 16
    for c in (16, 32, 64):
        for _ in range(9):
            total += conv_params(cin, c, 3, s) + conv_params(c, c, 3, s)
            cin = c
    return total + 64 * classes + classes


def resnet50_params(s: int | None, classes: int = 1000) -> int:
    total, cin = conv_params(3, 64, 7, None), 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            total += conv_params(cin, width, 1, s) + conv_params(width, width, 3, s)
            total += conv_params(width, 4 * width, 1, s)
            if b == 0:
                total += conv_params(cin, 4 * width, 1, s)
            cin = 4 * width
    return total + 2048 * classes + classes


EXPECTED_PARAMS = {
    "vgg16_cifar": vgg_params(None), **{f"ghost_vgg16_cifar_s{s}": vgg_params(s) for s in (2, 3, 4, 5)},
    "resnet56_cifar": resnet56_params(None), "ghost_resnet56_cifar_s2": resnet56_params(2),
    "resnet50": resnet50_params(None), "ghost_resnet50_s2": resnet50_params(2), "ghost_resnet50_s4": resnet50_params(4),
}


def _size(name: str) -> tuple[int, int]:
    return (32, 32) if "cifar" in name else (224, 224)


@pytest.mark.parametrize("name", CIFAR_MODELS + IMAGENET_MODELS)
def test_params_equal_closed_form_and_card(name):
    model = ghostnets.create_model(name)
    assert ghostnets.count_params(model) == EXPECTED_PARAMS[name] == ghostnets.model_info(name).params


def conv_madds(hw: int, cin: int, cout: int, k: int, s: int | None, d: int = 3) -> int:
    """Multiply-adds at an output of hw x hw of a conv (s=None) or of its Ghost module."""
    if s is None:
        return hw * hw * cout * cin * k * k
    init = math.ceil(cout / s)
    return hw * hw * (init * cin * k * k + init * (s - 1) * d * d)


def vgg_madds(s: int | None, classes: int = 10) -> int:
    total, cin, hw = 0, 3, 32
    for i, c in enumerate(VGG16):
        if c == "M":
            hw //= 2
            continue
        total += conv_madds(hw, cin, c, 3, None if i == 0 else s)
        cin = c
    return total + 512 * 512 + 512 * classes


def resnet56_madds(s: int | None, classes: int = 10) -> int:
    total, cin = conv_madds(32, 3, 16, 3, None), 16
    for c, hw in ((16, 32), (32, 16), (64, 8)):
        for _ in range(9):  # option A shortcuts: no conv
            total += conv_madds(hw, cin, c, 3, s) + conv_madds(hw, c, c, 3, s)
            cin = c
    return total + 64 * classes


def resnet50_madds(s: int | None, classes: int = 1000) -> int:
    total, cin, hw_in = conv_madds(112, 3, 64, 7, None), 64, 56
    for width, blocks, hw in ((64, 3, 56), (128, 4, 28), (256, 6, 14), (512, 3, 7)):
        for b in range(blocks):
            total += conv_madds(hw_in if b == 0 else hw, cin, width, 1, s) + conv_madds(hw, width, width, 3, s)
            total += conv_madds(hw, width, 4 * width, 1, s)
            if b == 0:
                total += conv_madds(hw, cin, 4 * width, 1, s)
            cin, hw_in = 4 * width, hw
    return total + 2048 * classes


EXPECTED_MADDS = {
    "vgg16_cifar": vgg_madds(None), **{f"ghost_vgg16_cifar_s{s}": vgg_madds(s) for s in (2, 3, 4, 5)},
    "resnet56_cifar": resnet56_madds(None), "ghost_resnet56_cifar_s2": resnet56_madds(2),
    "resnet50": resnet50_madds(None), "ghost_resnet50_s2": resnet50_madds(2), "ghost_resnet50_s4": resnet50_madds(4),
}


@pytest.mark.parametrize("name", CIFAR_MODELS + IMAGENET_MODELS)
def test_card_madds_equal_closed_form(name):
    assert ghostnets.model_info(name).madds == EXPECTED_MADDS[name]


@pytest.mark.parametrize("name", CIFAR_MODELS + IMAGENET_MODELS)
def test_madds_card_and_paper_gap_is_explained(name):
    card = ghostnets.model_info(name)
    madds = ghostnets.count_madds(ghostnets.create_model(name), _size(name))
    assert madds == pytest.approx(card.madds, rel=5e-3)
    assert card.eval_transform.input_size[1:] == _size(name)
    paper_params, paper_madds = PAPER[name]
    assert (card.paper_params_m, card.paper_madds_m) == (paper_params, paper_madds)
    if abs(card.params / 1e6 / paper_params - 1) > 0.03:
        assert "Params" in card.notes and f"{card.params / 1e6:.2f}M" in card.notes
    if abs(madds / 1e6 / paper_madds - 1) > 0.03:
        assert "MAdds" in card.notes and f"{madds / 1e6:.1f}M" in card.notes


def test_ghost_halves_the_cost_as_the_paper_says():
    r56, g56 = (ghostnets.count_madds(ghostnets.create_model(n), 32) for n in ("resnet56_cifar",
                                                                              "ghost_resnet56_cifar_s2"))
    assert 1.85 < r56 / g56 < 2.0
    vgg = ghostnets.count_madds(ghostnets.create_model("vgg16_cifar"), 32)
    for s in (2, 3, 4, 5):  # compression ~ s (k = d = 3)
        ghost = ghostnets.count_madds(ghostnets.create_model(f"ghost_vgg16_cifar_s{s}"), 32)
        assert 0.9 * s < vgg / ghost <= s


def test_resnet50_matches_torchvision_with_its_weights():
    tv = torchvision.models.resnet50().eval()
    randomize_bn(tv)
    ours = ghostnets.create_model("resnet50", channels_last=False).eval()
    ours.load_state_dict(tv.state_dict())  # strict: the same layout, key for key
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet56_cifar", "ghost_resnet56_cifar_s2", "ghost_vgg16_cifar_s3",
                                  "ghost_resnet50_s2"])
def test_reparameterize_and_deploy_build(name):
    model = randomize_bn(ghostnets.create_model(name)).eval()
    deployed = ghostnets.reparameterize(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    x = torch.randn(2, 3, 40, 40) if "cifar" in name else torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(deployed(x), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    built = ghostnets.create_model(name, deploy=True)
    assert built.deploy and {k: v.shape for k, v in built.state_dict().items()} == \
        {k: v.shape for k, v in deployed.state_dict().items()}


def test_model_api_on_plug_and_play_models():
    model = ghostnets.create_model("ghost_resnet56_cifar_s2", num_classes=7, in_chans=1).eval()
    x = torch.randn(3, 1, 32, 40)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (3, model.num_features, 8, 10)
        assert model.forward_head(feats, pre_logits=True).shape == (3, 64)
        assert model(x).shape == (3, 7)
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4]
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.record.kwargs["num_classes"] == 3
    with pytest.raises(ghostnets.InputShapeError, match="channels"):
        model(torch.randn(1, 3, 32, 32))
    vgg = ghostnets.create_model("vgg16_cifar")
    assert vgg.num_classes == 10 and vgg.get_classifier()[-1].out_features == 10
    with pytest.raises(ValueError, match="drop_path_rate"):
        ghostnets.create_model("vgg16_cifar", drop_path_rate=0.1)


def test_features_only_says_which_families_have_it():
    with pytest.raises(ValueError, match="features_only"):
        ghostnets.create_model("vgg16_cifar", features_only=True)
    taps = ghostnets.create_model("resnet56_cifar", features_only=True).eval()  # the ResNet skeleton has it
    with torch.no_grad():
        assert [t.shape[1:] for t in taps(torch.randn(1, 3, 32, 32))] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


# --------------------------------------------------------------------------------------------- the Ghost module


def _by_hand(m: GhostModule, x: torch.Tensor) -> torch.Tensor:
    """Eq. (2)-(3) of the paper from the module's weights with F.conv2d (BN in eval mode)."""
    p, pbn = m.primary_conv[0], m.primary_conv[1]
    c, cbn = m.cheap_operation[0], m.cheap_operation[1]
    y = F.batch_norm(F.conv2d(x, p.weight, None, p.stride, p.padding, p.dilation), pbn.running_mean,
                     pbn.running_var, pbn.weight, pbn.bias, eps=pbn.eps)
    g = F.batch_norm(F.conv2d(y, c.weight, None, 1, c.padding, 1, groups=y.shape[1]), cbn.running_mean,
                     cbn.running_var, cbn.weight, cbn.bias, eps=cbn.eps)
    return torch.cat([y, g], 1)[:, : m.out_channels]


@pytest.mark.parametrize(("cin", "cout", "k", "stride", "pad", "dil", "s", "d"),
                         [(8, 16, 3, 1, 1, 1, 2, 3), (8, 15, 3, 2, 2, 2, 2, 3), (6, 20, 1, 1, 0, 1, 3, 5),
                          (5, 7, 5, 2, 2, 1, 4, 3)])
def test_ghost_conv_matches_the_paper_by_hand(cin, cout, k, stride, pad, dil, s, d):
    m = randomize_bn(GhostModule(cin, cout, k, stride, pad, dil, ratio=s, dw_size=d)).eval()
    conv = nn.Conv2d(cin, cout, k, stride, pad, dil)
    x = torch.randn(2, cin, 17, 19)
    with torch.no_grad():
        out = m(x)
        assert out.shape == conv(x).shape  # same geometry as the conv it replaces
        torch.testing.assert_close(out, _by_hand(m, x))
    assert m.primary_conv[0].out_channels == math.ceil(cout / s)


@pytest.mark.parametrize("cout", [16, 15])
def test_absorbing_a_following_batchnorm_is_exact(cout):
    bn = nn.BatchNorm2d(cout)
    seq = randomize_bn(nn.Sequential(GhostModule(8, cout, 3, 1, 1, ratio=3), bn)).eval()
    with torch.no_grad():
        bn.weight[0] = 0.0  # a zero gamma (zero-init residual) must not break the fold
    deployed = ghostnets.reparameterize(seq)
    assert isinstance(deployed[1], nn.Identity)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), seq(x), rtol=1e-5, atol=1e-5)


def test_bad_ghost_arguments():
    for ratio in (1, 2.5, True):
        with pytest.raises(ValueError, match="ratio"):
            GhostModule(4, 8, 3, ratio=ratio)
    with pytest.raises(ValueError, match="dw_size"):
        GhostModule(4, 8, 3, dw_size=2)


def test_ghostify_rebuilds_the_registered_ghost_models():
    """Two code paths to the same architecture: ghostify() on the baseline and the registered Ghost version."""
    for base, ghost, s in (("resnet56_cifar", "ghost_resnet56_cifar_s2", 2),
                           ("vgg16_cifar", "ghost_vgg16_cifar_s4", 4)):
        shapes = {k: v.shape for k, v in ghostify(ghostnets.create_model(base), s).state_dict().items()}
        assert shapes == {k: v.shape for k, v in ghostnets.create_model(ghost).state_dict().items()}
    tv = ghostify(torchvision.models.resnet50(), 2, input_size=64)
    assert ghostnets.count_params(tv) == EXPECTED_PARAMS["ghost_resnet50_s2"]
