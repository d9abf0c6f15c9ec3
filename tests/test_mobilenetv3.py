"""MobileNetV3 (arXiv 1905.02244) against independent truths: torchvision's models (state dicts, logits, counts and
meta), timm's models of the same names (their state dicts mapped on load, their logits, their feature taps), and
torchvision's InvertedResidual for the block (docs/reference.md §15; figures copied here, never read from the cards)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torchvision
from torch import nn

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.mobilenetv3_block import MobileNetV3Block
from ghostnets.models.mobilenetv3 import timm_to_torchvision

NAMES = ["mobilenetv3_small_100", "mobilenetv3_small_075", "mobilenetv3_large_100", "mobilenetv3_large_075"]
SWEEP = [n if n == NAMES[0] else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
# torchvision builder and width_mult of each name; the paper's top-1 of the 0.75 models (docs/reference.md §8)
TV = {"mobilenetv3_small_100": ("mobilenet_v3_small", 1.0), "mobilenetv3_small_075": ("mobilenet_v3_small", 0.75),
      "mobilenetv3_large_100": ("mobilenet_v3_large", 1.0), "mobilenetv3_large_075": ("mobilenet_v3_large", 0.75)}
PAPER_TOP1_075 = {"mobilenetv3_large_075": 73.3, "mobilenetv3_small_075": 65.4}
TV_WEIGHTS = {"mobilenetv3_large_100": torchvision.models.MobileNet_V3_Large_Weights,
              "mobilenetv3_small_100": torchvision.models.MobileNet_V3_Small_Weights}
# docs/reference.md §15: timm's feature_info (channels, reductions) and torchvision's state-dict tensor counts
TAPS = {"mobilenetv3_large_100": ([16, 24, 40, 112, 960], [2, 4, 8, 16, 32]),
        "mobilenetv3_small_100": ([16, 16, 24, 48, 576], [2, 4, 8, 16, 32])}
TENSORS = {"mobilenetv3_large_100": 312, "mobilenetv3_small_100": 244}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _torchvision(name: str) -> nn.Module:
    builder, width = TV[name]
    return randomize_bn(getattr(torchvision.models, builder)(width_mult=width), torch.Generator().manual_seed(1)).eval()


def _model(name: str, **kwargs) -> nn.Module:
    return randomize_bn(ghostnets.create_model(name, **kwargs), torch.Generator().manual_seed(2)).eval()


# ------------------------------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("name", SWEEP)
def test_torchvision_state_dict_loads_strictly_and_gives_torchvision_logits(name):
    reference = _torchvision(name)
    model = ghostnets.create_model(name).eval()
    assert list(model.state_dict()) == list(reference.state_dict())  # torchvision's keys, in torchvision's order
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
        assert _rel(model.forward_head(model.forward_features(x), pre_logits=True),
                    reference.classifier[:2](torch.flatten(reference.avgpool(reference.features(x)), 1))) < 1e-5


@pytest.mark.parametrize("name", SWEEP)
def test_counts_equal_torchvision_and_its_meta(name):
    builder, width = TV[name]
    card = ghostnets.model_info(name)
    reference = getattr(torchvision.models, builder)(width_mult=width)
    madds = ghostnets.count_madds(reference, (224, 224), in_chans=3)
    assert card.params == ghostnets.count_params(reference) == ghostnets.count_params(ghostnets.create_model(name))
    assert card.madds == madds == ghostnets.count_madds(ghostnets.create_model(name), (224, 224))
    assert card.eval_transform == ghostnets.registry.TORCHVISION_INPUT
    assert card.family == "mobilenetv3" and ghostnets.create_model(name).drop_rate == 0.2
    if name in TV_WEIGHTS:
        v1, v2 = TV_WEIGHTS[name].IMAGENET1K_V1, TV_WEIGHTS[name].DEFAULT
        assert card.params == v1.meta["num_params"] and round(madds / 1e9, 3) == v1.meta["_ops"]
        assert card.top1 == card.weights.top1 == v1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert card.weights.url == v1.url
        assert name == "mobilenetv3_small_100" or v2.url in card.notes
        assert len(ghostnets.create_model(name).state_dict()) == TENSORS[name]
    else:
        assert card.top1 == PAPER_TOP1_075[name] and card.weights is None


# ------------------------------------------------------------------------------------------------------- timm


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", pytest.param("mobilenetv3_large_100",
                                                                         marks=pytest.mark.slow)])
def test_timm_state_dict_loads_through_the_key_map_and_gives_timm_logits(name, tmp_path):
    timm = pytest.importorskip("timm")
    reference = randomize_bn(timm.create_model(name), torch.Generator().manual_seed(3)).eval()
    path = tmp_path / "model.pth"
    torch.save(reference.state_dict(), path)
    model = ghostnets.create_model(name, checkpoint_path=path).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
        assert _rel(model.forward_head(model.forward_features(x), pre_logits=True),
                    reference.forward_head(reference.forward_features(x), pre_logits=True)) < 1e-5
        channels, reductions = TAPS[name]
        assert [f["num_chs"] for f in model.feature_info] == channels
        assert [f["reduction"] for f in model.feature_info] == reductions
        timm_maps = timm.create_model(name, features_only=True)
        timm_maps.load_state_dict(reference.state_dict(), strict=False)
        for got, want in zip(model.forward_intermediates(x, intermediates_only=True), timm_maps.eval()(x)):
            assert _rel(got, want) < 1e-5


def test_other_state_dicts_pass_the_key_map_untouched():
    sd = ghostnets.create_model("ghostnet_050").state_dict()
    assert timm_to_torchvision(sd) is sd
    tv = torchvision.models.mobilenet_v3_small().state_dict()
    assert timm_to_torchvision(tv) is tv


# ------------------------------------------------------------------------------------------------- the block


@pytest.mark.parametrize("row", [(16, 3, 16, 16, True, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
                                 (40, 5, 240, 40, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2)])
def test_block_equals_torchvision_inverted_residual(row):
    from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig

    c_in, k, exp, out, se, act, stride = row
    cnf = InvertedResidualConfig(c_in, k, exp, out, se, act, stride, 1, 1.0)
    reference = randomize_bn(InvertedResidual(cnf, partial(nn.BatchNorm2d, eps=0.001, momentum=0.01))).eval()
    block = MobileNetV3Block(c_in, exp, out, k, stride, se_ratio=0.25 if se else 0.0,
                             act_layer=nn.Hardswish if act == "HS" else nn.ReLU).eval()
    assert list(block.state_dict()) == list(reference.state_dict())
    block.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, c_in, 12, 10)
    with torch.no_grad():
        assert _rel(block(x), reference(x)) < 1e-6
        fused = ghostnets.reparameterize(block)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        assert _rel(fused(x), reference(x)) < 1e-5


def test_registered_block_honours_the_interface():
    block = create_block("mbv3", 16, 24, 2, kernel_size=5, expansion=3, se_ratio=0.25, act_layer=nn.Hardswish)
    assert block.block[1][0].kernel_size == (5, 5) and block.block[1][0].out_channels == 48
    assert isinstance(block.block[2], nn.Module) and block.block[2].fc1.out_channels == 16  # divisible(48 // 4, 8)
    assert isinstance(block.block[0][2], nn.Hardswish)
    same = create_block("mbv3", 24, 24, 1, mid_chs=24)  # expanded == in: no expand conv
    assert len(same.block) == 2 and same.use_res_connect
    gn = create_block("mbv3", 16, 16, 1, norm_layer=lambda c: nn.GroupNorm(4, c))
    assert isinstance(gn.block[0][1], nn.GroupNorm)
    x = torch.randn(1, 16, 8, 8)
    assert block(x).shape == (1, 24, 4, 4) and gn(x).shape == x.shape


def test_bad_geometry_and_arguments_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        MobileNetV3Block(16, 64, 24, 3, 3)
    with pytest.raises(ValueError, match="must be odd"):
        MobileNetV3Block(16, 64, 24, 4, 1)
    with pytest.raises(ValueError, match="se_ratio"):
        MobileNetV3Block(16, 64, 24, 3, 1, se_ratio=1.5)
    with pytest.raises(ValueError, match=">= 1"):
        MobileNetV3Block(16, 0, 24, 3, 1)
    with pytest.raises(ValueError, match="deploy=False"):
        MobileNetV3Block(16, 64, 24, 3, 1, norm_layer=lambda c: nn.GroupNorm(1, c), deploy=True)
    with pytest.raises(ValueError, match="not both"):
        create_block("mbv3", 16, 24, 2, expansion=4, mid_chs=64)
    with pytest.raises(ValueError, match="arch"):
        ghostnets.models.mobilenetv3("medium")
    with pytest.raises(ValueError, match="width"):
        ghostnets.create_model("mobilenetv3_small_100", width=-1)
    with pytest.raises(ghostnets.InputShapeError):
        ghostnets.create_model("mobilenetv3_small_100", in_chans=1)(torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------------------- deploy and the API


@pytest.mark.parametrize("name", SWEEP)
def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed(name):
    assert_deploy_form(name, _model(name), torch.randn(2, 3, 64, 80), 1e-5)


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", pytest.param("mobilenetv3_large_100",
                                                                         marks=pytest.mark.slow)])
def test_features_only_and_intermediates(name):
    model = _model(name)
    channels, reductions = TAPS[name]
    features = ghostnets.create_model(name, features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()}, strict=True)
    assert not any(k.startswith("classifier.") for k in features.state_dict())
    assert [f["num_chs"] for f in features.feature_info] == channels
    features.eval()
    x = torch.randn(2, 3, 40, 72)  # non-square
    with torch.no_grad():
        maps = features(x)
        final, inter = model.forward_intermediates(x)
        assert [m.shape[1] for m in maps] == channels
        assert [tuple(m.shape[2:]) for m in maps] == [(-(-40 // r), -(-72 // r)) for r in reductions]
        for got, want in zip(maps, inter):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(final, model.forward_features(x))
        deployed = ghostnets.reparameterize(features)
        for got, want in zip(deployed(x), maps):
            assert _rel(got, want) < 1e-5
    two = ghostnets.create_model(name, features_only=True, out_indices=(0, 2))
    with torch.no_grad():
        assert [m.shape[1] for m in two.eval()(x)] == [channels[0], channels[2]]


def test_timm_api():
    from timm.models import group_parameters

    model = ghostnets.create_model("mobilenetv3_small_100", in_chans=1, num_classes=7, drop_path_rate=0.1)
    x = torch.randn(2, 1, 32, 48)
    assert model(x).shape == (2, 7)
    assert model.num_features == 576 and model.head_hidden_size == 1024 and model.classifier[2].p == 0.2
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 1024)
    hidden = model.classifier[0].weight.clone()
    model.reset_classifier(0)
    assert torch.equal(model.classifier[0].weight, hidden) and model.eval()(x).shape == (2, 1024)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.get_classifier() is model.classifier[3]
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        listed = [k for names in groups.values() for k in names]
        assert sorted(listed) == sorted(k for k, _ in model.named_parameters())
        assert groups[0] == [k for k, _ in model.named_parameters() if k.startswith("features.0.")]
    with pytest.raises(ghostnets.InputShapeError):
        model(torch.randn(1, 1, 16, 16))


@pytest.mark.runtimes
def test_onnx_export_computes_the_training_form(tmp_path):
    import numpy as np

    ort = pytest.importorskip("onnxruntime")
    from ghostnets.data.transforms import InputSpec
    from ghostnets.runtime import export_model

    model = _model("mobilenetv3_small_075")
    export_model(model, tmp_path / "m.onnx", format="onnx", spec=InputSpec(size=64, resize=73), class_names=["a"])
    x = torch.randn(1, 3, 64, 64)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1, np.abs(got).max()))


@pytest.mark.slow
def test_a_tiny_training_run(tmp_path):
    from pathlib import Path

    from ghostnets.train import load_recipe, train, update_config

    subset = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
    config = update_config(load_recipe("quick"), {"model": "mobilenetv3_small_075", "data": str(subset),
                                                  "batch_size": 32, "epochs": 1, "threads": 2}, "test")
    summary = train(config, tmp_path / "run", progress_bar=False)
    assert (tmp_path / "run").exists() and summary
