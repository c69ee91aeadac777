"""AMO's three files made by the tests: TorchScript modules with AMO's signatures and a pickled
dict of numpy arrays for the adapter normalisation (shared/AMO.md)."""

from __future__ import annotations

import numpy as np
import torch

from psi0_ros.control import amo


class Adapter(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 15)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(torch.randn(15, 12, generator=gen) * 0.3)
            self.linear.bias.copy_(torch.randn(15, generator=gen) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class Policy(torch.nn.Module):
    """raw = W_obs obs + W_hist extra_hist, scaled so that some outputs pass the +-40 clip."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w_obs = torch.nn.Parameter(torch.randn(15, 1043, generator=gen) * 8.0)
        self.w_hist = torch.nn.Parameter(torch.randn(15, 2325, generator=gen) * 0.5)

    def forward(self, obs: torch.Tensor, extra_hist: torch.Tensor) -> torch.Tensor:
        return obs @ self.w_obs.t() + extra_hist @ self.w_hist.t()


NORM = {
    "input_mean": np.linspace(-0.2, 0.9, 12),
    "input_std": np.linspace(0.5, 1.5, 12),
    "output_mean": np.linspace(-0.1, 0.1, 15),
    "output_std": np.linspace(0.8, 1.2, 15),
}


def write_amo_files(directory, seed: int = 0) -> None:
    """AMO's three files, as TorchScript + a pickled dict of numpy arrays."""
    torch.jit.script(Policy(seed)).save(str(directory / amo.POLICY_FILE))
    torch.jit.script(Adapter(seed + 1)).save(str(directory / amo.ADAPTER_FILE))
    torch.save(dict(NORM), str(directory / amo.NORM_STATS_FILE))
