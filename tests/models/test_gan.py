"""mtbench.models.gan: the pieces the three GANs share."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtbench.models.gan import (check_lr_decay, check_step_decay, decay_schedulers, discriminator_adam, frozen,
                                linear_decay, step_decay, step_decay_schedulers)


def test_frozen_freezes_then_restores_even_on_error():
    d1, d2 = nn.Linear(2, 1), nn.Linear(2, 1)
    with frozen([d1, d2]):
        assert not any(p.requires_grad for p in [*d1.parameters(), *d2.parameters()])
    assert all(p.requires_grad for p in [*d1.parameters(), *d2.parameters()])
    with pytest.raises(RuntimeError), frozen(d1):
        raise RuntimeError("method.step failed")
    assert all(p.requires_grad for p in d1.parameters())


def test_step_decay_factor_and_schedulers():
    f = step_decay(10, 0.5, 0.1)
    assert [f(s) for s in range(10)] == [1.0] * 5 + [0.1] * 5
    assert step_decay(3, 0.01, 0.5)(0) == 1.0 and step_decay(3, 0.01, 0.5)(1) == 0.5  # milestone >= 1
    opts = [torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0) for _ in range(2)]
    scheds = step_decay_schedulers(opts, 4, 0.5, 0.1)
    lrs = []
    for _ in range(4):
        lrs.append([o.param_groups[0]["lr"] for o in opts])
        for o, s in zip(opts, scheds):
            o.step()
            s.step()
    assert lrs == [[1.0, 1.0], [1.0, 1.0], [pytest.approx(0.1)] * 2, [pytest.approx(0.1)] * 2]
    assert step_decay_schedulers(opts, 4, None, 0.1) == [] and step_decay_schedulers(opts, 4, 0.5, 1.0) == []


def test_linear_decay_schedulers_follow_the_config():
    assert [linear_decay(4, 0.5)(s) for s in range(4)] == [1.0, 1.0, 1.0 - 1 / 3, 1.0 - 2 / 3]
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    assert decay_schedulers([opt], 4, check_lr_decay({"enabled": False})) == []
    assert len(decay_schedulers([opt], 4, check_lr_decay(None))) == 1


@pytest.mark.parametrize("at, gamma, message", [
    (0, 0.1, r"^model\.lr_decay_at must be null or a number in \(0, 1\], got 0$"),
    (1.5, 0.1, r"^model\.lr_decay_at must be null or a number in \(0, 1\], got 1\.5$"),
    (0.5, 0, r"^model\.lr_decay_gamma must be a number in \(0, 1\], got 0$"),
    (None, "x", r"^model\.lr_decay_gamma must be a number in \(0, 1\], got 'x'$"),
])
def test_step_decay_settings_are_checked(at, gamma, message):
    with pytest.raises(ValueError, match=message):
        check_step_decay(at, gamma)


def test_lr_decay_settings_are_checked():
    assert check_step_decay(None, 1) == (None, 1.0) and check_step_decay(1, 0.5) == (1.0, 0.5)
    with pytest.raises(ValueError, match=r"^model\.lr_decay\.start must be a number in \[0, 1\], got 2$"):
        check_lr_decay({"start": 2})
    with pytest.raises(ValueError, match=r"^model\.lr_decay\.enabled must be true or false, got 'yes'$"):
        check_lr_decay({"enabled": "yes"})
    with pytest.raises(ValueError, match="unknown keys"):
        check_lr_decay({"stop": 1})


def test_discriminator_adam():
    opt = discriminator_adam(nn.Linear(1, 1).parameters(), {"lr": 2e-4, "betas": [0.5, 0.999]})
    assert opt.param_groups[0]["lr"] == 2e-4 and opt.param_groups[0]["betas"] == (0.5, 0.999)
    with pytest.raises(ValueError, match=r"model\.optim\.betas must have 2 values"):
        discriminator_adam(nn.Linear(1, 1).parameters(), {"lr": 1e-4, "betas": [0.9]})
