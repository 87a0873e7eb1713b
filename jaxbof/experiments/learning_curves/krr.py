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

__all__ = [
    "COLUMNS",
    "Config",
    "FLOW_KEYS",
    "FLOW_SCHEMA",
    "QUICK",
    "SCHEMA",
    "TEMPERED_QUICK",
    "Tempered",
    "flow_rows",
    "rows_for",
    "run",
    "run_flow",
]

SCHEMA = {
    "n": "int",
    "ridge_over_n": "float",
    "seed": "int",
    "ridge": "float",
    "excess_risk": "float",
    "train_risk": "float",
    "predicted_excess_risk": "float",
    "predicted_train_risk": "float",
    "kappa": "float",
    "e0": "float",
}
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
    target: tuple = ((1, 0.5), (2, 0.5), (4, 0.5))  # the regression experiment's default
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


class _Draw(NamedTuple):
    lam: np.ndarray  # eigenvalues of K(X, X), clipped at 0
    Q: np.ndarray
    Qy: np.ndarray  # Q^T y
    Kt_Q: np.ndarray  # K(X_test, X) Q
    f_star: np.ndarray  # f* on the test points
    y: np.ndarray


def _draw(config, n: int, seed: int) -> _Draw:
    """One training set (n, seed) of `config`'s setting and its kernel's eigendecomposition."""
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
    return _Draw(lam, Q, Q.T @ y, k_fn(np.clip(Xt @ X.T, -1.0, 1.0)) @ Q, target(Xt), y)


def rows_for(config: Config, n: int, seed: int, levels=None) -> list[dict]:
    """The rows of one training set (n, seed), one per ridge."""
    dr = _draw(config, n, seed)
    levels = (
        eigenlearning.sphere_levels(config.kernel, config.d, config.k_max)
        if levels is None
        else levels
    )
    noise_var = config.noise**2 / 3
    rows = []
    for r in config.ridges_over_n:
        ridge = r * n
        coef = dr.Qy / (dr.lam + ridge)
        f_test = dr.Kt_Q @ coef
        f_train = dr.Q @ (dr.lam * coef)
        p = eigenlearning.predict(n, levels, config.energy(), noise_var, ridge)
        rows.append(
            {
                "n": n,
                "ridge_over_n": float(r),
                "seed": seed,
                "ridge": float(ridge),
                "excess_risk": float(np.mean((f_test - dr.f_star) ** 2)),
                "train_risk": float(np.mean((f_train - dr.y) ** 2)),
                "predicted_excess_risk": p.excess_risk,
                "predicted_train_risk": p.train_risk,
                "kappa": p.kappa,
                "e0": p.e0,
            }
        )
    return rows


# ------------------------------------------------- tempered overfitting: network, kernel, theory

FLOW_SCHEMA = {
    "n": "int",
    "t": "float",
    "seed": "int",
    "excess_risk": "float",
    "train_risk": "float",
    "predicted_excess_risk": "float",
    "predicted_train_risk": "float",
    "e0": "float",
}
FLOW_KEYS = ("n", "t", "seed")


class Tempered(NamedTuple):
    """The regression experiment's long run (`jaxbof sweep regression --n 250 --d 3 --width
    1024,4096 --seeds 2 --noise 0.5 --t-max 50000`: its default target, c_k = 0.5 on degrees
    1, 2, 4, and uniform noise on [-0.5, 0.5]) beside gradient flow on the infinite-width kernel
    (the t -> infinity limit is ridgeless kernel regression) and the eigenlearning equations.
    The kernel flow at time t is predicted at ridge n / t (the usual correspondence between
    early stopping and a ridge, approximate: the filters 1 - e^{-t lam} and lam / (lam + 1/t)
    differ), the interpolation limit at ridge 0."""

    n: int = 250
    widths: tuple = (1024, 4096)
    seeds: int = 2  # networks per width
    kernel_seeds: int = 40  # training sets of the kernel flow
    t_max: float = 50000.0
    times: int = 40  # recorded times (the regression experiment's geometric grid)
    d: int = 3
    kernel: str = "ntk-first-layer"  # the NTK of the first layer, which the network trains
    target: tuple = ((1, 0.5), (2, 0.5), (4, 0.5))
    noise: float = 0.5
    n_test: int = 2000
    k_max: int = 8000
    seed: int = 0

    def energy(self) -> list:
        return Config.energy(self)

    def flow_times(self) -> np.ndarray:
        """The kernel flow's times: geometric from 1 to 4 t_max (past the network's last
        record, toward the limit), then inf (ridgeless kernel regression)."""
        return np.append(np.geomspace(1.0, 4 * self.t_max, 2 * self.times), np.inf)


TEMPERED_QUICK = Tempered(
    widths=(1024,), seeds=1, kernel_seeds=8, t_max=5000.0, times=20, n_test=1000
)


def flow_rows(config: Tempered, seed: int, levels=None) -> list[dict]:
    """Gradient flow on the analytic kernel, one training set (config.n, seed), at every time
    of `config.flow_times()`: with the square loss (1/2n) sum (f(x_i) - y_i)^2 from f_0 = 0 it
    is f_t = K(., X) Q diag((1 - e^{-t lam / n}) / lam) Q^T y (lam -> 0: t / n), the regression
    network's linearisation at infinite width; at t = inf, ridgeless kernel regression. Rows
    with the eigenlearning prediction at ridge n / t."""
    n = config.n
    dr = _draw(config, n, seed)
    levels = (
        eigenlearning.sphere_levels(config.kernel, config.d, config.k_max)
        if levels is None
        else levels
    )
    noise_var = config.noise**2 / 3
    rows = []
    for t in config.flow_times():
        if np.isinf(t):
            filt = np.where(dr.lam > 0, 1.0 / np.where(dr.lam > 0, dr.lam, 1.0), 0.0)
        else:
            z = t * dr.lam / n
            filt = np.where(z > 0, -np.expm1(-z) / np.where(z > 0, dr.lam, 1.0), t / n)
        coef = filt * dr.Qy
        f_test = dr.Kt_Q @ coef
        f_train = dr.Q @ (dr.lam * coef)
        p = eigenlearning.predict(
            n, levels, config.energy(), noise_var, 0.0 if np.isinf(t) else n / t
        )
        rows.append(
            {
                "n": n,
                "t": float(t),
                "seed": seed,
                "excess_risk": float(np.mean((f_test - dr.f_star) ** 2)),
                "train_risk": float(np.mean((f_train - dr.y) ** 2)),
                "predicted_excess_risk": p.excess_risk,
                "predicted_train_risk": p.train_risk,
                "e0": p.e0,
            }
        )
    return rows


def run_flow(config: Tempered, on_rows: Callable[[list], None], skip: Iterable = ()) -> int:
    """Every kernel-flow training set not all in `skip` (keys n, t, seed)."""
    skip = set(skip)
    levels = eigenlearning.sphere_levels(config.kernel, config.d, config.k_max)
    times = config.flow_times()
    done = 0
    for seed in range(config.kernel_seeds):
        if all((config.n, float(t), seed) in skip for t in times):
            continue
        on_rows(
            [r for r in flow_rows(config, seed, levels) if (r["n"], r["t"], r["seed"]) not in skip]
        )
        done += 1
    return done


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
            rows = [
                r
                for r in rows_for(config, n, seed, levels)
                if (r["n"], r["ridge_over_n"], r["seed"]) not in skip
            ]
            on_rows(rows)
            done += 1
    return done
