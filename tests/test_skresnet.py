"""SKNet-50 (arXiv 1903.06586) and the Selective Kernel conv against independent truths: timm's
``skresnext50_32x4d`` and ``SelectiveKernel`` (their state dicts, logits, counts and feature maps with the same
tensors) and the figures of REFERENCE-ZOO §6 (SKNet) copied here, never read from the cards."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.selective_kernel import SelectiveKernelConv, SKBottleneck, attention_width
from ghostnets.train import load_recipe

timm = pytest.importorskip("timm")

NAME = "skresnext50_32x4d"
PARAMS = 27_479_784  # REFERENCE-ZOO §6: timm's skresnext50_32x4d, computed
KEYS = 528  # len(timm.create_model("skresnext50_32x4d").state_dict())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@functools.cache
def _pair() -> tuple[nn.Module, nn.Module]:
    """timm's model with randomized BN and ours with its state dict (built once; tests must not change them)."""
    reference = randomize_bn(timm.create_model(NAME), torch.Generator().manual_seed(1)).eval()
    model = ghostnets.create_model(NAME).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return reference, model


def _timm_sk_kwargs() -> dict:
    return dict(rd_ratio=1 / 16, rd_divisor=32, split_input=False)  # timm's skresnext50_32x4d


# ------------------------------------------------------------------------------------------------------ timm


def test_timm_state_dict_loads_strictly_and_gives_timm_logits():
    reference, model = _pair()
    assert list(model.state_dict()) == list(reference.state_dict())  # timm's keys, in timm's order
    assert len(model.state_dict()) == KEYS
    assert ghostnets.count_params(model) == ghostnets.count_params(reference) == PARAMS
    x = torch.randn(2, 3, 64, 48)  # non-square
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


@pytest.mark.slow
def test_madds_and_the_card():
    reference, model = _pair()
    madds = ghostnets.count_madds(reference, (224, 224), in_chans=3)
    card = ghostnets.model_info(NAME)
    assert card.madds == ghostnets.count_madds(model, (224, 224))
    assert abs(card.madds - madds) <= 0.005 * madds
    assert card.params == PARAMS
    # SKNet README Table 2: SKNet-50 20.79 top-1 error at 224, 27.5M, 4.47 GFLOPs
    assert (card.top1, card.paper_params_m, card.paper_madds_m) == (79.21, 27.5, 4470)
    assert card.weights is None and "direct url" in card.notes.lower()  # timm: hf_hub_id only
    assert timm.create_model(NAME, pretrained=False).pretrained_cfg["url"] == ""
    assert load_recipe(card.recipe).epochs > 0 and card.eval_transform.input_size == (3, 224, 224)


@pytest.mark.slow
def test_features_only_are_timms_feature_maps():
    reference, model = _pair()
    taps = timm.create_model(NAME, features_only=True).eval()
    taps.load_state_dict({k: v for k, v in reference.state_dict().items() if k in taps.state_dict()}, strict=True)
    features = ghostnets.create_model(NAME, features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()},
                             strict=True)
    features.eval()
    assert [f["num_chs"] for f in model.feature_info] == taps.feature_info.channels()[1:] == [256, 512, 1024, 2048]
    assert [f["reduction"] for f in model.feature_info] == taps.feature_info.reduction()[1:] == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for got, want in zip(features(x), taps(x)[1:]):
            assert got.shape == want.shape and _rel(got, want) < 1e-5


@pytest.mark.slow
def test_deploy_form_folds_every_batchnorm_and_loads_into_a_model_built_deployed():
    _, model = _pair()
    assert_deploy_form(NAME, model, torch.randn(1, 3, 64, 64))


@pytest.mark.slow
def test_ghostify_runs():
    _, model = _pair()
    ghosted = ghostnets.ghostify(model, input_size=64)
    with torch.no_grad():
        assert ghosted.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert ghostnets.count_params(ghosted) < PARAMS


# ------------------------------------------------------------------------------------------------- the blocks


@pytest.mark.parametrize(("in_chs", "planes", "stride"), [(64, 64, 1), (256, 128, 2)])
def test_sk_bottleneck_is_timms(in_chs, planes, stride):
    from timm.models.sknet import SelectiveKernelBottleneck

    out = planes * 4
    shortcut = nn.Sequential(nn.Conv2d(in_chs, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    reference = randomize_bn(SelectiveKernelBottleneck(in_chs, planes, stride, shortcut, cardinality=32,
                                                       base_width=4, sk_kwargs=_timm_sk_kwargs())).eval()
    block = SKBottleneck(in_chs, planes, stride).eval()
    assert list(block.state_dict()) == list(reference.state_dict())
    block.load_state_dict(reference.state_dict(), strict=True)
    assert block.out_chs == out and block.conv2.attn.fc_reduce.out_channels == 32
    x = torch.randn(2, in_chs, 12, 10)
    with torch.no_grad():
        assert _rel(block(x), reference(x)) < 1e-5
        fused = ghostnets.reparameterize(block)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        assert _rel(fused(x), reference(x)) < 1e-5
        direct = SKBottleneck(in_chs, planes, stride).eval()
        direct.load_state_dict(block.state_dict())
        direct.fuse()  # the block's own fuse() folds everything, the SK attention's BN included
        assert not any(isinstance(m, nn.BatchNorm2d) for m in direct.modules())
        assert _rel(direct(x), reference(x)) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("num_paths", [2, 3])
def test_sk_conv_paths_are_dilated_3x3_and_equal_timms(num_paths):
    from timm.layers import SelectiveKernel

    # timm's kernel sizes 3, 5, 7 with keep_3x3 become 3x3 convs of dilation 1, 2, 3: the paper's M paths
    reference = randomize_bn(SelectiveKernel(64, 64, kernel_size=[3, 5, 7][:num_paths], stride=2, groups=8,
                                             rd_channels=32, split_input=False)).eval()
    conv = SelectiveKernelConv(64, 64, 2, num_paths=num_paths, groups=8).eval()
    assert [p.conv.dilation for p in conv.paths] == [(d, d) for d in range(1, num_paths + 1)]
    conv.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 64, 11, 9)
    with torch.no_grad():
        assert _rel(conv(x), reference(x)) < 1e-5
    # d = max(C / r, L), r = 16, L = 32 (REFERENCE-ZOO §6: 32, 32, 32, 64 on SKNet-50's 128 ... 1024)
    assert [attention_width(c) for c in (128, 256, 512, 1024)] == [32, 32, 32, 64]


@pytest.mark.slow
def test_attention_composes_as_timms_se():
    se_module = pytest.importorskip("ghostnets.layers.se_module")
    from timm.models.sknet import SelectiveKernelBottleneck

    reference = randomize_bn(SelectiveKernelBottleneck(256, 64, 1, None, cardinality=32, base_width=4,
                                                       sk_kwargs=_timm_sk_kwargs(), attn_layer="se")).eval()
    block = SKBottleneck(256, 64, 1, attn_layer=se_module.SEModule).eval()
    block.load_state_dict(reference.state_dict(), strict=True)
    assert isinstance(block.se, se_module.SEModule)
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        assert _rel(block(x), reference(x)) < 1e-5


def test_bad_input_names_the_rule():
    with pytest.raises(ValueError, match=r"num_paths \(M\) must be >= 2"):
        SelectiveKernelConv(64, 64, num_paths=1)
    with pytest.raises(ValueError, match=r"groups \(G=3\) must divide"):
        SelectiveKernelConv(64, 64, groups=3)
    with pytest.raises(ValueError, match="per group"):
        SKBottleneck(64, 4, groups=32, base_width=4)  # floor(4 * 4 / 64) = 0 channels per group
    with pytest.raises(ValueError, match="kernel_size must be 3"):
        create_block("sk", 64, 128, 2, kernel_size=5)
    with pytest.raises(ValueError, match="multiple of 4"):
        create_block("sk", 64, 130, 2)
    with pytest.raises(ValueError, match="cannot honour se_ratio"):
        create_block("sk", 64, 128, 2, se_ratio=0.25)
