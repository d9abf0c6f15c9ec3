"""ShuffleNet V1 (arXiv 1707.01083) against independent truths: megvii's exact counts and key layout
(docs/reference.md "ShuffleNet V1", copied here, never read from the cards), pytorchcv's ShuffleNet (its counts, and
its logits with our weights once its two documented differences from megvii's code — the inverse shuffle order and
the concat order — are set to megvii's), the paper's channel table, and megvii's BGR 0-255 preprocessing."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import ghostnets
from conftest import randomize_bn
from family_checks import assert_deploy_form
from ghostnets.data.transforms import InputSpec
from ghostnets.layers.block_registry import create_block
from ghostnets.layers.shufflenet_v1 import ShuffleV1Block, channel_shuffle_v1
from ghostnets.models.shufflenetv1 import shufflenetv1

shufflenet = pytest.importorskip("pytorchcv.models.shufflenet")

FAST = "shufflenetv1_g3_050"
NAMES = [f"shufflenetv1_g{g}_{w}" for g in (1, 2, 3, 4, 8) for w in ("050", "100", "150", "200")]
SWEEP = [n if n == FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
# docs/reference.md: megvii's stage_out_channels (g=3, 8) and paper Table 1 (1.0x, g=1, 2, 4) scaled and rounded
# to a multiple of 4g (0.5x: 100 -> 104, 136 -> 144; 1.5x: 300 -> 304, 408 -> 416); stems 12/24/24/48 (g=8 0.5x: 16)
CHANNELS = {
    "g1_050": (12, 72), "g1_100": (24, 144), "g1_150": (24, 216), "g1_200": (48, 288),
    "g2_050": (12, 104), "g2_100": (24, 200), "g2_150": (24, 304), "g2_200": (48, 400),
    "g3_050": (12, 120), "g3_100": (24, 240), "g3_150": (24, 360), "g3_200": (48, 480),
    "g4_050": (12, 144), "g4_100": (24, 272), "g4_150": (24, 416), "g4_200": (48, 544),
    "g8_050": (16, 192), "g8_100": (24, 384), "g8_150": (24, 576), "g8_200": (48, 768),
}
# docs/reference.md (computed on megvii's network.py): params / MACs at 224
MEGVII = {"g3_200": (5_449_776, 524_045_184), "g8_200": (6_521_232, 521_942_016),
          "g3_150": (3_441_168, 292_443_552), "g8_150": (4_268_952, 290_188_800),
          "g3_100": (1_864_728, 137_460_672), "g8_100": (2_433_768, 138_365_952),
          "g3_050": (717_324, 37_589_856), "g8_050": (1_010_448, 40_469_760)}
# pytorchcv 0.0.74's named models with the same channels (it has a classifier bias: +1000 params)
PYTORCHCV = {"g1_100": "shufflenet_g1_w1", "g2_100": "shufflenet_g2_w1", "g3_100": "shufflenet_g3_w1",
             "g4_100": "shufflenet_g4_w1", "g8_100": "shufflenet_g8_w1", "g1_050": "shufflenet_g1_wd2",
             "g3_050": "shufflenet_g3_wd2"}
# official README (its "Top-1" column is the error); paper Table 2 for g=1, 2, 4
TOP1 = {"g3_200": 74.1, "g8_200": 72.9, "g3_150": 71.6, "g8_150": 71.0, "g3_100": 67.8, "g8_100": 68.0,
        "g3_050": 57.3, "g8_050": 58.8, "g1_100": 66.4, "g2_100": 67.3, "g4_100": 67.2, "g1_050": 54.9,
        "g2_050": 55.6, "g4_050": 58.4}


def _key(name: str) -> str:
    return name.removeprefix("shufflenetv1_")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _model(name: str, **kwargs) -> nn.Module:
    return randomize_bn(ghostnets.create_model(name, **kwargs), torch.Generator().manual_seed(1)).eval()


def _megvii_unit_forward(self, x: torch.Tensor) -> torch.Tensor:
    """megvii's ShuffleV1Block.forward on pytorchcv's layers: shuffle after the depthwise BN, in megvii's order
    (pytorchcv's own ``channel_shuffle2``), and ``cat(avgpool(x), relu(main))``."""
    from pytorchcv.models.common.tutti import channel_shuffle2

    out = self.dw_bn2(self.dw_conv2(self.activ(self.compress_bn1(self.compress_conv1(x)))))
    out = self.expand_bn3(self.expand_conv3(channel_shuffle2(out, self.c_shuffle.groups)))
    return torch.cat((self.avgpool(x), F.relu(out)), 1) if self.downsample else F.relu(out + x)


def _pytorchcv(key: str) -> nn.Module:
    """pytorchcv's ShuffleNet class with this variant's channels (its config rule: stages double, 4/8/4 units)."""
    stem, c = CHANNELS[key]
    return shufflenet.ShuffleNet(channels=[[c] * 4, [2 * c] * 8, [4 * c] * 4], init_block_channels=stem,
                                 groups=int(key[1]))


def _as_megvii(reference: nn.Module, ours: nn.Module) -> nn.Module:
    """``reference`` with our weights (mapped by order and shape; its classifier bias zeroed) and megvii's unit
    forward; its 7x7 average pool made global so small inputs run."""
    theirs = {k: v for k, v in reference.state_dict().items() if k != "output.bias"}
    mine = ours.state_dict()
    assert [tuple(v.shape) for v in theirs.values()] == [tuple(v.shape) for v in mine.values()]
    reference.load_state_dict({**dict(zip(theirs, mine.values())), "output.bias": torch.zeros(ours.num_classes)})
    for unit in reference.modules():
        if isinstance(unit, shufflenet.ShuffleUnit):
            unit.forward = types.MethodType(_megvii_unit_forward, unit)
    reference.features.final_pool = nn.AdaptiveAvgPool2d(1)
    return reference.eval()


# ---------------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("name", SWEEP)
def test_counts_equal_megvii_and_pytorchcv(name):
    key, card = _key(name), ghostnets.model_info(name)
    model = ghostnets.create_model(name)
    params, madds = ghostnets.count_params(model), ghostnets.count_madds(model, (224, 224))
    assert (params, madds) == (card.params, card.madds)
    if key in MEGVII:
        assert (params, madds) == MEGVII[key]
    reference = _pytorchcv(key)
    assert ghostnets.count_params(reference) == params + 1000  # its classifier bias
    if key not in MEGVII:  # (the megvii MACs were checked above; spare the fast tier a second count)
        assert ghostnets.count_madds(reference, (224, 224), in_chans=3) == madds
    if key in PYTORCHCV:
        named = shufflenet.__dict__[PYTORCHCV[key]]()
        assert ghostnets.count_params(named) == params + 1000
    assert [f["num_chs"] for f in model.feature_info] == [CHANNELS[key][1] * m for m in (1, 2, 4)]
    assert card.top1 == TOP1[key] if key in TOP1 else card.top1 != card.top1  # NaN: not published


def test_official_key_layout():
    """docs/reference.md: 295 tensors at 1.0x g=3: first_conv.{0,1}, features.i.branch_main_1.{0,1,3,4},
    branch_main_2.{0,1}, classifier.0.weight (no classifier bias)."""
    keys = list(ghostnets.create_model("shufflenetv1_g3_100").state_dict())
    assert len(keys) == 295
    assert keys[:6] == ["first_conv.0.weight", *(f"first_conv.1.{s}" for s in
                                                  ("weight", "bias", "running_mean", "running_var",
                                                   "num_batches_tracked"))]
    assert keys[-1] == "classifier.0.weight"
    for i in range(16):
        unit = {k.split(".")[2] + "." + k.split(".")[3] for k in keys if k.startswith(f"features.{i}.")}
        assert unit == {"branch_main_1.0", "branch_main_1.1", "branch_main_1.3", "branch_main_1.4",
                        "branch_main_2.0", "branch_main_2.1"}


# ---------------------------------------------------------------------------------------------------- logits


def _compare_logits(name: str, size: tuple[int, int]) -> None:
    ours = _model(name)
    reference = _as_megvii(_pytorchcv(_key(name)), ours)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert _rel(ours(x), reference(x)) < 1e-5


def test_logits_equal_pytorchcv_with_megvii_shuffle():
    _compare_logits(FAST, (64, 48))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenetv1_g1_100", "shufflenetv1_g2_050", "shufflenetv1_g4_150",
                                  "shufflenetv1_g8_100", "shufflenetv1_g3_100"])
def test_logits_equal_pytorchcv_sweep(name):
    _compare_logits(name, (224, 224) if name.endswith("g3_100") else (96, 96))


def test_channel_shuffle_is_megvii_order_not_torchvision():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    megvii = x.reshape(1, 4, 3, 1, 1).permute(0, 2, 1, 3, 4).reshape(1, 12, 1, 1)  # docs/reference.md
    torchvision = x.view(1, 3, 4, 1, 1).transpose(1, 2).reshape(1, 12, 1, 1)
    assert torch.equal(channel_shuffle_v1(x, 3), megvii) and not torch.equal(megvii, torchvision)
    assert torch.equal(channel_shuffle_v1(torchvision, 3), x)  # the inverse permutation


# --------------------------------------------------------------------------------------------- deploy and API


def test_deploy_form_equals_training_form_and_loads_into_a_model_built_deployed():
    assert_deploy_form(FAST, _model(FAST), torch.randn(2, 3, 48, 64), 1e-4)


def test_features_only_and_timm_api():
    model = _model(FAST)
    assert [f["reduction"] for f in model.feature_info] == [8, 16, 32]
    assert [f["module"] for f in model.feature_info] == ["features.3", "features.11", "features.15"]
    features = ghostnets.create_model(FAST, features_only=True)
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()}, strict=True)
    assert not any(k.startswith("classifier") for k in features.state_dict())
    x = torch.randn(2, 3, 40, 72)
    with torch.no_grad():
        maps = features.eval()(x)
        assert [tuple(m.shape) for m in maps] == [(2, 120, 5, 9), (2, 240, 3, 5), (2, 480, 2, 3)]
        for got, want in zip(maps, model.forward_intermediates(x, intermediates_only=True)):
            torch.testing.assert_close(got, want)
        for got, want in zip(ghostnets.reparameterize(features)(x), maps):
            assert _rel(got, want) < 1e-4
    other = ghostnets.create_model(FAST, in_chans=1, num_classes=7, drop_rate=0.1, drop_path_rate=0.1)
    assert other(torch.randn(2, 1, 32, 48)).shape == (2, 7)
    other.reset_classifier(0)
    assert other.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 480)


def test_bad_geometry_is_refused_with_the_rule():
    with pytest.raises(ValueError, match="stride 1 .* or 2"):
        ShuffleV1Block(24, 48, 3)
    with pytest.raises(ValueError, match="out_chs must exceed in_chs"):
        ShuffleV1Block(48, 48, 2)
    with pytest.raises(ValueError, match="groups=3 must divide .*mid_chs = 10"):
        ShuffleV1Block(24, 40, 2, mid_chs=10)
    with pytest.raises(ValueError, match="in_chs = 16"):
        ShuffleV1Block(16, 64, 2, groups=3)
    with pytest.raises(ValueError, match="in_chs must equal out_chs"):
        ShuffleV1Block(24, 48, 1)
    with pytest.raises(ValueError, match="cannot honour se_ratio"):
        create_block("shufflev1", 24, 48, 2, se_ratio=0.25)
    with pytest.raises(ValueError, match="groups in"):
        shufflenetv1(groups=5)
    ShuffleV1Block(16, 64, 2, groups=3, dense_first=True, mid_chs=15)  # the dense first 1x1 takes any input


def test_megvii_input_is_bgr_0_255_without_normalisation():
    spec = ghostnets.model_info(FAST).eval_transform
    assert spec.bgr and spec.interpolation == "bilinear" and (spec.resize, spec.size) == (256, 224)
    image = Image.new("RGB", (300, 256), (10, 20, 250))
    x = spec.transform()(image)
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x[:, 100, 100], torch.tensor([250.0, 20.0, 10.0]))  # B, G, R in 0-255
    assert InputSpec.from_dict({k: v for k, v in spec.as_dict().items() if k != "bgr"}).bgr is False  # old records
    assert InputSpec.from_dict(spec.as_dict()) == spec and not spec.with_channels(1).bgr


@pytest.mark.runtimes
def test_onnx_export_computes_the_training_form(tmp_path):
    np = pytest.importorskip("numpy")
    ort = pytest.importorskip("onnxruntime")
    from ghostnets.runtime import export_model

    model = _model(FAST)
    export_model(model, tmp_path / "m.onnx", format="onnx", spec=InputSpec(size=64, resize=73, bgr=True,
                                                                           mean=(0.0,) * 3, std=(1 / 255,) * 3))
    x = torch.randn(1, 3, 64, 64)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1, np.abs(want).max()))


@pytest.mark.slow
def test_a_tiny_training_run(tmp_path):
    from pathlib import Path

    from ghostnets.train import load_recipe, train, update_config

    subset = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
    config = update_config(load_recipe("quick"), {"model": FAST, "data": str(subset), "batch_size": 32, "epochs": 1,
                                                  "threads": 2}, "test")
    summary = train(config, tmp_path / "run", progress_bar=False)
    assert summary["final_top1"] >= 0
