"""RMNet's residual removal: Meng, Cheng, Zhuang, Li, Sun, "RMNet: Equivalently Removing Residual Connection from
Networks", arXiv 2111.00687 (official code fxmeng/RMNet, ``models/easy_resnet2vgg.py``; docs/reference.md
"RMNet").

A ResNet block ``act(branch(x) + shortcut(x))`` becomes a plain chain of convs with no addition: after folding every
BatchNorm, each conv of the branch gets ``in_chs`` extra channels that carry the block's input through it (Dirac
kernels: the centre tap copies a channel, and with stride 2 it subsamples it exactly as a stride-2 1x1 shortcut
does), and the last conv adds the shortcut (identity, the 1x1 downsample zero-padded to its kernel, or the CIFAR
zero-padding shortcut) on those channels. The activation between the convs leaves the carried channels unchanged
because the block's input is the previous activation's output: ReLU's are >= 0, ReLU6's lie in [0, 6]. The widths
grow by ``in_chs`` in every middle layer; the residual channels become ordinary channels that channel pruning can
remove (the paper's point).
"""

from __future__ import annotations

import copy
import math

import torch
import torchvision.models.resnet as tv_resnet
from torch import nn

from ..errors import GhostnetsError
from ..layers.conv_bn_act import fold_bn, fold_named_pairs
from ..layers.ghost import GhostModule
from ..layers.resnet_blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from ..models.features import FeatureListNet
from ..record import model_name, record_of
from .edits import record_edit, register_edit

RESIDUAL_BLOCKS = (BasicBlock, Bottleneck, tv_resnet.BasicBlock, tv_resnet.Bottleneck)
# activation -> the range of its outputs (what the next block's input can hold)
ACTIVATION_RANGE = {nn.ReLU: (0.0, math.inf), nn.ReLU6: (0.0, 6.0)}


class RemoveResidualsError(GhostnetsError, ValueError):
    """A model or block ``remove_residuals`` cannot convert exactly, with the reason."""


class PlainBlock(nn.Sequential):
    """A residual block after RM: ``conv, act, conv, act[, conv, act]``, the input carried in the first ``carried``
    channels of every middle layer (Meng et al., arXiv 2111.00687, Fig. 2)."""

    def __init__(self, *layers: nn.Module, carried: int) -> None:
        super().__init__(*layers)
        self.carried = carried


def _conv_and_bn(block: nn.Module, conv_name: str, bn_name: str, where: str, last: bool) -> nn.Module:
    """``block.conv`` with ``block.bn`` folded into it: a biased plain conv, or (not ``last``) a linear Ghost module."""
    conv, bn = getattr(block, conv_name), getattr(block, bn_name)
    ghost = isinstance(conv, GhostModule) and conv.linear and conv.short_conv is None
    if not isinstance(conv, nn.Conv2d) and not (ghost and not last):
        reason = ("the last conv of the branch adds the shortcut on the carried channels, which a Ghost module's "
                  "output cannot take exactly (its cheap half is computed from its primary half)" if ghost else
                  "only a plain conv, or a linear Ghost module before the last conv, can carry the block's input")
        raise RemoveResidualsError(
            f"{where}.{conv_name} is a {type(conv).__name__}, not a plain nn.Conv2d: {reason}. Keep that conv plain "
            "(ghostify(..., skip=[...]), e.g. '*.conv2' in basic blocks, '*.conv3' and '*.downsample.*' in "
            "bottlenecks)")
    _check_same_padding(conv.primary_conv[0] if ghost else conv, f"{where}.{conv_name}")
    if isinstance(bn, nn.BatchNorm2d):
        return fold_bn(conv, bn)
    if not isinstance(bn, nn.Identity):
        raise RemoveResidualsError(f"{where}.{bn_name} is a {type(bn).__name__}; remove_residuals folds "
                                   "BatchNorm2d (or nothing, in a deploy form) into the conv before it")
    return conv


class CarriedGhost(nn.Module):
    """A Ghost module of a residual branch beside the carried channels: ``[x[::s, ::s], ghost(h)]`` from ``[x, h]``
    (the first layer of the branch reads ``x`` alone). A concat, not an addition: the carried channels are copied
    (subsampled at the module's stride, as a Dirac kernel of its primary conv would) while the Ghost module keeps
    its own primary and cheap convs."""

    def __init__(self, ghost: GhostModule, carried: int, first: bool) -> None:
        super().__init__()
        self.ghost, self.carried, self.first = ghost, carried, first
        self.stride = tuple(ghost.primary_conv[0].stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, branch = (x, x) if self.first else (x[:, :self.carried], x[:, self.carried:])
        sh, sw = self.stride
        return torch.cat([kept[:, :, ::sh, ::sw], self.ghost(branch)], dim=1)


def _check_same_padding(conv: nn.Conv2d, where: str) -> None:
    ok = conv.padding_mode == "zeros" and all(
        k % 2 == 1 and p == d * (k // 2) for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation))
    if not ok:
        raise RemoveResidualsError(
            f"{where}: kernel {tuple(conv.kernel_size)}, padding {conv.padding}, dilation {conv.dilation}, "
            f"padding_mode {conv.padding_mode!r}: the Dirac kernel that carries the input needs an odd kernel with "
            "'same' zero padding (padding = dilation * (kernel // 2))")


def _dense(conv: nn.Conv2d) -> torch.Tensor:
    """The weight of ``conv`` as a groups=1 weight (a grouped conv's blocks on the diagonal, zeros elsewhere)."""
    w = conv.weight.detach()
    if conv.groups == 1:
        return w.clone()
    out_g, in_g = conv.out_channels // conv.groups, conv.in_channels // conv.groups
    dense = w.new_zeros(conv.out_channels, conv.in_channels, *w.shape[2:])
    for g in range(conv.groups):
        dense[g * out_g:(g + 1) * out_g, g * in_g:(g + 1) * in_g] = w[g * out_g:(g + 1) * out_g]
    return dense


def _centre(kernel_size: tuple[int, int]) -> tuple[int, int]:
    return kernel_size[0] // 2, kernel_size[1] // 2


def _carrying_conv(conv: nn.Conv2d, carried: int, *, first: bool, last: bool, shortcut: torch.Tensor,
                   shortcut_bias: torch.Tensor | None) -> nn.Conv2d:
    """``conv`` widened to carry ``carried`` channels: the first conv outputs ``[x, conv(x)]``, a middle one
    ``[x, conv(h)]`` from ``[x, h]``, the ``last`` one ``conv(h) + shortcut @ x`` (``shortcut``: out x carried)."""
    in_extra = 0 if first else carried
    out_extra = 0 if last else carried
    weight = _dense(conv)
    new = nn.Conv2d(conv.in_channels + in_extra, conv.out_channels + out_extra, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, bias=True).to(weight)
    cy, cx = _centre(conv.kernel_size)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
        new.weight[out_extra:, in_extra:] = weight
        new.bias[out_extra:] = bias
        eye = torch.arange(carried)
        if not last:  # the Dirac kernel: carried channel i in -> channel i out, centre tap
            new.weight[eye, eye, cy, cx] = 1.0
        else:
            new.weight[:, :carried, cy, cx] = shortcut
            if shortcut_bias is not None:
                new.bias += shortcut_bias
    return new


def _shortcut(block: nn.Module, carried: int, out_chs: int, where: str, like: torch.Tensor):
    """The shortcut as a (out x carried) matrix on the carried (already subsampled) channels, and its bias."""
    down = block.downsample
    if down is None:
        if carried != out_chs:
            raise RemoveResidualsError(f"{where}: identity shortcut from {carried} to {out_chs} channels")
        return torch.eye(out_chs, dtype=like.dtype, device=like.device), None
    if isinstance(down, ZeroPadShortcut):  # option A: new channels are zeros, split before and after
        matrix = like.new_zeros(out_chs, carried)
        matrix[torch.arange(carried) + down.pad // 2, torch.arange(carried)] = 1.0
        return matrix, None
    layers = [m for m in down.children() if not isinstance(m, nn.Identity)] if isinstance(down, nn.Sequential) \
        else [down]
    conv = layers[0] if layers else None
    if type(conv) is not nn.Conv2d or conv.kernel_size != (1, 1) or conv.groups != 1 or len(layers) > 2 or \
            (len(layers) == 2 and not isinstance(layers[1], nn.BatchNorm2d)):
        raise RemoveResidualsError(f"{where}.downsample is {down!r}: remove_residuals converts a 1x1 conv (+ BN) "
                                   "projection, the identity, or the zero-padding shortcut")
    fused = fold_bn(conv, layers[1]) if len(layers) == 2 else conv
    bias = fused.bias.detach() if fused.bias is not None else None
    return fused.weight.detach()[:, :, 0, 0], bias


def _activation(block: nn.Module, where: str) -> nn.Module:
    act = getattr(block, "relu", None)
    if type(act) not in ACTIVATION_RANGE:
        raise RemoveResidualsError(f"{where}: activation {type(act).__name__}; the carried channels pass through it "
                                   "unchanged only for ReLU or ReLU6 on non-negative inputs")
    return act


def convert_block(block: nn.Module, input_range: tuple[float, float], where: str = "block") -> PlainBlock:
    """The plain (RM) form of one ResNet basic or bottleneck block in eval mode, for inputs in ``input_range``."""
    if type(block) not in RESIDUAL_BLOCKS:
        raise RemoveResidualsError(f"{where} is a {type(block).__name__}, not a ResNet BasicBlock or Bottleneck")
    attention = getattr(block, getattr(block, "attn_name", "se"), None)
    if attention is not None and not isinstance(attention, nn.Identity):
        raise RemoveResidualsError(f"{where} scales its branch by an attention gate ({type(attention).__name__}) "
                                   "before the add: the gate multiplies the branch only, so the shortcut cannot be "
                                   "merged into the last conv")
    act = _activation(block, where)
    low, high = ACTIVATION_RANGE[type(act)]
    if input_range[0] < low or input_range[1] > high:
        raise RemoveResidualsError(
            f"{where}: its input lies in [{input_range[0]}, {input_range[1]}], but the carried channels pass "
            f"through {type(act).__name__}, which is the identity only on [{low}, {high}]: an input that is not "
            "post-ReLU, or ReLU6 where a value could exceed the clip, would be changed")
    names = [("conv1", "bn1"), ("conv2", "bn2")] + ([("conv3", "bn3")] if hasattr(block, "conv3") else [])
    convs = [_conv_and_bn(block, c, b, where, last=i == len(names) - 1) for i, (c, b) in enumerate(names)]
    carried = convs[0].in_channels
    shortcut, bias = _shortcut(block, carried, convs[-1].out_channels, where, convs[-1].weight)
    layers: list[nn.Module] = []
    for i, conv in enumerate(convs):
        if isinstance(conv, GhostModule):
            layers += [CarriedGhost(conv, carried, first=i == 0), type(act)(inplace=True)]
            continue
        layers += [_carrying_conv(conv, carried, first=i == 0, last=i == len(convs) - 1, shortcut=shortcut,
                                  shortcut_bias=bias), type(act)(inplace=True)]
    return PlainBlock(*layers, carried=carried)


def _stages(model: nn.Module) -> list[str]:
    names = [n for n, _ in model.named_children() if n.startswith("layer") and n[5:].isdigit()]
    return sorted(names, key=lambda n: int(n[5:]))


def remove_residuals(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode, BatchNorm folded) whose ResNet blocks are plain conv chains: no residual
    addition left, the same outputs (Meng et al., arXiv 2111.00687).

    Takes ResNets built like torchvision's (stem ``conv1, bn1, relu, maxpool``; stages ``layer1..N`` of basic or
    bottleneck blocks): torchvision's, ghostnets' (ResNet-18/34/50/56, ResNeXt-50/101, Wide ResNet-50-2, the CIFAR
    ResNeXt-29) and ghostified ones whose last conv of each branch and downsample stayed plain (a Ghost module before
    them is kept, beside the copied input channels: :class:`CarriedGhost`). The result has no BatchNorm but is not
    a deploy form: it trains (fine-tunes) as a plain network, is recorded (a checkpoint rebuilds it), exports, and
    can be channel-pruned.
    """
    if isinstance(model, FeatureListNet):
        raise RemoveResidualsError("convert the classifier model, not its features_only wrapper")
    if not isinstance(model, nn.Module):
        raise TypeError(f"remove_residuals takes an nn.Module, got {type(model).__name__}")
    if model.training:
        raise RemoveResidualsError("remove_residuals folds BatchNorm with its running statistics, so it needs the "
                                   "model in eval mode: call model.eval() first")
    blocks = [n for n, m in model.named_modules() if type(m) in RESIDUAL_BLOCKS]
    if not blocks and any(edit.op == "remove_residuals" for edit in record_of(model).edits):
        raise RemoveResidualsError(f"{model_name(model)} is already the plain form remove_residuals made: there is "
                                   "no residual left to remove")
    if not blocks:
        raise RemoveResidualsError(f"{model_name(model)} has no residual block (ResNet BasicBlock or Bottleneck): "
                                   "there is no residual to remove")
    stages = _stages(model)
    stem_act = getattr(model, "relu", None)
    if not (stages and hasattr(model, "conv1") and type(stem_act) in ACTIVATION_RANGE):
        raise RemoveResidualsError(
            f"{model_name(model)}: remove_residuals converts ResNets built like torchvision's (stem conv1-bn1-relu-"
            "maxpool, stages layer1..N), where every block's input is a ReLU's output; this model's block inputs "
            "cannot be shown to be non-negative")
    inside = {f"{s}.{i}" for s in stages for i in range(len(getattr(model, s)))}
    stray = [n for n in blocks if n not in inside]
    if stray:
        raise RemoveResidualsError(f"{', '.join(stray[:3])}: residual blocks outside the stages layer1..N; their "
                                   "inputs cannot be shown to be non-negative")
    return record_edit(_convert(model), model, "remove_residuals", {})


@torch.no_grad()
def _convert(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    fold_named_pairs(plain, [("conv1", "bn1")])
    value_range = ACTIVATION_RANGE[type(plain.relu)]
    for stage in _stages(plain):
        seq = getattr(plain, stage)
        for i, block in enumerate(list(seq)):
            seq[i] = convert_block(block, value_range, f"{stage}.{i}")
            value_range = ACTIVATION_RANGE[type(block.relu)]
    if hasattr(plain, "use_channels_last") and hasattr(plain, "channels_last"):
        plain.use_channels_last(plain.channels_last)
    return plain


def _replay(model: nn.Module, args: dict) -> nn.Module:
    """Rebuild the structure on a freshly built base model (its weights are replaced by the checkpoint's)."""
    return record_edit(_convert(model.eval()), model, "remove_residuals", {})


register_edit("remove_residuals", _replay)
