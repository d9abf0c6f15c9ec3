"""EdgeNeXt's split depth-wise transpose attention (SDTA) encoder (Maaz et al., ECCV-W CADL 2022, arXiv 2206.10589,
§3.2 and Fig. 2; the official ``SDTAEncoder``; docs/reference.md "EdgeNeXt").

1. Split depth-wise: the channels go into ``scales`` chunks of ``ceil(C / scales)``; chunk i (i < scales - 1) plus
   the previous chunk's output goes through a depthwise 3x3 conv (Res2Net's hierarchy); the last chunk passes.
2. Optional Fourier positional encoding (XCiT's, Ali et al. 2021), added to the tokens.
3. Transposed (cross-covariance) attention across channels: ``x + gamma_xca * XCA(LN(x))`` with q, k L2-normalised
   over the tokens and a learnable per-head temperature (linear in the number of tokens).
4. Inverted MLP: LN -> Linear 4x -> GELU -> Linear -> layer scale ``gamma`` -> + block input.

Parameter names are timm's (``convs.i``, ``pos_embd.token_projection``, ``norm_xca``, ``gamma_xca``,
``xca.{temperature,qkv,proj}``, ``norm``, ``mlp.fc1/fc2``, ``gamma``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .block_registry import mid_channels, register_block
from .drop_path import DropPath
from .edgenext_conv import (
    EXPANSION,
    LAYER_SCALE_INIT,
    NormFactory,
    PointwiseMlp,
    channels_last_norm,
    check_odd_kernel,
    check_positive,
    entered,
    layer_scale,
)


class PositionalEncodingFourier(nn.Module):
    """XCiT's sine/cosine encoding of each position's (y, x) in [0, 2 pi], ``hidden_dim`` frequencies per axis,
    projected to ``dim`` channels by a 1x1 conv (``token_projection``). The same for every image of a batch."""

    def __init__(self, dim: int, hidden_dim: int = 32, temperature: float = 10000.0) -> None:
        super().__init__()
        check_positive(dim=dim, hidden_dim=hidden_dim)
        self.token_projection = nn.Conv2d(hidden_dim * 2, dim, kernel_size=1)
        self.hidden_dim, self.temperature, self.scale = hidden_dim, temperature, 2 * math.pi

    def forward(self, height: int, width: int) -> torch.Tensor:
        """The (1, dim, height, width) encoding."""
        device, eps = self.token_projection.weight.device, 1e-6
        y = torch.arange(1, height + 1, dtype=torch.float32, device=device)  # the official cumsum of ones
        x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
        y = (y / (y[-1:] + eps) * self.scale).view(1, height, 1, 1).expand(1, height, width, 1)
        x = (x / (x[-1:] + eps) * self.scale).view(1, 1, width, 1).expand(1, height, width, 1)
        dim_t = torch.arange(self.hidden_dim, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.hidden_dim)

        def waves(pos: torch.Tensor) -> torch.Tensor:
            pos = pos / dim_t
            return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(3)

        pos = torch.cat((waves(y), waves(x)), dim=3).permute(0, 3, 1, 2)
        return self.token_projection(pos.to(self.token_projection.weight.dtype))


class CrossCovarianceAttn(nn.Module):
    """XCA (El-Nouby et al., XCiT, 2021): attention between channels, ``softmax(q_hat k_hat^T * t) v`` per head,
    on (B, N, C) tokens."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        check_positive(dim=dim, num_heads=num_heads)
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the {dim} channels (each head attends over "
                             f"C / num_heads channels)")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 4, 1).unbind(0)  # (B, h, C/h, N)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        x = (attn.softmax(dim=-1) @ v).permute(0, 3, 1, 2).reshape(b, n, c)
        return self.proj(x)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"temperature"}


def split_width(dim: int, scales: int) -> int:
    """The width of each chunk (the official ``max(ceil(C / s), C // s)``); refuses splits with an empty last chunk."""
    check_positive(dim=dim, scales=scales)
    if scales < 2:
        raise ValueError(f"scales={scales}: SDTA splits the channels into at least 2 chunks (the last passes "
                         "untouched); EdgeNeXt uses 2, 2, 3, 4")
    width = math.ceil(dim / scales)
    if (scales - 1) * width >= dim:
        raise ValueError(f"scales={scales} cannot split {dim} channels: chunks of ceil({dim}/{scales}) = {width} "
                         f"leave the last chunk empty; use fewer scales or more channels")
    return width


class SDTAEncoder(nn.Module):
    """The SDTA encoder on ``dim`` channels at stride 1 (arXiv 2206.10589 Fig. 2)."""

    def __init__(self, dim: int, *, num_heads: int = 8, scales: int = 2, use_pos_emb: bool = False,
                 kernel_size: int = 3, mid_chs: int | None = None, drop_path: float = 0.0,
                 ls_init_value: float = LAYER_SCALE_INIT, act_layer: Callable[[], nn.Module] = nn.GELU,
                 norm_layer: NormFactory = channels_last_norm) -> None:
        super().__init__()
        self.width = split_width(dim, scales)
        check_odd_kernel(kernel_size, "the split depthwise convs")
        self.convs = nn.ModuleList(nn.Conv2d(self.width, self.width, kernel_size, padding=kernel_size // 2,
                                             groups=self.width) for _ in range(scales - 1))
        self.pos_embd = PositionalEncodingFourier(dim) if use_pos_emb else None
        self.norm_xca = norm_layer(dim)
        self.gamma_xca = layer_scale(dim, ls_init_value)
        self.xca = CrossCovarianceAttn(dim, num_heads)
        self.norm = norm_layer(dim)
        self.mlp = PointwiseMlp(dim, int(EXPANSION * dim) if mid_chs is None else mid_chs, act_layer)
        self.gamma = layer_scale(dim, ls_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def split_depthwise(self, x: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(len(self.convs) + 1, dim=1)  # == torch.split(x, width): split_width checked the count
        out, sp = [], chunks[0]
        for i, conv in enumerate(self.convs):
            sp = conv(sp if i == 0 else sp + chunks[i])
            out.append(sp)
        return torch.cat([*out, chunks[-1]], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.split_depthwise(x)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(0, 2, 1)  # (B, N, C)
        if self.pos_embd is not None:
            x = x + self.pos_embd(h, w).reshape(1, c, h * w).permute(0, 2, 1)
        attn = self.xca(self.norm_xca(x))
        x = x + self.drop_path(attn if self.gamma_xca is None else self.gamma_xca * attn)
        x = self.mlp(self.norm(x.reshape(b, h, w, c)))
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


def default_heads(dim: int) -> int:
    """The interface's head count: 4 (EdgeNeXt-XXS/XS), else the largest of 2, 1 that divides ``dim``."""
    return next(h for h in (4, 2, 1) if dim % h == 0)


@register_block("sdta", honours=("kernel_size", "expansion", "mid_chs", "act_layer"),
                paper="Maaz et al., EdgeNeXt, ECCV-W CADL 2022", arxiv="2206.10589",
                summary="split depthwise 3x3 over 2 channel chunks, transposed (channel) attention, LayerNorm MLP 4x, "
                        "layer scales; stride 2: LayerNorm + 2x2 s2 conv first")
def sdta_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
               mid_chs: int | None = None, act_layer: Callable[[], nn.Module] = nn.GELU) -> nn.Module:
    hidden = mid_channels(out_chs, expansion, mid_chs, EXPANSION, divisor=1)
    block = SDTAEncoder(out_chs, num_heads=default_heads(out_chs), scales=2, kernel_size=kernel_size,
                        mid_chs=hidden, act_layer=act_layer)
    return entered("sdta", in_chs, out_chs, stride, block)
