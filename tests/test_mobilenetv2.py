"""MobileNetV2 (arXiv 1801.04381) and its inverted residual against independent truths: torchvision's
``mobilenet_v2(width_mult=w)`` (its state dicts, logits, counts and meta), timm's ``mobilenetv2_*`` (its logits and
feature maps with the same tensors), and the figures of docs/reference.md §14 copied here, never read from the cards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as TVInvertedResidual

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.inverted_residual import InvertedResidual
from ghostnets.models.mobilenetv2 import mobilenetv2, timm_to_torchvision
from ghostnets.train import load_recipe

WIDTHS = {"mobilenetv2_050": 0.5, "mobilenetv2_075": 0.75, "mobilenetv2_100": 1.0, "mobilenetv2_140": 1.4}
FAST = "mobilenetv2_050"
SWEEP = [n if n == FAST else pytest.param(n, marks=pytest.mark.slow) for n in WIDTHS]
# the authors' TF-slim table (docs/reference.md §14): top-1 of mobilenet_v2_{w}_224
SLIM_TOP1 = {"mobilenetv2_050": 65.4, "mobilenetv2_075": 69.8, "mobilenetv2_140": 75.0}
SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _model(name: str, **kwargs) -> nn.Module:
    return randomize_bn(ghostnets.create_model(name, **kwargs), torch.Generator().manual_seed(1)).eval()


# ------------------------------------------------------------------------------------------------ torchvision


@pytest.mark.parametrize("name", SWEEP)
def test_torchvision_state_dict_loads_strictly_and_gives_torchvision_logits(name):
    reference = randomize_bn(torchvision.models.mobilenet_v2(width_mult=WIDTHS[name])).eval()
    model = ghostnets.create_model(name).eval()
    assert list(model.state_dict()) == list(reference.state_dict())  # torchvision's keys, in torchvision's order
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
    assert model.drop_rate == 0.2 and model.classifier[0].p == reference.classifier[0].p


@pytest.mark.parametrize("name", SWEEP)
def test_counts_equal_torchvision_at_every_width(name):
    reference = torchvision.models.mobilenet_v2(width_mult=WIDTHS[name])
    card, model = ghostnets.model_info(name), ghostnets.create_model(name)
    assert card.params == ghostnets.count_params(reference) == ghostnets.count_params(model)
    madds = ghostnets.count_madds(reference, (224, 224), in_chans=3)
    assert card.madds == madds == ghostnets.count_madds(model, (224, 224))
    assert len(model.state_dict()) == 314  # REFERENCE-ZOO §4


def test_the_card_of_the_torchvision_weights():
    weights = torchvision.models.MobileNet_V2_Weights
    v1, v2 = weights.IMAGENET1K_V1, weights.IMAGENET1K_V2
    card = ghostnets.model_info("mobilenetv2_100")
    assert card.params == v1.meta["num_params"] == 3_504_872
    assert round(card.madds / 1e9, 3) == v1.meta["_ops"]  # torchvision's GFLOPS are GMAdds
    assert card.top1 == card.weights.top1 == v1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert card.top5 == v1.meta["_metrics"]["ImageNet-1K"]["acc@5"]
    assert card.weights.url == v1.url and v2.url in card.notes
    tv_eval = v1.transforms()
    assert card.eval_transform == ghostnets.registry.TORCHVISION_INPUT
    assert (tv_eval.resize_size, tv_eval.crop_size) == ([256], [224])
    assert card.eval_transform.interpolation == "bilinear" and card.eval_transform.input_size[1:] == (224, 224)
    recipe = load_recipe(card.recipe)  # torchvision's, docs/reference.md §14
    assert (recipe.opt, recipe.lr, recipe.lr_base_batch, recipe.weight_decay, recipe.epochs) == ("sgd", 0.045, 256,
                                                                                                4e-5, 300)
    assert (recipe.sched, recipe.decay_epochs, recipe.decay_rate, recipe.model) == ("step", 1, 0.98, "mobilenetv2_100")
    for name, top1 in SLIM_TOP1.items():
        other = ghostnets.model_info(name)
        assert other.top1 == top1 and other.weights is None and other.family == "mobilenetv2"


# ----------------------------------------------------------------------------------------------------- timm


@pytest.mark.parametrize("name", SWEEP)
def test_timm_state_dict_maps_onto_the_torchvision_layout_and_gives_timm_logits(name):
    timm = pytest.importorskip("timm")
    reference = randomize_bn(timm.create_model(name), torch.Generator().manual_seed(2)).eval()
    model = ghostnets.create_model(name).eval()
    model.load_state_dict(timm_to_torchvision(reference.state_dict()), strict=True)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5
    assert ghostnets.count_params(reference) == ghostnets.model_info(name).params


def test_timm_mapping_refuses_other_layouts():
    with pytest.raises(ValueError, match="not a timm mobilenetv2"):
        timm_to_torchvision(torchvision.models.mobilenet_v2().state_dict())
    sd = {"conv_stem.weight": torch.zeros(1)}
    sd.update({f"blocks.{s}.{j}.conv_pwl.weight": torch.zeros(1)
               for s, n in enumerate((1, 2, 3, 4, 3, 3, 1)) for j in range(n)})
    with pytest.raises(ValueError, match="conv_dw"):  # blocks.0.0 is a depthwise-separable block in timm
        timm_to_torchvision(sd)
    sd = {k: v for k, v in sd.items() if not k.startswith("blocks.0.")}
    sd["blocks.0.0.se.conv_reduce.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="SE"):
        timm_to_torchvision(sd)


# ------------------------------------------------------------------------------------------------- the block


@pytest.mark.parametrize(("in_chs", "out_chs", "stride", "t"), [(32, 16, 1, 1), (16, 24, 2, 6), (24, 24, 1, 6)])
def test_block_is_torchvisions_inverted_residual(in_chs, out_chs, stride, t):
    reference = randomize_bn(TVInvertedResidual(in_chs, out_chs, stride, t)).eval()
    block = create_block("mbv2", in_chs, out_chs, stride, expansion=t).eval()
    assert list(block.state_dict()) == list(reference.state_dict())
    block.load_state_dict(reference.state_dict(), strict=True)
    assert block.use_res_connect == reference.use_res_connect == (stride == 1 and in_chs == out_chs)
    x = torch.randn(2, in_chs, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x))
        deployed = ghostnets.reparameterize(block)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        assert _rel(deployed(x), reference(x)) < 1e-5
        built = InvertedResidual(in_chs, out_chs, stride, expansion=t, deploy=True).eval()
        built.load_state_dict(deployed.state_dict(), strict=True)
        torch.testing.assert_close(built(x), deployed(x))


def test_block_honours_the_shared_keywords():
    block = create_block("mbv2", 16, 16, 1, kernel_size=5, mid_chs=40, act_layer=nn.SiLU,
                         norm_layer=lambda c: nn.GroupNorm(4, c))
    assert block.conv[0][0].weight.shape == (40, 16, 1, 1) and block.conv[1][0].weight.shape == (40, 1, 5, 5)
    assert isinstance(block.conv[0][2], nn.SiLU) and isinstance(block.conv[3], nn.GroupNorm)
    assert block(torch.randn(1, 16, 9, 9)).shape == (1, 16, 9, 9)
    assert create_block("mbv2", 16, 24, 2).conv[0][0].out_channels == 96  # default t = 6
    assert len(create_block("mbv2", 16, 24, 2, mid_chs=16).conv) == 3  # hidden == in: no expansion conv


def test_block_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match=r"'mbv2' cannot honour se_ratio=0.25"):
        create_block("mbv2", 16, 24, 2, se_ratio=0.25)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        InvertedResidual(16, 24, 3)
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        InvertedResidual(16, 24, 1, kernel_size=4)
    with pytest.raises(ValueError, match="hidden width must be >= 1"):
        InvertedResidual(16, 24, 1, mid_chs=0)
    with pytest.raises(ValueError, match="not both"):
        InvertedResidual(16, 24, 1, expansion=6, mid_chs=96)
    with pytest.raises(ValueError, match="no deploy form"):
        InvertedResidual(16, 24, 1, norm_layer=lambda c: nn.GroupNorm(4, c), deploy=True)


# ------------------------------------------------------------------------------------------------ deploy form


@pytest.mark.parametrize("name", SWEEP)
def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed(name):
    assert_deploy_form(name, _model(name), torch.randn(2, 3, 64, 80), 1e-4)


# ------------------------------------------------------------------------------------------ the timm-style API


def test_features_only_are_timms_feature_maps():
    timm = pytest.importorskip("timm")
    reference = randomize_bn(timm.create_model(FAST), torch.Generator().manual_seed(3)).eval()
    taps = timm.create_model(FAST, features_only=True).eval()
    taps.load_state_dict({k: v for k, v in reference.state_dict().items() if k in taps.state_dict()}, strict=True)
    model = ghostnets.create_model(FAST).eval()
    model.load_state_dict(timm_to_torchvision(reference.state_dict()), strict=True)
    assert [f["num_chs"] for f in model.feature_info] == taps.feature_info.channels() == [8, 16, 16, 48, 160]
    assert [f["reduction"] for f in model.feature_info] == taps.feature_info.reduction() == [2, 4, 8, 16, 32]
    features = ghostnets.create_model(FAST, features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()}, strict=True)
    assert not any(k.startswith(("classifier.", "features.18.")) for k in features.state_dict())
    features.eval()
    x = torch.randn(2, 3, 40, 72)  # non-square
    with torch.no_grad():
        maps = features(x)
        final, inter = model.forward_intermediates(x)
        for got, want, own in zip(maps, taps(x), inter):
            assert got.shape == want.shape and _rel(got, want) < 1e-5
            torch.testing.assert_close(got, own)
        torch.testing.assert_close(final, model.forward_features(x))
        for got, want in zip(ghostnets.reparameterize(features)(x), maps):
            assert _rel(got, want) < 1e-5
    two = ghostnets.create_model(FAST, features_only=True, out_indices=(1, 2))
    with torch.no_grad():
        assert [m.shape[1] for m in two.eval()(x)] == [16, 16]
    assert not any(k.startswith("features.7.") for k in two.state_dict())


def test_timm_api_in_chans_and_the_head():
    from timm.models import group_parameters

    model = ghostnets.create_model(FAST, in_chans=1, num_classes=7, drop_path_rate=0.1)
    x = torch.randn(2, 1, 32, 48)
    assert model(x).shape == (2, 7)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 1280)
    assert isinstance(model.get_classifier()[1], nn.Linear) and model.get_classifier()[1].out_features == 7
    model.reset_classifier(0)
    assert model.eval()(x).shape == (2, 1280)
    groups = group_parameters(model, model.group_matcher())
    assert sorted(k for names in groups.values() for k in names) == sorted(k for k, _ in model.named_parameters())
    assert groups[0] == [k for k, _ in model.named_parameters() if k.startswith("features.0.")]
    with pytest.raises(ghostnets.InputShapeError):
        model(torch.randn(1, 3, 32, 32))  # 3 channels into a 1-channel stem
    assert mobilenetv2(0.35).features[0][0].out_channels == 16  # timm's mobilenetv2_035 stem


def test_builder_errors_say_what_to_do():
    with pytest.raises(ValueError, match="width must be a positive number"):
        ghostnets.create_model(FAST, width=0)
    with pytest.raises(TypeError, match="takes no argument"):
        ghostnets.create_model(FAST, se_ratio=0.25)


@pytest.mark.slow
def test_mobilenetv2_035_equals_timms():
    timm = pytest.importorskip("timm")
    reference = randomize_bn(timm.create_model("mobilenetv2_035")).eval()
    model = mobilenetv2(0.35).eval()
    model.load_state_dict(timm_to_torchvision(reference.state_dict()), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


# --------------------------------------------------------------------------------------------- export, training


@pytest.mark.runtimes
def test_onnx_file_computes_the_training_form(tmp_path):
    np = pytest.importorskip("numpy")
    ort = pytest.importorskip("onnxruntime")
    from ghostnets.data.transforms import InputSpec
    from ghostnets.runtime import export_model

    model = _model(FAST)
    export_model(model, tmp_path / "m.onnx", format="onnx", spec=InputSpec(size=64, resize=73))
    x = torch.randn(1, 3, 64, 64)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1, np.abs(got).max()))


@pytest.mark.slow
def test_a_tiny_training_run(tmp_path):
    from ghostnets.train import train, update_config

    config = update_config(load_recipe("quick"), {"model": FAST, "data": str(SUBSET), "batch_size": 32, "epochs": 1,
                                                  "threads": 2}, "test")
    summary = train(config, tmp_path / "run", progress_bar=False)
    assert summary["epochs"] == 1 and (tmp_path / "run" / "best.safetensors").is_file()
