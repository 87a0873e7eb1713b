"""Eigenvalues of dot-product kernels on the sphere S^{d-1} (host-side NumPy/SciPy, float64).

For a kernel k(<x, x'>) on the uniform probability measure of S^{d-1} (Funk-Hecke):

    k(t) = sum_k N(d, k) mu_k P_k(t),
    mu_k = c_d int_{-1}^{1} k(t) P_k(t) (1 - t^2)^((d-3)/2) dt,
    c_d = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)),

with P_k the Gegenbauer polynomial of order (d-2)/2 normalised to P_k(1) = 1 and N(d, k) the
dimension of degree-k spherical harmonics. Two independent routes are provided:

- `eigenvalues_quadrature`: Gauss-Legendre in theta for any kernel, with an error estimate and a
  per-level `reliable` flag (it loses relative accuracy by cancellation once mu_k / mu_0 is below
  roughly 1e-13, e.g. d = 1000 by k ~ 12).
- `eigenvalues`: closed forms for the ReLU / leaky-ReLU arc-cosine kernels, in log space.

Closed forms (derived with Rodrigues' formula, cf. Bach 2017 JMLR App. D; Bietti & Mairal 2019):
kappa_0(u) = E_v[1(v.x > 0) 1(v.x' > 0)] and kappa_1(u) = d E_v[(v.x)_+ (v.x')_+] for v uniform on
S^{d-1}, so by Funk-Hecke mu_k(kappa_0) = lambda_k(step)^2, mu_k(kappa_1) = d lambda_k(relu)^2 with

    lambda_0(step) = 1/2,  lambda_k(step) = B(k/2, d/2) / (2 pi)       (k odd; 0 for even k >= 2)
    lambda_0(relu) = Gamma(d/2) / (2 sqrt(pi) Gamma((d+1)/2)),  lambda_1(relu) = 1/(2d),
    lambda_k(relu) = Gamma(d/2) Gamma((k-1)/2) / (4 pi Gamma((k+d+1)/2))  (k even; 0 odd k >= 3).

Multiplying a kernel by t mixes neighbouring levels (three-term recurrence of P_k):

    mu_k(t f) = k/(2k+d-2) mu_{k-1}(f) + (k+d-2)/(2k+d-2) mu_{k+1}(f)     (mu_0(t f) = mu_1(f)),

a sum of non-negative terms, so u kappa_0 is computed without cancellation.

With a bias b ~ N(0, 1) (pre-activation <w, x> + b, unit-norm x) the kernels are those of the
correlation rho = (1 + u)/2, and odd levels no longer vanish. Their arc-cosine parts are mixtures
over s = b/|w| of squared Funk-Hecke coefficients of a shifted step or ReLU, one-dimensional
integrals of non-negative functions (see `_log_mixture`), again free of cancellation.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import special

__all__ = [
    "KERNELS",
    "Kernel",
    "LevelFit",
    "QuadratureSpectrum",
    "Spectrum",
    "TraceCheck",
    "eigenvalues",
    "eigenvalues_quadrature",
    "gegenbauer",
    "kappa0",
    "kappa1",
    "kernel_fn",
    "log_multiplicity",
    "mercer",
    "multiplicity",
    "empirical_levels",
    "levels_of",
    "ntk_both_layers",
    "ntk_first_layer",
    "relu_nngp",
    "trace_identity",
]

_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------- multiplicities


def log_multiplicity(d: int, k) -> np.ndarray:
    """log N(d, k): dimension of degree-k spherical harmonics on S^{d-1}, d >= 2.

    N(d, 0) = 1, N(d, k) = (2k + d - 2)/k * binom(k + d - 3, d - 2) (d = 2: N = 2 for k >= 1),
    evaluated with gammaln; `k` any integer array (shape kept).
    """
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    k = np.asarray(k)
    kf = np.maximum(k, 1).astype(np.float64)
    # scipy's binom is accurate to a few ulp where it is finite; gammaln (relative error
    # ~1e-13 from cancellation) only where the binomial overflows
    with np.errstate(over="ignore"):
        binom = special.binom(kf + d - 3, d - 2.0)
    log_binom = np.where(
        np.isfinite(binom) & (binom > 0),
        np.log(np.where(binom > 0, binom, 1.0)),
        special.gammaln(kf + d - 2) - special.gammaln(d - 1.0) - special.gammaln(kf),
    )
    out = np.log(2 * kf + d - 2) - np.log(kf) + log_binom
    return np.where(k == 0, 0.0, out)


def multiplicity(d: int, k) -> np.ndarray:
    """N(d, k) as float64 (inf where it overflows); see `log_multiplicity`. An integer, so values
    below 1e13 (where the relative error of exp(log) is far below 1/N) are rounded to it."""
    with np.errstate(over="ignore"):
        n = np.exp(log_multiplicity(d, k))
    return np.where(n < 1e13, np.rint(n), n)


def gegenbauer(d: int, k_max: int, t) -> np.ndarray:
    """P_0..P_{k_max}(t), Gegenbauer of order (d-2)/2 with P_k(1) = 1; shape (k_max + 1, *t.shape).

    Stable forward recurrence P_{k+1} = ((2k + d - 2) t P_k - k P_{k-1}) / (k + d - 2); |P_k| <= 1
    on [-1, 1], so nothing overflows.
    """
    t = np.asarray(t, dtype=np.float64)
    P = np.empty((k_max + 1,) + t.shape)
    P[0] = 1.0
    if k_max >= 1:
        P[1] = t
    for k in range(1, k_max):
        P[k + 1] = ((2 * k + d - 2) * t * P[k] - k * P[k - 1]) / (k + d - 2)
    return P


# --------------------------------------------------------------------------- analytic kernels


def kappa0(u) -> np.ndarray:
    """Arc-cosine kernel of order 0: E[1(w.x > 0) 1(w.x' > 0)] = (pi - arccos u) / (2 pi)."""
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    return (np.pi - np.arccos(u)) / (2 * np.pi)


def kappa1(u) -> np.ndarray:
    """Arc-cosine kernel of order 1: E[relu(w.x) relu(w.x')], w ~ N(0, I_d), |x| = |x'| = 1:
    (u (pi - arccos u) + sqrt(1 - u^2)) / (2 pi)."""
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    return (u * (np.pi - np.arccos(u)) + np.sqrt(1.0 - u * u)) / (2 * np.pi)


def _bias_args(u, bias: bool):
    """(c, rho, s s') of the pre-activations z = w.x [+ b] at unit norms: c = u [+ 1],
    rho = c / (s s'), s s' = 1 [or 2] (b ~ N(0, 1))."""
    u = np.asarray(u, dtype=np.float64)
    return (u + 1.0, (u + 1.0) / 2.0, 2.0) if bias else (u, u, 1.0)


def ntk_first_layer(
    u, alpha: float = 0.0, bias: bool = False, train_bias: bool = True
) -> np.ndarray:
    """Infinite-width NTK, first layer trained, sigma(z) = max(z, alpha z), unit-norm inputs:
    (u [+ 1 if bias and train_bias]) E[sigma'(z) sigma'(z')] = (.) (alpha + (1 - alpha)^2
    kappa0(rho)), rho = u, or (u + 1)/2 with a bias b ~ N(0, 1); alpha = 0, no bias: u kappa0(u)."""
    c, rho, _ = _bias_args(u, bias)
    lead = c if (bias and train_bias) else np.asarray(u, dtype=np.float64)
    return lead * (alpha + (1.0 - alpha) ** 2 * kappa0(rho))


def relu_nngp(u, alpha: float = 0.0, bias: bool = False) -> np.ndarray:
    """E[sigma(z) sigma(z')] for sigma(z) = max(z, alpha z) = alpha z + (1 - alpha) relu(z):
    alpha c + (1 - alpha)^2 s s' kappa1(rho) (cross term E[z relu(z')] = c/2); alpha = 0 and no
    bias: kappa1(u); bias: alpha (u + 1) + 2 (1 - alpha)^2 kappa1((u + 1)/2)."""
    c, rho, ss = _bias_args(u, bias)
    return alpha * c + (1.0 - alpha) ** 2 * ss * kappa1(rho)


def ntk_both_layers(
    u, alpha: float = 0.0, bias: bool = False, train_bias: bool = True
) -> np.ndarray:
    """Infinite-width NTK, both layers trained: ntk_first_layer(u) + relu_nngp(u)."""
    return ntk_first_layer(u, alpha, bias, train_bias) + relu_nngp(u, alpha, bias)


class Kernel(str, enum.Enum):  # noqa: UP042 - StrEnum would change str(Kernel.X)
    """The analytic kernels with closed-form spectra (values are the command-line names)."""

    NTK_FIRST_LAYER = "ntk-first-layer"  # u kappa0(u)
    NTK_BOTH_LAYERS = "ntk-both-layers"  # u kappa0(u) + kappa1(u)
    RELU_NNGP = "relu-nngp"  # kappa1(u)


KERNELS: dict[Kernel, Callable] = {
    Kernel.NTK_FIRST_LAYER: ntk_first_layer,
    Kernel.NTK_BOTH_LAYERS: ntk_both_layers,
    Kernel.RELU_NNGP: relu_nngp,
}


def kernel_fn(
    kernel: Kernel | str, alpha: float = 0.0, bias: bool = False, train_bias: bool = True
) -> Callable:
    """u -> k(u) for one of the analytic kernels (train_bias is ignored by relu-nngp)."""
    kernel = _as_kernel(kernel)
    if kernel == Kernel.RELU_NNGP:
        return lambda u: relu_nngp(u, alpha, bias)
    return lambda u: KERNELS[kernel](u, alpha, bias, train_bias)


def _as_kernel(kernel) -> Kernel:
    try:
        return Kernel(kernel)
    except ValueError:
        raise ValueError(
            f"unknown kernel {kernel!r}; choose from {', '.join(k.value for k in Kernel)}"
        ) from None


# --------------------------------------------------------------------------- quadrature


class QuadratureSpectrum(NamedTuple):
    """mu_k by quadrature: k (K,), eigenvalue (K,), abs_error (K,) estimate, reliable (K,) bool."""

    k: np.ndarray
    eigenvalue: np.ndarray
    abs_error: np.ndarray
    reliable: np.ndarray


def _log_c(d: int) -> float:
    return special.gammaln(d / 2) - 0.5 * np.log(np.pi) - special.gammaln((d - 1) / 2)


def _quadrature(kernel, d: int, k_max: int, n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    # theta = pi/2 + s: the mass of sin^(d-2) theta sits at s ~ 1/sqrt(d), where cos(s) and sin(s)
    # are accurate to relative eps, so the weights do not pick up a relative error ~ d eps
    s = 0.5 * np.pi * x
    t = -np.sin(s)
    # weights in log space: sin^(d-2) underflows harmlessly instead of producing 0 * inf
    logw = np.log(0.5 * np.pi * w) + (d - 2) * np.log(np.cos(s)) + _log_c(d)
    w = np.exp(logw)
    f = np.asarray(kernel(t), dtype=np.float64)
    # sensitivity of k to a one-ulp change of u: rounding of cos(theta) matters where k'(u) blows
    # up (arccos, sqrt(1 - u^2) near u = +-1) and is not seen by the eps * sum|terms| floor
    df = np.abs(np.asarray(kernel(np.nextafter(t, 0.0)), dtype=np.float64) - f)
    P = gegenbauer(d, k_max, t)
    terms = P * (f * w)
    # node rounding moves the integrand by ~ eps times its theta-derivative, ~ (sqrt(d) + k) times
    # its size (sin^(d-2) has width 1/sqrt(d), P_k oscillates k times) in theory, but errors up
    # to ~ d eps were measured at d = 10^4 (k = 0, 1), so d is used; terms whose weight
    # underflowed are each below max|f| * tiny
    k = np.arange(k_max + 1)
    scale = (
        (1 + d + k) * np.abs(terms).sum(axis=1)
        + 4 * (np.abs(P) * (df * w)).sum(axis=1) / _EPS
        + 2 * n * np.max(np.abs(f)) * np.finfo(np.float64).tiny / _EPS
    )
    return terms.sum(axis=1), scale


def eigenvalues_quadrature(
    kernel: Callable, d: int, k_max: int, n_nodes: int | None = None, rtol: float = 1e-6
) -> QuadratureSpectrum:
    """mu_0..mu_{k_max} of a dot-product kernel by Gauss-Legendre in theta on [0, pi].

    Integrand c_d k(cos th) P_k(cos th) sin^(d-2) th (smooth in theta for the ReLU kernels, so
    convergence is exponential). Rules with n and 2n nodes (n default max(64, k_max + 32 +
    8 sqrt(d))); the 2n result is returned with abs_error = max(|mu(2n) - mu(n)|, rounding floor
    32 eps ((1 + d + k) sum_i |term_i| + 4 sum_i |P_k w_i| |k(u_i) - k(u_i - 1 ulp)| / eps
    + underflow)), the first part for node rounding, the second for the rounding of
    u = cos(theta) where k'(u) is large (near u = +-1). The floor is an estimate, checked
    against the closed forms for d in [2, 10^4], k <= 100 (true error <= abs_error there).
    `reliable` is abs_error <= rtol |mu_k| and mu_k != 0: levels whose value is
    at or below the rounding floor (tiny mu_k at large d, exact zeros) are flagged False.
    `kernel` maps an array of u in [-1, 1] to k(u) elementwise.
    """
    if n_nodes is None:
        n_nodes = int(max(64, k_max + 32 + 8 * np.sqrt(d)))
    mu1, _ = _quadrature(kernel, d, k_max, n_nodes)
    mu2, scale = _quadrature(kernel, d, k_max, 2 * n_nodes)
    err = np.maximum(np.abs(mu2 - mu1), 32 * _EPS * scale)
    reliable = (err <= rtol * np.abs(mu2)) & (mu2 != 0)
    return QuadratureSpectrum(np.arange(k_max + 1), mu2, err, reliable)


# --------------------------------------------------------------------------- closed forms


class Spectrum(NamedTuple):
    """mu_k in closed form: k (K,), eigenvalue (K,) (0 below the smallest normal float64,
    2.2e-308), log_eigenvalue (K,) = log mu_k (finite where mu_k > 0, even below 1e-308;
    -inf for exact zeros)."""

    k: np.ndarray
    eigenvalue: np.ndarray
    log_eigenvalue: np.ndarray


def _log_lambda_step(d: int, k: np.ndarray) -> np.ndarray:
    """log |lambda_k| of 1(t > 0): B(k/2, d/2)/(2 pi) for odd k, 1/2 at k = 0, zero else."""
    kf = np.maximum(k, 1).astype(np.float64)
    out = special.betaln(kf / 2, d / 2) - np.log(2 * np.pi)
    out = np.where(k % 2 == 1, out, -np.inf)
    return np.where(k == 0, np.log(0.5), out)


def _log_lambda_relu(d: int, k: np.ndarray) -> np.ndarray:
    """log |lambda_k| of max(t, 0): see module docstring."""
    kf = np.maximum(k, 2).astype(np.float64)
    # Gamma(d/2) Gamma((k-1)/2) / Gamma((k+d+1)/2) = B((k-1)/2, (d+2)/2) Gamma(d/2) / Gamma((d+2)/2)
    even = special.betaln((kf - 1) / 2, (d + 2) / 2) - np.log(d / 2) - np.log(4 * np.pi)
    out = np.where(k % 2 == 0, even, -np.inf)
    lam0 = special.gammaln(d / 2) - special.gammaln((d + 1) / 2) - np.log(2 * np.sqrt(np.pi))
    out = np.where(k == 1, -np.log(2.0 * d), out)
    return np.where(k == 0, lam0, out)


def _log_times_t(d: int, log_mu: np.ndarray) -> np.ndarray:
    """log mu_k(t f) for k = 0..len-2 from log mu_k(f), k = 0..len-1 (positive-term recurrence)."""
    k = np.arange(len(log_mu) - 1, dtype=np.float64)
    kk = np.maximum(k, 1.0)  # k = 0 handled apart: a = 0 and b = 1 (t P_0 = P_1, also for d = 2)
    a = np.where(k == 0, -np.inf, np.log(kk) - np.log(2 * kk + d - 2))
    b = np.where(k == 0, 0.0, np.log(kk + d - 2) - np.log(2 * kk + d - 2))
    lower = np.concatenate([[-np.inf], log_mu[:-2]])
    return np.logaddexp(a + lower, b + log_mu[1:])


def _add_linear(log_mu: np.ndarray, k: int, value: float) -> np.ndarray:
    """log mu after mu_k += value (only used at k = 0, 1, where mu_k is a moderate number)."""
    out = log_mu.copy()
    with np.errstate(divide="ignore"):
        out[k] = np.log(abs(np.exp(log_mu[k]) + value))
    return out


def _log_abs_gegenbauer(D: int, k_max: int, t: np.ndarray) -> np.ndarray:
    """log |P_k(t)| in dimension D, k = 0..k_max, shape (k_max + 1, len(t)): the recurrence of
    `gegenbauer` with a per-node power-of-two rescaling, so values far below 1e-308 (P_k(0) at
    large D) keep their full relative precision."""
    out = np.empty((k_max + 1, t.size))
    p0, p1, log_scale = np.ones_like(t), t.copy(), np.zeros_like(t)
    with np.errstate(divide="ignore"):
        out[0] = 0.0
        if k_max >= 1:
            out[1] = np.log(np.abs(t))
        for k in range(1, k_max):
            p0, p1 = p1, ((2 * k + D - 2) * t * p1 - k * p0) / (k + D - 2)
            small = np.maximum(np.abs(p0), np.abs(p1)) < 2.0**-500
            if small.any():
                p0, p1 = np.where(small, p0 * 2.0**500, p0), np.where(small, p1 * 2.0**500, p1)
                log_scale = log_scale - small * (500 * np.log(2.0))
            out[k + 1] = np.log(np.abs(p1)) + log_scale
    return out


@functools.lru_cache(maxsize=16)
def _half_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive nodes and their weights of the 2n-point Gauss-Legendre rule (even integrands)."""
    x, w = special.roots_legendre(2 * n)
    return x[n:], 2.0 * w[n:]


def _bias_nodes(d: int, k_max: int) -> int:
    # the integrand is a degree-2k polynomial times a bump of width ~ 1/sqrt(d): checked
    # converged to 1e-12 (against twice the nodes) for d in [2, 10^4], k <= 1000
    return (k_max + int(16 * np.sqrt(d)) + 64) // 2 + 1


def _log_mixture(d: int, k_max: int, order: int) -> np.ndarray:
    """log mu_k, k = order..k_max, of the bias arc-cosine kernel of order 0 (kappa0((1+u)/2),
    order = 1 below) or 1 (2 kappa1((1+u)/2), order = 2 below); see `eigenvalues`.

    With w = r theta (theta uniform on S^{d-1}) and s = b / r, the unit step (ReLU) of
    <w, x> + b is that of <theta, x> + s (times r), so by Funk-Hecke mu_k = E[r^{2 order - 2}
    lambda_k(s)^2]: an integral of a square. By Rodrigues' formula, for k >= order, |s| < 1
    (lambda_k = 0 for |s| >= 1),
        order 1: lambda_k(s) = c_d/(d - 1) (1 - s^2)^((d-1)/2) P_{k-1}^{(d+2)}(s),
                 s has density Gamma((d+1)/2)/(sqrt(pi) Gamma(d/2)) (1 + s^2)^(-(d+1)/2);
        order 2: lambda_k(s) = c_d/(d^2 - 1) (1 - s^2)^((d+1)/2) P_{k-2}^{(d+4)}(s),
                 r^2 weighs s by 2 Gamma((d+3)/2)/(sqrt(pi) Gamma(d/2)) (1 + s^2)^(-(d+3)/2),
    up to the sign of s, which the square removes. Every quadrature term is >= 0, summed in log
    space: no cancellation at any d or k.
    """
    x, w = _half_legendre(_bias_nodes(d, k_max))
    if order == 1:
        log_norm = special.gammaln((d + 1) / 2) - 2 * np.log(d - 1.0)
        power, weight = d - 1, (d + 1) / 2
    else:
        log_norm = np.log(2.0) + special.gammaln((d + 3) / 2) - 2 * np.log(d * d - 1.0)
        power, weight = d + 1, (d + 3) / 2
    log_norm += 2 * _log_c(d) - special.gammaln(d / 2) - 0.5 * np.log(np.pi)
    base = np.log(w) + power * np.log1p(-x * x) - weight * np.log1p(x * x)
    log_P = _log_abs_gegenbauer(d + 2 * order, k_max - order, x)
    return special.logsumexp(2 * log_P + base, axis=1) + log_norm


def _log_bias_kernels(d: int, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """log mu_k, k = 0..k_max, of kappa0((1+u)/2) and 2 kappa1((1+u)/2) (k_max >= 1)."""
    step = lambda u: kappa0((np.asarray(u) + 1.0) / 2.0)
    relu = lambda u: 2.0 * kappa1((np.asarray(u) + 1.0) / 2.0)
    n = int(max(64, 34 + 8 * np.sqrt(d)))
    # k < order: moderate values (mu_0, mu_1 of kernels with k(1) = O(1)), quadrature suffices
    low_step = _quadrature(step, d, 0, n)[0]
    low_relu = _quadrature(relu, d, 1, n)[0]
    log_step = np.concatenate([np.log(low_step), _log_mixture(d, k_max, 1)])
    log_relu = np.concatenate([np.log(low_relu), _log_mixture(d, k_max, 2)])
    return log_step, log_relu[: k_max + 1]


def eigenvalues(
    kernel: Kernel | str,
    d: int,
    k_max: int,
    alpha: float = 0.0,
    bias: bool = False,
    train_bias: bool = True,
) -> Spectrum:
    """mu_0..mu_{k_max} on S^{d-1} of 'ntk-first-layer' (u kappa0), 'ntk-both-layers'
    (u kappa0 + kappa1) or 'relu-nngp' (kappa1), with leaky slope `alpha` (0 = ReLU) and
    optionally a bias b ~ N(0, 1) (trained with the first layer unless train_bias=False); the
    kernels are `kernel_fn(kernel, alpha, bias, train_bias)`.

    Everything is in log space (betaln/gammaln), all combinations are sums of non-negative terms.
    Leaky versions: (1 - alpha)^2 times the ReLU spectrum plus alpha/d at k = 1 for each u term
    (mu_1(u) = 1/d), plus alpha at k = 0 for each bias 1. Without a bias, odd levels k >= 3 are
    exact zeros and the eigenvalues are closed forms. With a bias every level is positive; the
    arc-cosine parts are one-dimensional integrals of squares (`_log_mixture`), by Gauss-Legendre
    with k_max + 16 sqrt(d) + 64 nodes (relative error < 1e-11 for d <= 10^4, k <= 1000).
    """
    kernel = _as_kernel(kernel)
    if int(d) != d or d < 2:
        raise ValueError(f"d must be an integer >= 2, got {d}")
    if int(k_max) != k_max or k_max < 0:
        raise ValueError(f"k_max must be an integer >= 0, got {k_max}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    d, k_max = int(d), int(k_max)
    k = np.arange(k_max + 2)
    if bias:
        log_k0, log_nngp = _log_bias_kernels(d, k_max + 1)
        log_nngp = log_nngp[:-1]
        log_first = _log_times_t(d, log_k0)  # u kappa0((1+u)/2)
        if train_bias:
            log_first = np.logaddexp(log_first, log_k0[:-1])  # (u + 1) kappa0((1+u)/2)
    else:
        log_first = _log_times_t(d, 2 * _log_lambda_step(d, k))  # u kappa0
        log_nngp = np.log(d) + 2 * _log_lambda_relu(d, k[:-1])  # kappa1
    scale = 2 * np.log(abs(1.0 - alpha)) if alpha != 1.0 else -np.inf
    if kernel == Kernel.NTK_FIRST_LAYER:
        log_mu = log_first + scale
        n_u, n_one = 1, int(bias and train_bias)
    elif kernel == Kernel.RELU_NNGP:
        log_mu = log_nngp + scale
        n_u, n_one = 1, int(bias)
    else:
        log_mu = np.logaddexp(log_first, log_nngp) + scale
        n_u, n_one = 2, int(bias and train_bias) + int(bias)
    if alpha != 0.0:
        log_mu = _add_linear(log_mu, 0, n_one * alpha)
        if k_max >= 1:
            log_mu = _add_linear(log_mu, 1, n_u * alpha / d)
    # subnormal results would carry few significant digits: report them as 0 (log stays exact)
    mu = np.where(
        log_mu >= np.log(np.finfo(np.float64).tiny), np.exp(np.maximum(log_mu, -745.0)), 0.0
    )
    return Spectrum(k[:-1], mu, log_mu)


# --------------------------------------------------------------------------- checks


def _log_abs(eigs) -> np.ndarray:
    if isinstance(eigs, Spectrum):
        return np.asarray(eigs.log_eigenvalue, dtype=np.float64)
    mu = np.asarray(eigs.eigenvalue if isinstance(eigs, QuadratureSpectrum) else eigs, np.float64)
    with np.errstate(divide="ignore"):
        return np.log(np.abs(mu))


def _sign(eigs) -> np.ndarray:
    if isinstance(eigs, Spectrum):
        return np.ones_like(eigs.log_eigenvalue)
    mu = np.asarray(eigs.eigenvalue if isinstance(eigs, QuadratureSpectrum) else eigs, np.float64)
    return np.sign(mu)


class TraceCheck(NamedTuple):
    """partial_sums (K,) of sum_{j<=k} N(d,j) mu_j; tail_estimate: remaining sum extrapolated from
    a power-law fit of the last two nonzero terms (nan if it cannot be fitted); total = last
    partial sum + tail_estimate; target = k(1) if given (else nan)."""

    partial_sums: np.ndarray
    tail_estimate: float
    total: float
    target: float


def trace_identity(eigs, d: int, kernel_at_one: float | None = None) -> TraceCheck:
    """Trace identity sum_k N(d, k) mu_k = k(1), partial sums plus an extrapolated tail.

    `eigs`: a Spectrum, QuadratureSpectrum or array mu_0..mu_K. The tail assumes the nonzero terms
    N mu_k ~ C k^(-p) (p > 1, as for the ReLU kernels, where p = 2) spaced `step` levels apart
    (2 when odd levels vanish): tail ~ term_K (K / step) / (p - 1), valid for large K.
    """
    log_mu = _log_abs(eigs)
    k = np.arange(len(log_mu))
    with np.errstate(over="ignore", under="ignore"):
        terms = _sign(eigs) * np.exp(log_multiplicity(d, k) + log_mu)
    partial = np.cumsum(terms)
    nz = np.flatnonzero((terms > 0) & (k > 0))
    tail = np.nan
    if len(nz) >= 2:
        k1, k2 = nz[-2], nz[-1]
        p = -(np.log(terms[k2]) - np.log(terms[k1])) / (np.log(k2) - np.log(k1))
        if p > 1:
            tail = terms[k2] * (k2 / (k2 - k1)) / (p - 1)
    target = np.nan if kernel_at_one is None else float(kernel_at_one)
    return TraceCheck(partial, float(tail), float(partial[-1] + np.nan_to_num(tail)), target)


def mercer(eigs, d: int, t) -> np.ndarray:
    """Mercer reconstruction k(t) ~ sum_k N(d, k) mu_k P_k(t), shape of t.

    N(d, k) mu_k is formed as exp(log N + log mu) so neither factor overflows at large d.
    """
    log_mu = _log_abs(eigs)
    k = np.arange(len(log_mu))
    with np.errstate(over="ignore", under="ignore"):
        coef = _sign(eigs) * np.exp(log_multiplicity(d, k) + log_mu)
    P = gegenbauer(d, len(log_mu) - 1, t)
    return np.tensordot(coef, P, axes=1)


# --------------------------------------------------------------------------- empirical side


class LevelFit(NamedTuple):
    """Eigenvalues of an empirical Gram / n grouped into the degree clusters of mu_k."""

    k: np.ndarray  # degree levels with mu_k > 0, in decreasing order of mu_k
    multiplicity: np.ndarray  # N(d, k): the size of each cluster
    eigenvalue: np.ndarray  # mu_k
    empirical_mean: np.ndarray  # mean of the cluster's empirical eigenvalues
    rel_error: np.ndarray  # |empirical_mean - mu_k| / mu_k
    sorted_empirical: np.ndarray  # all empirical eigenvalues of K / n, decreasing


def empirical_levels(K_nxn, mu_k, d: int) -> LevelFit:
    """Group the eigenvalues of K/n (K the Gram of n uniform points on S^{d-1}) into clusters:
    the levels are taken in decreasing order of mu_k (so odd zero levels come last and are left
    out), each claiming the next N(d, k) sorted eigenvalues, as long as eigenvalues remain.

    mu_k: a Spectrum (from `eigenvalues`) or an array of mu_0..mu_K on S^{d-1}. As n grows the
    cluster means converge to mu_k (levels with N(d, k) comparable to n converge last).
    """
    K = np.asarray(K_nxn, np.float64)
    lam = np.linalg.eigvalsh(0.5 * (K + K.T)) / K.shape[0]
    return levels_of(lam, mu_k, d)


def levels_of(eigenvalues, mu_k, d: int) -> LevelFit:
    """`empirical_levels` from eigenvalues of K / n already computed: all n of them, or only the
    largest (from an iterative solver), then only the clusters that fit entirely among them."""
    lam = np.sort(np.asarray(eigenvalues, np.float64))[::-1]
    n = lam.size
    mu = np.asarray(mu_k.eigenvalue if isinstance(mu_k, Spectrum) else mu_k, np.float64)
    levels = np.argsort(-mu, kind="stable")
    levels = levels[mu[levels] > 0]
    ks, mult, means = [], [], []
    start = 0
    for k in levels:
        m = int(multiplicity(d, int(k)))
        if start + m > n:
            break
        ks.append(int(k))
        mult.append(m)
        means.append(lam[start : start + m].mean())
        start += m
    ks, mult, means = np.array(ks, int), np.array(mult, int), np.array(means)
    target = mu[ks]
    return LevelFit(ks, mult, target, means, np.abs(means - target) / target, lam)
