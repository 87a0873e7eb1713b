"""Sweep grids: the axes of a classification experiment and the protocol shared by its cells.

A cell's coordinates fully determine its result: its keys are fold_in's of (n, d, gamma, noise
rate, seed, width) into the protocol's base key, so adding a cell never changes another one.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from jaxbof import optim
from jaxbof.experiments.classification.data import Corruption, Signal
from jaxbof.experiments.classification.step import Param, Stop
from jaxbof.model import Outer
from jaxbof.numerics import float32_bits


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Choices that hold for a whole sweep (defaults: the published Figure 1 protocol)."""

    corruption: Corruption = Corruption.BERNOULLI
    outer: Outer = Outer.ALTERNATING
    signal: Signal = Signal.E1
    stop: Stop = Stop.ZERO_ERROR
    init_scale: float = 1.0  # init std s = init_scale / (M sqrt(d))
    lr_scale: float = 1.0  # step eta = lr_scale / (M n)
    max_steps: int = 200_000
    n_test: int = 1000  # Monte Carlo test points per trained model
    seed: int = 0  # base key of the whole sweep
    param: Param | None = None  # None: GRAM where d > n/2 (linear rules only), DIRECT otherwise
    # update rule (optim.parse spec, Optimizer or optax transformation); default: plain GD
    optimizer: optim.Optimizer | str = optim.GD

    def __post_init__(self):
        object.__setattr__(self, "optimizer", optim.as_optimizer(self.optimizer))
        if self.param == Param.GRAM and not self.optimizer.linear:
            raise ValueError(
                f"param=GRAM needs an optimizer linear in past gradients (sgd, "
                f"momentum, nesterov), not {self.optimizer.spec!r}"
            )
        for name in ("init_scale", "lr_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed!r} must be in [0, 2^32)")
        if not 1 <= self.max_steps < 2**31:
            raise ValueError(f"max_steps={self.max_steps!r} must be in [1, 2^31)")
        if self.max_steps < 1 or self.n_test < 1:
            raise ValueError(f"max_steps={self.max_steps} and n_test={self.n_test} must be >= 1")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Axes of a classification sweep. gamma entries are numbers or 'c/n' (gamma = c / n)."""

    n: tuple[int, ...]
    d_over_n: tuple[float, ...]
    gamma: tuple[float | str, ...] = ("5/n",)
    alpha: tuple[float, ...] = (0.1,)
    noise_rate: tuple[float, ...] = (0.1,)
    width: tuple[int, ...] = (64,)
    seeds: int = 5

    def __post_init__(self):
        for name in ("n", "d_over_n", "gamma", "alpha", "noise_rate", "width"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"grid axis {name} is empty")
        for n in self.n:
            if int(n) != n or n < 1:
                raise ValueError(f"n={n!r}: must be a positive integer")
        for r in self.d_over_n:
            if not r > 0:
                raise ValueError(f"d/n={r!r}: must be > 0")
        for a in self.alpha:
            if not 0 <= a <= 1:
                raise ValueError(f"alpha={a!r}: must be in [0, 1]")
        for q in self.noise_rate:
            if not 0 <= q < 0.5:
                raise ValueError(f"noise rate={q!r}: must be in [0, 0.5)")
        for m in self.width:
            if int(m) != m or m < 1:
                raise ValueError(f"width={m!r}: must be a positive integer")
        if self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r}: must be >= 1")
        for g in self.gamma:
            for n in self.n:
                value = resolve_gamma(g, n)
                if not 0 <= value < 1:
                    raise ValueError(f"gamma={g!r} gives {value} at n={n}: must be in [0, 1)")

    def cells(self) -> list[Cell]:
        out = []
        for n in self.n:
            for r in self.d_over_n:
                d = max(1, round(r * n))
                for g in self.gamma:
                    for q in self.noise_rate:
                        for a in self.alpha:
                            for m in self.width:
                                for s in range(self.seeds):
                                    out.append(
                                        Cell(
                                            int(n),
                                            int(d),
                                            float(r),
                                            resolve_gamma(g, n),
                                            float(a),
                                            float(q),
                                            int(m),
                                            s,
                                        )
                                    )
        return out


def resolve_gamma(g: float | str, n: int) -> float:
    """gamma as a number, or 'c/n' meaning c / n (the published Figure 1 uses 5/n)."""
    if isinstance(g, str):
        text = g.strip().replace(" ", "")
        if text.endswith("/n"):
            return float(Fraction(text[:-2])) / n
        return float(Fraction(text))
    return float(g)


class Cell(NamedTuple):
    """One trained model: the grid coordinates that fully determine its result."""

    n: int
    d: int
    d_over_n: float
    gamma: float
    alpha: float
    noise_rate: float
    width: int
    seed: int


def cell_coords(cell: Cell) -> np.ndarray:
    """uint32 coordinates folded into the keys.

    Data (n, d, gamma, rate, seed), init (d, M, seed)."""
    return np.array(
        [
            cell.n,
            cell.d,
            float32_bits(cell.gamma),
            float32_bits(cell.noise_rate),
            cell.seed,
            cell.width,
        ],
        np.uint32,
    )


def choose_param(cell: Cell, protocol: Protocol) -> Param:
    """GRAM where d > n/2 and the update rule is Gram-exact (optim.Optimizer.linear), else
    DIRECT; or the protocol's own choice."""
    if protocol.param is not None:
        return Param(protocol.param)
    if not protocol.optimizer.linear:
        return Param.DIRECT
    return Param.GRAM if cell.d > cell.n / 2 else Param.DIRECT
