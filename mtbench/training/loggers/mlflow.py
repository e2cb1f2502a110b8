"""MLflow (``logger=mlflow``, the optional extra ``pip install -e '.[mlflow]'``): a run in a tracking store.

The default store is a local SQLite file, ``sqlite:///runs/mlflow.db`` (``logger.mlflow.tracking_uri``; any
MLflow tracking URI works), the experiment ``mtbench-<model>`` (``logger.mlflow.experiment_name``), the run
named as the run (``name``). Logged: the run's settings as params (model, data, method, seed and the
flattened model, method and trainer settings) when it starts; ``loss/<term>``, ``weight/<term>``,
``time/step_ms``, ``eval/<metric>`` and ``val/<metric>`` at their steps; ``final/<metric>`` at the end; the
status FINISHED, FAILED (an error) or KILLED (SIGINT/SIGTERM). The tag ``mtbench.run_dir`` names the run
directory, and a resumed run (``resume=true``) continues the MLflow run of its directory. Writes happen only
at the ``trainer.log_every`` flush, evaluations and the end, one batch each. Open the store with
``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mtbench.errors import ConfigError
from mtbench.training.loggers.base import Logger

log = logging.getLogger("mtbench.train")

__all__ = ["MLflowLogger", "MISSING"]

MISSING = "logger=mlflow needs the mlflow extra: pip install -e '.[mlflow]'"
RUN_DIR_TAG = "mtbench.run_dir"


class MLflowLogger(Logger):
    def __init__(self, tracking_uri: str = "sqlite:///runs/mlflow.db", experiment_name: str = "mtbench",
                 run_name: str | None = None) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError(MISSING) from None
        for key, value in (("tracking_uri", tracking_uri), ("experiment_name", experiment_name)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"logger.mlflow.{key} must be a non-empty string, got {value!r}")
        self.tracking_uri, self.experiment_name, self.run_name = tracking_uri, experiment_name, run_name
        self.client = None
        self.run_id: str | None = None

    def open(self, out: Path, initial_step: int, name: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # the store's schema set-up, once per store
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self.client.get_experiment_by_name(self.experiment_name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment_name)
        run_dir = str(out.resolve())
        run = self._run_of(exp_id, run_dir) if initial_step > 0 else None
        if run is None:
            run = self.client.create_run(exp_id, run_name=self.run_name or name, tags={RUN_DIR_TAG: run_dir})
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.run_id = run.info.run_id
        logged = run.data.params  # a resumed run's params stay (MLflow never changes a logged param)
        todo = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        for i in range(0, len(todo), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=todo[i:i + 100])

    def _run_of(self, exp_id: str, run_dir: str):
        """The newest MLflow run of ``run_dir`` (a resumed run continues it), or None."""
        if "'" in run_dir:
            return None
        found = self.client.search_runs([exp_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'",
                                        order_by=["attributes.start_time DESC"], max_results=1)
        return found[0] if found else None

    def log_metrics(self, step: int, record: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in record.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_final(self, step: int, hparams: dict[str, Any], metrics: dict[str, float]) -> None:  # noqa: ARG002
        self.log_metrics(step, {f"final/{k}": v for k, v in metrics.items()})

    def close(self, status: str) -> None:
        if self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as err:  # noqa: BLE001 - never mask the run's own outcome
            log.warning("could not end the MLflow run %s as %s: %s", self.run_id, status, err)
