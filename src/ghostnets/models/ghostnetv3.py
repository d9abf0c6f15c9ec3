"""GhostNetV3: Liu et al., "GhostNetV3: Exploring the Training Strategies for Compact Models", arXiv 2404.11202.

GhostNetV2's table, skeleton and DFC attention; every conv of the Ghost modules and the stride-2 depthwise conv is
trained as re-parameterizable branches (:mod:`ghostnets.layers.ghost_v3`), and the network is trained with
knowledge distillation (the ``ghostnetv3`` recipe; ``teacher=`` in the trainer). ``reparameterize`` (or
``deploy=True``) gives GhostNetV2's deploy form. Facts and counts: docs/reference.md "GhostNetV3".
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ..layers import make_divisible
from ..layers.ghost_v3 import NUM_BRANCHES, GhostBottleneckV3, GhostModuleV3
from .family import Family, Variant, Weights
from .ghostnet import FINAL_CHS, GHOSTNET_TABLE
from .ghostnetv2 import FIRST_DFC_BLOCK
from .skeleton import GhostFamilyNet

RELEASES = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/GhostNetV3"


def _ghostv3_block(index, in_chs, mid_chs, out_chs, k, stride, se_ratio, drop_path, deploy, *,
                   num_branches: int) -> GhostBottleneckV3:
    return GhostBottleneckV3(in_chs, mid_chs, out_chs, k, stride, se_ratio=se_ratio,
                             use_dfc=index >= FIRST_DFC_BLOCK, num_branches=num_branches, drop_path=drop_path,
                             deploy=deploy)


def official_bn_names(state_dict: dict) -> dict:
    """The official GhostNetV3 files name each branch's BatchNorm ``bn``; timm (and ghostnets) say ``bn1``."""
    return {k.replace(".bn.", ".bn1.") if "_rpr_" in k else k: v for k, v in state_dict.items()}


def _branches_holding(prefix: str, convs, scale, skip, weight: torch.Tensor, bias: torch.Tensor) -> dict:
    """Training-form keys under ``prefix`` (``primary_rpr_``, ``cheap_rpr_``, ``dw_rpr_``) whose sum is the one conv
    ``(weight, bias)``: branch 0 holds it behind a pass-through BN (x + bias), every other branch outputs zero."""
    eps = convs[0].bn1.eps
    ones = torch.ones_like(bias)

    def bn(gain: torch.Tensor, shift: torch.Tensor) -> dict:
        return {"weight": gain, "bias": shift, "running_mean": ones * 0, "running_var": ones,
                "num_batches_tracked": torch.tensor(0)}

    out = {f"{prefix}conv.0.conv.weight": weight}
    out.update({f"{prefix}conv.0.bn1.{k}": v for k, v in bn(ones * math.sqrt(1.0 + eps), bias).items()})
    silent = {f"conv.{i}.": branch for i, branch in enumerate(convs) if i > 0}
    if scale is not None:
        silent["scale."] = scale
    for sub, branch in silent.items():
        out[f"{prefix}{sub}conv.weight"] = torch.zeros_like(branch.conv.weight)
        out.update({f"{prefix}{sub}bn1.{k}": v for k, v in bn(ones * 0, ones * 0).items()})
    if skip is not None:
        out.update({f"{prefix}skip.{k}": v for k, v in bn(ones * 0, ones * 0).items()})
    return out


def lift_official_deploy_file(model: nn.Module, state_dict: dict) -> dict | None:
    """An official deploy-form file (the official ``reparameterize()`` or timm's ``reparameterize_model``: summed
    convs ``primary_conv.0``/``cheap_operation.0``/``conv_dw`` with biases, the other BNs kept) in the training layout
    of ``model``: exactly the same function, so it loads and ``reparameterize`` gives ghostnets' deploy form."""
    out, lifted = dict(state_dict), False
    for name, module in model.named_modules():
        parts = []
        if isinstance(module, GhostModuleV3):
            parts = [("primary_conv.0.", "primary_rpr_", module.primary_rpr_conv, module.primary_rpr_scale,
                      module.primary_rpr_skip),
                     ("cheap_operation.0.", "cheap_rpr_", module.cheap_rpr_conv, module.cheap_rpr_scale,
                      module.cheap_rpr_skip)]
        elif isinstance(module, GhostBottleneckV3) and module.dw_rpr_conv is not None:
            parts = [("conv_dw.", "dw_rpr_", module.dw_rpr_conv, module.dw_rpr_scale, None)]
        for fused, prefix, convs, scale, skip in parts:
            key = f"{name}.{fused}"
            if key + "bias" not in out:
                return None  # not a deploy-form file of this layout
            weight, bias = out.pop(key + "weight"), out.pop(key + "bias")
            out.update(_branches_holding(f"{name}.{prefix}", convs, scale, skip, weight, bias))
            lifted = True
    return out if lifted else None


def ghostnetv3(width: float = 1.0, *, num_branches: int = NUM_BRANCHES, **kwargs) -> GhostFamilyNet:
    """GhostNetV3 at any ``width`` (published: 0.5, 1.0, 1.3, 1.6); ``num_branches``: parallel conv+BN branches per
    conv in training form (the paper's ablation; 3 in the released models)."""
    block = partial(_ghostv3_block, num_branches=num_branches)
    return GhostFamilyNet(GHOSTNET_TABLE, block, make_divisible(FINAL_CHS * width, 4), width=width,
                          he_init=False, **kwargs)


def _variant(*, deploy_madds: int, **kwargs) -> Variant:
    return Variant(recipe="ghostnetv3", notes=f"Deploy form (the official conversion) {kwargs['deploy_params']:,} "
                   f"params, {deploy_madds:,} MAdds at 224, GhostNetV2's architecture.", **kwargs)


FAMILY = Family(
    name="ghostnetv3",
    builder=ghostnetv3,
    variants={
        # params/madds: the training form (every branch counted); deploy_params: the official reparameterize()
        "ghostnetv3_050": _variant(width=0.5, params=3_395_384, madds=117_528_000, deploy_params=2_853_176,
                                   deploy_madds=49_640_656, paper_params=2.7, paper_madds=48, top1=69.4),
        "ghostnetv3_100": _variant(width=1.0, params=8_129_028, madds=404_128_320, deploy_params=6_147_588,
                                   deploy_madds=167_048_288, paper_params=6.1, paper_madds=170, top1=77.1,
                                   weights=Weights(url=f"{RELEASES}/ghostnetv3-1.0.pth.tar", top1=77.13,
                                                   use_ema=True)),
        "ghostnetv3_130": _variant(width=1.3, params=12_217_720, madds=654_842_824, deploy_params=8_948_296,
                                   deploy_madds=269_322_976, paper_params=8.9, paper_madds=269, top1=79.1),
        "ghostnetv3_160": _variant(width=1.6, params=17_275_700, madds=971_574_612, deploy_params=12_377_778,
                                   deploy_madds=398_607_224, paper_params=12.3, paper_madds=400, top1=80.4),
    },
    paper="Liu et al., GhostNetV3: Exploring the Training Strategies for Compact Models, arXiv 2024",
    arxiv="https://arxiv.org/abs/2404.11202",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnetv3_pytorch",
    recipe="ghostnetv3",
    notes="Top-1 with distillation: 1.3x from the abstract, the others as other papers quote them (docs/reference.md). "
          "Card params and MAdds count the training form's branches. ghostnets' deploy form folds every BatchNorm, "
          "the DFC, shortcut and stem ones too, so it has fewer params than the official conversion.",
    extra_kwargs=("num_branches",),
    state_dict_filter=official_bn_names,
    lift_deploy_file=lift_official_deploy_file,
)
