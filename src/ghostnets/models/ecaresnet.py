"""ECA-ResNet-50 (Wang, Wu, Zhu, Li, Zuo, Hu, ECA-Net, CVPR 2020, arXiv 1910.03151) in the official code's layout
(BangguWu/ECANet ``models/eca_resnet.py``): torchvision's ResNet-50 with an ECA module (``eca.conv``, a 1-D conv
across channels) after each bottleneck's ``bn3``, before the residual add, with a kernel size per stage.

``ecaresnet50`` is the released ``eca_resnet50_k3557`` (k = 3, 5, 5, 7 for stages 1-4); ``eca_k="adaptive"``
builds timm's adaptive rule instead (k = 5, 5, 5, 7 on ResNet-50's widths, as timm's
``ResNet(Bottleneck, [3, 4, 6, 3], block_args={"attn_layer": "eca"})``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..data.transforms import TORCHVISION_EVAL
from ..layers.channels import scaled
from ..layers.eca import ADAPTIVE, eca_layer, resolve_kernel_size
from ..layers.resnet_blocks import Bottleneck
from .family import Family, Variant
from .resnet import ResNet
from .resnext import DEPTHS, PLANES

OFFICIAL_K = (3, 5, 5, 7)  # the released eca_resnet50_k3557 (README, --ksize 3557)


def _stage_kernels(eca_k: Sequence[int] | str, planes: Sequence[int]) -> dict[int, int | str]:
    if eca_k == ADAPTIVE:
        return {p: ADAPTIVE for p in planes}
    if isinstance(eca_k, str) or len(eca_k) != len(planes):
        raise ValueError(f"eca_k must be {ADAPTIVE!r} or one odd kernel size per stage ({len(planes)}), got {eca_k!r}")
    for k in eca_k:
        resolve_kernel_size(1, k)  # an odd int >= 1, refused by name otherwise
    return dict(zip(planes, eca_k))


def ecaresnet(depth: int = 50, eca_k: Sequence[int] | str = OFFICIAL_K, width: float = 1.0, **kwargs) -> ResNet:
    """ECA-ResNet-``depth``; ``eca_k``: one ECA kernel size per stage (the official code's ``k_size``) or
    ``"adaptive"`` (timm's ``t = int(abs(log2(C) + 1) / 2)``, odd, >= 3, on each block's output width)."""
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)} (ResNet-50/101's stages), got {depth!r}")
    kernels = _stage_kernels(eca_k, [scaled(p, width) for p in PLANES])

    def block(in_chs: int, planes: int, stride: int, conv_layer, *, drop_path: float = 0.0) -> nn.Module:
        return Bottleneck(in_chs, planes, stride, conv_layer, attn_layer=eca_layer(kernels[planes]),
                          attn_name="eca", drop_path=drop_path)

    return ResNet(block=block, depths=DEPTHS[depth], planes=PLANES, width=width, **kwargs)


FAMILY = Family(
    name="ecaresnet",
    builder=ecaresnet,
    variants={
        "ecaresnet50": Variant(
            width=1.0, params=25_557_112, madds=4_089_270_528, paper_params=25.55, paper_madds=4145, top1=77.42,
            top5=93.62, builder_kwargs=dict(depth=50),
            notes="Top-1/top-5 77.42 / 93.62: the official README's ECA-Net50. Its Param and FLOPs columns are in "
                  "1024-based units (paras_flops.py's clever_format divides by 1024**2 and 1024**3): the printed "
                  "24.37M and 3.86G are 25.55M params (exact: 25,557,112 = ResNet-50 + 80) and 4,145M thop MACs "
                  "(thop also counts BN and ReLU; ghostnets counts convs and the classifier). The released files "
                  "(eca_resnet50_k3557) are on Google Drive / Baidu only, no direct URL: weights=None. They are "
                  "main.py's {'state_dict': ...} files of an nn.DataParallel model (keys prefixed 'module.'), "
                  "which ghostnets' checkpoint loading unwraps and strips."),
    },
    paper="Wang, Wu, Zhu, Li, Zuo, Hu, ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks, "
          "CVPR 2020",
    arxiv="https://arxiv.org/abs/1910.03151",
    code="https://github.com/BangguWu/ECANet",
    recipe="ecanet",
    notes="The official code's layout (layerX.Y.eca.conv.weight; its state dicts load strictly) with its released "
          "kernel sizes k = 3, 5, 5, 7 per stage; eca_k='adaptive' builds timm's rule (k = 5, 5, 5, 7 here, "
          "25,557,118 params). deploy=True folds every BatchNorm; the ECA convs stay. The recipe is the official "
          "main.py's (PyTorch's ImageNet example, 100 epochs).",
    extra_kwargs=("eca_k",),
    eval_transform=TORCHVISION_EVAL,
)
