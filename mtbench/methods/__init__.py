"""Loss-balancing methods: one file per method, each a subclass of :class:`Method`."""

from mtbench.methods.base import Method, WeightedSumMethod

__all__ = ["Method", "WeightedSumMethod"]
