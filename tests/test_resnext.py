"""ResNeXt (arXiv 1611.05431) and Wide ResNet-50-2 (arXiv 1605.07146) on ImageNet, and ResNeXt's grouped bottleneck,
against independent truths: torchvision's ``resnext50_32x4d`` / ``resnext101_32x8d`` / ``wide_resnet50_2`` (state
dicts, logits, counts and weights meta), timm's same-name models (feature maps), and the published figures of
REFERENCE-ZOO §5 copied here, never read back from the cards."""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck as TVBottleneck

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.resnet_blocks import Bottleneck
from ghostnets.train import load_recipe
from ghostnets.transforms.prune import prunable_pairs

NAMES = ("resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2")
FAST = "resnext50_32x4d"
SWEEP = [n if n == FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
# REFERENCE-ZOO §5 (torchvision 0.28.0 meta): exact params and GMACs (torchvision's "GFLOPS" are GMAdds)
TV_COUNTS = {"resnext50_32x4d": (25_028_904, 4.23), "resnext101_32x8d": (88_791_336, 16.414),
             "wide_resnet50_2": (68_883_240, 11.398)}
TV_WEIGHTS = {"resnext50_32x4d": torchvision.models.ResNeXt50_32X4D_Weights,
              "resnext101_32x8d": torchvision.models.ResNeXt101_32X8D_Weights,
              "wide_resnet50_2": torchvision.models.Wide_ResNet50_2_Weights}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@functools.cache
def _reference(name: str) -> nn.Module:
    return randomize_bn(getattr(torchvision.models, name)(), torch.Generator().manual_seed(1)).eval()


@functools.cache
def _ours(name: str) -> nn.Module:
    model = ghostnets.create_model(name).eval()
    model.load_state_dict(_reference(name).state_dict(), strict=True)
    return model


# ------------------------------------------------------------------------------------------------ torchvision


@pytest.mark.parametrize("name", SWEEP)
def test_torchvision_state_dict_loads_strictly_and_gives_torchvision_logits(name):
    reference, model = _reference(name), _ours(name)  # _ours loads torchvision's state dict strictly
    assert list(model.state_dict()) == list(reference.state_dict())  # torchvision's keys, in its order
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_counts_equal_torchvision(name):
    params, gmacs = TV_COUNTS[name]
    weights = TV_WEIGHTS[name].IMAGENET1K_V1
    assert weights.meta["num_params"] == params and weights.meta["_ops"] == gmacs
    model, card = _ours(name), ghostnets.model_info(name)
    assert card.params == ghostnets.count_params(model) == ghostnets.count_params(_reference(name)) == params
    madds = ghostnets.count_madds(model, (224, 224))
    assert card.madds == madds == ghostnets.count_madds(_reference(name), (224, 224), in_chans=3)
    assert round(madds / 1e9, 3) == gmacs


def test_the_cards_of_the_torchvision_weights():
    # papers (REFERENCE-ZOO §5): ResNeXt README ResNeXt-50 32x4d 22.2 % top-1 error; WRN README WRN-50-2-bottleneck
    # 21.9 / 5.79 % error; the ResNeXt paper's Table 1: 25.0M params, 4.2 GFLOPs
    expected = {"resnext50_32x4d": (77.8, None, 25.0, 4200), "resnext101_32x8d": (79.312, 94.526, 88.8, 16414),
                "wide_resnet50_2": (78.1, 94.21, 68.9, 11398)}
    for name, (top1, top5, paper_params, paper_madds) in expected.items():
        card, weights = ghostnets.model_info(name), TV_WEIGHTS[name]
        v1, v2 = weights.IMAGENET1K_V1, weights.IMAGENET1K_V2
        assert card.weights.url == v1.url and card.weights.sha256 is None
        assert card.weights.top1 == v1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert v2.url in card.notes and str(v2.meta["_metrics"]["ImageNet-1K"]["acc@1"]) in card.notes
        assert (card.top1, card.top5, card.paper_params_m, card.paper_madds_m) == (top1, top5, paper_params,
                                                                                  paper_madds)
        assert card.eval_transform == ghostnets.registry.TORCHVISION_INPUT  # bilinear 256 -> 224, v1.transforms()
        assert (v1.transforms().resize_size, v1.transforms().crop_size) == ([256], [224])
    assert ghostnets.model_info("resnext50_32x4d").family == "resnext"
    assert ghostnets.model_info("wide_resnet50_2").family == "wide_resnet"
    recipe = load_recipe(ghostnets.model_info(FAST).recipe)  # torchvision's ResNeXt recipe: --epochs 100
    assert (recipe.opt, recipe.lr, recipe.lr_base_batch, recipe.weight_decay, recipe.epochs) == ("sgd", 0.1, 256,
                                                                                                 1e-4, 100)
    assert (recipe.sched, recipe.decay_epochs, recipe.decay_rate, recipe.smoothing, recipe.drop_rate) == (
        "step", 30, 0.1, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------- the block


@pytest.mark.parametrize(("in_chs", "planes", "stride", "groups", "base_width"),
                         [(64, 64, 1, 32, 4), (256, 128, 2, 32, 4), (64, 64, 1, 1, 128), (128, 32, 2, 8, 8)])
def test_grouped_bottleneck_is_torchvisions(in_chs, planes, stride, groups, base_width):
    downsample = None
    if stride != 1 or in_chs != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(in_chs, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    reference = TVBottleneck(in_chs, planes, stride, downsample, groups=groups, base_width=base_width)
    reference = randomize_bn(reference).eval()
    block = Bottleneck(in_chs, planes, stride, groups=groups, base_width=base_width).eval()
    block.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, in_chs, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x))
        deployed = ghostnets.reparameterize(block)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        assert _rel(deployed(x), reference(x)) < 1e-5


def test_registered_resnext_block_and_the_cardinality_rule():
    block = create_block("resnext", 64, 256, 2)  # ResNeXt-50's 32x4d template on 64 planes: inner width 128
    assert block.conv2.groups == 32 and block.conv2.weight.shape == (128, 4, 3, 3) and block.out_chs == 256
    assert create_block("resnext", 64, 256, 1, mid_chs=64).conv2.weight.shape == (64, 2, 3, 3)
    assert create_block("resnext", 64, 256, 1, kernel_size=5).conv2.padding == (2, 2)
    with pytest.raises(ValueError, match=r"cardinality \(groups=32\) must divide the inner width.*mid_chs = 48"):
        create_block("resnext", 64, 256, 1, mid_chs=48)
    with pytest.raises(ValueError, match="multiple of 4"):
        create_block("resnext", 64, 130)
    with pytest.raises(ValueError, match=r"'resnext' cannot honour se_ratio"):
        create_block("resnext", 64, 256, se_ratio=0.25)
    # through create_model: width 0.01 leaves 1 plane, int(1 * 4 / 64) * 32 = 0 channels for 32 groups
    with pytest.raises(ValueError, match=r"cardinality \(groups=32\).*int\(1 \* 4 / 64\) \* 32 = 0"):
        ghostnets.create_model(FAST, width=0.01)
    with pytest.raises(ValueError, match="integer >= 1"):
        Bottleneck(64, 64, 1, groups=0)
    with pytest.raises(ValueError, match="base_width"):
        ghostnets.models.resnext.resnext(base_width=0)
    with pytest.raises(ValueError, match="depth must be one of"):
        ghostnets.models.resnext.resnext(depth=34)
    with pytest.raises(TypeError, match="takes no argument 'cardinality'"):  # fixed by the name
        ghostnets.create_model(FAST, cardinality=8)


@pytest.mark.slow
def test_pruning_leaves_grouped_bottlenecks_alone():
    """prune.py's BLOCK_PAIRS take conv1 -> conv2 -> conv3 of a Bottleneck; with a grouped conv2 neither pair is
    prunable (slicing conv1's outputs would break conv2's groups), so none is offered; WRN's bottlenecks are."""
    resnext = ghostnets.models.resnext.resnext(depth=50, cardinality=32, base_width=4)
    assert not any(p.conv.startswith("layer") and ".conv" in p.conv for p in prunable_pairs(resnext))
    wide = ghostnets.models.resnext.resnext(depth=50, cardinality=1, base_width=128)
    assert {p.conv for p in prunable_pairs(wide)} >= {"layer1.0.conv1", "layer1.0.conv2", "layer4.2.conv2"}


# ------------------------------------------------------------------------------------------------ deploy form


@pytest.mark.slow
def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed():
    name = FAST  # grouped convs folded (WRN-50-2's are ungrouped, as ResNet-50's)
    assert_deploy_form(name, _ours(name), torch.randn(1, 3, 32, 40), 1e-4)


# ------------------------------------------------------------------------------------------ the timm-style API


@pytest.mark.slow
def test_features_only_are_timms_feature_maps():
    timm = pytest.importorskip("timm")
    taps = timm.create_model(FAST, features_only=True, out_indices=(2, 3, 4)).eval()
    reference = _reference(FAST)
    taps.load_state_dict({k: v for k, v in reference.state_dict().items() if k in taps.state_dict()}, strict=True)
    features = ghostnets.create_model(FAST, features_only=True, out_indices=(1, 2, 3)).eval()  # no stem tap
    features.load_state_dict({k: v for k, v in reference.state_dict().items() if k in features.state_dict()},
                             strict=True)
    assert [f["num_chs"] for f in features.feature_info] == taps.feature_info.channels() == [512, 1024, 2048]
    assert [f["reduction"] for f in features.feature_info] == taps.feature_info.reduction() == [8, 16, 32]
    x = torch.randn(1, 3, 64, 96)  # non-square
    with torch.no_grad():
        for got, want in zip(features(x), taps(x)):
            assert got.shape == want.shape and _rel(got, want) < 1e-5


@pytest.mark.slow
def test_ghostify_and_the_head():
    model = ghostnets.create_model(FAST, num_classes=7, in_chans=1)
    ghosted = ghostnets.ghostify(model, report=False)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert ghosted.eval()(x).shape == (1, 7)
        assert ghosted.conv1.weight.shape[1] == 1 and ghosted.layer1[0].conv2.groups == 32  # grouped convs kept
        assert model.eval().forward_head(model.forward_features(x), pre_logits=True).shape == (1, 2048)
