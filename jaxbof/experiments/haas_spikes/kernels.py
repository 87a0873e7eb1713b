"""Spiky-smooth kernel regression on the sphere S^2 (Haas, Holzmueller, von Luxburg and
Steinwart, NeurIPS 2023, "Mind the spikes", Sec. 4 and Fig. 2 / App. heatmaps), measured beside
the eigenlearning prediction (`jaxbof.eigenlearning`) in each row. Host-side NumPy/SciPy in
float64, JAX-free.

Kernels are dot-product kernels on the sphere, written as functions of t = <x, x'> (there
||x - x'||^2 = 2 - 2t): the Laplace component exp(-||x - x'|| / gamma), the Gaussian component
exp(-||x - x'||^2 / gamma), the spiky-smooth kernel

    k(x, x') = k_smooth(x, x'; gamma_smooth) + rho * k_spike(x, x'; gamma_spike),

and the first-layer ReLU NTK (`spectra.kernel_fn("ntk-first-layer")`). Ridgeless regression
with the spiky-smooth kernel interpolates through narrow spikes at the training points while
its smooth part acts like kernel ridge regression with the (unnormalised) ridge rho: when the
spike is narrower than the points' spacing its Gram on the sample tends to rho I and its value
off the sample to 0 in L2 (Haas et al. 2023, Thm. 5-6).

The target is the published one, f*(x) = |x_1| + x_2^2 + sin(2 pi x_3) + x_1 x_2 x_3 on S^2,
with Gaussian label noise of variance `noise_var`. Its energy per degree ||f*_k||^2 (it is not
zonal) comes from its spherical-harmonic coefficients by quadrature (`target_energy`).

Two studies:

- the heatmap (the published protocol, `Heatmap`): n = 1000, ridgeless spiky-smooth
  interpolation over spike widths gamma_spike and weights rho, plus the reference rows
  "smooth" (the smooth kernel alone, ridgeless) and "smooth-ridge" (the smooth kernel with
  ridge rho), all on one training set per seed;
- the tempered-against-benign study in n (`Tempered`): ridgeless Laplace and first-layer NTK
  (tempered in fixed dimension, Mallinar et al. 2022) against the spiky-smooth kernel whose
  spike narrows with n (consistent: Haas et al. 2023, Thm. 6).

The eigenlearning prediction of a kernel uses its sphere spectrum to degree k_max
(`funk_hecke`: Gauss-Legendre in theta, checked against `spectra.eigenvalues_quadrature` and
closed forms; a spiky-smooth spectrum is the smooth one plus rho times the spike's) and takes
the rest of the trace, k(1) - sum_{k <= k_max} N_k mu_k, as a ridge: eigenvalues far below
the effective regularisation kappa enter the eigenlearning equations only through their sum
(N mu / (mu + kappa) ~ N mu / kappa), exactly like a ridge. A spike the quadrature cannot
resolve (`spike_resolved`: its angular width times k_max below 4, or its computed spectrum
still above half its k = 0 value at k_max) is predicted in the ridge limit instead: the smooth
kernel with ridge rho (`prediction` = "ridge-limit"; else "spectrum"). Both agree once the
spike is flat over the degrees the sample resolves.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import scipy.linalg

from jaxbof import eigenlearning, spectra

__all__ = [
    "COMPONENTS",
    "FLAGS",
    "HEATMAP_QUICK",
    "KEYS",
    "KIND",
    "SCHEMA",
    "TEMPERED_KEYS",
    "TEMPERED_QUICK",
    "TEMPERED_SCHEMA",
    "Heatmap",
    "KernelSpec",
    "Tempered",
    "add_arguments",
    "component",
    "component_spectrum",
    "config_of",
    "from_args",
    "funk_hecke",
    "gaussian",
    "harmonic_energy",
    "heatmap_rows",
    "heatmap_study",
    "laplace",
    "mallinar_alpha",
    "ntk",
    "optimal_ridge",
    "predict_kernel",
    "run_heatmap",
    "run_tempered",
    "schedule",
    "smooth_levels",
    "sphere",
    "spike_resolved",
    "spiky_smooth",
    "table",
    "target",
    "target_energy",
    "tempered_rows",
    "tempered_study",
]

KIND = "spiky-kernel"

SCHEMA = {
    "kernel": "str",
    "gamma_spike": "float",
    "rho": "float",
    "seed": "int",
    "n": "int",
    "excess_risk": "float",
    "test_mse": "float",
    "train_mse": "float",
    "predicted_excess_risk": "float",
    "predicted_test_mse": "float",
    "prediction": "str",
    "kappa": "float",
    "e0": "float",
    "converged": "bool",
    "seconds": "float",
}
KEYS = ("kernel", "gamma_spike", "rho", "seed")

TEMPERED_SCHEMA = {
    "kernel": "str",
    "n": "int",
    "seed": "int",
    "gamma_spike": "float",
    "rho": "float",
    "excess_risk": "float",
    "excess_risk_clean": "float",
    "noise_amplification": "float",
    "test_mse": "float",
    "train_mse": "float",
    "predicted_excess_risk": "float",
    "predicted_excess_risk_clean": "float",
    "predicted_e0_minus_1": "float",
    "mallinar_e0_minus_1": "float",
    "prediction": "str",
    "kappa": "float",
    "converged": "bool",
    "seconds": "float",
}
TEMPERED_KEYS = ("kernel", "n", "seed")
FLAGS = {"converged": False}  # a failed or inaccurate solve: its risks are nan, counted apart

ENERGY_DEGREES = 200  # ||f*_k||^2 for k <= 200: the rest of the target's energy is < 1e-7


# ----------------------------------------------------------------------------- kernels


def _distance(t) -> np.ndarray:
    """||x - x'|| = sqrt(2 - 2t) on the unit sphere (t clipped to [-1, 1])."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.clip(np.asarray(t, np.float64), -1.0, 1.0), 0.0))


def laplace(t, gamma: float) -> np.ndarray:
    """exp(-||x - x'|| / gamma) as a function of t = <x, x'>."""
    return np.exp(-_distance(t) / gamma)


def gaussian(t, gamma: float) -> np.ndarray:
    """exp(-||x - x'||^2 / gamma) = exp(-(2 - 2t) / gamma)."""
    return np.exp(-(_distance(t) ** 2) / gamma)


COMPONENTS = {"laplace": laplace, "gaussian": gaussian}


def component(kind: str, distance, gamma: float) -> np.ndarray:
    """A Laplace or Gaussian component from distances ||x - x'|| (any shape)."""
    r = np.asarray(distance, np.float64)
    if kind == "laplace":
        return np.exp(-r / gamma)
    if kind == "gaussian":
        return np.exp(-r * r / gamma)
    raise ValueError(f"unknown component {kind!r}; choose from laplace, gaussian")


def spiky_smooth(
    t,
    rho: float,
    gamma_spike: float,
    smooth: str = "laplace",
    spike: str = "laplace",
    gamma_smooth: float = 1.0,
) -> np.ndarray:
    """k_smooth(t; gamma_smooth) + rho k_spike(t; gamma_spike) (Haas et al. 2023, Eq. 2)."""
    return COMPONENTS[smooth](t, gamma_smooth) + rho * COMPONENTS[spike](t, gamma_spike)


ntk = spectra.kernel_fn("ntk-first-layer")  # t kappa_0(t): the first-layer ReLU NTK


# ----------------------------------------------------------------------------- spectra


def _width(kind: str, gamma: float) -> float:
    """The angular width of a component: gamma (Laplace), sqrt(gamma) (Gaussian)."""
    return gamma if kind == "laplace" else math.sqrt(gamma)


def funk_hecke(kernel: Callable, d: int, k_max: int, width: float = math.pi) -> np.ndarray:
    """mu_0..mu_{k_max} of a dot-product kernel on S^{d-1} by Funk-Hecke,

        mu_k = c_d int_0^pi k(cos th) P_k(cos th) sin^(d-2) th dth,
        c_d = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)),

    (`spectra`'s formula) with Gauss-Legendre in theta on [0, th_s] and [th_s, pi] apart,
    th_s = min(pi / 2, 30 width), k_max + 64 nodes each (scipy's roots_legendre: O(nodes),
    where numpy's leggauss, which `spectra.eigenvalues_quadrature` uses, costs O(nodes^3), 5 s
    at 2000 nodes). The split puts a spike of angular `width` (gamma for a Laplace component,
    sqrt(gamma) for a Gaussian one) on nodes of its own. Shape (k_max + 1,)."""
    from scipy.special import gammaln, roots_legendre

    x, w = roots_legendre(int(k_max) + 64)
    th_s = min(math.pi / 2, 30.0 * width)
    th = np.concatenate([(x + 1) * th_s / 2, th_s + (x + 1) * (math.pi - th_s) / 2])
    wt = np.concatenate([w * th_s / 2, w * (math.pi - th_s) / 2])
    log_c = gammaln(d / 2) - 0.5 * math.log(math.pi) - gammaln((d - 1) / 2)
    wt = wt * np.exp(log_c + (d - 2) * np.log(np.sin(th)))
    t = np.cos(th)
    return spectra.gegenbauer(d, int(k_max), t) @ (np.asarray(kernel(t), np.float64) * wt)


@functools.lru_cache(maxsize=64)
def _component_mu(kind: str, gamma: float, d: int, k_max: int) -> np.ndarray:
    mu = funk_hecke(lambda t: COMPONENTS[kind](t, gamma), d, k_max, _width(kind, gamma))
    return np.maximum(mu, 0.0)  # rounding below zero at the tail is no direction


def component_spectrum(kind: str, gamma: float, d: int, k_max: int) -> np.ndarray:
    """mu_0..mu_{k_max} of a Laplace or Gaussian component on S^{d-1} (`funk_hecke`), clipped
    at 0; shape (k_max + 1,). Laplace on S^2:
    mu_0 ~ gamma^2 / 2 and flat up to k ~ 1 / gamma, then ~ k^-3."""
    return _component_mu(kind, float(gamma), int(d), int(k_max)).copy()


def spike_resolved(kind: str, gamma: float, d: int, k_max: int) -> bool:
    """Whether a spike's spectrum to degree k_max describes it: its angular width times k_max is
    at least 4 (the quadrature's nodes, about 2 (k_max + 32) over [0, pi] and denser at the
    ends, see its peak) and its computed mu_{k_max} is below half of mu_0 (it has decayed). A
    narrower spike is predicted in the ridge limit (module docstring)."""
    if _width(kind, gamma) * k_max < 4:
        return False
    mu = component_spectrum(kind, gamma, d, k_max)
    return bool(mu[0] > 0 and mu[-1] < 0.5 * mu[0])


def _levels(mu: np.ndarray, d: int, kernel_at_one: float):
    """(Levels of mu_0..mu_K, the unresolved trace k(1) - sum N_k mu_k >= 0, used as a ridge)."""
    log_n = spectra.log_multiplicity(d, np.arange(len(mu)))
    resolved = float(np.sum(np.exp(log_n) * mu))
    lv = eigenlearning.levels(mu, np.exp(log_n))
    return lv, max(kernel_at_one - resolved, 0.0)


def smooth_levels(kind: str, gamma: float, d: int, k_max: int):
    """(Levels, tail trace) of a Laplace or Gaussian component alone."""
    return _levels(component_spectrum(kind, gamma, d, k_max), d, 1.0)


@functools.lru_cache(maxsize=8)
def _ntk_levels(d: int, k_max: int):
    s = spectra.eigenvalues("ntk-first-layer", d, k_max)
    return _levels(np.asarray(s.eigenvalue, np.float64), d, float(ntk(np.array(1.0))))


class KernelSpec(NamedTuple):
    """A kernel of the studies: "laplace" / "gaussian" (smooth alone), "ntk", or
    "spiky-smooth" (smooth + rho spike); ridge: an explicit ridge (0: ridgeless)."""

    kernel: str
    smooth: str = "laplace"
    gamma_smooth: float = 1.0
    spike: str = "laplace"
    gamma_spike: float = 0.0
    rho: float = 0.0
    ridge: float = 0.0


def predict_kernel(spec: KernelSpec, n: int, d: int, k_max: int, noise_var: float):
    """(eigenlearning.Prediction, how: "spectrum" | "ridge-limit") of kernel (ridge)
    regression with `spec` on n points of S^{d-1}, for the target's energies and noise_var."""
    energy = target_energy(ENERGY_DEGREES)[: k_max + 1]
    how = "spectrum"
    if spec.kernel == "ntk":
        lv, tail = _ntk_levels(d, k_max)
    elif spec.kernel == "spiky-smooth":
        mu = component_spectrum(spec.smooth, spec.gamma_smooth, d, k_max)
        if spike_resolved(spec.spike, spec.gamma_spike, d, k_max):
            mu = mu + spec.rho * component_spectrum(spec.spike, spec.gamma_spike, d, k_max)
            lv, tail = _levels(mu, d, 1.0 + spec.rho)
        else:  # the spike is rho I on the sample and nothing off it: a ridge rho
            lv, tail = _levels(mu, d, 1.0)
            tail += spec.rho
            how = "ridge-limit"
    else:
        lv, tail = smooth_levels(spec.smooth, spec.gamma_smooth, d, k_max)
    return eigenlearning.predict(n, lv, energy, noise_var, spec.ridge + tail), how


def mallinar_alpha(mu: np.ndarray, d: int, k_lo: int = 20, k_hi: int | None = None) -> float:
    """alpha of eigenvalues ~ i^(-alpha) (Mallinar et al. 2022: ridgeless E_0 -> alpha) from a
    sphere spectrum by levels: mu_k ~ k^(-beta), level k holding N(d, k) ~ k^(d-2) modes, so
    the mode index i ~ k^(d-1) and alpha = beta / (d - 1); beta by least squares of log mu_k on
    log k over the positive levels k_lo <= k <= k_hi (default len(mu) // 2: away from the
    quadrature's last levels)."""
    k_hi = len(mu) // 2 if k_hi is None else k_hi
    k = np.arange(len(mu))
    keep = (k >= k_lo) & (k <= k_hi) & (np.asarray(mu) > 0)
    beta = -np.polyfit(np.log(k[keep]), np.log(np.asarray(mu)[keep]), 1)[0]
    return float(beta / (d - 1))


# ----------------------------------------------------------------------------- target


def target(X) -> np.ndarray:
    """f*(x) = |x_1| + x_2^2 + sin(2 pi x_3) + x_1 x_2 x_3 (Haas et al. 2023, App. kernel
    experiment); X: (m, 3) -> (m,)."""
    X = np.asarray(X, np.float64)
    return (
        np.abs(X[:, 0]) + X[:, 1] ** 2 + np.sin(2 * np.pi * X[:, 2]) + X[:, 0] * X[:, 1] * X[:, 2]
    )


def harmonic_energy(f: Callable, degrees: int, nodes: int | None = None) -> tuple:
    """(||f_k||^2 for k = 0..degrees, E[f^2]) of f: (m, 3) -> (m,) on S^2 under the uniform
    probability measure, by quadrature of its spherical-harmonic coefficients.

    Coordinates with x_1 as the polar axis: x = (z, sqrt(1 - z^2) cos phi, sqrt(1 - z^2) sin
    phi). phi: the trapezoid rule with M = 2 degrees + 2 nodes + 64 points (exact for the
    trigonometric polynomials up to that order), as an FFT: F_m(z) = (1 / 2 pi) int f e^{-i m
    phi}. z: Gauss-Legendre on [-1, 0] and [0, 1] apart (`nodes` each, default degrees + 64),
    exact for a kink at x_1 = 0 such as |x_1|. Then c_lm = sqrt(pi) int N_lm P_l^m(z)
    F_m(z) dz (orthonormal harmonics under the probability measure are sqrt(4 pi) Y_lm) and
    ||f_l||^2 = sum_{|m| <= l} |c_lm|^2, m < 0 by the symmetry of a real f. E[f^2] by the same
    rule, so Parseval (sum_l ||f_l||^2 = E[f^2]) checks both up to the energy above `degrees`.
    """
    L = int(degrees)
    nz = int(nodes or L + 64)
    x, w = np.polynomial.legendre.leggauss(nz)
    z = np.concatenate([(x - 1) / 2, (x + 1) / 2])
    wz = np.concatenate([w, w]) / 2
    M = 2 * L + 2 * nz + 64
    phi = 2 * np.pi * np.arange(M) / M
    s = np.sqrt(1 - z * z)
    X = np.stack(
        [np.repeat(z, M), np.outer(s, np.cos(phi)).ravel(), np.outer(s, np.sin(phi)).ravel()],
        axis=1,
    )
    F = f(X).reshape(len(z), M)
    mean_sq = float(np.sum(wz[:, None] * F * F) / (2 * M))
    Fm = np.fft.rfft(F, axis=1)[:, : L + 1] / M  # (nz, L + 1): F_m(z), m = 0..L
    from scipy.special import sph_legendre_p_all

    theta = np.arccos(z)
    coef = np.zeros((L + 1, L + 1), complex)  # c_lm, m >= 0
    for lo in range(0, len(z), 64):  # chunks: the table is (L + 1, 2L + 1, chunk)
        P = sph_legendre_p_all(L, L, theta[lo : lo + 64])[0][:, : L + 1, :]  # (l, m >= 0, z)
        coef += math.sqrt(np.pi) * np.einsum("lmz,zm->lm", P * wz[lo : lo + 64], Fm[lo : lo + 64])
    sq = np.abs(coef) ** 2
    energy = sq[:, 0] + 2 * sq[:, 1:].sum(axis=1)  # m and -m
    return energy, mean_sq


@functools.lru_cache(maxsize=4)
def _target_energy(degrees: int) -> np.ndarray:
    return harmonic_energy(target, degrees)[0]


def target_energy(degrees: int = ENERGY_DEGREES) -> np.ndarray:
    """||f*_k||^2 for k = 0..degrees (`harmonic_energy` of `target`), shape (degrees + 1,)."""
    return _target_energy(int(degrees)).copy()


def sphere(rng, m: int, d: int) -> np.ndarray:
    """m points uniform on S^{d-1}: (m, d)."""
    x = rng.normal(size=(m, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- configs


class Heatmap(NamedTuple):
    """The published kernel heatmap (Haas et al. 2023, App. Fig. "l2excessrisk heatmap"): n
    points on S^{d-1} (d = 3), noise of variance noise_var, ridgeless spiky-smooth
    interpolation over gamma_spikes x rhos, `seeds` training sets, n_test fresh points; k_max:
    degrees of the predicted spectra."""

    n: int = 1000
    d: int = 3
    smooth: str = "laplace"
    spike: str = "laplace"
    gamma_smooth: float = 1.0
    gamma_spikes: tuple = (1e-5, 1e-3, 5e-3, 1e-2, 5e-2)
    rhos: tuple = (100.0, 10.0, 1.0, 0.5, 0.1, 0.01)
    noise_var: float = 0.5
    seeds: int = 5
    n_test: int = 10000
    k_max: int = 2000
    seed: int = 0


# quick: the published n (whether a spike of width 0.01 is a ridge depends on n), fewer cells,
# seeds and test points
HEATMAP_QUICK = Heatmap(
    gamma_spikes=(1e-5, 1e-2, 5e-2), rhos=(10.0, 0.5, 0.1), seeds=3, n_test=2000, k_max=1000
)


class Tempered(NamedTuple):
    """Tempered against benign in n: ridgeless "laplace" (gamma_smooth) and "ntk" (first-layer
    ReLU NTK) against "spiky-smooth" with the spike width and weight of `schedule(n)`, n_test
    fresh points (noiseless for the excess risk, noisy for test_mse). The first-layer NTK has
    no odd degree >= 3 (mu_k = 0 there), so the target's odd part above degree 1 (sin(2 pi
    x_3), x_1 x_2 x_3) stays in its excess risk at every n."""

    ns: tuple = (250, 500, 1000, 2000, 4000)
    d: int = 3
    smooth: str = "laplace"
    spike: str = "laplace"
    gamma_smooth: float = 1.0
    kernels: tuple = ("laplace", "ntk", "spiky-smooth")
    gamma_scale: float = 1.0  # gamma_spike(n) = gamma_scale / n
    rho_at_1000: float = 0.5  # rho(n) = rho_at_1000 (n / 1000)^rho_power
    rho_power: float = 0.6
    noise_var: float = 0.5
    seeds: int = 5
    n_test: int = 5000
    k_max: int = 2000
    seed: int = 0


TEMPERED_QUICK = Tempered(ns=(125, 250, 500, 1000), seeds=3, n_test=1500, k_max=600)


def schedule(config: Tempered, n: int) -> tuple[float, float]:
    """(gamma_spike(n), rho(n)) = (gamma_scale / n, rho_at_1000 (n / 1000)^rho_power).

    Spike width: n points on S^2 have nearest-neighbour distances about sqrt(pi / n) (0.056 at
    n = 1000) and their closest pair is about 2.8 / n apart. With gamma = 1 / n a Laplace spike
    at one point is exp(-sqrt(pi n)) < 1e-12 (n >= 250) at a typical neighbour, so
    rho n exp(-spacing / gamma) is negligible and only the few closest pairs see up to
    exp(-2.8): the spike Gram is I up to a handful of entries, the spike narrower than the
    spacing as Haas et al. (2023, Thm. 6) need (gamma_n -> 0 faster than n^(-1/2)).

    Spike weight: rho is an unnormalised ridge (the ridge limit); kernel ridge regression is
    consistent when rho -> inf and rho / n -> 0. Eigenlearning on the smooth Laplace spectrum
    (gamma 1) for this target and noise 0.5 puts the optimal ridge (`optimal_ridge`) at 0.217,
    0.335, 0.516, 0.786, 1.190 for n = 250, 500, 1000, 2000, 4000, a power law ~ n^0.61; the
    schedule rho(n) = 0.5 (n / 1000)^0.6 (0.22 .. 1.15) follows it. It was fixed from these
    predictions before any risk of the spiky-smooth kernel was measured."""
    return config.gamma_scale / n, config.rho_at_1000 * (n / 1000) ** config.rho_power


def optimal_ridge(
    n: int,
    kind: str = "laplace",
    gamma: float = 1.0,
    d: int = 3,
    k_max: int = 2000,
    noise_var: float = 0.5,
) -> float:
    """The ridge minimising eigenlearning's predicted excess risk of the smooth kernel on n
    points (a golden-section search in log ridge over [1e-4, n])."""
    from scipy.optimize import minimize_scalar

    lv, tail = smooth_levels(kind, gamma, d, k_max)
    energy = target_energy()[: k_max + 1]

    def risk(log_r):
        return eigenlearning.predict(n, lv, energy, noise_var, math.exp(log_r) + tail).excess_risk

    got = minimize_scalar(
        risk, bounds=(math.log(1e-4), math.log(n)), method="bounded", options={"xatol": 1e-4}
    )
    return float(math.exp(got.x))


# ----------------------------------------------------------------------------- measurement


def _rng(config, n: int, seed: int):
    """The Generator of one training set: from (config.seed, n, seed), never global state."""
    return np.random.default_rng(zlib.crc32(f"{config.seed}/{n}/{seed}".encode()))


def _pairwise(A, B) -> np.ndarray:
    """||a - b|| for unit vectors, (len(A), len(B)), from 2 - 2 <a, b>."""
    return _distance(A @ B.T)


class _Draw(NamedTuple):
    """One training set and its fresh test points: inputs, f* and noisy labels on both, and
    the distances every kernel of the draw is computed from (once)."""

    f: np.ndarray  # f*(X), (n,)
    y: np.ndarray  # f*(X) + noise, (n,)
    f_test: np.ndarray  # (n_test,)
    y_test: np.ndarray  # (n_test,)
    D: np.ndarray  # (n, n) training distances, 0 on the diagonal
    D_test: np.ndarray  # (n_test, n)


def _draw(config, n: int, seed: int) -> _Draw:
    rng = _rng(config, n, seed)
    X, X_test = sphere(rng, n, config.d), sphere(rng, config.n_test, config.d)
    sd = math.sqrt(config.noise_var)
    f, f_test = target(X), target(X_test)
    y = f + sd * rng.normal(size=n)
    y_test = f_test + sd * rng.normal(size=config.n_test)
    D = _pairwise(X, X)
    np.fill_diagonal(D, 0.0)  # exactly: sqrt(2 - 2 <x, x>) would be ~1e-8, a spike's scale
    return _Draw(f, y, f_test, y_test, D, _pairwise(X_test, X))


class _Fit(NamedTuple):
    f_test: np.ndarray  # (rhs, n_test) predictions at the test points
    f_train: np.ndarray  # (rhs, n)
    converged: bool


def _solve(K, K_test, Y, ridge: float = 0.0, tol: float = 1e-6) -> _Fit:
    """f = K(., X) (K + ridge I)^-1 y for each column of Y (n, rhs) by one Cholesky in float64.
    Not converged (nan predictions) when the factorisation fails or the relative residual
    ||(K + ridge I) a - y|| / ||y|| exceeds `tol` (an ill-conditioned solve)."""
    A = K + ridge * np.eye(len(K)) if ridge else K
    try:
        a = scipy.linalg.cho_solve(
            scipy.linalg.cho_factor(A, lower=True, check_finite=False), Y, check_finite=False
        )
    except (np.linalg.LinAlgError, ValueError):
        nan = np.full((Y.shape[1], len(K_test)), np.nan)
        return _Fit(nan, np.full((Y.shape[1], len(K)), np.nan), False)
    ok = bool(np.all(np.isfinite(a)) and np.linalg.norm(A @ a - Y) <= tol * np.linalg.norm(Y))
    return _Fit((K_test @ a).T, (K @ a).T, ok)


def _risks(fit: _Fit, dr: _Draw, i: int = 0) -> dict:
    """excess_risk (noiseless, fresh points), test_mse (noisy test labels), train_mse."""
    if not fit.converged:
        return {"excess_risk": math.nan, "test_mse": math.nan, "train_mse": math.nan}
    return {
        "excess_risk": float(np.mean((fit.f_test[i] - dr.f_test) ** 2)),
        "test_mse": float(np.mean((fit.f_test[i] - dr.y_test) ** 2)),
        "train_mse": float(np.mean((fit.f_train[i] - dr.y) ** 2)),
    }


def _pred(spec: KernelSpec, n: int, config) -> dict:
    p, how = predict_kernel(spec, n, config.d, config.k_max, config.noise_var)
    return {
        "predicted_excess_risk": p.excess_risk,
        "predicted_test_mse": p.test_risk,
        "prediction": how,
        "kappa": p.kappa,
        "e0": p.e0,
        "_p": p,
    }


def _heatmap_cells(config: Heatmap) -> list[tuple]:
    """The keys (kernel, gamma_spike, rho) of one seed, in order: the smooth kernel ridgeless,
    with ridge rho, then the spiky-smooth grid."""
    cells = [("smooth", 0.0, 0.0)] + [("smooth-ridge", 0.0, float(r)) for r in config.rhos]
    return cells + [
        ("spiky-smooth", float(g), float(r)) for g in config.gamma_spikes for r in config.rhos
    ]


def _check_d(d: int) -> None:
    if d != 3:
        raise ValueError(
            f"--d: {d} is not supported: the target |x_1| + x_2^2 + sin(2 pi x_3) "
            "+ x_1 x_2 x_3 and its harmonic energies are on S^2 (d = 3 only)"
        )


def heatmap_rows(config: Heatmap, seed: int, skip: Iterable = ()) -> list[dict]:
    """The rows of one training set (seed) of the heatmap whose keys are not in `skip`."""
    _check_d(config.d)
    skip = set(skip)
    cells = [c for c in _heatmap_cells(config) if (*c, seed) not in skip]
    if not cells:
        return []
    n = config.n
    dr = _draw(config, n, seed)
    K_s = component(config.smooth, dr.D, config.gamma_smooth)
    K_s_test = component(config.smooth, dr.D_test, config.gamma_smooth)
    Y = dr.y[:, None]
    rows = []
    spikes: dict = {}
    for kernel, g, r in cells:
        t0 = time.perf_counter()
        if kernel == "spiky-smooth":
            if g not in spikes:  # the spike's Grams, once per width
                spikes = {
                    g: (component(config.spike, dr.D, g), component(config.spike, dr.D_test, g))
                }
            S, S_test = spikes[g]
            fit = _solve(K_s + r * S, K_s_test + r * S_test, Y)
            spec = KernelSpec(
                "spiky-smooth", config.smooth, config.gamma_smooth, config.spike, g, r
            )
        else:
            fit = _solve(K_s, K_s_test, Y, ridge=r)
            spec = KernelSpec("smooth", config.smooth, config.gamma_smooth, ridge=r)
        pred = _pred(spec, n, config)
        pred.pop("_p")
        rows.append(
            {
                "kernel": kernel,
                "gamma_spike": g,
                "rho": r,
                "seed": seed,
                "n": n,
                **_risks(fit, dr),
                **pred,
                "converged": fit.converged,
                "seconds": time.perf_counter() - t0,
            }
        )
    return rows


def _key(row, keys) -> tuple:
    """A row's key with floats as floats (rows read back from CSV hold the same numbers)."""
    return tuple(float(row[k]) if isinstance(row[k], float) else row[k] for k in keys)


def run_heatmap(config: Heatmap, on_rows: Callable[[list], None], skip: Iterable = ()) -> int:
    """Every heatmap row whose key (kernel, gamma_spike, rho, seed) is not in `skip`, one
    batch per seed to `on_rows`; returns the training sets computed."""
    _check_d(config.d)
    skip = set(skip)
    done = 0
    for seed in range(config.seeds):
        rows = heatmap_rows(config, seed, skip)
        if rows:
            on_rows(rows)
            done += 1
    return done


def tempered_rows(config: Tempered, n: int, seed: int, skip: Iterable = ()) -> list[dict]:
    """The rows of one training set (n, seed) of the tempered study not in `skip`: each kernel
    ridgeless on the noisy and on the clean labels (two right-hand sides, one factorisation)."""
    _check_d(config.d)
    skip = set(skip)
    kernels = [k for k in config.kernels if (k, n, seed) not in skip]
    if not kernels:
        return []
    dr = _draw(config, n, seed)
    Y = np.stack([dr.y, dr.f], axis=1)
    rows = []
    for kernel in kernels:
        t0 = time.perf_counter()
        g, r = 0.0, 0.0
        if kernel == "ntk":
            K = ntk(1.0 - dr.D**2 / 2)
            np.fill_diagonal(K, float(ntk(np.array(1.0))))
            K_test = ntk(1.0 - dr.D_test**2 / 2)
            spec = KernelSpec("ntk")
            alpha = mallinar_alpha(
                np.exp(_ntk_levels(config.d, config.k_max)[0].log_eigenvalue), config.d
            )
        elif kernel == "spiky-smooth":
            g, r = schedule(config, n)
            K = component(config.smooth, dr.D, config.gamma_smooth) + r * component(
                config.spike, dr.D, g
            )
            K_test = component(config.smooth, dr.D_test, config.gamma_smooth) + r * component(
                config.spike, dr.D_test, g
            )
            spec = KernelSpec(
                "spiky-smooth", config.smooth, config.gamma_smooth, config.spike, g, r
            )
            alpha = math.nan  # Mallinar's rate is for a fixed kernel as n grows
        elif kernel in COMPONENTS:
            K = component(kernel, dr.D, config.gamma_smooth)
            K_test = component(kernel, dr.D_test, config.gamma_smooth)
            spec = KernelSpec("smooth", kernel, config.gamma_smooth)
            alpha = mallinar_alpha(
                component_spectrum(kernel, config.gamma_smooth, config.d, config.k_max), config.d
            )
        else:
            raise ValueError(
                f"unknown kernel {kernel!r}; choose from laplace, gaussian, ntk, spiky-smooth"
            )
        fit = _solve(K, K_test, Y)
        noisy, clean = _risks(fit, dr, 0), _risks(fit, dr, 1)
        pred = _pred(spec, n, config)
        p = pred.pop("_p")
        pred.pop("predicted_test_mse"), pred.pop("e0")
        rows.append(
            {
                "kernel": kernel,
                "n": n,
                "seed": seed,
                "gamma_spike": g,
                "rho": r,
                **noisy,
                "excess_risk_clean": clean["excess_risk"],
                "noise_amplification": (noisy["excess_risk"] - clean["excess_risk"])
                / config.noise_var
                if config.noise_var > 0
                else math.nan,
                **pred,
                "predicted_excess_risk_clean": p.bias,
                "predicted_e0_minus_1": p.e0 - 1.0,
                "mallinar_e0_minus_1": alpha - 1.0,
                "converged": fit.converged,
                "seconds": time.perf_counter() - t0,
            }
        )
    return [{c: row[c] for c in TEMPERED_SCHEMA} for row in rows]


def run_tempered(config: Tempered, on_rows: Callable[[list], None], skip: Iterable = ()) -> int:
    """Every tempered row whose key (kernel, n, seed) is not in `skip`, smallest n first, one
    batch per training set to `on_rows`; returns the training sets computed."""
    _check_d(config.d)
    skip = set(skip)
    done = 0
    for n in sorted(config.ns):
        for seed in range(config.seeds):
            rows = tempered_rows(config, n, seed, skip)
            if rows:
                on_rows(rows)
                done += 1
    return done


# ----------------------------------------------------------------------------- studies


def heatmap_study(config: Heatmap | None = None, name: str = KIND, part: str | None = None):
    """The heatmap (default: the published protocol, `Heatmap()`) as a `contract.HostStudy`
    (kind "spiky-kernel", NumPy float64)."""
    from jaxbof.contract import HostStudy, Schema

    config = Heatmap() if config is None else config

    def compute(on_rows, stored):
        run_heatmap(config, on_rows, {_key(r, KEYS) for r in stored})

    cells = len(_heatmap_cells(config))
    return HostStudy(
        KIND,
        name,
        f"spiky-smooth kernel heatmap, n = {config.n}, {cells} cells x {config.seeds} seeds, NumPy",
        _jsonable(config),
        Schema(SCHEMA, KEYS, flags=FLAGS),
        compute,
        part=part,
    )


def tempered_study(
    config: Tempered | None = None, name: str = KIND + "-tempered", part: str | None = None
):
    """The tempered-against-benign study (default `Tempered()`) as a `contract.HostStudy`."""
    from jaxbof.contract import HostStudy, Schema

    config = Tempered() if config is None else config

    def compute(on_rows, stored):
        run_tempered(config, on_rows, {_key(r, TEMPERED_KEYS) for r in stored})

    return HostStudy(
        KIND,
        name,
        f"tempered against benign, n = {min(config.ns)} .. "
        f"{max(config.ns)}, {len(config.kernels)} kernels x {config.seeds} seeds, "
        "NumPy",
        _jsonable(config),
        Schema(TEMPERED_SCHEMA, TEMPERED_KEYS, flags=FLAGS),
        compute,
        part=part,
    )


def _jsonable(config) -> dict:
    """config.json's experiment.config: the fields, tuples as lists, and which study."""
    study = "tempered" if isinstance(config, Tempered) else "heatmap"
    return {
        "study": study,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in config._asdict().items()},
    }


def config_of(config) -> Heatmap | Tempered:
    """A Heatmap or Tempered from itself, experiment.config, or a whole config.json."""
    if isinstance(config, (Heatmap, Tempered)):
        return config
    if "experiment" in config:
        config = config["experiment"]["config"]
    kind = Tempered if config.get("study") == "tempered" else Heatmap
    return kind(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in config.items()
            if k in kind._fields
        }
    )


# ----------------------------------------------------------------------------- command line


def add_arguments(parser) -> None:
    """`jaxbof sweep spiky-kernel`'s flags (defaults: the published protocol)."""
    h = Heatmap()
    parser.add_argument("--n", default=str(h.n), help="training points (>= 2)")
    parser.add_argument("--d", default=str(h.d), help="input dimension: 3 (S^2) only")
    parser.add_argument("--smooth", default=h.smooth, help="smooth component: laplace, gaussian")
    parser.add_argument("--spike", default=h.spike, help="spike component: laplace, gaussian")
    parser.add_argument(
        "--gamma-smooth",
        default=str(h.gamma_smooth),
        dest="gamma_smooth",
        help="bandwidth of the smooth component (> 0)",
    )
    parser.add_argument(
        "--gamma-spike",
        default=",".join(f"{g:g}" for g in h.gamma_spikes),
        dest="gamma_spike",
        help="spike bandwidths (comma list, > 0)",
    )
    parser.add_argument(
        "--rho", default=",".join(f"{r:g}" for r in h.rhos), help="spike weights (comma list, >= 0)"
    )
    parser.add_argument(
        "--noise-var",
        default=str(h.noise_var),
        dest="noise_var",
        help="label noise variance (>= 0)",
    )
    parser.add_argument("--seeds", default=str(h.seeds), help="training sets (>= 1)")
    parser.add_argument(
        "--n-test", default=str(h.n_test), dest="n_test", help="fresh test points (>= 1)"
    )


def from_args(args):
    """The heatmap HostStudy the flags ask for; ValueError naming a bad flag."""
    from jaxbof import flags

    def one(text, kind, name, ok, allowed):
        v = flags.number(str(text), kind, name)
        if not ok(v):
            raise ValueError(f"--{name}: {text!r} is not allowed: {allowed}")
        return v

    def many(text, name, ok, allowed):
        vals = flags.parse_values(str(text), float, name)
        for v in vals:
            if not ok(v):
                raise ValueError(f"--{name}: {v!r} is not allowed: {allowed}")
        return tuple(float(v) for v in vals)

    n = one(args.n, int, "n", lambda v: v >= 2, "n >= 2")
    d = one(args.d, int, "d", lambda v: v >= 2, "d >= 2")
    _check_d(d)
    smooth = flags.choice(args.smooth, tuple(COMPONENTS), "smooth")
    spike = flags.choice(args.spike, tuple(COMPONENTS), "spike")
    config = Heatmap(
        n=n,
        d=d,
        smooth=smooth,
        spike=spike,
        gamma_smooth=one(
            args.gamma_smooth, float, "gamma-smooth", lambda v: v > 0, "a bandwidth > 0"
        ),
        gamma_spikes=many(args.gamma_spike, "gamma-spike", lambda v: v > 0, "bandwidths > 0"),
        rhos=many(args.rho, "rho", lambda v: v >= 0, "weights >= 0"),
        noise_var=one(args.noise_var, float, "noise-var", lambda v: v >= 0, "a variance >= 0"),
        seeds=one(args.seeds, int, "seeds", lambda v: v >= 1, "seeds >= 1"),
        n_test=one(args.n_test, int, "n-test", lambda v: v >= 1, "n-test >= 1"),
    )
    return heatmap_study(config)


# ----------------------------------------------------------------------------- table


def table(rows, config=None) -> list[str]:
    """Mean and s.e. over seeds of the excess risk beside the prediction, one CSV line per
    cell: (kernel, gamma_spike, rho) of the heatmap, or (kernel, n) of the tempered study with
    the measured and predicted noise amplification E_0 - 1."""
    from jaxbof import stats

    rows = list(rows)
    tempered = (
        bool(rows)
        and "excess_risk_clean" in rows[0]
        or (config is not None and not rows and isinstance(config_of(config), Tempered))
    )
    by = ("kernel", "n") if tempered else ("kernel", "gamma_spike", "rho")
    risk = stats.aggregate(rows, by, "excess_risk", FLAGS)
    pred = {tuple(r[c] for c in by): r for r in rows}
    if tempered:
        amp = stats.aggregate(rows, by, "noise_amplification", FLAGS)
        lines = [
            (
                "kernel,n,excess_risk,sem,predicted,noise_amplification,sem,"
                "predicted_e0_minus_1,mallinar_e0_minus_1,prediction,seeds,flagged"
            )
        ]
        for key, s in risk.items():
            p, a = pred[key], amp[key]
            lines.append(
                f"{key[0]},{key[1]},{s.mean:.5g},{s.sem:.2g},"
                f"{p['predicted_excess_risk']:.5g},{a.mean:.4g},{a.sem:.2g},"
                f"{p['predicted_e0_minus_1']:.4g},{p['mallinar_e0_minus_1']:.4g},"
                f"{p['prediction']},{s.count},{s.flagged}"
            )
        return lines
    lines = ["kernel,gamma_spike,rho,excess_risk,sem,predicted,prediction,seeds,flagged"]
    for key, s in risk.items():
        p = pred[key]
        lines.append(
            f"{key[0]},{key[1]:g},{key[2]:g},{s.mean:.5g},{s.sem:.2g},"
            f"{p['predicted_excess_risk']:.5g},{p['prediction']},{s.count},"
            f"{s.flagged}"
        )
    return lines
