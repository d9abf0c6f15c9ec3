"""EdgeNeXt (arXiv 2206.10589) against independent truths: timm's EdgeNeXt (the same weights give the same logits,
features and pre-logits), the exact counts of docs/reference.md "EdgeNeXt" (measured on timm's classes, copied here),
the official release files' names and wrapping, and the README's figures."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import ghostnets
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.edgenext_conv import ConvEncoder
from ghostnets.layers.sdta import SDTAEncoder
from ghostnets.models.edgenext import edgenext

timm = pytest.importorskip("timm")

NAMES = ["edgenext_xx_small", "edgenext_x_small", "edgenext_small", "edgenext_base"]
SWEEP = [n if n == NAMES[0] else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
# docs/reference.md "EdgeNeXt": timm's exact counts; MAdds as ghostnets.count_madds counts them at 256x256
PARAMS = {"edgenext_xx_small": 1_327_216, "edgenext_x_small": 2_336_804, "edgenext_small": 5_586_832,
          "edgenext_base": 18_511_292}
MADDS = {"edgenext_xx_small": 257_905_088, "edgenext_x_small": 533_192_192, "edgenext_small": 1_253_234_816,
         "edgenext_base": 3_828_296_384}
# the official README: top-1 and the release file of each variant
README = {"edgenext_xx_small": (71.23, "v1.0/edgenext_xx_small.pth"), "edgenext_x_small": (74.96,
          "v1.0/edgenext_x_small.pth"), "edgenext_small": (79.41, "v1.0/edgenext_small.pth"),
          "edgenext_base": (82.47, "v1.2/edgenext_base.pth")}
RELEASE = "https://github.com/mmaaz60/EdgeNeXt/releases/download/"


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Every parameter away from its init: layer scales O(0.3) instead of 1e-6 (which would hide a wrong block),
    LayerNorm affines around 1, temperatures in [0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if name.endswith("temperature"):
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.add_(1.0)
    return model.eval()


def pair(name: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    """timm's model with random weights and ours holding the same state dict (loaded strictly)."""
    reference = randomize(timm.create_model(name, **kwargs))
    ours = ghostnets.create_model(name, **kwargs).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


@pytest.fixture(scope="module")
def xxs() -> tuple[nn.Module, nn.Module]:
    """The fast tier's pair (read-only: tests that change a model copy it)."""
    return pair("edgenext_xx_small")


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return ((a - b).abs().max() / b.abs().max()).item() < tol


# --------------------------------------------------------------------------------------------- timm's numbers


@pytest.mark.parametrize("name", SWEEP)
def test_timms_weights_give_timms_logits(name, xxs):
    ours, reference = xxs if name == "edgenext_xx_small" else pair(name)
    x = torch.randn(2, 3, 64, 48)  # non-square; stage 2 (with the positional encoding) at 8x6
    with torch.no_grad():
        assert close(ours(x), reference(x))
        features = ours.forward_features(x)
        assert close(features, reference.forward_features(x))
        assert close(ours.forward_head(features, pre_logits=True), reference.forward_head(features, pre_logits=True))


@pytest.mark.parametrize("name", SWEEP)
def test_exact_counts_equal_timms(name):
    model, reference = ghostnets.create_model(name), timm.create_model(name)
    assert ghostnets.count_params(model) == ghostnets.count_params(reference) == PARAMS[name]
    assert ghostnets.count_madds(model, (256, 256)) == ghostnets.count_madds(reference, (256, 256), in_chans=3) \
        == MADDS[name]


def test_one_input_channel_and_an_odd_size_match_timm():
    ours, reference = pair("edgenext_xx_small", in_chans=1, num_classes=7)
    x = torch.randn(1, 1, 45, 37)
    with torch.no_grad():
        assert ours(x).shape == (1, 7) and close(ours(x), reference(x))


def test_features_only_equals_timms_feature_maps(xxs):
    ours, reference = xxs
    feats = ghostnets.create_model("edgenext_xx_small", features_only=True).eval()
    feats.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("head.")}, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
        got = feats(x)
    assert [f["reduction"] for f in feats.feature_info] == [4, 8, 16, 32]
    assert [f["num_chs"] for f in feats.feature_info] == [24, 48, 88, 168]
    assert len(got) == 4 and all(close(a, b) for a, b in zip(got, expected))


def test_blocks_equal_timms_blocks():
    """The registered blocks at stride 1 are timm's ConvBlock and SplitTransposeBlock (same keys, same function)."""
    from timm.models.edgenext import ConvBlock, SplitTransposeBlock

    x = torch.randn(2, 40, 9, 7)
    for ours, reference in [(create_block("edgenext_conv", 40, 40, 1, kernel_size=5), ConvBlock(40, kernel_size=5)),
                            (SDTAEncoder(40, num_heads=4, scales=3, use_pos_emb=True),
                             SplitTransposeBlock(40, num_scales=3, num_heads=4, use_pos_emb=True))]:
        randomize(reference)
        ours.load_state_dict(reference.state_dict(), strict=True)
        with torch.no_grad():
            assert close(ours.eval()(x), reference(x))


# --------------------------------------------------------------------------------------- official files, cards


def official_layout(timm_sd: dict) -> dict:
    """timm's names back to the official ones (docs/reference.md "EdgeNeXt", timm's checkpoint_filter_fn)."""
    out = {}
    for k, v in timm_sd.items():
        k = re.sub(r"^stem\.", "downsample_layers.0.", k)
        k = re.sub(r"^stages\.(\d+)\.downsample\.", r"downsample_layers.\1.", k)
        k = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", r"stages.\1.\2.", k)
        k = k.replace(".conv_dw.", ".dwconv.").replace(".mlp.fc", ".pwconv")
        k = k.replace("head.fc.", "head.").replace("head.norm.", "norm.")
        out[k] = v
    return out


def test_an_official_training_checkpoint_loads_its_ema_weights(tmp_path, xxs):
    ours, reference = xxs
    official = official_layout(reference.state_dict())
    assert {"downsample_layers.1.1.weight", "stages.1.1.pwconv1.weight", "stages.0.0.dwconv.weight",
            "stages.2.5.xca.temperature", "norm.weight", "head.weight"} <= set(official)
    noise = {k: torch.zeros_like(v) for k, v in official.items()}
    path = tmp_path / "edgenext_xx_small.pth"
    torch.save({"model": noise, "model_ema": official, "epoch": 299}, path)
    loaded = ghostnets.create_model("edgenext_xx_small", checkpoint_path=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert close(loaded(x), reference(x))
    plain = ghostnets.create_model("edgenext_xx_small", checkpoint_path=path, use_ema=False)
    assert torch.equal(plain.state_dict()["stem.0.weight"], torch.zeros_like(ours.state_dict()["stem.0.weight"]))


def test_cards_carry_the_readme_figures_and_the_official_eval():
    for name in NAMES:
        card = ghostnets.model_info(name)
        top1, file = README[name]
        assert card.top1 == card.weights.top1 == top1 and card.weights.url == RELEASE + file
        assert card.weights.use_ema is True and card.recipe == "edgenext"
        spec = card.eval_transform
        assert (spec.size, spec.resize, spec.interpolation) == (256, 292, "bicubic")  # crop_pct 224/256
        assert "LayerNorm stays" in card.notes


# ------------------------------------------------------------------------------------------------ deploy form


def test_deploy_form_is_the_training_form(xxs):
    model = xxs[0]
    deployed = ghostnets.reparameterize(model)
    assert deployed.deploy and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    built = ghostnets.create_model("edgenext_xx_small", deploy=True).eval()
    built.load_state_dict(deployed.state_dict(), strict=True)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        out = model(x)
        assert (deployed(x) - out).abs().max() <= 1e-4 * out.abs().max() and close(built(x), out)
    feats = ghostnets.reparameterize(ghostnets.create_model("edgenext_xx_small", features_only=True))
    assert [f.shape[1] for f in feats(x)] == [24, 48, 88, 168]


def test_classifier_api():
    model = ghostnets.create_model("edgenext_xx_small", drop_rate=0.1)
    assert model.get_classifier() is model.head.fc and model.num_features == 168
    norm = model.head.norm
    model.reset_classifier(3)
    assert model.head.norm is norm and model.head.fc.out_features == 3
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 168)


# --------------------------------------------------------------------------------------------- refused inputs


def test_bad_geometry_is_refused_with_the_rule():
    with pytest.raises(ValueError, match="leave the last chunk empty"):
        SDTAEncoder(5, num_heads=1, scales=4)
    with pytest.raises(ValueError, match="at least 2 chunks"):
        SDTAEncoder(16, num_heads=2, scales=1)
    with pytest.raises(ValueError, match="num_heads=3 must divide the 16 channels"):
        SDTAEncoder(16, num_heads=3)
    with pytest.raises(ValueError, match="odd kernel"):
        ConvEncoder(16, 4)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        create_block("sdta", 16, 24, 3)
    with pytest.raises(ValueError, match="in_chs must equal out_chs"):
        create_block("edgenext_conv", 16, 24, 1)
    with pytest.raises(ValueError, match="cannot honour se_ratio"):
        create_block("edgenext_conv", 16, 16, se_ratio=0.25)
    with pytest.raises(ValueError, match="no width multiplier"):
        ghostnets.create_model("edgenext_small", width=0.5)
    with pytest.raises(ValueError, match="the official ones are xx_small"):
        edgenext("tiny")
    with pytest.raises(ValueError, match="one entry per stage"):
        edgenext(depths=(1, 1, 1), dims=(8, 16, 32))
    with pytest.raises(ghostnets.errors.InputShapeError, match="at least 32"):
        ghostnets.create_model("edgenext_xx_small")(torch.randn(1, 3, 16, 16))


def test_a_custom_config_builds():
    model = edgenext(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), heads=2, num_classes=4).eval()
    assert model(torch.randn(2, 3, 32, 40)).shape == (2, 4)


# -------------------------------------------------------------------------------------------- export, training


@pytest.mark.runtimes
def test_onnx_export_computes_the_model(tmp_path, xxs):
    ort = pytest.importorskip("onnxruntime")
    from ghostnets.data.transforms import InputSpec
    from ghostnets.runtime import export_model

    model = xxs[0]
    export_model(model, tmp_path / "m.onnx", format="onnx", spec=InputSpec(size=64, resize=73))
    x = torch.randn(1, 3, 64, 64)
    got = torch.from_numpy(ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        assert close(got, model(x), 1e-4)


@pytest.mark.slow
def test_a_tiny_training_run(tmp_path):
    from pathlib import Path

    from ghostnets.train import load_recipe, train, update_config

    subset = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
    config = update_config(load_recipe("quick"), {"model": "edgenext_xx_small", "data": str(subset), "batch_size": 32,
                                                  "epochs": 1, "threads": 2, "opt": "adamw", "lr": 1e-3}, "test")
    summary = train(config, tmp_path / "run", progress_bar=False)
    assert (tmp_path / "run" / "best.safetensors").is_file() and summary
