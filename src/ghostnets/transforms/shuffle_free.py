"""ShuffleNet V2 without its channel shuffles: each unit reads the channels it needs where earlier units wrote them.

A ShuffleNet V2 unit (Ma et al., ECCV 2018, arXiv 1807.11164, Sec. 3 and Fig. 3) ends with ``concat`` and a channel
shuffle, and the next unit starts with a channel split; every unit moves its whole tensor twice. Both are fixed
permutations, so the movement can go into the weights instead: the rewrite tracks, for each channel of the tensor a
unit would see, the branch output (or the run's input) and the channel it was written to. A unit then reads its
input as a concat of a few contiguous slices of those outputs, with its first convolutions' input channels (and its
depthwise conv's channels) permuted to that order; a stride-1 unit reads only the half its branch uses, and the
passed-through half is never copied. The last consumer (ShuffleNet V2's ``conv5``) reads the run's output in the
order it is stored; where none can absorb the order, one ``index_select`` restores it. Outputs equal the deploy
form's (float rounding, well under 1e-4).

Runtimes cannot find this: it moves a permutation across a chain of units into the weights of later convolutions.
``benchmarks/runtime_fusions.py`` times it against the deploy form; it paid (BENCHMARKS.md, "Computations the
runtimes do not find"), so ``ghostnets export`` (and with it ``bench``'s runtimes and ``quantize_model``) writes
the rewritten graph, checked against the deploy form.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..layers.deploy_conv import DeployConv2d, permute_channels
from ..layers.shufflenet_v2 import ShuffleV2Block

Runs = list[tuple[int, int, int]]  # (source, start, stop): the slices a read concatenates, in order


def _convs(branch: nn.Module) -> list[nn.Module]:
    return [m for m in branch if not isinstance(m, nn.Identity)]


def shuffle_free_unit(unit: nn.Module) -> bool:
    """A deploy-form ShuffleNet V2 unit: branches of deploy convs only, the first conv of each dense or (stride 2,
    the left branch) depthwise followed by a dense one."""
    if type(unit) is not ShuffleV2Block:
        return False
    branches = [unit.branch2] + ([unit.branch1] if unit.stride == 2 else [])
    if any(not _convs(b) or not all(isinstance(m, DeployConv2d) for m in _convs(b)) for b in branches):
        return False
    if _convs(unit.branch2)[0].groups != 1:
        return False
    if unit.stride == 2:
        left = _convs(unit.branch1)
        return len(left) >= 2 and left[0].groups == left[0].in_channels == left[0].out_channels \
            and left[1].groups == 1
    return True


def _read(where: list[tuple[int, int]], needed: range) -> tuple[Runs, list[int]]:
    """The slices holding the ``needed`` channels, source by source, and the order they come in (needed indices)."""
    order = sorted(needed, key=lambda c: where[c])
    runs: Runs = []
    for c in order:
        source, channel = where[c]
        if runs and runs[-1][0] == source and runs[-1][2] == channel:
            runs[-1] = (source, runs[-1][1], channel + 1)
        else:
            runs.append((source, channel, channel + 1))
    return runs, order


def _gather(sources: list[torch.Tensor], runs: Runs) -> torch.Tensor:
    if len(runs) == 1 and runs[0][1] == 0 and runs[0][2] == sources[runs[0][0]].shape[1]:
        return sources[runs[0][0]]
    return torch.cat([sources[s][:, a:b] for s, a, b in runs], dim=1)


class _Branches(nn.Module):
    """A unit's branches without its concat and shuffle (a module of its own, so exported node names say which
    unit: ``stage2/units.3/branch2``)."""

    def __init__(self, unit: ShuffleV2Block) -> None:
        super().__init__()
        self.stride = unit.stride
        self.branch1, self.branch2 = unit.branch1, unit.branch2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.branch1(x), self.branch2(x)) if self.stride == 2 else (self.branch2(x),)


class ShuffleFreeUnits(nn.Module):
    """A run of deploy ShuffleNet V2 units computed without shuffles or splits; their weights (and ``consumer``'s)
    are permuted in place (:func:`remove_channel_shuffles` works on the copy ``fuse_for_inference`` makes).

    ``consumer``: a dense deploy conv that reads the run's output; its input channels are permuted to read the
    output in stored order. Without one, the output is put back in the deploy form's order by one ``index_select``.
    ``reads[k]``: the slices unit ``k`` concatenates (source 0: the run's input; then each unit's branch outputs)."""

    def __init__(self, units: list[nn.Module], channels: int, consumer: nn.Conv2d | None = None) -> None:
        super().__init__()
        if not units or not all(shuffle_free_unit(u) for u in units):
            raise ValueError("ShuffleFreeUnits takes deploy-form ShuffleV2Block units (ghostnets.reparameterize)")
        self.units = nn.ModuleList()
        self.reads: list[Runs] = []
        where = [(0, c) for c in range(channels)]  # channel of the tensor the next unit sees -> (source, channel)
        sources = 1
        for unit in units:
            width = len(where)
            needed = range(width) if unit.stride == 2 else range(width // 2, width)
            runs, order = _read(where, needed)
            columns = [c - needed.start for c in order]
            first = _convs(unit.branch2)[0]
            if first.in_channels != len(columns):
                raise ValueError(f"unit reads {len(columns)} channels but its first conv takes {first.in_channels}")
            permute_channels(first, columns, out=False, inp=True)
            if unit.stride == 2:
                left = _convs(unit.branch1)
                permute_channels(left[0], columns, out=True, inp=False)
                permute_channels(left[1], columns, out=False, inp=True)
                half = unit.out_chs // 2
                concat = [(sources, c) for c in range(half)] + [(sources + 1, c) for c in range(half)]
                sources += 2
            else:
                half = width // 2
                concat = where[:half] + [(sources, c) for c in range(half)]
                sources += 1
            # channel_shuffle with 2 groups: output channel 2j + g is concat channel g * half + j
            where = [concat[g * half + j] for j in range(half) for g in (0, 1)]
            self.units.append(_Branches(unit))
            self.reads.append(runs)
        self.output, order = _read(where, range(len(where)))
        if consumer is not None:
            permute_channels(consumer, order, out=False, inp=True)
            self.register_buffer("restore", None)
        else:
            inverse = [0] * len(order)
            for position, channel in enumerate(order):
                inverse[channel] = position
            self.register_buffer("restore", torch.tensor(inverse, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sources = [x]
        for unit, runs in zip(self.units, self.reads):
            sources.extend(unit(_gather(sources, runs)))
        out = _gather(sources, self.output)
        return out if self.restore is None else out.index_select(1, self.restore)


def without_channel_shuffles(model: nn.Module) -> nn.Module:
    """``model`` with its runs of ShuffleNet V2 units rewritten (:func:`remove_channel_shuffles`, on a copy), or
    ``model`` itself where it has none: what ``ghostnets export`` writes to the runtimes."""
    if not any(shuffle_free_unit(m) for m in model.modules()):
        return model
    rewritten = copy.deepcopy(model)
    return rewritten if remove_channel_shuffles(rewritten) else model


def remove_channel_shuffles(model: nn.Module) -> int:
    """Rewrite, in place, every run of two or more deploy ShuffleNet V2 units as :class:`ShuffleFreeUnits`; returns
    how many runs. In a :class:`~ghostnets.models.shufflenetv2.ShuffleNetV2`, ``stage2..4`` are one run (their
    modules become the run and two ``Identity``) whose order ``conv5`` absorbs; elsewhere each run sits in its
    ``nn.Sequential`` and restores the deploy form's order at its end."""
    from ..models.shufflenetv2 import ShuffleNetV2

    count = 0
    if isinstance(model, ShuffleNetV2):
        units = [u for s in (model.stage2, model.stage3, model.stage4) for u in s]
        consumer = _convs(model.conv5)[0] if isinstance(model.conv5, nn.Sequential) else None
        if all(shuffle_free_unit(u) for u in units) and isinstance(consumer, DeployConv2d) and consumer.groups == 1:
            model.stage2 = ShuffleFreeUnits(units, units[0].in_chs, consumer)
            model.stage3, model.stage4 = nn.Identity(), nn.Identity()
            count += 1
    for parent in list(model.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.children())
        start = 0
        while start < len(children):
            stop = start
            while stop < len(children) and shuffle_free_unit(children[stop]):
                stop += 1
            if stop - start >= 2:
                parent[start] = ShuffleFreeUnits(children[start:stop], children[start].in_chs)
                for i in range(start + 1, stop):
                    parent[i] = nn.Identity()
                count += 1
            start = stop + 1
    return count
