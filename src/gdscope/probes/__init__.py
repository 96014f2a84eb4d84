"""Instruments: functions from (model, params, data) to numbers. They never log, plot or write."""

from gdscope.probes.geometry import distance_from_init, gradient_norm

__all__ = ["distance_from_init", "gradient_norm"]
