"""The optimizer study (`jaxbof reproduce optimizers`): both experiments beyond the theorems'
optimizer.

Karhadkar et al. prove benign overfitting for gradient descent, Park et al. their excess-risk
rates for gradient flow; neither says anything about momentum or Adam. This study trains the
Figure 1 grid (quick: the karhadkar-fig1-quick grid) and the park-regression preset's main
cells (`regression_cells`) under each rule of OPTIMIZERS, every part (experiment, rule and, in
classification, signal direction) in its own results directory (`Part.subdir`), resumable like
any run. `stats.paired_differences` and `figures.optimizer_study` compare them with GD cell
by cell on the same signal direction (the same data and initialisation for every rule: a cell's
keys do not depend on the rule).

Signal directions. The published protocol puts the classification signal on the axis e_1
(data.Signal.E1). GD and momentum are rotation-invariant (optim.Optimizer.rotation_invariant):
trained on X Q from W_0 Q they give W_t Q, so under them e_1 stands for every direction, and one
direction serves. A per-coordinate rule (Adam, AdamW, sign descent, RMSProp, Adagrad, any rule
not declared rotation-invariant) sees a coordinate-aligned signal differently from a generic
one, so its classification part also runs with a uniformly random signal (Signal.RANDOM, one per
data set). The random signal changes the data draw, so the baseline GD runs on it too (cheap:
the Gram path), and each rule is paired with GD on its own direction, on the same data.
Regression has no such second part: its inputs are uniform on the sphere and its target a sum of
zonal harmonics of <x, xi_k> with the directions xi_k drawn uniformly per data set, so no
coordinate axis is singled out (it already is the random-direction case).

Parts keep their names from before the random direction: 'classification-adam-0.001' is e_1 and
'classification-adam-0.001-random' the random direction, so an older study's directory resumes
(`write_root_config` adopts its root config.json).

Rules (`jaxbof.optim` conventions): sgd is the published GD; momentum:0.9 takes the same step
(so about 10x as far per step); adam:0.001 is Adam at optax's and PyTorch's usual default
learning rate, absolute per coordinate, in both experiments alike (not tuned to either), and
adam:1e-05 the same rule at a learning rate small against classification's init scale
1/(M sqrt d) ~ 1e-3 (Adam's first step moves every weight by about LR, whatever the
gradient's size).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

from jaxbof import optim, store
from jaxbof.experiments import regression
from jaxbof.experiments.classification import presets
from jaxbof.experiments.classification.data import Signal

OPTIMIZERS = ("sgd", "momentum:0.9", "adam:0.001", "adam:1e-05")
KIND = "optimizers"


class Part(NamedTuple):
    """One (experiment, rule, signal direction) run of the study."""

    kind: str  # "classification" | "regression"
    optimizer: str  # canonical optim spec
    subdir: str  # results directory under the study's root
    name: str
    description: str
    grid: object  # what config.json records as the grid
    protocol: object  # the experiment's Protocol, with this rule (and signal)
    cells: tuple
    signal: Signal | None = None  # classification's signal direction; None in regression


def signal_name(signal: Signal) -> str:
    """'e1' | 'random': how the config and the table name a signal direction."""
    return Signal(signal).name.lower()


def subdir(kind: str, optimizer: str, signal: Signal | None = None) -> str:
    """'classification-momentum-0.9' (e_1, or regression), 'classification-adam-0.001-random':
    the directory of one part."""
    name = f"{kind}-{optim.parse(optimizer).spec.replace(':', '-')}"
    if signal is None or Signal(signal) == Signal.E1:
        return name  # the names from before the random direction: old studies resume
    return f"{name}-{signal_name(signal)}"


def signals(optimizer, optimizers=OPTIMIZERS) -> tuple[Signal, ...]:
    """The classification signal directions `optimizer` runs on in a study of `optimizers`: e_1,
    and the random direction too for a rule that is not rotation-invariant, and for the
    baseline GD where some rule of the study needs it (pairing on the same data)."""
    opt = optim.as_optimizer(optimizer)
    needed = any(not optim.as_optimizer(o).rotation_invariant for o in optimizers)
    if not opt.rotation_invariant or (opt is optim.GD and needed):
        return (Signal.E1, Signal.RANDOM)
    return (Signal.E1,)


def regression_cells(quick: bool = False) -> tuple:
    """The park-regression preset's main cells (target 1:0.5,2:0.5,4:0.5, noise 0.5, d = 3,
    antisymmetric init, first layer): quick n in {250, 500, 1000} at M = 1024, 2 seeds (the
    quick preset without its width and cubic cells); full n in {250, 500, 1000} x M in {256,
    1024, 4096}, 3 seeds (the full preset's main block)."""
    if quick:
        return tuple(
            regression.cells(
                n=(250, 500, 1000), width=1024, seeds=2, target="1:0.5,2:0.5,4:0.5", noise=0.5
            )
        )
    return tuple(
        regression.cells(
            n=(250, 500, 1000),
            width=(256, 1024, 4096),
            seeds=3,
            target="1:0.5,2:0.5,4:0.5",
            noise=0.5,
        )
    )


def parts(quick: bool = False, optimizers=OPTIMIZERS) -> list[Part]:
    """Every part of the study: classification first (per rule, e_1 then, where `signals` says
    so, the random direction), then regression, each under every rule."""
    fig1 = presets.preset("karhadkar-fig1", quick)
    reg_cells = regression_cells(quick)
    reg_protocol = regression.preset_protocol(quick)
    reg_name = "park-regression" + ("-quick" if quick else "")
    out = []
    for spec in optimizers:
        opt = optim.parse(spec)
        for sig in signals(opt, optimizers):
            where = "" if sig == Signal.E1 else f", {signal_name(sig)} signal direction"
            out.append(
                Part(
                    "classification",
                    opt.spec,
                    subdir("classification", opt.spec, sig),
                    f"{fig1.name} under {opt.spec}{where}",
                    f"{fig1.description}; rule {opt.spec}{where}",
                    fig1.grid,
                    dataclasses.replace(fig1.protocol, optimizer=opt, signal=sig),
                    tuple(fig1.grid.cells()),
                    sig,
                )
            )
    for spec in optimizers:
        opt = optim.parse(spec)
        out.append(
            Part(
                "regression",
                opt.spec,
                subdir("regression", opt.spec),
                f"{reg_name} under {opt.spec}",
                f"Park et al. (2024) preset {reg_name}, main cells; rule {opt.spec}",
                {"preset": reg_name, "cells": "main"},
                dataclasses.replace(reg_protocol, optimizer=opt),
                reg_cells,
            )
        )
    return out


def _entry(p: Part) -> dict:
    entry = {"kind": p.kind, "optimizer": p.optimizer}
    return entry if p.signal is None else {**entry, "signal": signal_name(p.signal)}


def config(quick: bool, optimizers=OPTIMIZERS) -> dict:
    """What the study's root config.json records: its kind, the rules and the parts (each with
    its kind, rule and, in classification, signal direction 'e1' or 'random')."""
    specs = [optim.parse(s).spec for s in optimizers]
    return {
        "experiment": {
            "kind": KIND,
            "name": "optimizers" + ("-quick" if quick else ""),
            "description": "both experiments under "
            + ", ".join(specs)
            + " (the theorems cover GD / gradient flow only)",
            "baseline": optim.GD.spec,
            "optimizers": specs,
            "parts": {p.subdir: _entry(p) for p in parts(quick, optimizers)},
        }
    }


def _adoptable(old, new) -> bool:
    """Whether `old` (a root config's experiment) is this study before some of its parts were
    added (the random-direction parts): everything else equal, each old part the same part."""
    if not isinstance(old, dict) or old == new or set(old) != set(new):
        return False
    if any(old[k] != new[k] for k in new if k != "parts"):
        return False
    for sub, entry in old["parts"].items():
        if entry.get("kind") == "classification" and "signal" not in entry:
            entry = {**entry, "signal": signal_name(Signal.E1)}  # before the signal was recorded
        if new["parts"].get(sub) != entry:
            return False
    return True


def write_root_config(directory, config_: dict) -> Path:
    """store.write_config for the study's root, adopting the config of an older version of the
    same study (same rules, fewer parts: before the random signal direction), whose part
    directories then resume. Another study is refused (ValueError), as by store.write_config."""
    old = store.load_config(directory)
    if old is not None and _adoptable(old.get("experiment"), store.jsonable(config_)["experiment"]):
        (Path(directory) / store.CONFIG).unlink(missing_ok=True)
    return store.write_config(directory, config_)
