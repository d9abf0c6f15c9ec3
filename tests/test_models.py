"""Model-level tests of ghostnets against independent truths: docs/reference.md figures, timm's ports, eager PyTorch.

Every expected number below is copied from docs/reference.md (sections 1, 2, 4, 5, 9), never read from the package's
model cards: the cards are under test too.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers import DropPath, RepGhostModule

ALL_MODELS = [
    "ghostnet_050", "ghostnet_100", "ghostnet_130",
    "ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160",
    "ghostnetv3_050", "ghostnetv3_100", "ghostnetv3_130", "ghostnetv3_160",
    "repghostnet_050", "repghostnet_058", "repghostnet_080", "repghostnet_100",
    "repghostnet_111", "repghostnet_130", "repghostnet_150", "repghostnet_200",
]
REPGHOST_MODELS = [n for n in ALL_MODELS if n.startswith("repghostnet")]
# G-GhostNet and its RegNetX bases (tests/test_g_ghostnet.py checks them; their layout is not GhostNet's)
G_GHOST_MODELS = ["g_ghost_regnetx_032", "g_ghost_regnetx_040", "g_ghost_regnetx_080", "g_ghost_regnetx_160",
                  "regnet_x_16gf", "regnet_x_3_2gf", "regnet_x_8gf"]
ONE_PER_FAMILY = ["ghostnet_100", "ghostnetv2_100", "ghostnetv3_100", "repghostnet_100"]
# every registered width; all but one per family are the slow tier (make test-fast runs ONE_PER_FAMILY)
SWEEP = [n if n in ONE_PER_FAMILY else pytest.param(n, marks=pytest.mark.slow) for n in ALL_MODELS]

# docs/reference.md §1, §2, §4: exact parameter counts of the official classes (training form).
PARAMS = {
    "ghostnet_050": 2_587_292, "ghostnet_100": 5_182_508, "ghostnet_130": 7_358_820,
    "ghostnetv2_100": 6_156_908, "ghostnetv2_130": 8_960_404, "ghostnetv2_160": 12_392_698,
    "ghostnetv3_050": 3_395_384, "ghostnetv3_100": 8_129_028, "ghostnetv3_130": 12_217_720,
    "ghostnetv3_160": 17_275_700,
    "repghostnet_050": 2_313_968, "repghostnet_058": 2_546_388, "repghostnet_080": 3_278_968,
    "repghostnet_100": 4_073_604, "repghostnet_111": 4_539_984, "repghostnet_130": 5_478_612,
    "repghostnet_150": 6_575_336, "repghostnet_200": 9_796_124,
}
# docs/reference.md §4 "deploy params": the official deploy form (only the RepGhost modules re-parameterized).
DEPLOY_PARAMS = {
    "repghostnet_050": 2_306_528, "repghostnet_058": 2_537_736, "repghostnet_080": 3_267_112,
    "repghostnet_100": 4_058_772, "repghostnet_111": 4_523_568, "repghostnet_130": 5_459_316,
    "repghostnet_150": 6_553_064, "repghostnet_200": 9_766_460,
}
# docs/reference.md: computed MAdds at 1x3x224x224 (conv + linear multiply-accumulates).
MADDS = {
    "ghostnet_050": 42.3e6, "ghostnet_100": 141.2e6, "ghostnet_130": 227.0e6,
    "ghostnetv2_100": 167.0e6, "ghostnetv2_130": 269.3e6, "ghostnetv2_160": 398.6e6,
    "ghostnetv3_050": 117.5e6, "ghostnetv3_100": 404.1e6, "ghostnetv3_130": 654.8e6, "ghostnetv3_160": 971.6e6,
    "repghostnet_050": 43.3e6, "repghostnet_058": 59.8e6, "repghostnet_080": 95.5e6, "repghostnet_100": 142.4e6,
    "repghostnet_111": 170.1e6, "repghostnet_130": 231.1e6, "repghostnet_150": 301.3e6, "repghostnet_200": 515.9e6,
}
TOP1 = {
    "ghostnet_050": 66.2, "ghostnet_100": 73.9, "ghostnet_130": 75.7,
    "ghostnetv2_100": 75.3, "ghostnetv2_130": 76.9, "ghostnetv2_160": 77.8,
    "ghostnetv3_050": 69.4, "ghostnetv3_100": 77.1, "ghostnetv3_130": 79.1, "ghostnetv3_160": 80.4,
    "repghostnet_050": 66.9, "repghostnet_058": 68.9, "repghostnet_080": 72.2, "repghostnet_100": 74.2,
    "repghostnet_111": 75.1, "repghostnet_130": 76.4, "repghostnet_150": 77.5, "repghostnet_200": 78.8,
}
WIDTHS = {
    "ghostnet_050": 0.5, "ghostnet_100": 1.0, "ghostnet_130": 1.3,
    "ghostnetv2_100": 1.0, "ghostnetv2_130": 1.3, "ghostnetv2_160": 1.6,
    "ghostnetv3_050": 0.5, "ghostnetv3_100": 1.0, "ghostnetv3_130": 1.3, "ghostnetv3_160": 1.6,
    "repghostnet_050": 0.5, "repghostnet_058": 0.58, "repghostnet_080": 0.8, "repghostnet_100": 1.0,
    "repghostnet_111": 1.11, "repghostnet_130": 1.3, "repghostnet_150": 1.5, "repghostnet_200": 2.0,
}
# docs/reference.md §4: RepGhostNet stem / final channels by width.
REPGHOST_STEM_FINAL = {
    "repghostnet_050": (8, 480), "repghostnet_058": (12, 556), "repghostnet_080": (12, 768),
    "repghostnet_100": (16, 960), "repghostnet_111": (16, 1064), "repghostnet_130": (20, 1248),
    "repghostnet_150": (24, 1440), "repghostnet_200": (32, 1920),
}
# docs/reference.md §1: per-bottleneck channels of GhostNet (the same table serves GhostNetV2, §2).
GHOSTNET_CHANNELS = {
    0.5: dict(stem=8, final=480,
              mids=[8, 24, 36, 36, 60, 120, 100, 92, 92, 240, 336, 336, 480, 480, 480, 480],
              outs=[8, 12, 12, 20, 20, 40, 40, 40, 40, 56, 56, 80, 80, 80, 80, 80]),
    1.0: dict(stem=16, final=960,
              mids=[16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 960],
              outs=[16, 24, 24, 40, 40, 80, 80, 80, 80, 112, 112, 160, 160, 160, 160, 160]),
    1.3: dict(stem=20, final=1248,
              mids=[20, 64, 92, 92, 156, 312, 260, 240, 240, 624, 872, 872, 1248, 1248, 1248, 1248],
              outs=[20, 32, 32, 52, 52, 104, 104, 104, 104, 144, 144, 208, 208, 208, 208, 208]),
}
# docs/reference.md §4: RepGhostNet 1.0x exp (mid) channels; outs are GhostNet's.
REPGHOST_100_MIDS = [8, 24, 36, 36, 60, 120, 100, 120, 120, 240, 336, 336, 480, 480, 480, 480]
# docs/reference.md §1 table: (out, stride) per bottleneck, to derive identity shortcuts and feature taps independently.
TABLE_OUT_STRIDE = [(16, 1), (24, 2), (24, 1), (40, 2), (40, 1), (80, 2), (80, 1), (80, 1), (80, 1), (112, 1),
                    (112, 1), (160, 2), (160, 1), (160, 1), (160, 1), (160, 1)]
BLOCK_NAMES = ["blocks.0.0", "blocks.1.0", "blocks.2.0", "blocks.3.0", "blocks.4.0", "blocks.5.0"] + \
    [f"blocks.6.{j}" for j in range(5)] + ["blocks.7.0"] + [f"blocks.8.{j}" for j in range(4)]
HEAD_CHS = 1280


def _md(v: float, divisor: int = 4) -> int:
    """make_divisible exactly as docs/reference.md §1 writes it (independent of the package's implementation)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _tol(ref: torch.Tensor) -> float:
    return 1e-4 * max(1.0, ref.abs().max().item())


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@torch.no_grad()
def _randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """randomize_bn, plus non-zero conv/linear biases and a classifier giving O(1) logits (so tolerances bite)."""
    g = torch.Generator().manual_seed(seed)
    randomize_bn(model, g)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=g) * 0.02)
    return model


@functools.cache
def _model(name: str) -> nn.Module:
    """Eval-mode model with randomized BN; shared between tests, so never mutate it (deep-copy first)."""
    return _randomize(ghostnets.create_model(name)).eval()


@functools.cache
def _deployed(name: str) -> nn.Module:
    """``reparameterize`` of :func:`_model` (shared: never mutate)."""
    return ghostnets.reparameterize(_model(name))


@functools.cache
def _fresh_state(name: str) -> dict[str, tuple[int, ...]]:
    return _shapes(ghostnets.create_model(name))


def _bottlenecks(model: nn.Module) -> list[nn.Module]:
    return [block for stage in list(model.blocks)[:-1] for block in stage]


# --------------------------------------------------------------------------------------------------- 1. parameters


# the plug-and-play models (tests/test_plug_and_play.py covers them)
PLUG_AND_PLAY_MODELS = ["ghost_resnet50_s2", "ghost_resnet50_s4", "ghost_resnet56_cifar_s2", "ghost_vgg16_cifar_s2",
                        "ghost_vgg16_cifar_s3", "ghost_vgg16_cifar_s4", "ghost_vgg16_cifar_s5", "resnet50",
                        "resnet56_cifar", "vgg16_cifar"]


def test_registry_names():
    assert set(ALL_MODELS + PLUG_AND_PLAY_MODELS + G_GHOST_MODELS) <= set(ghostnets.list_models())
    assert ghostnets.list_models("ghostnet*") == [n for n in ALL_MODELS if n.startswith("ghostnet")]
    assert ghostnets.list_models("g_ghost*") + ghostnets.list_models("regnet*") == G_GHOST_MODELS
    assert ghostnets.list_models("repghost*") == REPGHOST_MODELS
    assert len(ghostnets.list_models("repghost*")) == 8
    assert ghostnets.list_models("ghostnetv2*") == ["ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160"]
    assert ghostnets.list_models("nothing*") == []


@pytest.mark.parametrize("name", SWEEP)
def test_param_count_exact(name):
    model = ghostnets.create_model(name)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == PARAMS[name]
    assert ghostnets.count_params(model) == PARAMS[name]
    assert ghostnets.model_info(name).params == PARAMS[name]


@pytest.mark.parametrize("name", REPGHOST_MODELS)
def test_repghost_official_deploy_param_count(name):
    """The official deploy form re-parameterizes only the RepGhost modules (the other BNs stay)."""
    model = _model(name)
    official = copy.deepcopy(model)
    modules = [m for m in official.modules() if isinstance(m, RepGhostModule)]
    assert len(modules) == 32  # ghost1 and ghost2 of 16 bottlenecks
    for m in modules:
        m.fuse()
    assert sum(p.numel() for p in official.parameters()) == DEPLOY_PARAMS[name]
    assert ghostnets.model_info(name).deploy_params == DEPLOY_PARAMS[name]
    keys = official.state_dict().keys()
    assert not any("fusion_bn" in k for k in keys)
    assert "blocks.1.0.ghost1.cheap_operation.weight" in keys and "blocks.1.0.ghost1.cheap_operation.bias" in keys
    assert _has_bn(official)  # stem, primary convs, shortcuts keep their BN in the official deploy form
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        out = official(x)
    assert _maxdiff(out, ref) <= _tol(ref)


def test_width_override_builds_a_different_model():
    model = ghostnets.create_model("ghostnet_100", width=0.75)
    n = ghostnets.count_params(model)
    assert PARAMS["ghostnet_050"] < n < PARAMS["ghostnet_100"]
    assert model.conv_stem.out_channels == _md(16 * 0.75)
    assert model.num_features == _md(960 * 0.75)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


# ------------------------------------------------------------------------------------------------------ 2. MAdds


def _hook_madds(model: nn.Module, size=(224, 224)) -> int:
    """MACs of Conv2d and Linear layers counted with forward hooks (an independent count of the papers' convention).

    A conv whose module is not called (its weight used directly, e.g. SE / conv_head computed as a matrix product on
    the pooled 1x1 map) is counted as a 1x1-map conv: weight.numel() MACs.
    """
    total = 0
    called: set[int] = set()

    def hook(mod, inputs, out):
        nonlocal total
        called.add(id(mod))
        if isinstance(mod, nn.Conv2d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            total += mod.in_features * mod.out_features

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        for h in handles:
            h.remove()
    return total + sum(m.weight.numel() for m in layers if id(m) not in called)


@pytest.mark.parametrize("name", SWEEP)
def test_madds_match_reference(name):
    model = _model(name)
    madds = ghostnets.count_madds(model)
    assert abs(madds - MADDS[name]) <= 0.005 * MADDS[name], (madds, MADDS[name])
    assert abs(ghostnets.model_info(name).madds - MADDS[name]) <= 0.05e6  # docs/reference.md gives 0.1M
    assert not model.training  # count_madds restores the mode


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_count_madds_equals_hook_count_and_survives_deploy(name):
    model = ghostnets.create_model(name)
    assert model.training
    madds = ghostnets.count_madds(model)
    assert model.training  # mode restored
    assert madds == _hook_madds(model.eval())
    # folding BN changes no multiply-accumulate; summing GhostNetV3's branches does (docs/reference.md "GhostNetV3")
    assert ghostnets.count_madds(_deployed(name)) == {"ghostnetv3_100": 167_048_288}.get(name, madds)
    assert ghostnets.count_madds(model, (96, 128)) == _hook_madds(model, (96, 128))


# ------------------------------------------------------------------------------------------------- 3. channels


def _record_channels(model: nn.Module) -> dict:
    rec: dict = {"mids": [], "outs": []}
    handles = [model.conv_stem.register_forward_hook(lambda m, i, o: rec.__setitem__("stem", o.shape[1]))]
    for block in _bottlenecks(model):
        handles.append(block.ghost1.register_forward_hook(lambda m, i, o: rec["mids"].append(o.shape[1])))
        handles.append(block.register_forward_hook(lambda m, i, o: rec["outs"].append(o.shape[1])))
    handles.append(model.blocks[-1].register_forward_hook(lambda m, i, o: rec.__setitem__("final", o.shape[1])))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 64, 64))
    for h in handles:
        h.remove()
    return rec


@pytest.mark.parametrize(("name", "width"), [("ghostnet_050", 0.5), ("ghostnet_100", 1.0), ("ghostnet_130", 1.3),
                                             ("ghostnetv2_100", 1.0), ("ghostnetv2_130", 1.3)])
def test_ghostnet_channels_per_block(name, width):
    rec = _record_channels(_model(name))
    assert rec == GHOSTNET_CHANNELS[width]
    # and the formula of docs/reference.md §1 applied to the table gives the same lists
    assert rec["outs"] == [_md(o * width) for o, _ in TABLE_OUT_STRIDE]


def test_ghostnet_width_kwarg_channels():
    """`width=` on another registered name builds docs/reference.md's 0.5x / 1.3x channel lists too."""
    assert _record_channels(ghostnets.create_model("ghostnet_100", width=0.5)) == GHOSTNET_CHANNELS[0.5]
    assert _record_channels(ghostnets.create_model("ghostnet_100", width=1.3)) == GHOSTNET_CHANNELS[1.3]


@pytest.mark.parametrize("name", REPGHOST_MODELS)
def test_repghost_stem_final_channels(name):
    model = _model(name)
    stem, final = REPGHOST_STEM_FINAL[name]
    assert model.conv_stem.out_channels == stem
    assert model.num_features == final
    assert model.blocks[-1][0].conv.out_channels == final
    assert model.conv_head.weight.shape == (HEAD_CHS, final, 1, 1)  # 1280 is not width-scaled


def test_repghost_100_channels_per_block():
    rec = _record_channels(_model("repghostnet_100"))
    assert rec == dict(stem=16, final=960, mids=REPGHOST_100_MIDS, outs=GHOSTNET_CHANNELS[1.0]["outs"])


# ---------------------------------------------------------------------------------------------- 4. key layout


@pytest.mark.parametrize("name", SWEEP)
def test_state_dict_matches_timm_and_logits_agree(name):
    timm = pytest.importorskip("timm")
    ours = _model(name)
    theirs = timm.create_model(name, pretrained=False).eval()
    assert _shapes(ours) == _shapes(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same order too: order-based converters work
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.abs().max().item() > 0.1  # logits are not degenerate
    assert _maxdiff(a, b) <= 1e-5 * max(1.0, a.abs().max().item())


def test_official_key_names_spot_check():
    v2 = _fresh_state("ghostnetv2_100")
    assert v2["blocks.3.0.ghost1.short_conv.4.weight"] == (72, 1, 5, 1)  # depthwise (5, 1) on the 72 mid channels
    assert v2["blocks.2.0.ghost1.short_conv.0.weight"] == (72, 24, 1, 1)  # first DFC block, 1x1 in -> out
    assert v2["blocks.2.0.ghost1.short_conv.2.weight"] == (72, 1, 1, 5)
    assert "blocks.2.0.ghost1.short_conv.5.running_var" in v2
    assert not any(k.startswith(("blocks.0.", "blocks.1.")) and "short_conv" in k for k in v2)
    assert not any("ghost2.short_conv" in k for k in v2)
    assert sum(k.endswith("ghost1.short_conv.0.weight") for k in v2) == 14  # 16 bottlenecks minus the first two

    rep = _fresh_state("repghostnet_100")
    assert rep["blocks.1.0.ghost1.fusion_bn.0.running_var"] == (24,)
    assert rep["blocks.1.0.ghost1.cheap_operation.0.weight"] == (24, 1, 3, 3)
    assert "blocks.1.0.ghost1.cheap_operation.1.running_mean" in rep

    v1 = _fresh_state("ghostnet_100")
    assert v1["blocks.1.0.conv_dw.weight"] == (48, 1, 3, 3)
    assert v1["blocks.3.0.conv_dw.weight"] == (72, 1, 5, 5)
    assert v1["blocks.3.0.se.conv_reduce.weight"] == (20, 72, 1, 1)  # make_divisible(72 * 0.25, 4) = 20
    assert v1["blocks.3.0.se.conv_reduce.bias"] == (20,)
    assert v1["blocks.3.0.se.conv_expand.bias"] == (72,)
    assert v1["blocks.1.0.shortcut.0.weight"] == (16, 1, 3, 3)
    assert v1["blocks.1.0.shortcut.2.weight"] == (24, 16, 1, 1)
    assert "blocks.1.0.shortcut.3.running_var" in v1
    assert not any(k.startswith("blocks.2.0.shortcut") for k in v1)  # identity shortcut
    assert v1["blocks.1.0.ghost1.primary_conv.0.weight"] == (24, 16, 1, 1)  # ceil(48 / 2)
    assert v1["blocks.1.0.ghost1.cheap_operation.0.weight"] == (24, 1, 3, 3)
    assert v1["blocks.9.0.conv.weight"] == (960, 160, 1, 1)
    assert "blocks.9.0.bn1.running_var" in v1

    for state in (v1, v2, rep):
        outside = {k for k in state if not k.startswith("blocks.")}
        assert outside == {"conv_stem.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                           "bn1.num_batches_tracked", "conv_head.weight", "conv_head.bias", "classifier.weight",
                           "classifier.bias"}  # conv_head has a bias and no BN
        assert state["conv_head.bias"] == (HEAD_CHS,)
        assert state["classifier.weight"] == (1000, HEAD_CHS)


# ------------------------------------------------------------------------------------------ 5. deploy equivalence


@pytest.mark.parametrize("name", SWEEP)
def test_reparameterize_is_equivalent(name):
    model, deployed = _model(name), _deployed(name)
    assert not _has_bn(deployed)
    assert not deployed.training
    for shape in [(2, 3, 224, 224), (2, 3, 96, 128)]:
        x = torch.randn(shape)
        with torch.no_grad():
            ref, out = model(x), deployed(x)
        assert ref.abs().max().item() > 0.1
        assert _maxdiff(out, ref) <= _tol(ref), shape
    assert ghostnets.count_params(deployed) < PARAMS[name]
    if name in DEPLOY_PARAMS:
        assert ghostnets.count_params(deployed) < DEPLOY_PARAMS[name]  # every BN folded, not only RepGhost's


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_reparameterize_leaves_original_untouched(name):
    model = _randomize(ghostnets.create_model(name))  # training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules_before = [type(m) for m in model.modules()]
    deployed = ghostnets.reparameterize(model)
    assert deployed is not model
    assert model.training
    assert _has_bn(model)
    assert [type(m) for m in model.modules()] == modules_before
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    # deploying twice changes nothing more
    again = ghostnets.reparameterize(deployed)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _maxdiff(again(x), deployed(x)) <= 1e-6


@pytest.mark.parametrize("name", SWEEP)
def test_create_model_deploy_matches_reparameterize(name):
    built = ghostnets.create_model(name, deploy=True)
    assert not _has_bn(built)
    deployed = _deployed(name)
    assert _shapes(built) == _shapes(deployed)
    built.load_state_dict(deployed.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert _maxdiff(built.eval()(x), deployed(x)) <= 1e-6


def test_repghost_deploy_keys():
    keys = _shapes(_deployed("repghostnet_100"))
    assert keys["blocks.1.0.ghost1.cheap_operation.weight"] == (24, 1, 3, 3)
    assert keys["blocks.1.0.ghost1.cheap_operation.bias"] == (24,)
    assert not any("fusion_bn" in k or "running_" in k for k in keys)


REPGHOST_ABLATIONS = [
    dict(reparam_bn=True, reparam_identity=True),
    dict(reparam_bn=False, reparam_identity=True),
    dict(reparam_bn=False),
    dict(shortcut=False),
]


@pytest.mark.parametrize("kwargs", REPGHOST_ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_repghost_ablations_reparameterize(kwargs):
    model = _randomize(ghostnets.create_model("repghostnet_100", **kwargs)).eval()
    keys = model.state_dict().keys()
    # Sum of RepGhost module widths, from docs/reference.md: train - official deploy = 3 * sum(C) (BN 2C -> bias C,
    # fusion BN 2C removed); a model without the fusion BN has 2 * sum(C) fewer parameters.
    sum_c = (PARAMS["repghostnet_100"] - DEPLOY_PARAMS["repghostnet_100"]) // 3
    assert sum_c * 3 == PARAMS["repghostnet_100"] - DEPLOY_PARAMS["repghostnet_100"]
    if kwargs.get("reparam_bn", True):
        assert any("fusion_bn.0.running_var" in k for k in keys)
        assert ghostnets.count_params(model) == PARAMS["repghostnet_100"]
    else:
        assert not any("fusion_bn" in k for k in keys)
        assert ghostnets.count_params(model) == PARAMS["repghostnet_100"] - 2 * sum_c

    deployed = ghostnets.reparameterize(model)
    assert not _has_bn(deployed)
    assert _shapes(deployed) == _shapes(_deployed("repghostnet_100"))  # every ablation has the same deploy form
    # Identity + BN branches make random-init activations grow to ~1e6, where float32 rounding alone exceeds the
    # 1e-4 relative budget; in float64 the fold must be exact to rounding.
    model64 = model.double()
    deployed64 = ghostnets.reparameterize(model64)
    for shape in [(2, 3, 128, 128), (2, 3, 96, 128)]:
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            ref, out = model64(x), deployed64(x)
        assert _maxdiff(out, ref) <= 1e-10 * max(1.0, ref.abs().max().item()), shape


def test_repghost_ablations_change_the_function():
    """Each ablation computes something different from the default on the same weights (the options are live)."""
    x = torch.randn(2, 3, 64, 64)
    base = _randomize(ghostnets.create_model("repghostnet_100")).eval()
    with torch.no_grad():
        ref = base(x)
        no_short = ghostnets.create_model("repghostnet_100", shortcut=False).eval()
        no_short.load_state_dict(base.state_dict(), strict=True)
        assert _maxdiff(no_short(x), ref) > 1e-3
        with_id = ghostnets.create_model("repghostnet_100", reparam_identity=True).eval()
        with_id.load_state_dict(base.state_dict(), strict=True)
        assert _maxdiff(with_id(x), ref) > 1e-3
    assert not any(isinstance(m, DropPath) for m in
                   ghostnets.create_model("repghostnet_100", shortcut=False, drop_path_rate=0.2).modules())


# ------------------------------------------------------------------------------------------------- 6. features


def _expected_taps(width: float, final: int) -> list[int]:
    """Channels of the last block at strides 2, 4, 8, 16, 32 (docs/reference.md §1 table; §11: taps at the last
    block)."""
    return [_md(16 * width), _md(24 * width), _md(40 * width), _md(112 * width), final]


@pytest.mark.parametrize("name", SWEEP)
def test_features_only(name):
    model = _model(name)
    final = REPGHOST_STEM_FINAL[name][1] if name in REPGHOST_STEM_FINAL else _md(960 * WIDTHS[name])
    info = model.feature_info
    assert [f["num_chs"] for f in info] == _expected_taps(WIDTHS[name], final)
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    assert [f["module"] for f in info] == ["blocks.0", "blocks.2", "blocks.4", "blocks.6", "blocks.9"]

    fm = ghostnets.create_model(name, features_only=True)
    fm_keys = set(fm.state_dict())
    model_state = model.state_dict()
    assert fm_keys <= set(model_state)  # backbone weights load unchanged
    assert {k.split(".")[0] for k in set(model_state) - fm_keys} == {"conv_head", "classifier"}
    fm.load_state_dict({k: v for k, v in model_state.items() if k in fm_keys}, strict=True)
    fm.eval()

    captured = []
    handles = [model.get_submodule(f["module"]).register_forward_hook(lambda m, i, o: captured.append(o))
               for f in info]
    x = torch.randn(2, 3, 80, 112)
    try:
        with torch.no_grad():
            maps = fm(x)
            full = model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    assert len(maps) == 5
    for f, fmap, ref in zip(info, maps, captured):
        r = f["reduction"]
        assert fmap.shape == (2, f["num_chs"], math.ceil(80 / r), math.ceil(112 / r))
        assert torch.allclose(fmap, ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(maps[-1], full, rtol=1e-5, atol=1e-6)
    assert [(f["num_chs"], f["reduction"]) for f in fm.feature_info] == [(f["num_chs"], f["reduction"]) for f in info]


@pytest.mark.parametrize("name", ["ghostnet_100", "repghostnet_100"])
def test_features_only_hard_coded_taps(name):
    fm = ghostnets.create_model(name, features_only=True).eval()
    assert [f["num_chs"] for f in fm.feature_info] == [16, 24, 40, 112, 960]
    assert [f["reduction"] for f in fm.feature_info] == [2, 4, 8, 16, 32]
    with torch.no_grad():
        maps = fm(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 16, 32, 32), (1, 24, 16, 16), (1, 40, 8, 8), (1, 112, 4, 4),
                                              (1, 960, 2, 2)]

    two = ghostnets.create_model(name, features_only=True, out_indices=(1, 3)).eval()
    with torch.no_grad():
        maps = two(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 24, 16, 16), (1, 112, 4, 4)]
    assert [f["num_chs"] for f in two.feature_info] == [24, 112]
    # only the stages up to the deepest requested tap are kept
    assert not any(k.startswith(("blocks.7.", "blocks.8.", "blocks.9.")) for k in two.state_dict())
    assert any(k.startswith("blocks.6.") for k in two.state_dict())


@pytest.mark.parametrize("bad", [(5,), (), (0, 7), (-6,)])
def test_features_only_bad_out_indices(bad):
    with pytest.raises(ValueError):
        ghostnets.create_model("ghostnet_100", features_only=True, out_indices=bad)


def test_features_only_deploys():
    fm = _randomize(ghostnets.create_model("ghostnetv2_100", features_only=True)).eval()
    deployed = ghostnets.reparameterize(fm)
    assert not _has_bn(deployed)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        for a, b in zip(fm(x), deployed(x)):
            assert _maxdiff(b, a) <= _tol(a)


# ------------------------------------------------------------------------------------------------ 7. input sizes


@pytest.mark.parametrize("name", SWEEP)
@pytest.mark.parametrize("size", [(32, 32), (33, 47), (256, 320)])
def test_any_input_size(name, size):
    model = _model(name)
    n = 1 if size[0] > 200 else 2
    x = torch.randn(n, 3, *size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
    assert feats.shape == (n, model.num_features, math.ceil(size[0] / 32), math.ceil(size[1] / 32))
    assert logits.shape == (n, 1000)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_in_chans_one(name):
    model = ghostnets.create_model(name, in_chans=1, num_classes=7).eval()
    assert model.conv_stem.weight.shape[1] == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 40)).shape == (2, 7)
    with pytest.raises(ghostnets.InputShapeError, match=r"\(N, 1, H, W\)"):
        model(torch.randn(2, 3, 48, 40))


@pytest.mark.parametrize("name", SWEEP)
def test_channels_last_matches_contiguous(name):
    model = _model(name)
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        ref = model(x)
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert _maxdiff(out, ref) <= _tol(ref)


# ------------------------------------------------------------------------------------------------ 8. bad input


BAD_INPUTS = {
    "channels": (lambda: torch.randn(2, 4, 64, 64), "4 channels"),
    "3d": (lambda: torch.randn(3, 64, 64), "3-D"),
    "small": (lambda: torch.randn(1, 3, 31, 64), "31x64"),
    "uint8": (lambda: torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "uint8"),
}


@pytest.mark.parametrize("features_only", [False, True])
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_before_any_conv(case, name, features_only):
    make, detail = BAD_INPUTS[case]
    model = ghostnets.create_model(name, features_only=features_only).eval()
    calls = []
    model.conv_stem.register_forward_pre_hook(lambda m, i: calls.append(i))
    with pytest.raises(ghostnets.InputShapeError) as err:
        model(make())
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, ghostnets.GhostnetsError)
    message = str(err.value)
    assert "(N, 3, H, W)" in message
    assert detail in message
    assert calls == []  # failed before the stem conv ran
    with torch.no_grad():  # and the hook does fire on good input, so the check above can fail
        model(torch.randn(1, 3, 32, 32))
    assert len(calls) == 1


def test_small_input_message_names_minimum():
    with pytest.raises(ghostnets.InputShapeError, match="32"):
        _model("ghostnet_100")(torch.randn(1, 3, 64, 20))


# -------------------------------------------------------------------------------------------------------- 9. API


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_head_api(name):
    model = copy.deepcopy(_model(name))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        logits = model(x)
        assert pre.shape == (2, HEAD_CHS)
        assert torch.allclose(model.get_classifier()(pre), logits, atol=1e-6)
    assert model.get_classifier() is model.classifier
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().out_features == 1000
    assert model.num_features == feats.shape[1] == model.blocks[-1][0].conv.out_channels
    assert model.num_features == 960

    model.reset_classifier(10)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    assert model.get_classifier().out_features == 10
    model.reset_classifier(0)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, HEAD_CHS)
    assert torch.allclose(out, pre, atol=1e-6)
    assert ghostnets.create_model(name, num_classes=0).eval()(x).shape == (2, HEAD_CHS)


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnet_130", "ghostnetv2_160", "repghostnet_058"])
def test_num_features_is_final_channels(name):
    model = _model(name)
    final = REPGHOST_STEM_FINAL[name][1] if name in REPGHOST_STEM_FINAL else _md(960 * WIDTHS[name])
    assert model.num_features == final
    assert model.conv_head.in_channels == final


def test_drop_rate_only_in_train_mode():
    base = _model("ghostnet_050")
    x = torch.randn(4, 3, 64, 64)
    drop = ghostnets.create_model("ghostnet_050", drop_rate=0.5)
    plain = ghostnets.create_model("ghostnet_050", drop_rate=0.0)
    for m in (drop, plain):
        m.load_state_dict(base.state_dict(), strict=True)
    with torch.no_grad():
        drop.train()
        plain.train()
        assert torch.equal(plain(x), plain(x))  # control: train-mode BN alone is deterministic
        assert not torch.allclose(drop(x), drop(x))
        feats = drop.forward_features(x)
        assert torch.equal(drop.forward_head(feats, pre_logits=True), drop.forward_head(feats, pre_logits=True))
        drop.load_state_dict(base.state_dict(), strict=True)  # train-mode passes moved the BN running statistics
        drop.eval()
        assert torch.equal(drop(x), drop(x))
        assert torch.allclose(drop(x), base(x), atol=1e-6)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_drop_path(name):
    model = ghostnets.create_model(name, drop_rate=0.0, drop_path_rate=0.3)
    blocks = dict(zip(BLOCK_NAMES, _bottlenecks(model)))
    with_dp = {n for n, b in blocks.items() if isinstance(b.drop_path, DropPath) and b.drop_path.drop_prob > 0}
    # identity shortcut = same out channels as the previous row and stride 1 (docs/reference.md §1); block 0 gets rate 0
    outs = [16] + [o for o, _ in TABLE_OUT_STRIDE]
    identity = {BLOCK_NAMES[i] for i, (o, s) in enumerate(TABLE_OUT_STRIDE) if s == 1 and outs[i] == o}
    assert "blocks.0.0" in identity and "blocks.6.3" not in identity
    assert with_dp == identity - {"blocks.0.0"}
    all_dp = [m for m in model.modules() if isinstance(m, DropPath) and m.drop_prob > 0]
    assert len(all_dp) == len(with_dp)
    probs = [blocks[n].drop_path.drop_prob for n in BLOCK_NAMES if n in with_dp]
    assert probs == sorted(probs) and probs[0] > 0 and probs[-1] <= 0.3

    _randomize(model)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        a = model(x)
        assert torch.equal(a, model(x))
        plain = ghostnets.create_model(name, drop_rate=0.0).eval()
        plain.load_state_dict(model.state_dict(), strict=True)
        assert _maxdiff(plain(x), a) <= 1e-6
        plain.train()
        assert torch.equal(plain(x), plain(x))


def test_unknown_model_suggests_close_names():
    with pytest.raises(ghostnets.UnknownModelError) as err:
        ghostnets.create_model("ghostnet_10")
    assert "ghostnet_100" in str(err.value)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ghostnets.GhostnetsError)
    with pytest.raises(ghostnets.UnknownModelError, match="repghostnet_100"):
        ghostnets.model_info("repghostnet_10")
    with pytest.raises(ghostnets.UnknownModelError, match="ghostnetv2_130"):
        ghostnets.create_model("ghostnetv2-130")
    with pytest.raises(ghostnets.UnknownModelError):
        ghostnets.create_model("resnet152")  # not registered (resnet18/34/50 are)


@pytest.mark.parametrize("name", SWEEP)
def test_model_card(name):
    card = ghostnets.model_info(name)
    assert card.name == name
    assert card.family == name.split("_")[0]
    assert card.width == WIDTHS[name]
    assert card.params == PARAMS[name]
    assert card.top1 == TOP1[name]
    t = card.eval_transform
    assert t.crop_pct == 0.875
    assert t.interpolation == "bicubic"
    assert t.input_size == (3, 224, 224)
    assert t.resize == 256
    assert t.mean == pytest.approx((0.485, 0.456, 0.406))
    assert t.std == pytest.approx((0.229, 0.224, 0.225))
    if name in REPGHOST_MODELS:
        assert card.recipe == ("repghostnet_large" if WIDTHS[name] >= 1.3 else "repghostnet_small")
        assert card.deploy_params == DEPLOY_PARAMS[name]
    assert card.as_dict()["params"] == PARAMS[name]


def test_model_card_specific_values():
    assert ghostnets.model_info("repghostnet_111").recipe == "repghostnet_small"
    assert ghostnets.model_info("repghostnet_130").recipe == "repghostnet_large"
    assert ghostnets.model_info("repghostnet_200").recipe == "repghostnet_large"
    assert ghostnets.model_info("repghostnet_050").recipe == "repghostnet_small"


# ----------------------------------------------------------------------------------- 10. trace / compile / ONNX


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_jit_trace_deploy(name):
    deployed = _deployed(name)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        traced = torch.jit.trace(deployed, x, check_trace=False)
        y = torch.randn(2, 3, 96, 128)
        ref = deployed(y)
        out = traced(y)
    assert _maxdiff(out, ref) <= 1e-5 * max(1.0, ref.abs().max().item())


@pytest.mark.slow  # inductor compiles each model
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_torch_compile_fullgraph(name):
    model = _model(name)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = compiled(x)
    assert _maxdiff(out, ref) <= _tol(ref)


def _onnx_roundtrip(model: nn.Module, x: torch.Tensor, path) -> tuple[torch.Tensor, torch.Tensor]:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["input"], output_names=["logits"],
                      **kwargs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    return torch.from_numpy(out), ref


@pytest.mark.runtimes
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", SWEEP)
def test_onnx_export_parity_deploy(name, tmp_path):
    out, ref = _onnx_roundtrip(_deployed(name), torch.randn(2, 3, 128, 128), tmp_path / f"{name}.onnx")
    assert out.shape == ref.shape == (2, 1000)
    assert _maxdiff(out, ref) <= _tol(ref)


@pytest.mark.runtimes
@pytest.mark.filterwarnings("ignore")
def test_onnx_export_train_form_ghostnetv2_non_square(tmp_path):
    out, ref = _onnx_roundtrip(_model("ghostnetv2_100"), torch.randn(1, 3, 96, 160), tmp_path / "v2.onnx")
    assert out.shape == ref.shape == (1, 1000)
    assert _maxdiff(out, ref) <= _tol(ref)
