"""The design space of the block evaluation, as data, and its seeded sampling in a MAdds band.

A network is a :class:`~ghostnets.models.blocknet.BlockNet`: stem, ``stages`` stages of ONE registered block type,
head. Per stage: depth and width (a multiple of ``width_multiple``, non-decreasing), sampled log-uniformly as RegNet's
AnyNet is (Radosavovic et al., arXiv 2003.13678 Sec. 3); per stage's blocks: expansion (log-uniform), kernel size and
SE on/off (uniform choices), each only where the block takes it (a block that cannot honour ``expansion`` is never
given one; a kernel it refuses is never drawn). The stride schedule follows the input size. A draw outside the MAdds
band, or one the block refuses (a width its groups do not divide), is rejected and drawn again from the same seeded
stream, so ``sample(space, block, index, seed, band)`` is the same network on every machine (Bonnaerens et al.,
arXiv 2208.12694: Pareto fronts of networks randomly sampled from a design space, for every block alike).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import math
import random
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from torch import nn

from ..errors import GhostnetsError
from ..layers.block_registry import block_info, create_block


class DesignSpaceError(GhostnetsError, ValueError):
    """A design space, a band or a block the sampler cannot work with; the message says what would."""


@dataclass(frozen=True)
class DesignSpace:
    """What a sampled network may be. Ranges are inclusive ``(low, high)``; YAML gives them as two-item lists."""

    input_size: int = 32  # the MAdds band is counted at this square input
    in_chans: int = 1  # the data's (the sweep sets it from the dataset)
    num_classes: int = 10  # likewise
    stages: int = 4
    depth: tuple[int, int] = (1, 4)  # blocks per stage, log-uniform
    width: tuple[int, int] = (16, 256)  # output channels per stage, log-uniform, rounded to width_multiple, sorted
    width_multiple: int = 8
    expansion: tuple[float, float] = (1.0, 6.0)  # hidden width / input width, log-uniform, rounded to expansion_step
    expansion_step: float = 0.5
    kernel_sizes: tuple[int, ...] = (3, 5)
    se_ratios: tuple[float, ...] = (0.0, 0.25)  # for blocks whose SE is optional (default off)
    stem_chs: int | None = None  # None: the first stage's width (blocks that keep the width at stride 1 need it)
    max_tries: int = 4000  # draws per sample before the band is declared out of reach

    def __post_init__(self) -> None:
        for name in ("depth", "width", "expansion"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise DesignSpaceError(f"design space: {name} must be (low, high) with 0 < low <= high, got "
                                       f"{getattr(self, name)}")
        if self.stages < 1 or self.input_size < 8 or self.width_multiple < 1 or not self.kernel_sizes:
            raise DesignSpaceError("design space: stages >= 1, input_size >= 8, width_multiple >= 1 and at least one "
                                   "kernel size are needed")
        if self.width[1] < self.width_multiple:
            raise DesignSpaceError(f"design space: the widest width {self.width[1]} is below width_multiple "
                                   f"{self.width_multiple}")

    # ----------------------------------------------------------------------------------------------- as data

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict, where: str = "design space") -> DesignSpace:
        if not isinstance(values, dict):
            raise DesignSpaceError(f"{where}: expected a mapping of field: value, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise DesignSpaceError(f"{where}: unknown field {unknown[0]!r}.{hint} Fields: {', '.join(known)}")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**converted)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DesignSpace:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise DesignSpaceError(f"design space file {path} does not exist")
        return cls.from_dict(yaml.safe_load(path.read_text()) or {}, f"design space {path}")

    def fingerprint(self) -> str:
        """A short hash of the space: a study records it and refuses another space."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # ----------------------------------------------------------------------------------------------- schedule

    def stride_schedule(self) -> tuple[int, tuple[int, ...]]:
        """``(stem_stride, stage strides)``: the last three stages halve the map, then the stem (inputs >= 64), then
        the first stage (>= 128): 32 px ends at 4x4, 224 px at 7x7 (RegNet's stem + 4 stages of stride 2)."""
        halvings = max(0, min(self.stages + 1, int(math.log2(self.input_size / 4))))
        order = list(range(self.stages, 0, -1))[:3] + [0] + list(range(self.stages - 3, 0, -1))
        strided = set(order[:halvings])
        return (2 if 0 in strided else 1), tuple(2 if i + 1 in strided else 1 for i in range(self.stages))


@dataclass(frozen=True)
class Architecture:
    """One network of the space: the arguments of ``create_model("blocknet", ...)``."""

    block: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    stem_chs: int | None
    stem_stride: int
    kernel_sizes: tuple[int | None, ...]
    expansions: tuple[float | None, ...]
    se_ratios: tuple[float | None, ...]

    def model_kwargs(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_kwargs(cls, values: dict) -> Architecture:
        """The inverse of :meth:`model_kwargs` (as a study stores it: lists for the per-stage values)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def build(self, space: DesignSpace, **kwargs) -> nn.Module:
        from ..factory import create_model

        return create_model("blocknet", num_classes=space.num_classes, in_chans=space.in_chans,
                            **self.model_kwargs(), **kwargs)


@dataclass(frozen=True)
class Sample:
    """A sampled network with its counts at the space's input size, and the draws it took."""

    arch: Architecture
    madds: int
    params: int
    tries: int
    rejected: dict = field(default_factory=dict)  # why draws were rejected: {"outside band": n, reason: n}


_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_band(text: str) -> tuple[float, float]:
    """``"4M:16M"`` -> ``(4e6, 16e6)`` (suffixes K, M, G; plain numbers are MAdds)."""
    parts = str(text).split(":")
    values = []
    for part in parts:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", part)
        if not m:
            break
        values.append(float(m[1]) * _SUFFIX[m[2].lower()])
    if len(parts) != 2 or len(values) != 2 or not 0 < values[0] < values[1]:
        raise DesignSpaceError(f"MAdds band {text!r}: give LOW:HIGH with LOW < HIGH, e.g. 4M:16M (suffixes K, M, G)")
    return values[0], values[1]


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _takes_optional_se(block: str) -> bool:
    spec = block_info(block)
    if "se_ratio" not in spec.honours:
        return False
    default = inspect.signature(spec.factory).parameters["se_ratio"].default
    return default in (0, 0.0, None)


@cache
def _builds(block: str, kernel_size: int) -> bool:
    out_chs = block_info(block).example[1]
    try:
        create_block(block, out_chs, out_chs, 1, kernel_size=kernel_size)
    except (ValueError, TypeError):
        return False
    return True


def block_choices(space: DesignSpace, block: str) -> dict[str, list]:
    """What is sampled for ``block``: the kernel sizes it builds, and whether expansion and SE are drawn."""
    spec = block_info(block)
    kernels = [k for k in space.kernel_sizes if _builds(block, k)] if "kernel_size" in spec.honours else [None]
    if not kernels:
        raise DesignSpaceError(f"block {block!r} builds none of the space's kernel sizes {list(space.kernel_sizes)}")
    return {"kernel_sizes": kernels,
            "expansion": "expansion" in spec.honours,
            "se_ratios": list(space.se_ratios) if _takes_optional_se(block) else [None]}


@cache
def _block_builds(block: str, in_chs: int, out_chs: int, stride: int, kernel_size, expansion, se_ratio) -> bool:
    import torch

    try:
        with torch.device("meta"):
            create_block(block, in_chs, out_chs, stride, kernel_size=kernel_size, expansion=expansion,
                         se_ratio=se_ratio)
    except (ValueError, TypeError):
        return False
    return True


def _snap_widths(space: DesignSpace, block: str, widths: list[int], depths, strides, stem_chs, keywords) -> tuple:
    """Each stage's width moved to the nearest multiple of ``width_multiple`` (not below the previous stage's) that
    the block builds, at its entry and, for deeper stages, its repeats: the constraints a block's groups, channel
    split or depthwise connector put on widths, met without biasing the log-uniform draw more than that."""
    m, high = space.width_multiple, space.width[1]
    snapped, previous = [], stem_chs or 0
    for i, w in enumerate(widths):
        low = max(m, (previous + m - 1) // m * m if previous else m)
        candidates = sorted(range(low, high + 1, m), key=lambda c, w=w: (abs(math.log(c / w)), c))
        in_chs = previous
        for c in candidates:
            entry = in_chs or c
            if _block_builds(block, entry, c, strides[i], *keywords[i]) and (
                    depths[i] == 1 or _block_builds(block, c, c, 1, *keywords[i])):
                snapped.append(c)
                previous = c
                break
        else:
            return ()
    return tuple(snapped)


def _draw(rng: random.Random, space: DesignSpace, block: str, choices: dict) -> Architecture | None:
    n = space.stages
    lo, hi = space.depth
    depths = tuple(min(hi, int(_log_uniform(rng, lo, hi + 1))) for _ in range(n))
    m = space.width_multiple
    widths = sorted(max(m, int(round(_log_uniform(rng, *space.width) / m)) * m) for _ in range(n))
    if choices["expansion"]:
        step = space.expansion_step
        expansions = tuple(max(space.expansion[0], round(_log_uniform(rng, *space.expansion) / step) * step)
                           for _ in range(n))
    else:
        expansions = (None,) * n
    kernels = tuple(rng.choice(choices["kernel_sizes"]) for _ in range(n))
    ses = tuple(rng.choice(choices["se_ratios"]) for _ in range(n))
    stem_stride, strides = space.stride_schedule()
    snapped = _snap_widths(space, block, widths, depths, strides, space.stem_chs,
                           list(zip(kernels, expansions, ses)))
    if not snapped:
        return None
    return Architecture(block, depths, snapped, strides, space.stem_chs, stem_stride, kernels, expansions, ses)


def measure_arch(arch: Architecture, space: DesignSpace) -> tuple[int, int]:
    """``(MAdds at the space's input size, params)`` of ``arch``; a block's refusal raises ``ValueError``."""
    import torch

    from ..counting import count_madds, count_params

    with torch.device("meta"):  # no memory, no initialisation: the counts need the shapes only
        model = arch.build(space, channels_last=False)
    return count_madds(model, (space.input_size, space.input_size), space.in_chans), count_params(model)


def _extreme(space: DesignSpace, block: str, largest: bool) -> int:
    """MAdds of the smallest (or largest) network of the space ``block`` builds: every stage at the fewest (most)
    blocks, the narrowest (widest) width the block builds there, the smallest (largest) kernel, expansion and SE."""
    choices = block_choices(space, block)
    n, pick, end = space.stages, (max if largest else min), (1 if largest else 0)
    depths = (space.depth[end],) * n
    keywords = [(pick(choices["kernel_sizes"], key=lambda k: k or 0),
                 space.expansion[end] if choices["expansion"] else None,
                 pick(choices["se_ratios"], key=lambda s: s or 0))] * n
    stem_stride, strides = space.stride_schedule()
    widths: tuple = ()
    for taper in (1.0, 0.75, 0.5, 0.25):  # blocks that must widen at stride 2 cannot have every stage at the widest
        targets = [space.width[end] * (taper ** (n - 1 - i) if largest else 1) for i in range(n)]
        widths = _snap_widths(space, block, targets, depths, strides, space.stem_chs, keywords)
        if widths or not largest:
            break
    if not widths:
        raise DesignSpaceError(f"block {block!r} builds no network of this design space (widths {space.width[0]}.."
                               f"{space.width[1]} in steps of {space.width_multiple}, strides {strides})")
    arch = Architecture(block, depths, widths, strides, space.stem_chs, stem_stride, *zip(*keywords))
    return measure_arch(arch, space)[0]


def reachable_range(space: DesignSpace, block: str) -> tuple[int, int]:
    """The fewest and the most MAdds a network of ``block`` can have in ``space`` (at its input size)."""
    return _extreme(space, block, False), _extreme(space, block, True)


def sample(space: DesignSpace, block: str, index: int, seed: int, band: tuple[float, float]) -> Sample:
    """Network ``index`` of ``block``: drawn from a stream seeded by ``(seed, block, index)`` until one builds and
    lands in ``band`` (MAdds). The same arguments give the same network everywhere."""
    choices = block_choices(space, block)
    rng = random.Random(f"ghostnets-blocks:{seed}:{block}:{index}")
    rejected: dict[str, int] = {}
    for tries in range(1, space.max_tries + 1):
        arch = _draw(rng, space, block, choices)
        if arch is None:
            rejected["no width the block builds"] = rejected.get("no width the block builds", 0) + 1
            continue
        try:
            madds, params = measure_arch(arch, space)
        except ValueError as e:
            reason = re.sub(r"^stage \d+ block \d+ \([^)]*\): ", "", str(e))[:120]
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        if band[0] <= madds <= band[1]:
            return Sample(arch, madds, params, tries, rejected)
        rejected["outside band"] = rejected.get("outside band", 0) + 1
    low, high = reachable_range(space, block)
    raise DesignSpaceError(
        f"block {block!r}: no network in the MAdds band {band[0] / 1e6:g}M:{band[1] / 1e6:g}M after "
        f"{space.max_tries} draws (rejected: {rejected}); in this space it reaches {low / 1e6:.2f}M..{high / 1e6:.2f}M "
        "MAdds: choose a band inside that range, or widen the space")


def check_band(space: DesignSpace, blocks: list[str], band: tuple[float, float]) -> dict[str, tuple[int, int]]:
    """Every block's reachable range; a block whose range misses ``band`` is refused, naming its range."""
    ranges, problems = {}, []
    for block in blocks:
        ranges[block] = low, high = reachable_range(space, block)
        if high < band[0] or low > band[1]:
            problems.append(f"{block} reaches {low / 1e6:.2f}M..{high / 1e6:.2f}M")
    if problems:
        raise DesignSpaceError(f"no network of these blocks can land in the MAdds band {band[0] / 1e6:g}M:"
                               f"{band[1] / 1e6:g}M: {'; '.join(problems)}. Choose a band that meets each range, "
                               "or change the design space (--space FILE)")
    return ranges
