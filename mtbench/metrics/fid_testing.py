"""Random FID Inception networks, for tests and benchmarks only: they do NOT give FID values.

The real FID Inception weights (pytorch-fid's ``pt_inception-2015-12-05-*.pth``,
or the file ``mtbench weights fid`` converts) are not available offline, so
tests and ``scripts/bench_fid.py`` use the same architecture
(:func:`mtbench.metrics.fid.build_fid_inception_net`) with seeded random
weights instead: they exercise every code path (features, statistics, the
cache, the runner's FID) and time it (throughput does not depend on the
weights). Numbers computed with them are not FID/KID and must never be
reported as such; nothing in mtbench's runs imports this module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtbench.metrics.fid import FIDInception, _load_net, build_fid_inception_net

__all__ = ["random_fid_inception_state_dict", "random_fid_inception_for_tests"]


def random_fid_inception_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """FOR TESTS ONLY: a seeded random state_dict in the format of ``pt_inception-2015-12-05-*.pth``.

    Convolutions are He-normal (fan-in, ReLU gain) so that activations keep
    an O(1) scale through the ~100 layers (BatchNorm keeps its identity
    statistics); the global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_fid_inception_net()
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
    return net.state_dict()


def random_fid_inception_for_tests(seed: int = 0, device: str | torch.device = "cpu", dims: int = 2048,
                                   resize_input: bool = True) -> FIDInception:
    """FOR TESTS AND BENCHMARKS ONLY: the FID Inception architecture with seeded random weights.

    No file and no network are needed. Its outputs are NOT FID/KID values: they
    only exercise the code path (and time it: throughput does not depend on
    the weights). ``resize_input=False`` skips the 299x299 resize so that tests
    can feed small images (at least 75x75) quickly; the real FID always resizes.
    """
    net = _load_net(random_fid_inception_state_dict(seed), f"random test weights (seed {seed})")
    return FIDInception(net, dims=dims, resize_input=resize_input, weights_id=f"random-test-seed{seed}",
                        weights_source=f"RANDOM TEST WEIGHTS (seed {seed}) - not FID").to(device)
