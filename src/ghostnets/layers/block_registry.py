"""The block registry: every building block under a short name, built through one keyword interface.

``create_block(name, in_chs, out_chs, stride, *, kernel_size, expansion or mid_chs, se_ratio, act_layer,
norm_layer)`` builds any registered block, so a design space can swap one block type for another (DESIGN.md "One
block interface"; the hardware-aware block evaluation of Bonnaerens et al., arXiv 2208.12694). A block states which
of the shared keywords it honours; any other keyword given a value is refused by name, never silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

SHARED_KEYWORDS = ("kernel_size", "expansion", "mid_chs", "se_ratio", "act_layer", "norm_layer")


@dataclass(frozen=True)
class BlockSpec:
    """A registered block: its factory ``factory(in_chs, out_chs, stride, **keywords)``, the shared keywords it
    honours, and its paper."""

    name: str
    factory: Callable[..., nn.Module]
    honours: frozenset[str]
    paper: str
    arxiv: str
    summary: str = ""
    example: tuple[int, int] = (16, 24)  # (in_chs, out_chs) it takes at stride 2; (out_chs, out_chs) at stride 1


_BLOCKS: dict[str, BlockSpec] = {}


def register_block(name: str, *, honours: tuple[str, ...], paper: str, arxiv: str, summary: str = "",
                   example: tuple[int, int] = (16, 24)):
    """Decorator: register ``factory(in_chs, out_chs, stride, **keywords)`` under ``name``."""
    unknown = set(honours) - set(SHARED_KEYWORDS)
    if unknown:
        raise ValueError(f"block {name!r}: {sorted(unknown)} are not shared keywords ({', '.join(SHARED_KEYWORDS)})")

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BLOCKS:
            raise ValueError(f"block name {name!r} is registered twice")
        _BLOCKS[name] = BlockSpec(name, factory, frozenset(honours), paper, arxiv, summary, example)
        return factory

    return decorate


def list_blocks() -> list[str]:
    """The registered block names, sorted (every block file registers at import; ``ghostnets.layers`` imports
    them all through :mod:`.blocks`)."""
    return sorted(_BLOCKS)


def block_info(name: str) -> BlockSpec:
    """The registered block ``name``; unknown names suggest close ones."""
    if name not in _BLOCKS:
        close = difflib.get_close_matches(name, list(_BLOCKS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown block {name!r}.{hint} Registered: {', '.join(sorted(_BLOCKS))}")
    return _BLOCKS[name]


def create_block(name: str, in_chs: int, out_chs: int, stride: int = 1, **keywords) -> nn.Module:
    """Build block ``name`` through the shared interface; a keyword the block cannot honour is refused by name."""
    spec = block_info(name)
    foreign = sorted(set(keywords) - set(SHARED_KEYWORDS))
    if foreign:
        raise TypeError(f"{', '.join(foreign)}: not keywords of the block interface ({', '.join(SHARED_KEYWORDS)})")
    refused = sorted(k for k, v in keywords.items() if v is not None and k not in spec.honours)
    if refused:
        raise ValueError(f"block {name!r} cannot honour {', '.join(f'{k}={keywords[k]!r}' for k in refused)}: it "
                         f"takes {', '.join(sorted(spec.honours)) or 'no shared keyword'} ({spec.paper})")
    if keywords.get("expansion") is not None and keywords.get("mid_chs") is not None:
        raise ValueError("give expansion or mid_chs, not both")
    return spec.factory(in_chs, out_chs, stride, **{k: v for k, v in keywords.items() if v is not None})


def mid_channels(in_chs: int, expansion: float | None, mid_chs: int | None, default_expansion: float,
                 divisor: int = 4) -> int:
    """The hidden width a block runs at: ``mid_chs``, else ``in_chs * expansion`` rounded to ``divisor``."""
    from .channels import make_divisible

    if mid_chs is not None:
        return int(mid_chs)
    return make_divisible(in_chs * (default_expansion if expansion is None else expansion), divisor)
