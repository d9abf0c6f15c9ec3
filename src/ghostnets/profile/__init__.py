"""Measure: params and MAdds, a per-layer profile of MAdds and memory traffic, latency per runtime, Pareto fronts."""

from .counting import count_madds, count_params
from .layers import LayerProfile, ModelProfile, profile_layers
from .pareto import pareto_front

__all__ = ["LayerProfile", "ModelProfile", "count_madds", "count_params", "profile_layers"]
__all__ += ["pareto_front"]
