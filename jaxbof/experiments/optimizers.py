"""The optimizer study (`jaxbof reproduce optimizers`): both experiments beyond the theorems'
optimizer.

Karhadkar et al. prove benign overfitting for gradient descent, Park et al. their excess-risk
rates for gradient flow; neither says anything about momentum or Adam. This study trains the
Figure 1 grid (quick: the karhadkar-fig1-quick grid) and the park-regression preset's main
cells (`regression_cells`) under each rule of OPTIMIZERS, every (experiment, rule) pair in its own results
directory (`Part.subdir`), resumable like any run. `store.paired_differences` and
`jaxbof.plots.optimizer_study` compare them with GD cell by cell (the same data and
initialisation for every rule: a cell's keys do not depend on the rule).

Rules (`jaxbof.optim` conventions): sgd is the published GD; momentum:0.9 takes the same step
(so about 10x as far per step); adam:0.001 is Adam at optax's and PyTorch's usual default
learning rate, absolute per coordinate, in both experiments alike (not tuned to either), and
adam:1e-05 the same rule at a learning rate small against classification's init scale
1/(M sqrt d) ~ 1e-3 (Adam's first step moves every weight by about LR, whatever the
gradient's size).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from jaxbof import optim
from jaxbof.experiments import presets, regression

OPTIMIZERS = ("sgd", "momentum:0.9", "adam:0.001", "adam:1e-05")
KIND = "optimizers"


class Part(NamedTuple):
    """One (experiment, rule) run of the study."""

    kind: str  # "classification" | "regression"
    optimizer: str  # canonical optim spec
    subdir: str  # results directory under the study's root
    name: str
    description: str
    grid: object  # what config.json records as the grid
    protocol: object  # the experiment's Protocol, with this rule
    cells: tuple


def subdir(kind: str, optimizer: str) -> str:
    """'classification-momentum-0.9': the directory of one part."""
    return f"{kind}-{optim.parse(optimizer).spec.replace(':', '-')}"


def regression_cells(quick: bool = False) -> tuple:
    """The park-regression preset's main cells (target 1:0.5,2:0.5,4:0.5, noise 0.5, d = 3,
    antisymmetric init, first layer): quick n in {250, 500, 1000} at M = 1024, 2 seeds (the
    quick preset without its width and cubic cells); full n in {250, 500, 1000} x M in {256,
    1024, 4096}, 3 seeds (the full preset's main block)."""
    if quick:
        return tuple(regression.cells(n=(250, 500, 1000), width=1024, seeds=2,
                                      target="1:0.5,2:0.5,4:0.5", noise=0.5))
    return tuple(regression.cells(n=(250, 500, 1000), width=(256, 1024, 4096), seeds=3,
                                  target="1:0.5,2:0.5,4:0.5", noise=0.5))


def parts(quick: bool = False, optimizers=OPTIMIZERS) -> list[Part]:
    """Every part of the study: classification first, then regression, each under every rule."""
    fig1 = presets.preset("karhadkar-fig1", quick)
    reg_cells = regression_cells(quick)
    reg_protocol = regression.preset_protocol(quick)
    reg_name = "park-regression" + ("-quick" if quick else "")
    out = []
    for spec in optimizers:
        opt = optim.parse(spec)
        out.append(Part("classification", opt.spec, subdir("classification", opt.spec),
                        f"{fig1.name} under {opt.spec}", f"{fig1.description}; rule {opt.spec}",
                        fig1.grid, dataclasses.replace(fig1.protocol, optimizer=opt),
                        tuple(fig1.grid.cells())))
    for spec in optimizers:
        opt = optim.parse(spec)
        out.append(Part("regression", opt.spec, subdir("regression", opt.spec),
                        f"{reg_name} under {opt.spec}",
                        f"Park et al. (2024) preset {reg_name}, main cells; rule {opt.spec}",
                        {"preset": reg_name, "cells": "main"}, dataclasses.replace(reg_protocol, optimizer=opt),
                        reg_cells))
    return out


def config(quick: bool, optimizers=OPTIMIZERS) -> dict:
    """What the study's root config.json records: its kind, the rules and the parts."""
    ps = parts(quick, optimizers)
    return {"experiment": {
        "kind": KIND, "name": "optimizers" + ("-quick" if quick else ""),
        "description": "both experiments under " + ", ".join(p.optimizer for p in ps[:len(
            optimizers)]) + " (the theorems cover GD / gradient flow only)",
        "baseline": optim.GD.spec, "optimizers": [optim.parse(s).spec for s in optimizers],
        "parts": {p.subdir: {"kind": p.kind, "optimizer": p.optimizer} for p in ps}}}
