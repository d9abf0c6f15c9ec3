"""``ghostify``: replace the convolutions of any CNN by Ghost modules (GhostNet, arXiv 1911.11907, Sec. 4.1).

The paper's plug-and-play rule (docs/reference.md §7): every convolution but the stem becomes a Ghost module with the
same in/out channels and kernel size; stride, padding and dilation go to the primary conv; the cheap operation is a
d x d depthwise conv; everything else in the model is left as it was.
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from ..counting import conv_madds, conv_output_sizes, count_madds, count_params, madds_input_size
from ..layers.ghost import GhostModule, check_ghost_ratio
from ..table import format_table
from .edits import record_edit, register_edit

FIRST_CONV = "first conv"


@dataclass(frozen=True)
class LayerChange:
    """One convolution of the model: replaced by a Ghost module, or left as it was and why."""

    name: str
    shape: str  # "in -> out, k x k, stride s[, groups g]"
    params_before: int
    params_after: int
    madds_before: int | None
    madds_after: int | None
    kept_because: str = ""  # empty when replaced

    @property
    def replaced(self) -> bool:
        return not self.kept_because


@dataclass
class GhostifyReport:
    """What :func:`ghostify` did, layer by layer, with whole-model totals (``print(report)`` shows the table)."""

    ratio: int
    dw_size: int
    input_size: tuple[int, int] | None
    layers: list[LayerChange] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    madds_before: int | None = None
    madds_after: int | None = None

    @property
    def replaced(self) -> list[LayerChange]:
        return [c for c in self.layers if c.replaced]

    @property
    def kept(self) -> list[LayerChange]:
        return [c for c in self.layers if not c.replaced]

    def table(self) -> str:
        def m(v: int | None) -> str:
            return "?" if v is None else f"{v / 1e6:.2f}M"

        rows = [(c.name, c.shape, f"{c.params_before:,}", f"{c.params_after:,}", m(c.madds_before),
                 m(c.madds_after), "ghost" if c.replaced else f"kept: {c.kept_because}") for c in self.layers]
        rows.append(("total (whole model)", "", f"{self.params_before:,}", f"{self.params_after:,}",
                     m(self.madds_before), m(self.madds_after), f"{len(self.replaced)} replaced"))
        size = f"at {self.input_size[0]}x{self.input_size[1]}" if self.input_size else "(input size unknown)"
        return (f"Ghost modules s={self.ratio}, d={self.dw_size}; MAdds {size}\n"
                + format_table(["layer", "conv", "params", "ghost params", "MAdds", "ghost MAdds", ""], rows))

    def __str__(self) -> str:
        return self.table()


def _describe(conv: nn.Conv2d) -> str:
    k, s = conv.kernel_size, conv.stride
    text = f"{conv.in_channels} -> {conv.out_channels}, {k[0]}x{k[1]}, stride {s[0]}"
    return text + (f", groups {conv.groups}" if conv.groups > 1 else "")


def _skip_reason(conv: nn.Conv2d) -> str:
    if conv.groups == 1:
        return ""
    if conv.groups == conv.in_channels:
        return "depthwise"  # already as cheap as a Ghost module's own cheap operation
    return f"grouped (groups={conv.groups})"  # a Ghost module would change which channels mix


def _resolve_skip(names: list[str], skip: Sequence[str]) -> set[str]:
    skipped = set()
    for entry in skip:
        found = names[:1] if entry == FIRST_CONV else [n for n in names if fnmatch.fnmatchcase(n, entry)]
        if not found:
            raise ValueError(f"skip entry {entry!r} matches no convolution; the model's convolutions are "
                             f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''} (use their names, shell "
                             f"patterns like 'layer4.*', or {FIRST_CONV!r})")
        skipped.update(found)
    return skipped


def _output_sizes(model: nn.Module, convs: dict[str, nn.Module], input_size: tuple[int, int], in_chans: int):
    """Each conv's output H x W for one image of ``input_size``, or ``None`` if the model does not run on it."""
    try:
        return conv_output_sizes(model, convs, input_size, in_chans)
    except Exception as e:  # the model wants another input: counts without MAdds
        warnings.warn(f"ghostify: could not run the model on a 1x{in_chans}x{input_size[0]}x{input_size[1]} input "
                      f"to count MAdds ({type(e).__name__}: {e}); pass input_size=(H, W)", stacklevel=3)
        return None


def _ghost_madds(ghost: GhostModule, hw: tuple[int, int]) -> int:
    return sum(conv_madds(seq[0], hw) for seq in (ghost.primary_conv, ghost.cheap_operation))


def ghost_conv_like(conv: nn.Conv2d, ratio: int, dw_size: int, keep_bn: bool) -> GhostModule:
    """A Ghost module that takes ``conv``'s place: same channels and kernel; stride/padding/dilation on the primary."""
    ghost = GhostModule(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.bias is not None, ratio=ratio, dw_size=dw_size, norm=keep_bn,
                        padding_mode=conv.padding_mode)
    return ghost.to(device=conv.weight.device, dtype=conv.weight.dtype)


def ghostify(
    model: nn.Module, ratio: int = 2, dw_size: int = 3, *, skip: Sequence[str] = (FIRST_CONV,), keep_bn: bool = True,
    input_size: int | tuple[int, int] | None = None, report: bool = True,
) -> nn.Module:
    """Return a copy of ``model`` with every ``nn.Conv2d`` (but ``skip``) replaced by a drop-in :class:`GhostModule`.

    ``skip`` takes module names, shell patterns (``"layer4.*"``) and ``"first conv"`` (the default: the stem, as the
    paper keeps it). Grouped and depthwise convs are kept and reported. ``keep_bn`` keeps the Ghost module's own
    BatchNorm after its primary and cheap convs (the paper's module); the model's BatchNorms are never touched.
    ``input_size`` (H, W; default: the model card's, else 224) is where MAdds are counted for the report, which the
    result's record carries as ``.record.report`` (``report=False`` skips the counting). New weights are freshly
    initialised: train (or fine-tune) the result.
    """
    if not isinstance(model, nn.Module):
        hint = (" (ghostnets.ghostify takes a model name too: it builds the model with create_model first)"
                if isinstance(model, str) else "")
        raise TypeError(f"ghostify takes an nn.Module, got {type(model).__name__} {model!r}{hint}")
    check_ghost_ratio(ratio, dw_size)
    if isinstance(skip, str):
        skip = (skip,)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        warnings.warn(f"ghostify: {type(model).__name__} has no nn.Conv2d; it is returned unchanged", stacklevel=2)
        return model
    skipped = _resolve_skip(list(convs), skip)
    first = next(iter(convs.values()))
    in_chans = first.in_channels
    size = madds_input_size(model, input_size)
    sizes = _output_sizes(model, convs, size, in_chans) if report else None

    ghosted = copy.deepcopy(model)
    summary = GhostifyReport(ratio, dw_size, size if sizes is not None else None)
    for name, conv in convs.items():
        hw = sizes.get(name) if sizes is not None else None
        before = conv_madds(conv, hw) if hw else None
        reason = "skipped" if name in skipped else _skip_reason(conv)
        if reason:
            summary.layers.append(LayerChange(name, _describe(conv), count_params(conv), count_params(conv), before,
                                             before, reason))
            continue
        ghost = ghost_conv_like(conv, ratio, dw_size, keep_bn)
        ghosted.set_submodule(name, ghost)
        summary.layers.append(LayerChange(name, _describe(conv), count_params(conv), count_params(ghost), before,
                                         _ghost_madds(ghost, hw) if hw else None))
    summary.params_before, summary.params_after = count_params(model), count_params(ghosted)
    if sizes is not None:
        summary.madds_before = count_madds(model, size, in_chans)
        summary.madds_after = count_madds(ghosted, size, in_chans)
    return record_edit(ghosted, model, "ghostify", dict(ratio=ratio, dw_size=dw_size, skip=list(skip),
                                                         keep_bn=keep_bn), summary)


register_edit("ghostify", lambda model, args: ghostify(model, **args, report=False))
