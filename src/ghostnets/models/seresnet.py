"""SE-ResNet-50 (Hu, Shen, Sun, Squeeze-and-Excitation Networks, CVPR 2018, arXiv 1709.01507) in timm's
``seresnet50`` layout: torchvision's ResNet-50 (stride on the 3x3 conv) with an SE module (``se.fc1``, ``se.fc2``,
r = 16) after each bottleneck's ``bn3``, before the residual add; timm's state dicts load as they are.

The official Caffe model (hujie-frank/SENet) strides the first 1x1 conv instead (timm's ``legacy_seresnet50``); the
parameters are the same, the function is not (docs/reference.md, SENet).
"""

from __future__ import annotations

from ..layers.resnet_blocks import Bottleneck
from ..layers.se_module import SE_RATIO, SEModule, se_width
from .family import Family, Variant, Weights
from .resnet import ResNet
from .resnext import DEPTHS, PLANES


def seresnet(depth: int = 50, se_ratio: float = SE_RATIO, **kwargs) -> ResNet:
    """SE-ResNet-``depth``: ResNet's bottlenecks with SE (squeezed width ``se_ratio * C``, 1/16 in the paper)."""
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)} (ResNet-50/101's stages), got {depth!r}")
    se_width(64, se_ratio)  # refuse a bad ratio by name before building

    def attention(channels: int) -> SEModule:
        return SEModule(channels, se_ratio)

    return ResNet(block=Bottleneck, depths=DEPTHS[depth], planes=PLANES,
                  block_kwargs=dict(attn_layer=attention, attn_name="se"), **kwargs)


_TIMM_URL = ("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
             "seresnet50_ra_224-8efdb4bb.pth")  # timm's pretrained_cfg url of seresnet50.ra2_in1k

FAMILY = Family(
    name="seresnet",
    builder=seresnet,
    variants={
        "seresnet50": Variant(
            width=1.0, params=28_088_024, madds=4_091_699_200, paper_params=28.1, paper_madds=3870, top1=76.71,
            top5=93.38, weights=Weights(url=_TIMM_URL, top1=80.26), builder_kwargs=dict(depth=50),
            notes="Top-1/top-5 76.71 / 93.38: the paper's table (23.29 / 6.62 % error, 3.87 GFLOPs); the official "
                  "README's re-trained SE-ResNet-50 reaches 22.37 / 6.36 % error (77.63 top-1). The paper gives the "
                  "SE blocks' cost (about 2.5M parameters over ResNet-50's 25.6M), not a total: 28.1 is that sum "
                  "(exact: 28,088,024, timm's count). Its 3.87 GFLOPs count a Caffe ResNet-50 of 3.86; ghostnets "
                  "counts 4.09 GMACs as for torchvision's ResNet-50. Weights: timm's seresnet50.ra2_in1k (RandAugment "
                  "recipe, not the paper's), 80.26 top-1 in timm's results at 224, crop 0.875, bicubic (80.01 for "
                  "its a1_in1k file, https://github.com/huggingface/pytorch-image-models/releases/download/"
                  "v0.1-rsb-weights/seresnet50_a1_0-ffa00869.pth, evaluated at crop 0.95)."),
    },
    paper="Hu, Shen, Sun, Squeeze-and-Excitation Networks, CVPR 2018",
    arxiv="https://arxiv.org/abs/1709.01507",
    code="https://github.com/hujie-frank/SENet",
    recipe="senet",
    notes="timm's seresnet50 layout and counts (layerX.Y.se.fc1/fc2; its state dicts load strictly); the SE squeezed "
          "width is C/16 (timm's make_divisible(C/16, 8, round_limit=0)). deploy=True folds every BatchNorm; the SE "
          "convs stay. The recipe is the paper's (batch 1024, lr 0.6, 100 epochs, /10 every 30).",
)
