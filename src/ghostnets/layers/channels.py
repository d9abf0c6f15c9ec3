"""Channel rounding: the GhostNet-family tables' rule and the plain nets' width multiplier."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping more than 10 %.

    The rule of MobileNetV2's reference code that GhostNet, GhostNetV2 and RepGhostNet use with ``divisor=4``.
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (the plain nets' width multiplier, no divisor)."""
    return max(1, int(round(channels * width)))
