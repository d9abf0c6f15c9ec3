"""MGIC (Eliasof et al., SIAM J. Sci. Comput. 2023, arXiv 2011.09128): the V-cycle against an explicit computation
with F.conv2d, the official code's key names and shapes (docs/reference.md "MGIC"), the paper's linear growth of
parameters with width, deploy equivalence, features_only and bad geometry. No pip reference exists; the official
counts were measured on the official classes (docs/reference.md) and are checked by tests/test_cards.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.mgic import MGICBlock

FAST = "mgic_mobilenetv3_small"


def bn(x: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def fixed(block: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return randomize_bn(block, g).eval()


def residual(x, k1, b1, k2, b2, groups):
    """The official resnetStep: relu(x + bn2(k2(relu(bn1(k1 x))))), k x k convs in ``groups``."""
    y = F.relu(bn(F.conv2d(x, k1.weight, padding=1, groups=groups), b1))
    return F.relu(x + bn(F.conv2d(y, k2.weight, padding=1, groups=groups), b2))


def test_resnet_vcycle_is_the_multigrid_correction_scheme():
    """8 channels, groups of 2, coarsest 4: R 8->4 (4 groups), R 4->2 (2 groups), dense block at 2, back up."""
    block = fixed(MGICBlock(4, 8, 2, group_size=2, coarsest=4))
    lv = block.mgStep
    assert [m.role for m in lv] == ["restrict", "restrict", "coarsest", "prolong", "prolong"]
    x = torch.randn(2, 4, 10, 10)
    sc = block.shortcut
    x0 = F.relu(bn(F.conv2d(x, sc[0].weight, stride=2, padding=1, groups=4), sc[1]))  # depthwise 3x3 connector
    r0 = F.conv2d(x0, lv[0].R.weight, groups=4)  # 8 -> 4
    r1 = F.conv2d(r0, lv[1].R.weight, groups=2)  # 4 -> 2
    c = residual(r1, lv[2].k1, lv[2].bn1, lv[2].k2, lv[2].bn2, groups=1)  # dense at the coarsest level
    z1 = r0 + bn(F.conv2d(c - r1, lv[3].P.weight, groups=2), lv[3].bnp1)  # the coarse *change*, prolongated
    c = residual(z1, lv[3].k1, lv[3].bn1, lv[3].k2, lv[3].bn2, groups=2)
    z0 = x0 + bn(F.conv2d(c - r0, lv[4].P.weight, groups=4), lv[4].bnp1)
    expected = residual(z0, lv[4].k1, lv[4].bn1, lv[4].k2, lv[4].bn2, groups=4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ghostnets.reparameterize(block)(x), expected, rtol=1e-4, atol=1e-4)


def test_mobilenet_vcycle_levels_are_inverted_residuals():
    """8 channels (hidden 16), groups of 4, coarsest 8: R+BN 8->4, dense block at 4 (hidden 8), back up."""
    block = fixed(MGICBlock(8, 8, 1, kind="mbv3", mid_chs=16, group_size=4, coarsest=8))
    r, c, p = block.mgStep
    x = torch.randn(2, 8, 6, 6)

    def inverted(x, seq, groups, mid):  # pw(grouped) BN ReLU, dw BN, ReLU, pw-linear(grouped) BN
        y = F.relu(bn(F.conv2d(x, seq[0].weight, groups=groups), seq[1]))
        y = F.relu(bn(F.conv2d(y, seq[3].weight, padding=1, groups=mid), seq[4]))
        y = bn(F.conv2d(y, seq[7].weight, groups=groups), seq[8])
        return F.relu(y + x) + x  # the official mbnetStep

    r0 = bn(F.conv2d(x, r.R.weight, groups=2), r.bnr)
    xc = inverted(r0, c.conv, 1, 8)
    z0 = x + bn(F.conv2d(xc - r0, p.P.weight, groups=2), p.bnp1)
    expected = inverted(z0, p.conv, 2, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ghostnets.reparameterize(block)(x), expected, rtol=1e-4, atol=1e-4)


# (key, shape) of the official classes built with the driver's defaults (docs/reference.md "MGIC")
OFFICIAL_KEYS = {
    "mgic_resnet18": [
        ("features.conv1.weight", (64, 3, 7, 7)),
        ("features.Mg_2_0.shortcut.0.weight", (128, 1, 3, 3)),
        ("features.Mg_2_0.shortcut.1.running_var", (128,)),
        ("features.Mg_2_0.mgStep.4.P.weight", (32, 16, 1, 1)),
        ("features.Mg_2_0.mgStep.5.P.weight", (64, 16, 1, 1)),
        ("features.Mg_2_0.mgStep.6.k1.weight", (128, 32, 3, 3)),
        ("features.Mg_2_0.mgStep.6.bnp1.weight", (128,)),
        ("linear.weight", (1000, 512)),
    ],
    "mgic_mobilenetv3_small": [
        ("conv_stem.weight", (16, 3, 1, 1)),
        ("blocks.1.0.ghost1.shortcut.0.weight", (24, 16, 1, 1)),
        ("blocks.1.0.ghost1.mgStep.0.R.weight", (12, 24, 1, 1)),
        ("blocks.1.0.ghost1.mgStep.0.bnr.running_mean", (12,)),
        ("blocks.1.0.ghost1.mgStep.1.conv.0.weight", (36, 12, 1, 1)),
        ("blocks.1.0.ghost1.mgStep.1.conv.7.weight", (12, 36, 1, 1)),
        ("blocks.1.0.ghost1.mgStep.2.conv.3.weight", (72, 1, 3, 3)),
        ("blocks.1.0.ghost1.mgStep.2.P.weight", (24, 12, 1, 1)),
        ("blocks.1.0.ghost1.mgStep.2.bnp1.bias", (24,)),
        ("conv_head.bias", (1024,)),
        ("classifier.weight", (10, 1024)),
    ],
}


@pytest.mark.parametrize("name", [FAST, pytest.param("mgic_resnet18", marks=pytest.mark.slow)])
def test_state_dict_has_the_official_names_and_shapes(name):
    sd = ghostnets.create_model(name).state_dict()
    assert [(k, tuple(sd[k].shape)) for k, _ in OFFICIAL_KEYS[name] if k in sd] == OFFICIAL_KEYS[name]


def test_parameters_grow_linearly_with_width():
    """The paper's claim: MGIC's parameters grow linearly with the width (fixed group size), a dense conv's as C^2."""
    def params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    mgic = [params(MGICBlock(c, c)) for c in (256, 512)]
    dense = [params(nn.Sequential(nn.Conv2d(c, c, 3, bias=False), nn.Conv2d(c, c, 3, bias=False))) for c in (256, 512)]
    assert 1.9 < mgic[1] / mgic[0] < 2.1
    assert dense[1] / dense[0] == 4


def test_deploy_form_equals_the_training_form():
    model = randomize_bn(ghostnets.create_model(FAST)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        deployed = ghostnets.reparameterize(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        scale = ref.abs().max().item()  # the official mbnetStep doubles its input at every level
        torch.testing.assert_close(deployed(x), ref, rtol=0, atol=1e-4 * max(1.0, scale))
        built = ghostnets.create_model(FAST, deploy=True).eval()
        built.load_state_dict(deployed.state_dict())
        torch.testing.assert_close(built(x), deployed(x), rtol=0, atol=0)


def test_features_only_taps_the_last_stage_at_each_stride():
    features = ghostnets.create_model(FAST, features_only=True)
    maps = features(torch.randn(1, 3, 32, 32))
    assert [m.shape[1:] for m in maps] == [(16, 16, 16), (24, 8, 8), (48, 4, 4), (96, 2, 2)]
    assert [f["reduction"] for f in features.feature_info] == [2, 4, 8, 16]


def test_any_in_chans():
    model = ghostnets.create_model(FAST, in_chans=1, num_classes=3).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_chs=16, out_chs=24, stride=2), "multiple of in_chs"),
    (dict(in_chs=16, out_chs=16, stride=3), "stride 1 or 2"),
    (dict(in_chs=100, out_chs=100), "must divide both widths"),
    (dict(in_chs=16, out_chs=16, kind="dense"), "kind must be one of"),
    (dict(in_chs=16, out_chs=16, kernel_size=2), "must be odd"),
    (dict(in_chs=16, out_chs=16, mid_chs=32), "no hidden width"),
])
def test_bad_geometry_is_refused_with_the_rule(kwargs, match):
    in_chs, out_chs = kwargs.pop("in_chs"), kwargs.pop("out_chs")
    with pytest.raises(ValueError, match=match):
        MGICBlock(in_chs, out_chs, **kwargs)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="cannot honour se_ratio"):
        create_block("mgic", 16, 32, 2, kernel_size=3, se_ratio=0.25)
    with pytest.raises(ValueError, match="se_ratio must be 0 or 0.25"):
        create_block("mgic_mbv3", 16, 24, 2, se_ratio=0.5)
    with pytest.raises(ValueError, match="depth must be one of"):
        ghostnets.models.mgic.mgic_resnet(depth=50)
    with pytest.raises(ValueError, match="drop_path_rate must be 0"):
        ghostnets.create_model(FAST, drop_path_rate=0.1)
    model = ghostnets.create_model(FAST)
    with pytest.raises(ValueError):
        model(torch.randn(1, 4, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mgic_resnet18", "mgic_resnet34", "mgic_mobilenetv3_large"])
def test_every_variant_deploys_and_taps(name):
    model = randomize_bn(ghostnets.create_model(name)).eval()
    size = 64 if "resnet" in name else 32
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        got = ghostnets.reparameterize(model)(x)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-4 * max(1.0, ref.abs().max().item()))
        maps = ghostnets.create_model(name, features_only=True)(x)
    info = model.feature_info
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in info]
    assert [size // m.shape[-1] for m in maps] == [f["reduction"] for f in info]


@pytest.mark.runtimes
def test_onnx_export_computes_the_training_form(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ghostnets.data.transforms import InputSpec
    from ghostnets.runtime import export_model

    model = randomize_bn(ghostnets.create_model(FAST)).eval()
    spec = InputSpec(size=32, resize=32)
    export_model(model, tmp_path / "m.onnx", format="onnx", spec=spec, class_names=[str(i) for i in range(10)])
    x = torch.randn(1, 3, 32, 32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert abs(got - ref).max() <= 1e-4 * max(1.0, abs(ref).max())


@pytest.mark.slow
def test_a_tiny_training_run(tmp_path):
    from pathlib import Path

    from ghostnets.train import load_recipe, train, update_config

    subset = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
    config = update_config(load_recipe("quick"), {"model": FAST, "data": str(subset), "batch_size": 32, "epochs": 1,
                                                  "threads": 2}, "test")
    summary = train(config, tmp_path / "run", progress_bar=False)
    assert summary["epochs"] == 1
