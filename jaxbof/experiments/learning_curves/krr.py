"""Kernel ridge regression on the sphere, measured against the eigenlearning prediction
(`jaxbof.eigenlearning`) in the same row. Host-side NumPy in float64 (the ridgeless solves need
it), no JAX.

The regression experiment's setting: x uniform on S^{d-1}, the analytic infinite-width kernel
(`spectra.kernel_fn`, default the first-layer NTK), f* = sum_k c_k Y_k(x; xi_k) with unit-norm
zonal harmonics along random directions (energy c_k^2 in level k), noise uniform on [-s, s]
(variance s^2 / 3). For each (n, seed) one training set, one eigendecomposition K = Q diag(lam)
Q^T serves every ridge: f = K(x, X) Q diag(1 / (lam + ridge)) Q^T y. Rows: the excess risk
||f - f*||^2 on n_test fresh points and the training MSE, with the predicted values, kappa, E_0.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
from scipy.special import eval_gegenbauer

from jaxbof import eigenlearning, spectra

__all__ = ["COLUMNS", "Config", "QUICK", "SCHEMA", "rows_for", "run"]

SCHEMA = {"n": "int", "ridge_over_n": "float", "seed": "int", "ridge": "float",
          "excess_risk": "float", "train_risk": "float", "predicted_excess_risk": "float",
          "predicted_train_risk": "float", "kappa": "float", "e0": "float"}
COLUMNS = tuple(SCHEMA)
KEYS = ("n", "ridge_over_n", "seed")


class Config(NamedTuple):
    """The grid and the setting. ns: training set sizes; ridges_over_n: ridge / n (0: ridgeless);
    target: ((k, c_k), ...); noise: s of the uniform noise on [-s, s]."""

    ns: tuple = (10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120)
    ridges_over_n: tuple = (0.0, 1e-4, 1e-2)
    seeds: int = 10
    d: int = 3
    kernel: str = "ntk-first-layer"
    target: tuple = ((1, math.sqrt(0.5)), (2, math.sqrt(0.5)), (4, math.sqrt(0.5)))
    noise: float = 0.5
    n_test: int = 2000
    k_max: int = 8000  # levels of the predicted spectrum (its tail matters without a ridge)
    seed: int = 0

    def energy(self) -> list:
        e = [0.0] * (max(k for k, _ in self.target) + 1)
        for k, c in self.target:
            e[k] += c * c
        return e


QUICK = Config(ns=(10, 20, 40, 80, 160, 320, 640), seeds=4, n_test=1000)


def _sphere(rng, m: int, d: int) -> np.ndarray:
    x = rng.normal(size=(m, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _zonal(k: int, d: int, t) -> np.ndarray:
    """Y_k(x; xi) = sqrt(N(d, k)) P_k(t), t = <x, xi>, P_k the Gegenbauer polynomial normalised
    to P_k(1) = 1: unit norm under the uniform measure on S^{d-1}."""
    lam = (d - 2) / 2
    if lam == 0:  # d = 2: Chebyshev, P_k(t) = cos(k arccos t)
        p = np.cos(k * np.arccos(np.clip(t, -1, 1)))
    else:
        p = eval_gegenbauer(k, lam, t) / eval_gegenbauer(k, lam, 1.0)
    return math.exp(0.5 * float(spectra.log_multiplicity(d, k))) * p


def rows_for(config: Config, n: int, seed: int, levels=None) -> list[dict]:
    """The rows of one training set (n, seed), one per ridge."""
    key = zlib.crc32(f"{config.seed}/{n}/{seed}".encode())
    rng = np.random.default_rng(key)
    d = config.d
    k_fn = spectra.kernel_fn(config.kernel)
    xis = [(k, c, _sphere(rng, 1, d)[0]) for k, c in config.target]

    def target(x):
        return sum(c * _zonal(k, d, x @ xi) for k, c, xi in xis)
    X, Xt = _sphere(rng, n, d), _sphere(rng, config.n_test, d)
    y = target(X) + rng.uniform(-config.noise, config.noise, n)
    lam, Q = np.linalg.eigh(k_fn(np.clip(X @ X.T, -1.0, 1.0)))
    lam = np.maximum(lam, 0.0)  # a PSD kernel: rounding below zero is not a direction
    Qy = Q.T @ y
    Kt_Q = k_fn(np.clip(Xt @ X.T, -1.0, 1.0)) @ Q
    f_star = target(Xt)
    levels = eigenlearning.sphere_levels(config.kernel, d, config.k_max) if levels is None \
        else levels
    noise_var = config.noise ** 2 / 3
    rows = []
    for r in config.ridges_over_n:
        ridge = r * n
        coef = Qy / (lam + ridge)
        f_test = Kt_Q @ coef
        f_train = Q @ (lam * coef)
        p = eigenlearning.predict(n, levels, config.energy(), noise_var, ridge)
        rows.append({"n": n, "ridge_over_n": float(r), "seed": seed, "ridge": float(ridge),
                     "excess_risk": float(np.mean((f_test - f_star) ** 2)),
                     "train_risk": float(np.mean((f_train - y) ** 2)),
                     "predicted_excess_risk": p.excess_risk,
                     "predicted_train_risk": p.train_risk, "kappa": p.kappa, "e0": p.e0})
    return rows


def run(config: Config, on_rows: Callable[[list], None], skip: Iterable = ()) -> int:
    """Every (n, seed) of the grid whose rows are not all in `skip` (keys n, ridge_over_n, seed),
    smallest n first; returns the training sets computed."""
    skip = set(skip)
    levels = eigenlearning.sphere_levels(config.kernel, config.d, config.k_max)
    done = 0
    for n in sorted(config.ns):
        for seed in range(config.seeds):
            if all((n, float(r), seed) in skip for r in config.ridges_over_n):
                continue
            rows = [r for r in rows_for(config, n, seed, levels)
                    if (r["n"], r["ridge_over_n"], r["seed"]) not in skip]
            on_rows(rows)
            done += 1
    return done
