"""Benchmark models: one file per model, each a subclass of :class:`Model`."""

from mtbench.models.base import Model

__all__ = ["Model"]
