"""ResNet (He et al., CVPR 2016, arXiv 1512.03385) and its Ghost versions (GhostNet, arXiv 1911.11907, Sec. 4.1).

``resnet50``: the ImageNet ResNet-50 in torchvision's layout (stride on the 3x3 conv, 1x1 projection shortcuts), so
torchvision's weights load as they are. ``resnet56_cifar``: the CIFAR ResNet-56 of the paper's Sec. 4 (3x3 stem,
three stages of 9 basic blocks at 16/32/64 channels, parameter-free "option A" shortcuts). ``ghost_*``: the same
networks with every conv but the stem a Ghost module at ratio s (docs/reference.md §7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..data.transforms import TORCHVISION_EVAL, InputSpec
from ..layers.channels import scaled
from ..layers.conv_bn_act import fold_named_pairs, is_identity
from ..layers.ghost import ghost_or_plain_conv
from ..layers.resnet_blocks import BasicBlock, Bottleneck
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant, Weights

CIFAR_STAGES = (16, 32, 64)  # ResNet-56: 9 basic blocks per stage
IMAGENET_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # ResNet-50: (bottleneck width, blocks); out = 4x width
# CIFAR-10's channel statistics; the 32x32 images are taken whole
CIFAR_INPUT = InputSpec(size=32, resize=32, interpolation="bilinear", mean=(0.4914, 0.4822, 0.4465),
                        std=(0.2470, 0.2435, 0.2616))


BlockFactory = Callable[..., nn.Module]  # (in_chs, planes, stride, conv_layer, *, drop_path, **kw) -> a block with
# ``out_chs``: layers/resnet_blocks.py's BasicBlock and Bottleneck, and every block built to their signature


def cifar_basic_block(in_chs: int, planes: int, stride: int, conv_layer, *, drop_path: float = 0.0) -> BasicBlock:
    """ResNet-56's basic block with the parameter-free "option A" shortcut."""
    return BasicBlock(in_chs, planes, stride, conv_layer, option_a=True, drop_path=drop_path)


class ResNet(ClassifierNet):
    """A ResNet with torchvision's attribute names: ``conv1, bn1, relu, maxpool, layer1..N, fc``.

    ``block`` builds every block (ResNet's basic or bottleneck block, ResNeXt's grouped one, SE/ECA/SK/Res2Net
    bottlenecks), ``depths`` and ``planes`` the stages (strides 1, 2, 2, ...), ``stem`` is ImageNet's 7x7/2 conv +
    3x3/2 max pool or CIFAR's 3x3/1 conv (``stem_chs`` wide); ``block_kwargs`` go to every block.
    """

    head_name = "fc"
    stem_pattern = r"^conv1|^bn1|^maxpool"
    stage_pattern = r"^layer(\d+)"
    supports_features_only = True

    def __init__(
        self, *, block: BlockFactory, depths: Sequence[int], planes: Sequence[int], stem: str = "imagenet",
        stem_chs: int = 64, block_kwargs: Mapping | None = None, ghost_ratio: int | None = None, width: float = 1.0,
        num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
        deploy: bool = False, channels_last: bool = True,
    ) -> None:
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' (7x7/2 conv + max pool) or 'cifar' (3x3/1 conv), got {stem!r}")
        if len(depths) != len(planes) or not depths or min(depths) < 1:
            raise ValueError(f"depths {tuple(depths)} and planes {tuple(planes)}: one depth >= 1 per stage")
        cifar = stem == "cifar"
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate,
                         default_input_size=(32, 32) if cifar else (224, 224))
        conv_layer = ghost_or_plain_conv(ghost_ratio)
        stem_chs = scaled(stem_chs, width)
        if cifar:  # the stem stays a plain conv in the Ghost versions
            self.conv1 = nn.Conv2d(in_chans, stem_chs, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_chs, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1, self.relu = nn.BatchNorm2d(stem_chs), nn.ReLU(inplace=True)
        n_blocks = sum(depths)
        in_chs, index, reduction = stem_chs, 0, 1 if cifar else 4
        for s, (chs, n) in enumerate(zip(planes, depths)):
            stride = 1 if s == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(in_chs, scaled(chs, width), stride if j == 0 else 1, conv_layer,
                                    drop_path=drop_path_rate * index / n_blocks, **dict(block_kwargs or {})))
                in_chs = blocks[-1].out_chs
                index += 1
            reduction *= stride
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{s + 1}"))
        self.num_stages = len(depths)
        finish_plain_net(self, in_chs, deploy)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"layer{s + 1}", getattr(self, f"layer{s + 1}")) for s in range(self.num_stages)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.prepare(x, self.conv1.weight))
        if not is_identity(self.bn1):
            x = self.bn1(x)
        return self.maxpool(self.relu(x))

    def fuse(self) -> ResNet:
        fold_named_pairs(self, [("conv1", "bn1")])
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def imagenet_basic_block(in_chs: int, planes: int, stride: int, conv_layer, *, drop_path: float = 0.0) -> BasicBlock:
    """ResNet-18/34's basic block with torchvision's 1x1 projection shortcut."""
    return BasicBlock(in_chs, planes, stride, conv_layer, option_a=False, drop_path=drop_path)


# He et al. Table 1: depth -> (block, blocks per stage); stage widths 64/128/256/512 (x4 out for the bottleneck)
IMAGENET_DEPTHS = {18: (imagenet_basic_block, (2, 2, 2, 2)), 34: (imagenet_basic_block, (3, 4, 6, 3)),
                   50: (Bottleneck, (3, 4, 6, 3))}


def resnet(cifar: bool = False, ghost_ratio: int | None = None, num_classes: int | None = None, depth: int = 50,
           stem: str = "imagenet", **kwargs) -> ResNet:
    """ResNet-56 (``cifar=True``, 10 classes) or ResNet-18/34/50 (``depth``, 1000), optionally with Ghost modules at
    ``ghost_ratio``; ``stem="cifar"`` gives the ImageNet depths the 3x3/1 stem without max pool that CIFAR
    training uses (RMNet's and most CIFAR ResNet-18s)."""
    num_classes = (10 if cifar else 1000) if num_classes is None else num_classes
    if cifar:
        return ResNet(block=cifar_basic_block, depths=(9, 9, 9), planes=CIFAR_STAGES, stem="cifar", stem_chs=16,
                      ghost_ratio=ghost_ratio, num_classes=num_classes, **kwargs)
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"depth must be one of {sorted(IMAGENET_DEPTHS)}, got {depth!r}")
    block, depths = IMAGENET_DEPTHS[depth]
    return ResNet(block=block, depths=depths, planes=tuple(c for c, _ in IMAGENET_STAGES), stem=stem,
                  ghost_ratio=ghost_ratio, num_classes=num_classes, **kwargs)


_GHOST_RULE = ("Ghost versions: every conv but the stem is a Ghost module (k x k primary with the conv's stride, "
               "3x3 depthwise cheap op, BN after each); the model's own BN and ReLU follow it unchanged.")
_GHOST56_NOTES = (
    "MAdds: 65.3M counted against the paper's 63M (+3.6 %): the 3x3 primary convs alone are 62.5M, about half of "
    "ResNet-56's 125.5M, which is what the paper's figure amounts to; the cheap depthwise convs add 2.3M and the "
    "plain stem 0.4M. thop/torchstat report 67.5-68M because they also count BN and ReLU."
)
_GHOST50_S2_NOTES = (
    "Params: 14.01M against the paper's 13.0M (+7.7 %; the official Ghost-ResNet-50 file has about 13.9M too): "
    "primary convs 11.72M, cheap convs 0.12M, BN 0.11M, plain stem 0.01M, and the 2.05M classifier that no Ghost "
    "module touches. 13.0M is about half of ResNet-50's 25.6M, as if the classifier were halved as well."
)
_GHOST50_S4_NOTES = (
    "Params: 8.20M against the paper's 6.5M (+26 %): primary convs 5.86M, cheap convs 0.18M, BN 0.11M, plain stem "
    "0.01M and the untouched 2.05M classifier. 6.5M is ResNet-50's 25.6M divided by 4, classifier included; no "
    "Ghost module can reach it while the classifier stays (the paper's MAdds, 1.2B, agree with ours: 1.18B)."
)

CIFAR_FAMILY = Family(
    name="resnet_cifar",
    builder=resnet,
    variants={
        "resnet56_cifar": Variant(width=1.0, params=853_018, madds=125_485_696, paper_params=0.85,
                                  paper_madds=125, top1=93.0, builder_kwargs=dict(cifar=True)),
        "ghost_resnet56_cifar_s2": Variant(width=1.0, params=442_186, madds=65_286_784, paper_params=0.43,
                                           paper_madds=63, top1=92.7, notes=_GHOST56_NOTES,
                                           builder_kwargs=dict(cifar=True, ghost_ratio=2)),
    },
    paper="He et al., Deep Residual Learning for Image Recognition, CVPR 2016; Ghost version: Han et al., GhostNet, "
          "CVPR 2020 (Table 3)",
    arxiv="https://arxiv.org/abs/1911.11907",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones",
    recipe="cifar",
    notes="CIFAR-10 top-1 from the paper. " + _GHOST_RULE,
    eval_transform=CIFAR_INPUT,
    dataset="CIFAR-10",
)

FAMILY = Family(
    name="resnet",
    builder=resnet,
    variants={
        "resnet18": Variant(width=1.0, params=11_689_512, madds=1_814_073_344, paper_params=11.7, paper_madds=1800,
                            top1=69.758, top5=89.078, builder_kwargs=dict(depth=18), recipe="resnet_imagenet",
                            eval_transform=TORCHVISION_EVAL,
                            weights=Weights(url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                            top1=69.758),
                            notes="top-1/top-5: torchvision's IMAGENET1K_V1 weights (the paper gives only "
                                  "ResNet-34's and deeper single-model errors); MAdds as torchvision's meta (1.814G)."),
        "resnet34": Variant(width=1.0, params=21_797_672, madds=3_663_761_408, paper_params=21.8, paper_madds=3600,
                            top1=73.314, top5=91.42, builder_kwargs=dict(depth=34), recipe="resnet_imagenet",
                            eval_transform=TORCHVISION_EVAL,
                            weights=Weights(url="https://download.pytorch.org/models/resnet34-b627a593.pth",
                                            top1=73.314),
                            notes="top-1/top-5: torchvision's IMAGENET1K_V1 weights; the paper's 10-crop "
                                  "ResNet-34 B error is 24.52 / 7.46 (Table 3), its FLOPs 3.6G."),
        "resnet50": Variant(width=1.0, params=25_557_032, madds=4_089_184_256, paper_params=25.6,
                            paper_madds=4100, top1=75.3, top5=92.2),
        "ghost_resnet50_s2": Variant(width=1.0, params=14_006_504, madds=2_151_023_360, paper_params=13.0,
                                     paper_madds=2200, top1=75.0, top5=92.3, notes=_GHOST50_S2_NOTES,
                                     builder_kwargs=dict(ghost_ratio=2)),
        "ghost_resnet50_s4": Variant(width=1.0, params=8_204_744, madds=1_181_942_912, paper_params=6.5,
                                     paper_madds=1200, top1=74.1, top5=91.9, notes=_GHOST50_S4_NOTES,
                                     builder_kwargs=dict(ghost_ratio=4)),
    },
    paper="He et al., Deep Residual Learning for Image Recognition, CVPR 2016; Ghost versions: Han et al., "
          "GhostNet, CVPR 2020 (Table 5)",
    arxiv="https://arxiv.org/abs/1911.11907",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones",
    recipe="ghostnet",
    notes="ImageNet top-1/top-5 from the paper (torchvision's V1 weights: 76.1). " + _GHOST_RULE,
    extra_kwargs=("stem",),
)
