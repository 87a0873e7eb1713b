"""Predicted learning curves of kernel (ridge) regression from a kernel's spectrum: the
eigenlearning equations (Simon, Dickens, Karkada and DeWeese 2021/2023; Bordelon, Canatar and
Pehlevan 2020; Jacot et al. 2020), in float64 on the host, JAX-free.

Kernel ridge regression on n samples, f = K(x, X) (K(X, X) + ridge I)^-1 y, with
y_i = f*(x_i) + noise of variance `noise_var`, and a kernel with eigenvalues mu_k of multiplicity
N_k under the data measure (on the sphere: degree k, N_k = N(d, k), `jaxbof.spectra`). The
effective regularisation kappa solves

    sum_k N_k mu_k / (mu_k + kappa) + ridge / kappa = n,

and with the learnabilities L_k = mu_k / (mu_k + kappa) and the noise amplification
E_0 = n / (n - sum_k N_k L_k^2) the predicted risks are

    test MSE (noisy test labels) = E_0 (sum_k (1 - L_k)^2 ||f*_k||^2 + noise_var),
    excess risk ||f - f*||^2     = test MSE - noise_var,
    train MSE                    = (ridge / (n kappa))^2 test MSE,

||f*_k||^2 the target's energy in the eigenspace of level k. The equations are asymptotic
(exact as n and the number of modes grow together); at n in the hundreds they can miss by some
percent, more on a degenerate spectrum without a ridge.

Everything is computed from log eigenvalues and log multiplicities (sums by log-sum-exp), so
N(d, k) far beyond float64 (d up to 10^4, degrees to 1000) and tiny eigenvalues are exact, and
the ridgeless limit is taken without cancellation: n - sum_k N_k L_k^2 is evaluated as
ridge / kappa + sum_k N_k L_k (1 - L_k).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

__all__ = ["Levels", "Prediction", "levels", "predict", "solve_kappa", "sphere_levels"]

_LOG_KAPPA_MIN = -700.0  # kappa below ~1e-304: no root (ridgeless with too few modes)


class Levels(NamedTuple):
    """A spectrum by levels: log mu_k (-inf for mu_k = 0) and log N_k, float64 arrays."""

    log_eigenvalue: np.ndarray
    log_multiplicity: np.ndarray


def levels(eigenvalue, multiplicity=None) -> Levels:
    """Levels from eigenvalues mu_k >= 0 and multiplicities N_k >= 1 (default 1 each)."""
    mu = np.asarray(eigenvalue, np.float64).ravel()
    N = np.ones_like(mu) if multiplicity is None else np.asarray(multiplicity, np.float64).ravel()
    if mu.shape != N.shape:
        raise ValueError(f"eigenvalue has {mu.size} levels, multiplicity {N.size}")
    if not (np.all(np.isfinite(mu)) and np.all(mu >= 0)):
        raise ValueError(f"eigenvalues must be finite and >= 0, got min {mu.min()!r}")
    if not np.all(N >= 1):
        raise ValueError(f"multiplicities must be >= 1, got min {N.min()!r}")
    with np.errstate(divide="ignore"):
        return Levels(np.log(mu), np.log(N))


def sphere_levels(
    kernel: str, d: int, k_max: int, alpha: float = 0.0, bias: bool = False
) -> Levels:
    """The levels k = 0..k_max of a kernel on S^{d-1} in closed form (`spectra.eigenvalues`,
    multiplicities N(d, k) in log space)."""
    from jaxbof import spectra

    s = spectra.eigenvalues(kernel, d, k_max, alpha=alpha, bias=bias)
    return Levels(
        np.asarray(s.log_eigenvalue, np.float64),
        np.asarray(spectra.log_multiplicity(d, s.k), np.float64),
    )


def _check(n, ridge) -> tuple[float, float]:
    if not (isinstance(n, (int, float, np.integer, np.floating)) and math.isfinite(n) and n > 0):
        raise ValueError(f"n={n!r} must be a finite number > 0")
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge={ridge!r} must be finite and >= 0")
    return float(n), float(ridge)


def _log_sum_learnability(lv: Levels, s: float) -> float:
    """log sum_k N_k mu_k / (mu_k + e^s)."""
    log_l = lv.log_eigenvalue - np.logaddexp(lv.log_eigenvalue, s)
    return float(logsumexp(lv.log_multiplicity + log_l))


def solve_kappa(n, lv: Levels, ridge: float = 0.0) -> float:
    """kappa > 0 with sum_k N_k mu_k / (mu_k + kappa) + ridge / kappa = n. ValueError when no
    root exists: ridgeless (ridge = 0) with sum_k N_k over the levels mu_k > 0 at most n (the
    kernel interpolates nothing beyond its modes; add levels or a ridge)."""
    n, ridge = _check(n, ridge)
    log_ridge = math.log(ridge) if ridge > 0 else -math.inf

    def h(s):  # log(lhs) - log(n): decreasing in s = log kappa
        return float(np.logaddexp(_log_sum_learnability(lv, s), log_ridge - s)) - math.log(n)

    positive = np.isfinite(lv.log_eigenvalue)
    log_trace = (
        float(logsumexp(lv.log_multiplicity[positive] + lv.log_eigenvalue[positive]))
        if positive.any()
        else -math.inf
    )
    hi = float(np.logaddexp(log_trace, log_ridge)) - math.log(n) + 1.0  # lhs < n e^-1 there
    if not math.isfinite(hi):
        raise ValueError("the spectrum is zero and ridge = 0: kappa is undefined")
    lo = hi
    while h(lo) <= 0:
        lo -= 8.0
        if lo < _LOG_KAPPA_MIN:
            total = (
                float(np.exp(logsumexp(lv.log_multiplicity[positive]))) if positive.any() else 0.0
            )
            raise ValueError(
                f"no kappa > 0 solves the eigenlearning equation at n={n:g}, "
                f"ridge={ridge:g}: the spectrum has {total:.6g} modes with mu > 0; "
                "ridgeless prediction needs more than n (add levels or a ridge)"
            )
    return math.exp(brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


class Prediction(NamedTuple):
    """The eigenlearning prediction at one (n, ridge)."""

    n: float
    ridge: float
    kappa: float  # effective regularisation
    learnability: np.ndarray  # L_k = mu_k / (mu_k + kappa) per level (0 where mu_k = 0, or
    #   where it underflows float64: log_learnability keeps it)
    e0: float  # noise amplification n / (n - sum_k N_k L_k^2) >= 1
    test_risk: float  # E_0 (sum_k (1 - L_k)^2 ||f*_k||^2 + noise_var): MSE on noisy labels
    excess_risk: float  # ||f - f*||^2 = test_risk - noise_var
    train_risk: float  # (ridge / (n kappa))^2 test_risk
    bias: float  # E_0 sum_k (1 - L_k)^2 ||f*_k||^2: the excess risk with noise_var = 0
    log_learnability: np.ndarray  # log L_k (exact where L_k underflows yet N_k L_k does not)


def predict(n, lv: Levels, energy, noise_var: float = 0.0, ridge: float = 0.0) -> Prediction:
    """Predicted test, excess and train risk of kernel ridge regression with `n` samples
    (module docstring). energy: ||f*_k||^2 per level (the target's energy in level k's
    eigenspace; shorter than the levels: zero beyond)."""
    n, ridge = _check(n, ridge)
    e = np.zeros(len(lv.log_eigenvalue))
    given = np.asarray(energy, np.float64).ravel()
    if given.size > e.size:
        raise ValueError(f"energy has {given.size} levels, the spectrum {e.size}")
    if not (np.all(np.isfinite(given)) and np.all(given >= 0)):
        raise ValueError("energies ||f*_k||^2 must be finite and >= 0")
    if not (math.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var={noise_var!r} must be finite and >= 0")
    e[: given.size] = given
    kappa = solve_kappa(n, lv, ridge)
    s = math.log(kappa)
    log_den = np.logaddexp(lv.log_eigenvalue, s)
    log_l, log_1ml = lv.log_eigenvalue - log_den, s - log_den  # log L_k, log (1 - L_k)
    # n - sum N L^2 = ridge / kappa + sum N L (1 - L), both non-negative: no cancellation
    log_var = float(logsumexp(lv.log_multiplicity + log_l + log_1ml))
    log_gap = float(np.logaddexp(log_var, math.log(ridge) - s if ridge > 0 else -math.inf))
    log_sq = float(logsumexp(lv.log_multiplicity + 2 * log_l))  # sum N L^2
    e0 = math.exp(math.log(n) - log_gap)
    bias = e0 * float(np.sum(np.exp(2 * log_1ml) * e))
    excess = bias + math.exp(log_sq - log_gap) * noise_var  # (E_0 - 1) = sum N L^2 / gap
    test = excess + noise_var
    train = (ridge / (n * kappa)) ** 2 * test
    return Prediction(n, ridge, kappa, np.exp(log_l), e0, test, excess, train, bias, log_l)
