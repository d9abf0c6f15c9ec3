"""The CIFAR ResNeXt-29 (arXiv 1611.05431) and Wide ResNet (arXiv 1605.07146) against independent truths: pytorchcv's
``resnext29_16x64d_cifar10`` / ``wrn28_10_cifar10`` and the same builders at 8x64d / WRN-16-8 (their logits with the
same weights, mapped by order and shape; their counts), and the counts of docs/reference.md ("CIFAR ResNeXt-29",
"CIFAR WRN"; REFERENCE-ZOO §5) copied here, never read from the cards."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.wide_basic import ChannelAffine, WideBasic
from ghostnets.train import load_recipe

pytorchcv = pytest.importorskip("pytorchcv")
from pytorchcv.model_provider import get_model  # noqa: E402
from pytorchcv.models.preresnet import PreResUnit  # noqa: E402
from pytorchcv.models.resnext_cifar import get_resnext_cifar  # noqa: E402
from pytorchcv.models.wrn_cifar import get_wrn_cifar  # noqa: E402

# REFERENCE-ZOO §5 (PyTorch transcriptions of the official Lua / szagoruyko's code, convs without bias; 10 classes)
PARAMS = {"resnext29_8x64d_cifar": 34_426_698, "resnext29_16x64d_cifar": 68_155_210,
          "wrn28_10_cifar": 36_479_194, "wrn16_8_cifar": 10_961_370}
# REFERENCE-ZOO §5 "MACs @32" (rounded there): 5.39G, 10.69G, 5.24G, 1.55G
MACS_G = {"resnext29_8x64d_cifar": 5.39, "resnext29_16x64d_cifar": 10.69, "wrn28_10_cifar": 5.24, "wrn16_8_cifar": 1.55}
# the reference of each: pytorchcv's registered model where it has one, else its builder with the same arguments
REFERENCES = {
    "resnext29_16x64d_cifar": lambda: get_model("resnext29_16x64d_cifar10", pretrained=False),
    "wrn28_10_cifar": lambda: get_model("wrn28_10_cifar10", pretrained=False),
    "resnext29_8x64d_cifar": lambda: get_resnext_cifar(10, blocks=29, cardinality=8, bottleneck_width=64),
    "wrn16_8_cifar": lambda: get_wrn_cifar(10, blocks=16, width_factor=8),
}
FAST = ("resnext29_8x64d_cifar", "wrn16_8_cifar")
SWEEP = [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in PARAMS]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@functools.cache
def _reference(name: str) -> nn.Module:
    return randomize_bn(REFERENCES[name](), torch.Generator().manual_seed(1)).eval()


@functools.cache
def _ours(name: str) -> nn.Module:
    return ghostnets.create_model(name).eval()


def by_order(model: nn.Module, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorchcv's state dict under our keys: the same tensors in the same order (pytorchcv's ``features.init_block``,
    ``stageS.unitJ.body.convI.{conv,bn}``, ``identity_conv``, ``post_activ``, ``output`` are our ``conv1``/``bn1``,
    ``layerS.(J-1).{convI,bnI}``, ``downsample`` / ``shortcut``, ``bn``, ``fc``); each pair must agree in shape and in
    its last name part (weight, bias, running_mean, ...)."""
    ours = model.state_dict()
    assert len(ours) == len(reference), (len(ours), len(reference))
    for (key, mine), (theirs, value) in zip(ours.items(), reference.items()):
        assert mine.shape == value.shape and key.rsplit(".", 1)[-1] == theirs.rsplit(".", 1)[-1], (key, theirs)
    return dict(zip(ours, reference.values()))


def _check_same_logits(name: str) -> None:
    reference, model = _reference(name), _ours(name)
    model.load_state_dict(by_order(model, reference.state_dict()), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


def _check_counts(name: str) -> None:
    reference, model, card = _reference(name), _ours(name), ghostnets.model_info(name)
    assert ghostnets.count_params(model) == ghostnets.count_params(reference) == PARAMS[name] == card.params
    madds = ghostnets.count_madds(model, (32, 32))
    theirs = ghostnets.count_madds(reference, (32, 32), in_chans=3)
    assert abs(madds - theirs) <= 0.005 * theirs and card.madds == madds
    assert round(madds / 1e9, 2) == MACS_G[name]


# ------------------------------------------------------------------------------------- the reference's logits


@pytest.mark.parametrize("name", FAST)
def test_fast_tier_same_logits_and_counts_as_pytorchcv(name):
    _check_same_logits(name)
    _check_counts(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnext29_16x64d_cifar", "wrn28_10_cifar"])
def test_pytorchcv_registered_models_same_logits_and_counts(name):
    _check_same_logits(name)
    _check_counts(name)


@pytest.mark.slow
def test_cards_hold_the_papers_figures():
    # top1 = 100 - CIFAR-10 error: ResNeXt Table 7 (3.65 / 3.58); WRN README (4.00, -dropout 3.89), paper (4.27)
    expected = {"resnext29_8x64d_cifar": (96.35, 34.4), "resnext29_16x64d_cifar": (96.42, 68.1),
                "wrn28_10_cifar": (96.0, 36.5), "wrn28_10_dropout_cifar": (96.11, 36.5), "wrn16_8_cifar": (95.73, 11.0)}
    for name, (top1, params_m) in expected.items():
        card = ghostnets.model_info(name)
        assert (card.top1, card.paper_params_m, card.dataset) == (top1, params_m, "CIFAR-10")
        assert card.eval_transform.input_size == (3, 32, 32)
    assert ghostnets.model_info("wrn28_10_dropout_cifar").params == PARAMS["wrn28_10_cifar"]


@pytest.mark.slow
def test_the_dropout_variant_and_argument():
    model = ghostnets.create_model("wrn16_8_cifar", dropout=0.3)
    drops = [b.drop for b in model.modules() if isinstance(b, WideBasic)]
    assert len(drops) == 6 and all(isinstance(d, nn.Dropout) and d.p == 0.3 for d in drops)
    x = torch.randn(1, 3, 32, 32)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.equal(a, model(x))  # dropout is active in training
    from ghostnets.models.wrn_cifar import FAMILY

    assert FAMILY.variants["wrn28_10_dropout_cifar"].builder_kwargs == dict(depth=28, widen_factor=10, dropout=0.3)


# ----------------------------------------------------------------------------------------------- the block


@pytest.mark.parametrize(("in_chs", "out_chs", "stride"), [(16, 32, 1), (32, 64, 2), (24, 24, 1)])
def test_wide_basic_is_pytorchcvs_pre_activation_unit_and_deploys(in_chs, out_chs, stride):
    reference = randomize_bn(PreResUnit(in_chs, out_chs, stride, bottleneck=False, conv1_stride=False)).eval()
    block = create_block("wide_basic", in_chs, out_chs, stride, kernel_size=3).eval()
    assert (block.shortcut is None) == (stride == 1 and in_chs == out_chs)
    block.load_state_dict(by_order(block, reference.state_dict()), strict=True)
    x = torch.randn(2, in_chs, 12, 10)
    with torch.no_grad():
        want = reference(x)
        assert _rel(block(x), want) < 1e-5
        deployed = ghostnets.reparameterize(block)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        assert isinstance(deployed.bn1, ChannelAffine)  # a norm on a residual sum: no conv can take it
        assert _rel(deployed(x), want) < 1e-5
        built = WideBasic(in_chs, out_chs, stride, deploy=True).eval()
        built.load_state_dict(deployed.state_dict(), strict=True)
        torch.testing.assert_close(built(x), deployed(x))
    assert "kernel_size" in str(pytest.raises(ValueError, WideBasic, 16, 16, kernel_size=4).value)


def test_clear_errors_name_the_rule():
    with pytest.raises(ValueError, match=r"6n \+ 4"):
        ghostnets.models.wrn_cifar(depth=27)
    with pytest.raises(ValueError, match="widen_factor"):
        ghostnets.models.wrn_cifar(depth=16, widen_factor=0)
    with pytest.raises(ValueError, match=r"dropout .* \[0, 1\)"):
        ghostnets.models.wrn_cifar(depth=16, widen_factor=1, dropout=1.5)
    from ghostnets.models.resnext_cifar import resnext_cifar

    with pytest.raises(ValueError, match="base_width"):
        resnext_cifar(cardinality=8, base_width=0)
    with pytest.raises(ValueError, match="cardinality C"):
        resnext_cifar(cardinality=0)
    with pytest.raises(ValueError, match="'wide_basic' cannot honour se_ratio"):
        create_block("wide_basic", 16, 16, se_ratio=0.25)


# ---------------------------------------------------------------------------------- deploy and the timm API


# the ResNeXt-29 of the API tests at a quarter of the width (its 34M parameters would only cost time)
SMALL = [("wrn16_8_cifar", 1.0), ("resnext29_8x64d_cifar", 0.25)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "width"), SMALL)
def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed(name, width):
    model = _ours(name) if width == 1.0 else ghostnets.create_model(name, width=width).eval()
    randomize_bn(model, torch.Generator().manual_seed(3))
    deployed = ghostnets.reparameterize(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        assert _rel(deployed(x), model(x)) < 1e-4
    built = ghostnets.create_model(name, deploy=True, width=width).eval()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in built.modules())
    built.load_state_dict(deployed.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(built(x), deployed(x))
    if name.startswith("wrn"):  # the first block's bn1 went into the stem conv; the others stay affine
        assert type(deployed.layer1[0].bn1) is nn.Identity and isinstance(deployed.layer2[0].bn1, ChannelAffine)
        assert isinstance(deployed.bn, ChannelAffine)


@pytest.mark.slow
def test_wrn_with_an_identity_first_block_keeps_its_pre_activation_affine():
    model = randomize_bn(ghostnets.models.wrn_cifar(depth=10, widen_factor=1)).eval()  # 16 -> 16: no projection
    deployed = ghostnets.reparameterize(model)
    assert deployed.layer1[0].shortcut is None and isinstance(deployed.layer1[0].bn1, ChannelAffine)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _rel(deployed(x), model(x)) < 1e-5
    ghostnets.models.wrn_cifar(depth=10, widen_factor=1, deploy=True).load_state_dict(deployed.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "width", "channels"), [(*SMALL[0], [128, 256, 512]), (*SMALL[1], [64, 128, 256])])
def test_features_only_gives_the_maps_at_strides_1_2_4(name, width, channels):
    model = _ours(name) if width == 1.0 else ghostnets.create_model(name, width=width).eval()
    randomize_bn(model, torch.Generator().manual_seed(4))
    assert [f["num_chs"] for f in model.feature_info] == channels
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4]
    features = ghostnets.create_model(name, features_only=True, width=width)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()},
                             strict=True)
    assert not any(k.startswith("fc.") for k in features.state_dict())
    features.eval()
    x = torch.randn(1, 3, 40, 32)  # non-square
    with torch.no_grad():
        maps = features(x)
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))  # WRN: after the final BN -> ReLU
        assert [m.shape[-2:] for m in maps] == [(40, 32), (20, 16), (10, 8)]
        for got, own in zip(maps, inter):
            torch.testing.assert_close(got, own)
        deployed = ghostnets.reparameterize(features)
        for got, want in zip(deployed(x), maps):
            assert _rel(got, want) < 1e-4
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (1, channels[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "width"), SMALL)
def test_ghostify_runs(name, width):
    model = _ours(name) if width == 1.0 else ghostnets.create_model(name, width=width).eval()
    ghosted = ghostnets.ghostify(model, report=False).eval()
    assert ghostnets.count_params(ghosted) < ghostnets.count_params(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = ghosted(x)
        assert out.shape == (1, 10)
        assert _rel(ghostnets.reparameterize(ghosted)(x), out) < 1e-4  # the Ghost modules' BNs fold too


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "model", "epochs", "milestones", "rate"),
                         [("wrn_cifar", "wrn28_10_cifar", 200, [60, 120, 160], 0.2),
                          ("resnext_cifar", "resnext29_16x64d_cifar", 300, [150, 225], 0.1)])
def test_the_recipes_load_and_name_the_model(recipe, model, epochs, milestones, rate):
    config = load_recipe(recipe)
    assert config.model == model and ghostnets.model_info(model).recipe == recipe
    assert (config.opt, config.lr, config.lr_base_batch, config.batch_size, config.momentum) == ("sgd", 0.1, 128, 128,
                                                                                                0.9)
    assert (config.weight_decay, config.epochs, config.sched) == (5e-4, epochs, "multistep")
    assert (config.decay_milestones, config.decay_rate, config.smoothing) == (milestones, rate, 0.0)
