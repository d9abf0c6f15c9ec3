"""ShuffleNet V2 (arXiv 1807.11164) against independent truths: torchvision's models (state dicts, logits with the
same weights and randomized BatchNorm statistics, counts) and its weights' metadata, and the exact counts of
docs/reference.md §13 (copied here, never read from the cards)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.shufflenetv2 import InvertedResidual

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.shufflenet_v2 import ShuffleV2Block
from ghostnets.models.shufflenetv2 import shufflenetv2

NAMES = ["shufflenetv2_x0_5", "shufflenetv2_x1_0", "shufflenetv2_x1_5", "shufflenetv2_x2_0"]
SWEEP = [n if n == NAMES[0] else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
# docs/reference.md §13 (torchvision's meta num_params; MAdds counted on torchvision's models at 224)
PARAMS = {"shufflenetv2_x0_5": 1_366_792, "shufflenetv2_x1_0": 2_278_604, "shufflenetv2_x1_5": 3_503_624,
          "shufflenetv2_x2_0": 7_393_996}
MADDS = {"shufflenetv2_x0_5": 40_476_448, "shufflenetv2_x1_0": 144_907_992, "shufflenetv2_x1_5": 295_759_392,
         "shufflenetv2_x2_0": 583_253_464}
TOP1 = {"shufflenetv2_x0_5": 60.552, "shufflenetv2_x1_0": 69.362, "shufflenetv2_x1_5": 72.996,
        "shufflenetv2_x2_0": 76.230}
TV_WEIGHTS = {"shufflenetv2_x0_5": torchvision.models.ShuffleNet_V2_X0_5_Weights,
              "shufflenetv2_x1_0": torchvision.models.ShuffleNet_V2_X1_0_Weights,
              "shufflenetv2_x1_5": torchvision.models.ShuffleNet_V2_X1_5_Weights,
              "shufflenetv2_x2_0": torchvision.models.ShuffleNet_V2_X2_0_Weights}
SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _torchvision(name: str) -> nn.Module:
    return randomize_bn(getattr(torchvision.models, name.replace("shufflenetv2", "shufflenet_v2"))(),
                        torch.Generator().manual_seed(1)).eval()


def _model(name: str, **kwargs) -> nn.Module:
    return randomize_bn(ghostnets.create_model(name, **kwargs), torch.Generator().manual_seed(1)).eval()


# ------------------------------------------------------------------------------------------------ torchvision


@pytest.mark.parametrize("name", SWEEP)
def test_torchvision_state_dict_loads_strictly_and_gives_torchvision_logits(name):
    reference = _torchvision(name)
    model = ghostnets.create_model(name).eval()
    assert list(model.state_dict()) == list(reference.state_dict())  # torchvision's keys, in torchvision's order
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


def test_a_torchvision_weight_file_loads_through_create_model(tmp_path):
    reference = _torchvision("shufflenetv2_x0_5")
    path = tmp_path / "shufflenetv2_x0.5-f707e7126e.pth"
    torch.save(reference.state_dict(), path)  # what download.pytorch.org serves: a plain state dict
    model = ghostnets.create_model("shufflenetv2_x0_5", checkpoint_path=path).eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert _rel(model(x), reference(x)) < 1e-5


@pytest.mark.parametrize("name", SWEEP)
def test_counts_equal_torchvision_and_its_meta(name):
    weights = TV_WEIGHTS[name].IMAGENET1K_V1
    card = ghostnets.model_info(name)
    model = ghostnets.create_model(name)
    madds = ghostnets.count_madds(_torchvision(name), (224, 224), in_chans=3)
    assert card.madds == madds == MADDS[name] == ghostnets.count_madds(model, (224, 224))
    assert round(madds / 1e9, 3) == weights.meta["_ops"]  # torchvision's GFLOPS are GMAdds, to 3 decimals
    assert card.params == weights.meta["num_params"] == PARAMS[name] == ghostnets.count_params(model)


@pytest.mark.parametrize("name", NAMES)
def test_cards_carry_torchvision_weights_top1_and_eval_transform(name):
    weights = TV_WEIGHTS[name].IMAGENET1K_V1
    card = ghostnets.model_info(name)
    assert card.family == "shufflenetv2" and card.weights.url == weights.url
    assert card.top1 == card.weights.top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] == TOP1[name]
    assert card.top5 == weights.meta["_metrics"]["ImageNet-1K"]["acc@5"]
    preset = weights.transforms()  # torchvision's ImageClassification: resize, crop, interpolation, mean/std
    spec = card.eval_transform
    assert (spec.resize, spec.size, spec.interpolation) == (preset.resize_size[0], preset.crop_size[0],
                                                             preset.interpolation.value)
    assert (spec.mean, spec.std) == (tuple(preset.mean), tuple(preset.std))
    if name in ("shufflenetv2_x0_5", "shufflenetv2_x1_0"):
        assert spec == ghostnets.registry.TORCHVISION_INPUT


def test_layout_of_the_x1_0_state_dict():
    sd = ghostnets.create_model("shufflenetv2_x1_0").state_dict()
    assert len(sd) == 338  # docs/reference.md §13
    shapes = {"stage2.0.branch1.0.weight": (24, 1, 3, 3), "stage2.0.branch1.2.weight": (58, 24, 1, 1),
              "stage2.0.branch2.0.weight": (58, 24, 1, 1), "stage2.1.branch2.0.weight": (58, 58, 1, 1),
              "stage2.1.branch2.3.weight": (58, 1, 3, 3)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert not any(k.startswith("stage2.1.branch1") for k in sd)
    assert sd["conv5.0.weight"].shape == (1024, 464, 1, 1) and sd["fc.weight"].shape == (1000, 1024)


@pytest.mark.parametrize("in_chs, out_chs, stride", [(24, 116, 2), (116, 116, 1)])
def test_the_unit_equals_torchvisions_inverted_residual(in_chs, out_chs, stride):
    reference = randomize_bn(InvertedResidual(in_chs, out_chs, stride)).eval()
    unit = ShuffleV2Block(in_chs, out_chs, stride).eval()
    unit.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, in_chs, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), reference(x), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ deploy form


@pytest.mark.parametrize("name", SWEEP)
def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed(name):
    assert_deploy_form(name, _model(name), torch.randn(2, 3, 64, 80), 1e-5)


# ------------------------------------------------------------------------------------------ the timm-style API


def test_features_only_and_intermediates():
    model = _model("shufflenetv2_x0_5")
    assert [f["num_chs"] for f in model.feature_info] == [24, 24, 48, 96, 1024]
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    features = ghostnets.create_model("shufflenetv2_x0_5", features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()}, strict=True)
    assert not any(k.startswith("fc.") for k in features.state_dict())
    features.eval()
    x = torch.randn(2, 3, 40, 72)  # non-square
    with torch.no_grad():
        maps = features(x)
        final, inter = model.forward_intermediates(x)
        assert [tuple(m.shape) for m in maps] == [(2, 24, 20, 36), (2, 24, 10, 18), (2, 48, 5, 9), (2, 96, 3, 5),
                                                  (2, 1024, 2, 3)]
        for got, want in zip(maps, inter):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(final, model.forward_features(x))
        deployed = ghostnets.reparameterize(features)
        for got, want in zip(deployed(x), maps):
            assert _rel(got, want) < 1e-5
    two = ghostnets.create_model("shufflenetv2_x0_5", features_only=True, out_indices=(2, 3))
    assert not any(k.startswith(("stage4.", "conv5.")) for k in two.state_dict())
    with torch.no_grad():
        assert [m.shape[1] for m in two.eval()(x)] == [48, 96]


def test_timm_api_and_any_in_chans():
    from timm.models import group_parameters

    model = ghostnets.create_model("shufflenetv2_x0_5", in_chans=1, num_classes=7)
    x = torch.randn(2, 1, 32, 48)
    assert model(x).shape == (2, 7)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 1024)
    model.reset_classifier(0)
    assert model.eval()(x).shape == (2, 1024)
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        listed = [k for names in groups.values() for k in names]
        assert sorted(listed) == sorted(k for k, _ in model.named_parameters())
        assert groups[0] == [k for k, _ in model.named_parameters() if k.startswith("conv1.")]
        assert list(groups.values())[-1] == [k for k, _ in model.named_parameters() if k.startswith("conv5.")]
    with pytest.raises(ghostnets.InputShapeError):
        model(torch.randn(1, 3, 32, 32))


def test_custom_channels_and_kernel_size_build():
    model = shufflenetv2(channels=(16, 32, 64, 128, 256), repeats=(1, 2, 1), kernel_size=5, num_classes=3).eval()
    assert model.stage3[1].branch2[3].kernel_size == (5, 5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


# ------------------------------------------------------------------------------------------------ bad input


def test_the_unit_refuses_bad_geometry_with_the_rule():
    with pytest.raises(ValueError, match="stride 1 .* or 2"):
        ShuffleV2Block(24, 48, 3)
    with pytest.raises(ValueError, match="in_chs == out_chs"):
        ShuffleV2Block(24, 48, 1)
    with pytest.raises(ValueError, match="even"):
        ShuffleV2Block(25, 25, 1)  # an uneven split
    with pytest.raises(ValueError, match="even"):
        ShuffleV2Block(24, 49, 2)
    with pytest.raises(ValueError, match="odd"):
        ShuffleV2Block(24, 48, 2, kernel_size=4)
    with pytest.raises(ValueError, match="cannot honour se_ratio"):
        create_block("shufflev2", 24, 48, 2, se_ratio=0.25)


def test_the_registered_block_honours_kernel_size_mid_chs_and_expansion():
    unit = create_block("shufflev2", 24, 48, 2, kernel_size=5, mid_chs=40)
    assert unit.branch1[0].kernel_size == (5, 5) and unit.branch2[0].out_channels == 40
    assert unit.branch2[5].out_channels == 24
    assert create_block("shufflev2", 48, 48, 1, expansion=2.0).branch2[0].out_channels == 48
    assert unit(torch.randn(1, 24, 16, 16)).shape == (1, 48, 8, 8)


def test_builder_errors_say_what_to_do():
    with pytest.raises(ValueError, match="one of"):
        ghostnets.create_model("shufflenetv2_x1_0", width=0.75)
    with pytest.raises(ValueError, match="drop_path_rate must be 0"):
        ghostnets.create_model("shufflenetv2_x1_0", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="5 widths"):
        shufflenetv2(channels=(24, 48, 96))
    with pytest.raises(ValueError, match="repeats"):
        shufflenetv2(repeats=(4, 8))


# ------------------------------------------------------------------------------------------ runtimes, training


@pytest.mark.runtimes
def test_onnx_export_computes_the_training_form(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from ghostnets.data.transforms import InputSpec
    from ghostnets.runtime import export_model

    model = _model("shufflenetv2_x0_5")
    export_model(model, tmp_path / "m.onnx", format="onnx", spec=InputSpec(size=64, resize=73), dynamic_batch=True)
    x = torch.randn(3, 3, 64, 64)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max())


@pytest.mark.slow
def test_a_tiny_training_run_learns(tmp_path):
    from ghostnets.train import load_recipe, train, update_config

    config = update_config(load_recipe("quick"), {"model": "shufflenetv2_x0_5", "data": str(SUBSET),
                                                  "batch_size": 32, "epochs": 1, "threads": 2}, "test")
    summary = train(config, tmp_path / "run", progress_bar=False)
    assert summary["epochs"] == 1 and summary["images_per_second"] > 0


def test_the_recipe_holds_the_official_training_settings():
    """docs/reference.md §13: megvii's ShuffleNetV2/train.py defaults."""
    from ghostnets.train import load_recipe

    r = load_recipe(ghostnets.model_info("shufflenetv2_x1_0").recipe)
    assert (r.opt, r.momentum, r.lr, r.lr_base_batch, r.weight_decay, r.smoothing) == ("sgd", 0.9, 0.5, 1024, 4e-5, 0.1)
    assert (r.sched, r.decay_rate, r.min_lr, r.epochs, r.batch_size) == ("poly", 1.0, 0.0, 240, 1024)  # linear to 0
