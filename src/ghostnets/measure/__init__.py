"""Measure: per-layer profiles (MAdds, bytes moved, intensity), the machine's limits, peak memory, latency tables
through every runtime, Pareto fronts and plots. Params and MAdds themselves are :mod:`ghostnets.counting`."""

from ..counting import count_madds, count_params
from .layers import LayerProfile, ModelProfile, profile_layers
from .pareto import pareto_front

__all__ = ["LayerProfile", "ModelProfile", "count_madds", "count_params", "pareto_front", "profile_layers"]
