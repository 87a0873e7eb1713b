"""The CNN experiment's cells, protocol and schema, JAX-free (the command line, the store and
the figures read them without importing JAX).

A cell is one training set of the grid: n training points, dimension d and a seed, trained at
every signal strength ||mu|| of the protocol (one row per ||mu||). Everything else (the ||mu||
values, filters, noise level, label noise, activation, variant, step size, steps, test points)
is the protocol, one value per sweep.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

KIND = "cnn"
VARIANTS = ("published-code", "paper")
COORDINATES = ("n", "d", "signal", "seed")
COLUMNS = {
    "n": "int",
    "d": "int",
    "signal": "float",
    "seed": "int",
    "snr": "float",  # ||mu|| / (sigma_p sqrt(d)), Cao et al.'s signal-to-noise ratio
    "steps": "int",
    "diverged": "bool",
    "final": "bool",  # the last row of a cell (its largest ||mu||): the cell is complete
    "train_loss": "float",  # final cross-entropy on the (noisy) training labels
    "train_error": "float",  # fraction of noisy training labels not fitted
    "test_error": "float",  # against noisy test labels (Bayes error: the label-flip rate p)
    "clean_test_error": "float",  # against the clean labels
    "signal_learning": "float",  # max over j, r of <w_{j,r}, j mu>
    "noise_memorization": "float",  # mean over i of max_r |<w_{y_i,r}, xi_i>|
}


class Cell(NamedTuple):
    """One training set and initialisation, trained at every ||mu|| of the protocol's
    `signals` at once (they share the data, the init and the test draws: common random
    numbers along the signal axis). Each (cell, ||mu||) is one trained network and one row."""

    n: int
    d: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything of a sweep that is not a grid axis (Kou et al. 2023).

    variant: "published-code" (filters with a bias, outputs summed over the m filters and
        averaged over the 2 patches, PyTorch's Conv1d init U(-1/sqrt(d), 1/sqrt(d)) for weights
        and biases, noise N(0, sigma_p^2 I)) or "paper" (no bias, F_j = (1/m) sum_r sum_p,
        init N(0, sigma_0^2 I), noise N(0, sigma_p^2 (I - mu mu^T / ||mu||^2))).
    q: the activation max(0, z)^q; q = 1 is ReLU (Kou et al.), q > 2 Cao et al.'s ReLU^q.
    n_test: Monte Carlo test points per model, drawn through their 2m filter projections.
    """

    signals: tuple = (1.0,)  # the ||mu|| values every cell trains at
    filters: int = 10  # m, filters per sign
    sigma_p: float = 1.0
    sigma_0: float = 0.01  # paper variant's init std (the published code uses PyTorch's)
    noise_rate: float = 0.1  # p, label-flip rate of training and test labels
    q: float = 1.0
    variant: str = "published-code"
    lr: float = 0.1
    steps: int = 100
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        signals = tuple(float(x) for x in self.signals)
        object.__setattr__(self, "signals", signals)
        checks = [
            (
                len(signals) >= 1 and len(set(signals)) == len(signals),
                f"signals={signals}: need at least one ||mu||, each once",
            ),
            (
                all(x >= 0 and math.isfinite(x) for x in signals),
                f"signal={min(signals, default=0)}: ||mu|| must be finite and >= 0",
            ),
            (self.filters >= 1, f"filters={self.filters} must be >= 1"),
            (
                self.sigma_p > 0 and math.isfinite(self.sigma_p),
                f"sigma_p={self.sigma_p} must be > 0",
            ),
            (
                self.sigma_0 > 0 and math.isfinite(self.sigma_0),
                f"sigma_0={self.sigma_0} must be > 0",
            ),
            (0 <= self.noise_rate < 0.5, f"noise_rate={self.noise_rate} must be in [0, 0.5)"),
            (
                self.q == 1 or self.q > 2,
                f"activation relu^{self.q:g}: q must be 1 (relu) or > 2 (Cao et al.)",
            ),
            (
                self.variant in VARIANTS,
                f"variant={self.variant!r} is not one of {', '.join(VARIANTS)}",
            ),
            (self.lr > 0 and math.isfinite(self.lr), f"lr={self.lr} must be > 0"),
            (1 <= self.steps <= 10**7, f"steps={self.steps} must be in [1, 1e7]"),
            (1 <= self.n_test <= 10**6, f"n_test={self.n_test} must be in [1, 1e6]"),
            (0 <= self.seed < 2**32, f"seed={self.seed} must be in [0, 2^32)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def check_cell(c: Cell) -> Cell:
    if not 1 <= c.n <= 10**5:
        raise ValueError(f"n={c.n} must be in [1, 1e5]")
    if not 2 <= c.d <= 10**6:
        raise ValueError(f"d={c.d} must be in [2, 1e6]")
    if not 0 <= c.seed < 2**32:
        raise ValueError(f"seed={c.seed} must be in [0, 2^32)")
    return c


def cells(n, d, seeds: int) -> list[Cell]:
    """The grid n x d x seeds, validated (the ||mu|| axis is the protocol's `signals`)."""
    if seeds < 1:
        raise ValueError(f"seeds={seeds} must be >= 1")
    return [check_cell(Cell(int(a), int(b), k)) for a in n for b in d for k in range(seeds)]


def activation_q(text: str) -> float:
    """'relu' -> 1; 'relu^q' -> q (q > 2)."""
    if text == "relu":
        return 1.0
    head, _, q = text.partition("^")
    try:
        value = float(q)
    except ValueError:
        value = math.nan
    if head != "relu" or not value > 2 or not math.isfinite(value):
        raise ValueError(f"--activation: {text!r} must be relu or relu^q with q > 2 (e.g. relu^3)")
    return value


def snr(signal: float, d: int, sigma_p: float) -> float:
    return signal / (sigma_p * math.sqrt(d))
