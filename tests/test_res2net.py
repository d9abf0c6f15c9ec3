"""Res2Net-50 (arXiv 1904.01169) and its hierarchical-split bottleneck against independent truths: timm's
``res2net50_*`` and ``Bottle2neck`` (the official layout; their state dicts, logits, counts and feature maps with the
same tensors) and the figures and release files of REFERENCE-ZOO §6 (Res2Net) copied here, never read from the cards."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.res2net import Bottle2neck
from ghostnets.train import load_recipe

timm = pytest.importorskip("timm")

FAST = "res2net50_26w_4s"
# REFERENCE-ZOO §6: timm's counts (computed); README params (M), top-1 / top-5 error; the official model_urls
PARAMS = {"res2net50_26w_4s": 25_699_120, "res2net50_48w_2s": 25_287_304, "res2net50_14w_8s": 25_059_816}
README = {"res2net50_26w_4s": (25.70, 22.01, 6.15), "res2net50_48w_2s": (25.29, 22.68, 6.47),
          "res2net50_14w_8s": (25.06, 21.86, 6.14)}
URLS = {
    "res2net50_26w_4s": "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net50_26w_4s-06e79181.pth",
    "res2net50_48w_2s": "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net50_48w_2s-afed724a.pth",
    "res2net50_14w_8s": "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net50_14w_8s-6527dddc.pth",
}
SWEEP = [n if n == FAST else pytest.param(n, marks=pytest.mark.slow) for n in PARAMS]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@functools.cache
def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    """timm's model with randomized BN and ours with its state dict (built once; tests must not change them)."""
    reference = randomize_bn(timm.create_model(name), torch.Generator().manual_seed(1)).eval()
    model = ghostnets.create_model(name).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return reference, model


# ------------------------------------------------------------------------------------------------------ timm


@pytest.mark.parametrize("name", SWEEP)
def test_timm_state_dict_loads_strictly_and_gives_timm_logits(name):
    reference, model = _pair(name)
    assert list(model.state_dict()) == list(reference.state_dict())  # the official keys, in their order
    assert ghostnets.count_params(model) == ghostnets.count_params(reference) == PARAMS[name]
    x = torch.randn(2, 3, 48, 64)  # non-square
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PARAMS))
def test_madds_and_the_cards(name):
    reference, model = _pair(name)
    madds = ghostnets.count_madds(reference, (224, 224), in_chans=3)
    card = ghostnets.model_info(name)
    assert card.madds == ghostnets.count_madds(model, (224, 224))
    assert abs(card.madds - madds) <= 0.005 * madds
    params_m, err1, err5 = README[name]
    assert (card.params, card.paper_params_m, card.paper_madds_m) == (PARAMS[name], params_m, 4200)
    assert card.top1 == pytest.approx(100 - err1) and card.top5 == pytest.approx(100 - err5)
    assert card.weights.url == URLS[name] and card.weights.top1 == card.top1 and card.weights.sha256 is None
    assert "CC BY-NC-SA" in card.notes
    assert card.eval_transform.interpolation == "bilinear" and card.eval_transform.input_size == (3, 224, 224)
    assert load_recipe(card.recipe).epochs > 0


@pytest.mark.slow
def test_features_only_are_timms_feature_maps():
    reference, model = _pair(FAST)
    taps = timm.create_model(FAST, features_only=True).eval()
    taps.load_state_dict({k: v for k, v in reference.state_dict().items() if k in taps.state_dict()}, strict=True)
    features = ghostnets.create_model(FAST, features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()},
                             strict=True)
    features.eval()
    assert [f["num_chs"] for f in model.feature_info] == taps.feature_info.channels()[1:] == [256, 512, 1024, 2048]
    assert [f["reduction"] for f in model.feature_info] == taps.feature_info.reduction()[1:] == [4, 8, 16, 32]
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        for got, want in zip(features(x), taps(x)[1:]):
            assert got.shape == want.shape and _rel(got, want) < 1e-5


@pytest.mark.slow
def test_deploy_form_folds_every_batchnorm_and_loads_into_a_model_built_deployed():
    _, model = _pair(FAST)
    assert_deploy_form(FAST, model, torch.randn(1, 3, 64, 64))


@pytest.mark.slow
def test_ghostify_runs():
    _, model = _pair(FAST)
    ghosted = ghostnets.ghostify(model, input_size=64)
    with torch.no_grad():
        assert ghosted.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert ghostnets.count_params(ghosted) < PARAMS[FAST]


# -------------------------------------------------------------------------------------------------- the block


@pytest.mark.parametrize(("in_chs", "planes", "stride", "width", "scale"),
                         [(64, 64, 1, 26, 4), (256, 64, 1, 26, 4),
                          pytest.param(256, 128, 2, 48, 2, marks=pytest.mark.slow),
                          pytest.param(512, 128, 1, 14, 8, marks=pytest.mark.slow)])
def test_block_is_timms_bottle2neck(in_chs, planes, stride, width, scale):
    from timm.models.res2net import Bottle2neck as TimmBottle2neck

    out = planes * 4
    shortcut = None if (stride, in_chs) == (1, out) else nn.Sequential(
        nn.Conv2d(in_chs, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    reference = randomize_bn(TimmBottle2neck(in_chs, planes, stride, shortcut, base_width=width, scale=scale,
                                             norm_layer=nn.BatchNorm2d)).eval()
    block = Bottle2neck(in_chs, planes, stride, base_width=width, scale=scale).eval()
    assert list(block.state_dict()) == list(reference.state_dict())
    block.load_state_dict(reference.state_dict(), strict=True)
    # the official stype='stage' (no hierarchy, pooled last chunk) exactly where timm's is_first holds
    assert block.first == reference.is_first and (block.pool is None) == (reference.pool is None)
    assert block.width == planes * width // 64 and len(block.convs) == scale - 1 and block.out_chs == out
    x = torch.randn(2, in_chs, 12, 10)
    with torch.no_grad():
        assert _rel(block(x), reference(x)) < 1e-5
        direct = Bottle2neck(in_chs, planes, stride, base_width=width, scale=scale).eval()
        direct.load_state_dict(block.state_dict())
        direct.fuse()  # the block's own fuse() folds bn1, every bns.i, bn3 and the projection's BN
        assert not any(isinstance(m, nn.BatchNorm2d) for m in direct.modules())
        assert _rel(direct(x), reference(x)) < 1e-5


@pytest.mark.slow
def test_attention_composes_as_timms_se():
    se_module = pytest.importorskip("ghostnets.layers.se_module")
    from timm.layers import SEModule as TimmSE
    from timm.models.res2net import Bottle2neck as TimmBottle2neck

    reference = randomize_bn(TimmBottle2neck(256, 64, 1, None, norm_layer=nn.BatchNorm2d, attn_layer=TimmSE)).eval()
    block = Bottle2neck(256, 64, 1, attn_layer=se_module.SEModule).eval()
    block.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        assert _rel(block(x), reference(x)) < 1e-5


def test_bad_input_names_the_rule():
    with pytest.raises(ValueError, match=r"scale \(s\) must be >= 2"):
        Bottle2neck(64, 64, scale=1)
    with pytest.raises(ValueError, match="per group"):
        Bottle2neck(64, 2, base_width=26)  # floor(2 * 26 / 64) = 0
    with pytest.raises(ValueError, match="kernel_size must be 3"):
        create_block("res2net", 64, 128, 2, kernel_size=5)
    with pytest.raises(ValueError, match="multiple of 4"):
        create_block("res2net", 64, 130, 2)
    with pytest.raises(ValueError, match="cannot honour mid_chs"):
        create_block("res2net", 64, 128, 2, mid_chs=32)


@pytest.mark.slow
def test_pretrained_loads_the_official_release_file_from_the_cache(tmp_path, monkeypatch):
    """An official file (a plain state dict under its release name) in the cache: pretrained=True loads it."""
    from ghostnets import hub

    reference, _ = _pair(FAST)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    torch.save(reference.state_dict(), tmp_path / URLS[FAST].rsplit("/", 1)[-1])
    model = ghostnets.create_model(FAST, pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
