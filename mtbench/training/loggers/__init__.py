"""The backends a run logs to besides ``metrics.jsonl`` (which is always written): one file each.

``conf/logger/<name>.yaml`` holds one entry ``<name>: {_target_: ..., <settings>}``; the entries of the chosen
options (``logger=csv``, ``logger=[tensorboard,mlflow]``; ``~logger``: none) are built with
``hydra.utils.instantiate`` by the runner (:class:`mtbench.training.loop.Runner`), before the run is accepted:
a constructor checks its settings and imports (one :class:`~mtbench.errors.ConfigError` line) and writes
nothing; :meth:`Logger.open` starts the backend once the run trains. The interface is :class:`Logger`.
"""

from mtbench.training.loggers.base import Logger

__all__ = ["Logger"]
