"""Measure: params and MAdds now; latency, memory traffic and Pareto fronts come with later releases."""

from .counting import count_madds, count_params

__all__ = ["count_madds", "count_params"]
