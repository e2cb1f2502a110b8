"""Datasets: the real benchmark layouts and embedded offline datasets."""

from mtbench.data.base import DataSplits, DataError

__all__ = ["DataSplits", "DataError"]
