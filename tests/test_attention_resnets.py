"""SE-ResNet-50 (arXiv 1709.01507) and ECA-ResNet-50 (arXiv 1910.03151), their attention modules and registered
blocks, against independent truths: timm's ``SEModule`` / ``EcaModule`` / ``seresnet50`` and timm's ResNet built
with ECA (the official ECA-Net layout once timm's ``se`` attribute is named ``eca``), with the same tensors, and the
figures of REFERENCE-ZOO §6 copied here, never read back from the cards."""

from __future__ import annotations

import functools
import re

import pytest
import torch
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.eca import ECAModule, eca_kernel_size
from ghostnets.layers.se_module import SEModule
from ghostnets.models.ecaresnet import ecaresnet
from ghostnets.train import load_recipe
from ghostnets.transforms.prune import prunable_pairs

timm = pytest.importorskip("timm")
from timm.layers import EcaModule as TimmEca  # noqa: E402
from timm.layers import SEModule as TimmSE  # noqa: E402
from timm.models.resnet import Bottleneck as TimmBottleneck  # noqa: E402
from timm.models.resnet import ResNet as TimmResNet  # noqa: E402

OFFICIAL_K = {256: 3, 512: 5, 1024: 5, 2048: 7}  # eca_resnet50_k3557 (REFERENCE-ZOO §6), by block output width


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module.eval()


def _official_eca_attention(channels: int, **kwargs) -> nn.Module:
    return TimmEca(kernel_size=OFFICIAL_K[channels], **kwargs)  # channels=None: timm takes the given k


def _timm_to_eca_layout(state: dict) -> dict:
    return {re.sub(r"(^|\.)se\.conv\.", r"\1eca.conv.", k): v for k, v in state.items()}


@functools.cache
def _timm_seresnet50() -> nn.Module:
    return randomize_bn(timm.create_model("seresnet50"), torch.Generator().manual_seed(1)).eval()


@functools.cache
def _timm_ecaresnet50(adaptive: bool) -> nn.Module:
    attn = "eca" if adaptive else _official_eca_attention
    net = TimmResNet(TimmBottleneck, [3, 4, 6, 3], block_args={"attn_layer": attn})
    return randomize_bn(net, torch.Generator().manual_seed(2)).eval()


# ------------------------------------------------------------------------------------------------ the modules


@pytest.mark.parametrize("channels", [pytest.param(64, marks=pytest.mark.slow), 256,
                                      pytest.param(2048, marks=pytest.mark.slow)])
def test_modules_equal_timms_with_the_same_weights(channels):
    x = torch.randn(2, channels, 5, 7)
    ours, theirs = SEModule(channels), _randomize(TimmSE(channels), 0)
    assert ours.fc1.out_channels == max(8, channels // 16)  # r = 16, timm divisor 8 (REFERENCE-ZOO §6: 16 at 256)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x))
    for k in (3, 5, 7, "adaptive"):
        ours = ECAModule(channels, k)
        theirs = _randomize(TimmEca(channels) if k == "adaptive" else TimmEca(kernel_size=k), 1)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(ours.eval()(x), theirs(x))


def test_adaptive_kernel_rule_and_errors():
    # REFERENCE-ZOO §6: timm's rule gives k = 5, 5, 5, 7 on ResNet-50's widths
    assert [eca_kernel_size(c) for c in (256, 512, 1024, 2048)] == [5, 5, 5, 7]
    assert [eca_kernel_size(c) for c in (16, 64, 128)] == [3, 3, 5]
    with pytest.raises(ValueError, match="odd integer >= 1 or 'adaptive'"):
        ECAModule(64, 4)
    with pytest.raises(ValueError, match="one odd kernel size per stage"):
        ecaresnet(eca_k=(3, 5))
    with pytest.raises(ValueError, match="odd integer"):
        ghostnets.create_model("ecaresnet50", eca_k=(3, 4, 5, 7))
    with pytest.raises(ValueError, match=r"SE ratio must be in \(0, 1\]"):
        SEModule(64, 0)
    with pytest.raises(ValueError, match=r"SE ratio must be in \(0, 1\]"):
        create_block("se", 16, 64, se_ratio=1.5)


@pytest.mark.slow
def test_registered_blocks_are_timms_bottlenecks():
    x = torch.randn(2, 256, 8, 6)
    for name, attn in (("se", "se"), ("eca", "eca")):
        theirs = randomize_bn(_randomize(TimmBottleneck(256, 64, attn_layer=attn), 4)).eval()
        ours = create_block(name, 256, 256, 1).eval()
        ours.load_state_dict(_timm_to_eca_layout(theirs.state_dict()), strict=True)
        with torch.no_grad():
            assert _rel(ours(x), theirs(x)) < 1e-5
            deployed = ghostnets.reparameterize(ours)
            assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
            assert _rel(deployed(x), theirs(x)) < 1e-5
    block = create_block("se", 16, 64, 2, mid_chs=24, se_ratio=0.25, kernel_size=5)
    assert block.conv2.weight.shape == (24, 24, 5, 5) and block.se.fc1.out_channels == 16
    assert create_block("eca", 16, 64, 2).eca.conv.kernel_size == (3,)
    with pytest.raises(ValueError, match="'eca' cannot honour se_ratio"):
        create_block("eca", 16, 64, se_ratio=0.25)


# --------------------------------------------------------------------------------------------------- SE-ResNet


def test_seresnet50_loads_timms_state_dict_and_gives_timms_logits():
    reference = _timm_seresnet50()
    model = ghostnets.create_model("seresnet50").eval()
    assert set(model.state_dict()) == set(reference.state_dict())
    assert "layer1.0.se.fc1.weight" in model.state_dict() and "layer4.2.se.fc2.bias" in model.state_dict()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
    assert ghostnets.count_params(model) == 28_088_024  # REFERENCE-ZOO §6 (timm seresnet50)


@pytest.mark.slow
def test_seresnet50_counts_and_card():
    model, card = ghostnets.create_model("seresnet50"), ghostnets.model_info("seresnet50")
    assert card.params == ghostnets.count_params(_timm_seresnet50()) == ghostnets.count_params(model) == 28_088_024
    madds = ghostnets.count_madds(model, (224, 224))
    assert card.madds == madds == ghostnets.count_madds(_timm_seresnet50(), (224, 224), in_chans=3)
    assert round(madds / 1e9, 2) == 4.09  # REFERENCE-ZOO §6: 4.09 GMACs
    # the paper's SE-ResNet-50: 23.29 / 6.62 % error, 3.87 GFLOPs; the README's re-trained one 22.37 %
    assert (card.top1, card.top5, card.paper_madds_m) == (76.71, 93.38, 3870) and "22.37" in card.notes
    cfg = timm.models.get_pretrained_cfg("seresnet50.ra2_in1k")
    # timm's results-imagenet.csv: seresnet50.ra2_in1k at 224, crop 0.875, bicubic: 80.260 top-1
    assert card.weights.url == cfg.url and card.weights.top1 == 80.26 and card.weights.sha256 is None
    assert (cfg.crop_pct, cfg.interpolation) == (0.875, "bicubic") and card.eval_transform.resize == 256
    recipe = load_recipe(card.recipe)  # the paper's: batch 1024, lr 0.6, 100 epochs, /10 every 30
    assert (recipe.batch_size, recipe.lr, recipe.lr_base_batch, recipe.epochs, recipe.sched, recipe.decay_epochs,
            recipe.decay_rate) == (1024, 0.6, 1024, 100, "step", 30, 0.1)


# -------------------------------------------------------------------------------------------------- ECA-ResNet


def test_ecaresnet50_is_the_official_layout_with_timms_eca_function():
    """timm's ResNet with ECA of the official kernels (3, 5, 5, 7) is the official eca_resnet50 once timm's
    attribute ``se`` is named ``eca`` (REFERENCE-ZOO §6: eca_resnet.py applies ECA after bn3, before the add)."""
    reference = _timm_ecaresnet50(adaptive=False)
    model = ghostnets.create_model("ecaresnet50").eval()
    state = _timm_to_eca_layout(reference.state_dict())
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)
    convs = {k: v.shape for k, v in model.state_dict().items() if ".eca." in k}
    assert len(convs) == 16 and convs["layer1.0.eca.conv.weight"] == (1, 1, 3)
    assert convs["layer2.3.eca.conv.weight"] == convs["layer3.5.eca.conv.weight"] == (1, 1, 5)
    assert convs["layer4.2.eca.conv.weight"] == (1, 1, 7)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
    # REFERENCE-ZOO §6: official eca_resnet50(k=[3, 5, 5, 7]) = 25,557,112 = ResNet-50 + 80
    assert ghostnets.count_params(model) == ghostnets.count_params(reference) == 25_557_112


@pytest.mark.slow
def test_adaptive_ecaresnet50_equals_timms_eca_resnet():
    reference = _timm_ecaresnet50(adaptive=True)
    model = ghostnets.create_model("ecaresnet50", eca_k="adaptive").eval()
    model.load_state_dict(_timm_to_eca_layout(reference.state_dict()), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
    assert ghostnets.count_params(model) == 25_557_118  # REFERENCE-ZOO §6: timm's, +86 over ResNet-50


@pytest.mark.slow
def test_ecaresnet50_counts_and_card():
    card, model = ghostnets.model_info("ecaresnet50"), ghostnets.create_model("ecaresnet50")
    madds = ghostnets.count_madds(model, (224, 224))
    assert card.params == 25_557_112 and card.madds == madds
    assert madds == ghostnets.count_madds(_timm_ecaresnet50(adaptive=False), (224, 224), in_chans=3)
    # README ECA-Net50: 24.37M (1024**2 units) params, 3.86G (1024**3) FLOPs, 77.42 / 93.62
    assert round(25_557_112 / 1024**2, 2) == 24.37
    assert (card.top1, card.top5) == (77.42, 93.62) and card.weights is None
    assert card.paper_params_m == round(24.37 * 1024**2 / 1e6, 2) and card.paper_madds_m == round(3.86 * 1024**3 / 1e6)
    recipe = load_recipe(card.recipe)  # official main.py: batch 256, lr 0.1, wd 1e-4, 100 epochs, /10 every 30
    assert (recipe.batch_size, recipe.lr, recipe.weight_decay, recipe.epochs, recipe.sched, recipe.decay_epochs) == (
        256, 0.1, 1e-4, 100, "step", 30)
    assert card.eval_transform.interpolation == "bilinear"


# ----------------------------------------------------------------------------- deploy, features, ghostify, prune


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seresnet50", "ecaresnet50"])
def test_deploy_features_ghostify_and_prune(name):
    model = randomize_bn(ghostnets.create_model(name), torch.Generator().manual_seed(6)).eval()
    deployed = ghostnets.reparameterize(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        want = model(x)
        assert _rel(deployed(x), want) < 1e-4
        built = ghostnets.create_model(name, deploy=True).eval()
        built.load_state_dict(deployed.state_dict(), strict=True)
        torch.testing.assert_close(built(x), deployed(x))
        features = ghostnets.create_model(name, features_only=True, out_indices=(1, 2, 3)).eval()
        features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()},
                                 strict=True)
        assert [f["reduction"] for f in features.feature_info] == [8, 16, 32]
        final, inter = model.forward_intermediates(x)
        for got, own in zip(features(x), inter[1:]):
            torch.testing.assert_close(got, own)
        assert ghostnets.ghostify(model, report=False).eval()(x).shape == (1, 1000)
    pairs = {p.conv for p in prunable_pairs(model)}  # conv1 -> conv2 -> conv3: the attention acts on conv3's output
    assert {"layer1.0.conv1", "layer1.0.conv2"} <= pairs and not any(".se." in p or ".eca." in p for p in pairs)


@pytest.mark.slow
def test_an_official_eca_training_file_loads(tmp_path):
    """main.py saves {'epoch', 'arch', 'state_dict' (of nn.DataParallel: 'module.' keys), 'best_prec1',
    'optimizer'}; the checkpoint reader unwraps and strips it (a quarter-width net keeps the file small)."""
    from ghostnets.checkpoint import read_state_dict

    model = ecaresnet(width=0.25).eval()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 100, "arch": "eca_resnet50", "state_dict": state, "best_prec1": torch.tensor(77.42),
                "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "model_best.pth.tar")
    loaded, _ = read_state_dict(tmp_path / "model_best.pth.tar")
    ecaresnet(width=0.25).load_state_dict(loaded, strict=True)
