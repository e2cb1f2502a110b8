"""A method's own saved state is refused, in one line, when it was written for other loss terms."""

from __future__ import annotations

import importlib

import pytest
import torch

METHODS = [("dwa", "DWA"), ("famo", "FAMO"), ("relobralo", "ReLoBRaLo"), ("rlw", "RLW"),
           ("uncertainty", "uncertainty")]


@pytest.mark.parametrize(("module", "label"), METHODS)
def test_state_for_other_terms_is_refused_naming_both(module, label):
    mod = importlib.import_module(f"mtbench.methods.{module}")
    cls = next(v for v in vars(mod).values()
               if isinstance(v, type) and v.__module__ == mod.__name__ and hasattr(v, "load_state_dict"))
    lin = torch.nn.Linear(2, 1)
    state = cls(lin.parameters(), ["a", "b"]).state_dict()
    other = cls(lin.parameters(), ["a", "c"])
    with pytest.raises(ValueError, match=rf"^{label} state does not match this run: checkpoint has terms \['a', 'b'\], "
                                         r"this run has \['a', 'c'\]"):
        other.load_state_dict(state)
    cls(lin.parameters(), ["a", "b"]).load_state_dict(state)  # the same terms load
