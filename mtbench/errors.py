"""Every expected error of mtbench: the command line turns these (``isinstance``) into one line and exit 2.

Anything else is a bug and keeps its traceback. Modules raise these types (or
subclasses defined next to them) with a message that names the key, value,
file or step involved and, where there is one, what to do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["ConfigError", "DataError", "NonFiniteLossError", "RunInterrupted", "ArgParser", "expected_types"]


class ConfigError(ValueError):
    """A bad config value or command-line input; the message names the key and the value."""


class DataError(RuntimeError):
    """Missing or bad data: the message names the file or folder and what to do."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite (``trainer.nan_policy=raise``); names the term and the step."""


class RunInterrupted(Exception):
    """SIGINT/SIGTERM arrived during training; a checkpoint was written (not an error: the run can resume)."""

    def __init__(self, signum: int, step: int, path: Path | None, hint: str | None = None) -> None:
        self.signum, self.step, self.path = signum, step, path  # path: the checkpoint written (None: none)
        #: what to run to continue (the command line prints it); None: the default for `mtbench train`
        self.hint = hint
        super().__init__(f"interrupted by signal {signum} at step {step}; checkpoint {path}")


class ArgParser(argparse.ArgumentParser):
    """The parser of the argparse commands (report, weights, fid): a usage error is one line, exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help)\n")


def expected_types() -> tuple[type[BaseException], ...]:
    """The error types the command line reports in one line (the weights errors live with the weights
    code; imported here on first use so that this module stays free of torch)."""
    from mtbench.metrics.fid_weights import WeightsFetchError
    from mtbench.nets.vgg import MissingWeightsError

    return (ConfigError, DataError, NonFiniteLossError, MissingWeightsError, WeightsFetchError)

