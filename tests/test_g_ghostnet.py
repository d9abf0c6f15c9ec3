"""G-GhostNet (arXiv 2201.03297) and its RegNetX baselines against independent truths: the exact counts, key layout
and stage split of the official code (docs/reference.md §12, copied here, never read from the cards), a functional
re-implementation of the official forward pass from the state-dict tensors, torchvision's RegNetX models and meta."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers import ResBottleneckBlock, XBottleneck
from ghostnets.models.g_ghostnet import CONFIGS as G_CONFIGS
from ghostnets.models.g_ghostnet import g_ghost_regnet
from ghostnets.models.regnet import CONFIGS as TV_CONFIGS

G_NAMES = ["g_ghost_regnetx_032", "g_ghost_regnetx_040", "g_ghost_regnetx_080", "g_ghost_regnetx_160"]
TV_NAMES = ["regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf"]
G_SWEEP = [n if n == G_NAMES[0] else pytest.param(n, marks=pytest.mark.slow) for n in G_NAMES]
TV_SWEEP = [n if n == TV_NAMES[0] else pytest.param(n, marks=pytest.mark.slow) for n in TV_NAMES]

# docs/reference.md §12: exact counts of the official classes (MAdds at 224), state-dict tensors, readme figures
PARAMS = {"g_ghost_regnetx_032": 10_511_000, "g_ghost_regnetx_040": 15_726_268, "g_ghost_regnetx_080": 24_586_928,
          "g_ghost_regnetx_160": 32_381_704}
MADDS = {"g_ghost_regnetx_032": 1_801_746_240, "g_ghost_regnetx_040": 2_228_368_516,
         "g_ghost_regnetx_080": 4_149_668_216, "g_ghost_regnetx_160": 8_997_384_192}
TENSORS = {"g_ghost_regnetx_032": 518, "g_ghost_regnetx_040": 482, "g_ghost_regnetx_080": 482,
           "g_ghost_regnetx_160": 464}
TOP1 = {"g_ghost_regnetx_032": 77.8, "g_ghost_regnetx_040": 78.6, "g_ghost_regnetx_080": 79.0,
        "g_ghost_regnetx_160": 79.9}
FILES = {"g_ghost_regnetx_032": "g_ghost_regnet_3.2g_77.8.pth", "g_ghost_regnetx_040": "g_ghost_regnet_4.0g_78.6.pth",
         "g_ghost_regnetx_080": "g_ghost_regnet_8.0g_79.0.pth", "g_ghost_regnetx_160": "g_ghost_regnet_16.0g_79.9.pth"}
# per stage: (raw, cheap, middle blocks) of a G-Ghost stage, or the depth of a plain one
SPLITS = {
    "g_ghost_regnetx_032": {"layer2": (72, 120, 4), "layer3": (216, 216, 13), "layer4": 2},
    "g_ghost_regnetx_040": {"layer2": (120, 120, 3), "layer3": (270, 290, 12), "layer4": 2},
    "g_ghost_regnetx_080": {"layer2": (90, 150, 3), "layer3": (360, 360, 13), "layer4": 1},
    "g_ghost_regnetx_160": {"layer2": (192, 320, 4), "layer3": (384, 512, 11), "layer4": 1},
}
WIDTHS = {"g_ghost_regnetx_032": [96, 192, 432, 1008], "g_ghost_regnetx_040": [80, 240, 560, 1360],
          "g_ghost_regnetx_080": [80, 240, 720, 1920], "g_ghost_regnetx_160": [256, 512, 896, 2048]}
# docs/reference.md §12 (computed on the official classes): the constructors without published weights
OTHER_PARAMS = {"002": 1_825_440, "004": 2_884_456, "006": 4_029_776, "008": 5_248_328, "016": 7_109_660,
                "064": 17_993_748, "120": 30_627_208, "320": 62_815_448}
RELEASE = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/g_ghost_regnet/"
TV_WEIGHTS = {"regnet_x_3_2gf": torchvision.models.RegNet_X_3_2GF_Weights,
              "regnet_x_8gf": torchvision.models.RegNet_X_8GF_Weights,
              "regnet_x_16gf": torchvision.models.RegNet_X_16GF_Weights}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _model(name: str, **kwargs) -> nn.Module:
    return randomize_bn(ghostnets.create_model(name, **kwargs), torch.Generator().manual_seed(1)).eval()


# ------------------------------------------------------------------------- the official forward, from the tensors


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, 1e-5)


def _conv_bn(x, sd, conv, bn, stride=1):
    w = sd[conv + ".weight"]  # groups from the shapes; 3x3 pads 1, 1x1 pads 0
    return _bn(F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, x.shape[1] // w.shape[1]), sd, bn)


def _bottleneck(x, sd, p, stride):
    out = F.relu(_conv_bn(x, sd, p + ".conv1", p + ".bn1"))
    out = F.relu(_conv_bn(out, sd, p + ".conv2", p + ".bn2", stride))
    out = _conv_bn(out, sd, p + ".conv3", p + ".bn3")
    if p + ".downsample.0.weight" in sd:
        x = _conv_bn(x, sd, p + ".downsample.0", p + ".downsample.1", stride)
    return F.relu(out + x)


def _official_stage(x, sd, p):
    """``Stage.forward`` of g_ghost_regnet.py: base, the raw path, merge of every output, cheap path, end."""
    x0 = _bottleneck(x, sd, p + ".base", 2)
    raw = sd[p + ".layers.0.conv1.weight"].shape[1]
    e, m_list, i = x0[:, :raw], [x0], 0
    while f"{p}.layers.{i}.conv1.weight" in sd:
        e = _bottleneck(e, sd, f"{p}.layers.{i}", 1)
        m_list.append(e)
        i += 1
    m = F.adaptive_avg_pool2d(torch.cat(m_list, 1), 1)
    m = _conv_bn(F.relu(_conv_bn(m, sd, p + ".merge.1", p + ".merge.2")), sd, p + ".merge.4", p + ".merge.5")
    c = F.relu(_conv_bn(x0[:, raw:], sd, p + ".cheap.0", p + ".cheap.1") + m)
    return _bottleneck(torch.cat((e, c), 1), sd, p + ".end", 1)


def _official_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], None, 2, 1), sd, "bn1"))
    for s in range(1, 5):
        p, j = f"layer{s}", 0
        if p + ".base.conv1.weight" in sd:
            x = _official_stage(x, sd, p)
        while f"{p}.{j}.conv1.weight" in sd:
            x = _bottleneck(x, sd, f"{p}.{j}", 2 if j == 0 else 1)
            j += 1
    return F.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("name", G_NAMES)
def test_the_official_forward_pass_rebuilt_from_the_tensors_gives_the_same_logits(name):
    model = _model(name)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), _official_forward(model.state_dict(), x)) < 1e-5


def test_a_custom_config_with_ghost_stages_in_layer2_and_layer4():
    model = randomize_bn(g_ghost_regnet(depths=(1, 3, 4, 3), widths=(48, 96, 192, 384), group_width=16)).eval()
    assert {k.split(".")[1] for k in model.state_dict() if k.startswith(("layer2.", "layer4."))} >= {"base", "end"}
    x = torch.randn(1, 3, 40, 72)
    with torch.no_grad():
        assert _rel(model(x), _official_forward(model.state_dict(), x)) < 1e-5


# ------------------------------------------------------------------------------------------- counts and layout


@pytest.mark.parametrize("name", G_SWEEP)
def test_exact_counts_of_the_official_code(name):
    model = ghostnets.create_model(name)
    assert ghostnets.count_params(model) == PARAMS[name]
    assert ghostnets.count_madds(model, (224, 224)) == MADDS[name]


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(OTHER_PARAMS))
def test_the_other_official_configs_build_through_the_builder(config):
    assert ghostnets.count_params(g_ghost_regnet(config)) == OTHER_PARAMS[config]


@pytest.mark.parametrize("name", G_NAMES)
def test_official_key_layout_and_stage_split(name):
    sd = ghostnets.create_model(name).state_dict()
    assert len(sd) == TENSORS[name]
    assert {"conv1.weight", "bn1.running_var", "fc.weight", "fc.bias", "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.weight", "layer3.base.downsample.0.weight"} <= set(sd)
    widths = WIDTHS[name]
    for layer, split in SPLITS[name].items():
        width = widths[int(layer[-1]) - 1]
        if isinstance(split, int):  # a plain stage
            assert {k.split(".")[1] for k in sd if k.startswith(layer + ".")} == {str(j) for j in range(split)}
            continue
        raw, cheap, mid = split
        assert {k.split(".")[1] for k in sd if k.startswith(layer + ".")} == {"base", "layers", "merge", "cheap", "end"}
        assert {k.split(".")[2] for k in sd if k.startswith(layer + ".layers.")} == {str(i) for i in range(mid)}
        assert sd[f"{layer}.layers.0.conv1.weight"].shape[:2] == (raw, raw)
        assert sd[f"{layer}.merge.1.weight"].shape == (cheap, width + raw * mid, 1, 1)
        assert sd[f"{layer}.merge.4.weight"].shape == (cheap, cheap, 1, 1)
        assert sd[f"{layer}.cheap.0.weight"].shape == (cheap, cheap, 1, 1)
        assert {f"{layer}.merge.{i}.running_mean" for i in (2, 5)} | {f"{layer}.cheap.1.running_mean"} <= set(sd)
        assert sd[f"{layer}.end.conv1.weight"].shape == (width, width, 1, 1)
    if name == "g_ghost_regnetx_032":
        assert sd["layer3.merge.1.weight"].shape == (216, 3240, 1, 1)
        # groups: width // min(width, 48) in base/end, raw // int(0.75 * 48) in the middle blocks
        assert sd["layer2.base.conv2.weight"].shape == (192, 48, 3, 3)  # 4 groups
        assert sd["layer2.layers.0.conv2.weight"].shape == (72, 36, 3, 3)  # 2 groups
        assert sd["layer3.base.conv2.weight"].shape == (432, 48, 3, 3)  # 9 groups
        assert sd["layer3.layers.0.conv2.weight"].shape == (216, 36, 3, 3)  # 6 groups


def test_a_module_prefixed_release_file_loads(tmp_path):
    """The released files are DataParallel state dicts: every key starts with ``module.`` (official issue #282)."""
    source = _model("g_ghost_regnetx_032")
    path = tmp_path / "g_ghost_regnet_3.2g_77.8.pth"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, path)
    model = ghostnets.create_model("g_ghost_regnetx_032", checkpoint_path=path).eval()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))


def test_cards_name_the_release_files():
    for name in G_NAMES:
        card = ghostnets.model_info(name)
        assert card.weights.url == RELEASE + FILES[name]
        assert card.top1 == card.weights.top1 == TOP1[name]
        assert card.family == "g_ghostnet" and card.eval_transform.interpolation == "bilinear"
        assert ghostnets.create_model(name).drop_rate == 0.2


# ------------------------------------------------------------------------------------------------- deploy form


@pytest.mark.parametrize("name", [*G_SWEEP, *TV_SWEEP])
def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed(name):
    assert_deploy_form(name, _model(name), torch.randn(2, 3, 64, 80), 1e-5)


def test_the_stage_folds_the_merge_batchnorms():
    stage = randomize_bn(g_ghost_regnet("032").layer3).eval()
    x = torch.randn(1, 192, 8, 8)
    with torch.no_grad():
        expected = stage(x)
        fused = stage.fuse()
        assert all(type(fused.merge[i]) is nn.Identity for i in (2, 5)) and type(fused.cheap[1]) is nn.Identity
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        assert _rel(fused(x), expected) < 1e-5


# ------------------------------------------------------------------------------------------ RegNetX (torchvision)


@pytest.mark.parametrize("name", TV_SWEEP)
def test_torchvision_state_dict_loads_strictly_and_gives_torchvision_logits(name):
    reference = randomize_bn(getattr(torchvision.models, name)()).eval()
    model = ghostnets.create_model(name).eval()
    assert list(model.state_dict()) == list(reference.state_dict())  # torchvision's keys, in torchvision's order
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
    assert ghostnets.count_params(model) == ghostnets.count_params(reference)


@pytest.mark.parametrize("name", TV_SWEEP)
def test_regnet_counts_equal_torchvision_and_its_meta(name):
    v1, v2 = TV_WEIGHTS[name].IMAGENET1K_V1, TV_WEIGHTS[name].IMAGENET1K_V2
    card = ghostnets.model_info(name)
    madds = ghostnets.count_madds(getattr(torchvision.models, name)(), (224, 224), in_chans=3)
    assert card.madds == madds == ghostnets.count_madds(ghostnets.create_model(name), (224, 224))
    assert round(madds / 1e9, 3) == v1.meta["_ops"]  # torchvision's GFLOPS are GMAdds, to 3 decimals
    assert card.params == v1.meta["num_params"]
    assert card.top1 == v1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert card.weights.url == v1.url and v2.url in card.notes
    assert card.eval_transform == ghostnets.registry.TORCHVISION_INPUT


def test_the_regnet_configs_are_what_torchvision_resolves():
    from torchvision.models.regnet import BlockParams

    paper = {"3_2gf": (25, 88, 26.31, 2.25, 48), "8gf": (23, 80, 49.56, 2.88, 120), "16gf": (22, 216, 55.59, 2.1, 128)}
    for config, (d, w0, wa, wm, g) in paper.items():
        p = BlockParams.from_init_params(depth=d, w_0=w0, w_a=wa, w_m=wm, group_width=g)
        depths, widths, group_width = TV_CONFIGS[config]
        assert (tuple(p.depths), tuple(p.widths)) == (depths, widths)
        assert p.group_widths == [min(group_width, w) for w in widths]
    # G-GhostNet's 032/080/160 are RegNetX-3.2/8/16GF (docs/reference.md §12)
    assert [G_CONFIGS[c] for c in ("032", "080", "160")] == [TV_CONFIGS[c] for c in ("3_2gf", "8gf", "16gf")]


@pytest.mark.parametrize("in_chs, out_chs, stride", [(32, 96, 2), (96, 96, 1), (80, 240, 2)])
def test_both_block_layouts_compute_the_same_function(in_chs, out_chs, stride):
    official = randomize_bn(XBottleneck(in_chs, out_chs, stride, group_width=48)).eval()
    tv = ResBottleneckBlock(in_chs, out_chs, stride, group_width=48).eval()
    names = {"conv1": "f.a.0", "bn1": "f.a.1", "conv2": "f.b.0", "bn2": "f.b.1", "conv3": "f.c.0", "bn3": "f.c.1",
             "downsample.0": "proj.0", "downsample.1": "proj.1"}
    renamed = {}
    for key, value in official.state_dict().items():
        module, leaf = key.rsplit(".", 1)
        renamed[f"{names[module]}.{leaf}"] = value
    tv.load_state_dict(renamed, strict=True)
    x = torch.randn(2, in_chs, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), official(x))


# ------------------------------------------------------------------------------------------ the timm-style API


@pytest.mark.parametrize("name", ["g_ghost_regnetx_032", "regnet_x_3_2gf"])
def test_features_only_and_intermediates(name):
    model = _model(name)
    assert [f["num_chs"] for f in model.feature_info] == [96, 192, 432, 1008]
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    features = ghostnets.create_model(name, features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()}, strict=True)
    assert not any(k.startswith("fc.") for k in features.state_dict())
    features.eval()
    x = torch.randn(2, 3, 40, 72)  # non-square
    with torch.no_grad():
        maps = features(x)
        final, inter = model.forward_intermediates(x)
        assert [tuple(m.shape) for m in maps] == [(2, 96, 10, 18), (2, 192, 5, 9), (2, 432, 3, 5), (2, 1008, 2, 3)]
        for got, want in zip(maps, inter):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(final, model.forward_features(x))
        deployed = ghostnets.reparameterize(features)
        for got, want in zip(deployed(x), maps):
            assert _rel(got, want) < 1e-5
    two = ghostnets.create_model(name, features_only=True, out_indices=(0, 2))
    stage4 = model.feature_info[3]["module"]
    assert not any(k.startswith(stage4 + ".") for k in two.state_dict())
    with torch.no_grad():
        assert [m.shape[1] for m in two.eval()(x)] == [96, 432]


@pytest.mark.parametrize("name", ["g_ghost_regnetx_032", "regnet_x_3_2gf"])
def test_timm_api(name):
    from timm.models import group_parameters

    model = ghostnets.create_model(name, in_chans=1, num_classes=7, drop_path_rate=0.1)
    x = torch.randn(2, 1, 32, 48)
    assert model(x).shape == (2, 7)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 1008)
    model.reset_classifier(0)
    assert model.eval()(x).shape == (2, 1008)
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        listed = [k for names in groups.values() for k in names]
        assert sorted(listed) == sorted(k for k, _ in model.named_parameters())
        assert groups[0] == [k for k, _ in model.named_parameters() if k.startswith(("conv1", "bn1", "stem"))]
    if name.startswith("g_ghost"):  # a G-Ghost stage's groups in the order its parts run
        order = {names[0].rsplit(".", 1)[0]: g for g, names in groups.items()}
        assert order["layer3.base.conv1"] < order["layer3.layers.0.conv1"] < order["layer3.layers.12.conv1"] \
            < order["layer3.merge.1"] < order["layer3.end.conv1"] < order["layer4.0.conv1"]
    with pytest.raises(ghostnets.InputShapeError):
        model(torch.randn(1, 1, 16, 16))


def test_builder_errors_say_what_to_do():
    with pytest.raises(ValueError, match="width multiplier"):
        ghostnets.create_model("g_ghost_regnetx_032", width=0.5)
    with pytest.raises(ValueError, match="002"):
        g_ghost_regnet("031")
    with pytest.raises(ValueError, match="not both"):
        g_ghost_regnet("032", depths=(2, 6, 15, 2))
    with pytest.raises(ValueError, match="depth >= 3"):
        g_ghost_regnet(depths=(2, 2, 2, 2), widths=(96, 192, 432, 1008), group_width=48)
    with pytest.raises(ValueError, match="raw channels"):
        g_ghost_regnet(depths=(1, 1, 3, 1), widths=(8, 16, 32, 64), group_width=64)
