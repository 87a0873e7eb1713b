"""Published protocols as named presets: (grid, protocol) pairs the CLI and notebooks reproduce."""

from __future__ import annotations

from typing import NamedTuple

from jaxbof.experiments.classification.grid import Grid, Protocol


class Preset(NamedTuple):
    name: str
    description: str
    grid: Grid
    protocol: Protocol


def _inclusive(start, stop, step):
    count = round((stop - start) / step)
    return tuple(round(start + i * step, 12) for i in range(count + 1))


# Karhadkar et al. (NeurIPS 2024), Figure 1: alpha = 0.1, gamma = 5/n, M = 64, Bernoulli label
# noise 0.1, n in {50, ..., 150}, d/n in {1, ..., 10}, 5 trials, 1000 clean test points,
# s = 1/(M sqrt d), eta = 1/(M n), stop at zero training error.
FIG1 = Preset(
    "karhadkar-fig1",
    "Figure 1: test error over (n, d/n), 550 trainings",
    Grid(
        n=tuple(range(50, 151, 10)),
        d_over_n=tuple(float(r) for r in range(1, 11)),
        gamma=("5/n",),
        alpha=(0.1,),
        noise_rate=(0.1,),
        width=(64,),
        seeds=5,
    ),
    Protocol(),
)
FIG1_QUICK = Preset(
    "karhadkar-fig1-quick",
    "Figure 1, quick: 3 x 5 cells, 2 trials",
    Grid(
        n=(50, 100, 150),
        d_over_n=(1.0, 2.0, 4.0, 7.0, 10.0),
        gamma=("5/n",),
        alpha=(0.1,),
        noise_rate=(0.1,),
        width=(64,),
        seeds=2,
    ),
    Protocol(),
)

# Figure 2: the same protocol with d = 2n, gamma in {0, 0.01, ..., 0.09}, n in {50, 100, 150,
# 200}, 10 trials per point.
FIG2 = Preset(
    "karhadkar-fig2",
    "Figure 2: test error against gamma at d = 2n, 400 trainings",
    Grid(
        n=(50, 100, 150, 200),
        d_over_n=(2.0,),
        gamma=_inclusive(0.0, 0.09, 0.01),
        alpha=(0.1,),
        noise_rate=(0.1,),
        width=(64,),
        seeds=10,
    ),
    Protocol(),
)
FIG2_QUICK = Preset(
    "karhadkar-fig2-quick",
    "Figure 2, quick: n in {50, 100}, 5 gammas, 3 trials",
    Grid(
        n=(50, 100),
        d_over_n=(2.0,),
        gamma=(0.0, 0.02, 0.04, 0.06, 0.08),
        alpha=(0.1,),
        noise_rate=(0.1,),
        width=(64,),
        seeds=3,
    ),
    Protocol(),
)

PRESETS = {"karhadkar-fig1": (FIG1, FIG1_QUICK), "karhadkar-fig2": (FIG2, FIG2_QUICK)}


def preset(name: str, quick: bool = False) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name][1 if quick else 0]
