"""DFC attention: decoupled fully-connected attention of GhostNetV2 (Tang et al., NeurIPS 2022, arXiv 2211.12905)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .conv_bn_act import ConvSequence, conv_norm


def _pool_kernel(x: torch.Tensor) -> tuple[int, int]:
    if not torch.jit.is_tracing():
        return min(2, x.shape[-2]), min(2, x.shape[-1])
    with warnings.catch_warnings():  # a trace is specialised to its input's size anyway
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return min(2, int(x.shape[-2])), min(2, int(x.shape[-1]))


class DFCAttention(ConvSequence):
    """avg pool 2x2 -> 1x1 conv+BN -> depthwise (1, 5) conv+BN -> depthwise (5, 1) conv+BN -> sigmoid -> upsample.

    The horizontal and vertical depthwise convs are the paper's decoupled FC layers (eq. 4-5), run at half resolution.
    It is a flat sequence so the official keys ``short_conv.{0..5}`` hold. The gate is upsampled to the exact (H, W) of
    the Ghost output, so non-square inputs work (the first official release used only the width).
    """

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, *, deploy: bool = False
    ) -> None:
        super().__init__(
            *conv_norm(in_chs, out_chs, kernel_size, stride, deploy=deploy),
            *conv_norm(out_chs, out_chs, (1, 5), groups=out_chs, deploy=deploy),
            *conv_norm(out_chs, out_chs, (5, 1), groups=out_chs, deploy=deploy),
        )
        if deploy:
            self._fuse_sigmoid()

    def _fuse_sigmoid(self) -> None:
        self[4].fused_act = "sigmoid"  # the deploy form's last conv computes the gate itself

    def fuse(self) -> DFCAttention:
        super().fuse()
        self._fuse_sigmoid()
        return self

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # type: ignore[override]
        """The attention map for an output of spatial ``size``, computed from the module input ``x``."""
        # The official 2x2 pooling; a side of 1 (inputs under 64 px reach it at stride 32) is pooled by 1 instead.
        kernel = _pool_kernel(x)
        gate = super().forward(F.avg_pool2d(x, kernel, kernel))
        if getattr(self[4], "fused_act", None) != "sigmoid":
            gate = torch.sigmoid(gate)
        return F.interpolate(gate, size=size, mode="nearest")
