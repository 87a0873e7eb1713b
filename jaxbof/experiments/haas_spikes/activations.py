"""From a dot-product kernel to the activation that realises it (Haas et al. 2023, "Mind the
spikes", Sec. "From a kernel to an activation"). NumPy/SciPy only, float64, no JAX.

A dot-product kernel on the unit sphere with a power series k(t) = sum_k a_k t^k (a_k >= 0,
t = <x, x'>) is the NNGP kernel of the activation phi = sum_k c_k h_k, with h_k = He_k / sqrt(k!)
the normalised probabilists' Hermite polynomials, because for standard normals (u, v) of
correlation t Mehler's formula gives E[h_j(u) h_k(v)] = delta_jk t^k:

    NNGP:  E[phi(u) phi(v)] = sum_k c_k^2 t^k,                so |c_k| = sqrt(a_k).

As the NTK of a two-layer bias-free network f(x) = m^(-1/2) sum_j v_j phi(<w_j, x>) in standard
scaling with both layers trained, Theta(t) = E[phi(u) phi(v)] + t E[phi'(u) phi'(v)]; with
h_k' = sqrt(k) h_{k-1}, phi' = sum_k c_k sqrt(k) h_{k-1}, so E[phi' phi'] = sum_k c_k^2 k t^(k-1):

    NTK:   Theta(t) = sum_k c_k^2 t^k + t sum_k k c_k^2 t^(k-1) = sum_k (k + 1) c_k^2 t^k,
           so |c_k| = sqrt(a_k / (k + 1)).

The Gaussian kernel exp(-||x - x'||^2 / gamma) = exp(-(2 - 2t) / gamma) on the sphere has

    a_k = e^(-2/gamma) (2/gamma)^k / k!,

the Poisson(2/gamma) probabilities (so sum_k a_k = k(1) = 1); for gamma = 0.01 they peak near
k = 200 and a_1000 ~ e^(-814) underflows float64. Everything is therefore computed in log space
(`gammaln`) and returned as log a_k or log |c_k| (-inf where a_k = 0). The spiky-smooth kernel
k_smooth + rho k_spike has a_k = a_k^smooth + rho a_k^spike (`spiky_smooth`, by logaddexp).

Only the magnitudes are fixed by the kernel: any signs s_k = +-1 give the same NNGP/NTK. The
published code draws them at random (`random_signs`). `evaluate` sums phi(x) = sum_k s_k |c_k|
h_k(x) by the three-term recurrence of the h_k; `nngp` and `ntk` sum the kernels back for checks.

The published networks do not use this exact map: they use He scaling, trained biases and the
simple activation relu(x) + (sin(w x) + cos(w x)) / w (w = 100). `published_nngp` gives that
activation's NNGP kernel in closed form: the ReLU arc-cosine kernel plus w^(-2) exp(-w^2 (1 - t)),
i.e. a Gaussian spike of gamma = 2 / w^2 and weight rho = 1 / w^2, plus a cross term
(see its docstring) -- a spiky-smooth kernel, but with a ReLU smooth part, not a Gaussian one.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import special

__all__ = [
    "KERNELS",
    "evaluate",
    "hermite_coefficients",
    "hermite_magnitudes",
    "log_power_series",
    "nngp",
    "ntk",
    "published_nngp",
    "random_signs",
    "spiky_smooth",
]

KERNELS = ("gaussian",)  # kernels with a closed-form power series on the sphere


def _check_gamma(gamma, name: str = "gamma") -> float:
    g = float(gamma)
    if not (np.isfinite(g) and g > 0):
        raise ValueError(f"{name} = {gamma!r} is not allowed: it must be > 0 and finite")
    return g


def _check_k_max(k_max, name: str = "k_max") -> int:
    if isinstance(k_max, bool) or not isinstance(k_max, numbers.Integral) or k_max < 0:
        raise ValueError(f"{name} = {k_max!r} is not allowed: it must be an integer >= 0")
    return int(k_max)


def log_power_series(kernel, gamma=None, k_max=None) -> np.ndarray:
    """log a_k, k = 0..k_max (shape (k_max + 1,)), of k(t) = sum_k a_k t^k on the unit sphere.

    kernel = "gaussian": exp(-||x - x'||^2 / gamma) = exp(-(2 - 2t) / gamma), in closed form
    log a_k = -2/gamma + k log(2/gamma) - log k!; gamma (> 0, finite) and k_max (int >= 0) are
    required. Its absolute error is a few eps times the largest term, k |log(2/gamma)| + log k!:
    a relative error of a_k below 2e-12 for k <= 1000 (9e-13 for |c_k| against mpmath at
    gamma = 0.01 and 1).
    kernel = an array of the coefficients a_k themselves (finite, >= 0; a_k = 0 gives -inf):
    any dot-product kernel through its power series. gamma must be None; k_max, if given,
    truncates the series or pads it with zeros.
    """
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(
                f"kernel = {kernel!r} is not known: the known kernels are "
                f"{', '.join(KERNELS)} (or pass an array of coefficients a_k)"
            )
        if gamma is None or k_max is None:
            raise ValueError(f"kernel = {kernel!r} needs gamma and k_max")
        g = _check_gamma(gamma)
        k = np.arange(_check_k_max(k_max) + 1, dtype=np.float64)
        lam = 2.0 / g  # the Poisson rate: a_k = Poisson(k; 2/gamma)
        return k * np.log(lam) - lam - special.gammaln(k + 1.0)
    if gamma is not None:
        raise ValueError(f"gamma = {gamma!r} is not used with explicit coefficients: pass None")
    a = np.asarray(kernel, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"coefficients must be a non-empty 1-D array a_k, got shape {a.shape}")
    bad = ~(np.isfinite(a) & (a >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"coefficient a_{i} = {a[i]!r} is not allowed: every a_k must be finite and >= 0"
        )
    if k_max is not None:
        n = _check_k_max(k_max) + 1
        a = np.concatenate([a[:n], np.zeros(max(0, n - a.size))])
    with np.errstate(divide="ignore"):  # log 0 = -inf is the intended value of a zero a_k
        return np.log(a)


def _check_log(log_x, name: str) -> np.ndarray:
    x = np.asarray(log_x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError(
            f"{name} must hold finite values or -inf (a zero coefficient), "
            f"got {x[np.isnan(x) | np.isposinf(x)][0]!r}"
        )
    return x


def spiky_smooth(log_smooth, log_spike, rho) -> np.ndarray:
    """log a_k of the spiky-smooth kernel k_smooth + rho k_spike (shape (k_max + 1,)).

    a_k = a_k^smooth + rho a_k^spike = exp(logaddexp(log a_k^smooth, log rho + log a_k^spike)),
    exact in log space, for two series of the same length (from `log_power_series`), e.g.
    spiky_smooth(log_power_series("gaussian", 1, K), log_power_series("gaussian", 0.01, K), 0.1).
    rho must be > 0 and finite.
    """
    s = _check_log(log_smooth, "log_smooth")
    p = _check_log(log_spike, "log_spike")
    if s.shape != p.shape:
        raise ValueError(
            f"log_smooth and log_spike must have the same length, got {s.size} and {p.size}"
        )
    r = float(rho)
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"rho = {rho!r} is not allowed: it must be > 0 and finite")
    return np.logaddexp(s, np.log(r) + p)


def hermite_magnitudes(log_a, ntk: bool = False) -> np.ndarray:
    """log |c_k| (shape (k_max + 1,)) of the activation phi = sum_k c_k h_k whose NNGP kernel
    (ntk=False: |c_k| = sqrt(a_k)) or two-layer bias-free NTK (ntk=True: |c_k| = sqrt(a_k / (k+1)),
    see the module docstring) is sum_k a_k t^k, given log a_k. -inf where a_k = 0."""
    la = _check_log(log_a, "log_a")
    k = np.arange(la.size, dtype=np.float64)
    return 0.5 * (la - np.log1p(k)) if ntk else 0.5 * la


def hermite_coefficients(kernel, gamma=None, k_max=None, ntk: bool = False) -> np.ndarray:
    """log |c_k|, k = 0..k_max: `hermite_magnitudes(log_power_series(kernel, gamma, k_max), ntk)`.

    E.g. hermite_coefficients("gaussian", 0.01, 1000) is finite everywhere: log |c_k| = -100 at
    k = 0, about -1.8 near k = 200 and -407 at k = 1000 (where a_k itself underflows)."""
    return hermite_magnitudes(log_power_series(kernel, gamma, k_max), ntk)


def random_signs(k_max: int, seed: int) -> np.ndarray:
    """Signs s_k = +-1 (float64, shape (k_max + 1,)), independent and uniform, from
    np.random.default_rng(seed): as in the published code, which draws the signs at random."""
    n = _check_k_max(k_max) + 1
    return np.where(np.random.default_rng(seed).integers(0, 2, size=n) == 1, 1.0, -1.0)


def evaluate(x, log_c, signs, derivative: bool = False) -> np.ndarray:
    """phi(x) = sum_k s_k |c_k| h_k(x) (or, derivative=True, phi'(x) = sum_k s_k |c_k| sqrt(k)
    h_{k-1}(x)) on an array x of any shape (returns its shape), with |c_k| = exp(log_c[k]).

    The normalised Hermite polynomials come from the recurrence
    h_0 = 1, h_1 = x, h_{k+1} = (x h_k - sqrt(k) h_{k-1}) / sqrt(k + 1), never from He_k and k!
    separately (those overflow by k ~ 170). By Cramer's inequality |h_k(x)| <= 1.09 e^(x^2/4) for
    every k, so no h_k overflows for |x| < 50, and a term is at most |c_k| e^(x^2/4): terms whose
    |c_k| underflows to 0 contribute nothing measurable. Meant for |x| up to a few units (the
    pre-activations are standard normal): the rounding error is about k_max eps e^(x^2/4)
    sum_k |c_k| in absolute terms (below 1e-12 for |x| <= 3, k_max = 1000, gamma = 0.01 against
    mpmath), growing like e^(x^2/4) beyond. The series is truncated at k_max: choose k_max well
    past the bulk of the a_k (for the Gaussian kernel 2/gamma + 10 sqrt(2/gamma) + 20 is ample).
    """
    lc = _check_log(log_c, "log_c")
    s = np.asarray(signs, dtype=np.float64)
    if s.shape != lc.shape:
        raise ValueError(f"signs must have the shape of log_c {lc.shape}, got {s.shape}")
    if not np.all(np.abs(s) == 1.0):
        raise ValueError("signs must be +1 or -1")
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    with np.errstate(under="ignore"):  # a |c_k| or term that underflows is negligible, see above
        c = s * np.exp(lc)
        h_prev, h = np.zeros_like(x), np.ones_like(x)  # h_{-1} = 0, h_0 = 1
        for k in range(lc.size):
            if derivative:
                # h_k' = sqrt(k) h_{k-1}: the k-th term of phi' uses h_{k-1}
                if k > 0 and c[k] != 0.0:
                    out += c[k] * np.sqrt(k) * h_prev
            elif c[k] != 0.0:
                out += c[k] * h
            h_prev, h = h, (x * h - np.sqrt(k) * h_prev) / np.sqrt(k + 1.0)
    return out


def _kernel_sum(t, log_w) -> np.ndarray:
    """sum_k exp(log_w[k]) t^k on t in [-1, 1] (any shape), each term formed in log space."""
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.abs(t) <= 1.0):
        raise ValueError("t must lie in [-1, 1] (t = <x, x'> on the unit sphere)")
    k = np.arange(log_w.size, dtype=np.float64)
    tt = t[..., None]
    with np.errstate(divide="ignore"):
        log_abs_t = np.log(np.abs(tt))
    # k log|t| with 0 * log 0 = 0 (t^0 = 1 even at t = 0)
    log_pow = np.where(k == 0, 0.0, k * np.where(k == 0, 0.0, log_abs_t))
    sign = np.where((tt < 0) & (k % 2 == 1), -1.0, 1.0)
    with np.errstate(under="ignore"):  # terms below 1e-308 cannot change the sum
        return np.sum(sign * np.exp(log_w + log_pow), axis=-1)


def nngp(t, log_c) -> np.ndarray:
    """The NNGP kernel sum_k c_k^2 t^k of the coefficients log |c_k|, on t in [-1, 1] (any shape;
    returns its shape). For t >= 0 every term is >= 0 and the sum is accurate to a few eps
    relatively; for t < 0 the terms alternate in sign and the error is a few eps times
    nngp(|t|) in absolute terms (e.g. the Gaussian kernel at t = -1 is e^(-4/gamma), far below
    that scale for small gamma)."""
    return _kernel_sum(t, 2.0 * _check_log(log_c, "log_c"))


def ntk(t, log_c) -> np.ndarray:
    """The two-layer bias-free NTK sum_k (k + 1) c_k^2 t^k of the coefficients log |c_k| (see the
    module docstring), on t in [-1, 1]; accuracy as for `nngp`."""
    lc = _check_log(log_c, "log_c")
    return _kernel_sum(t, 2.0 * lc + np.log1p(np.arange(lc.size, dtype=np.float64)))


def published_nngp(t, w: float = 100.0) -> np.ndarray:
    """NNGP kernel E[phi(u) phi(v)] (u, v standard normal, correlation t in [-1, 1], any shape)
    of the published activation phi(x) = relu(x) + (sin(w x) + cos(w x)) / w, in closed form,
    for the bias-free standard-scaling network (the published one uses He scaling, which doubles
    it, and trained biases). With s^2 = 1 - t^2 and a = w t:

        E[relu relu]   = (s + t (pi - arccos t)) / (2 pi)                     (arc-cosine),
        E[g(u) g(v)]   = exp(-w^2 (1 - t)) / w^2,   g = (sin + cos)(w .) / w  (the cross terms
                         sin x cos are odd under (u, v) -> (-u, -v) and vanish),
        2 E[relu(u) g(v)] = (2 / w) e^(-w^2 s^2 / 2) int_0^inf u (sin(a u) + cos(a u)) phi_N(u) du
                          = (2 / w) e^(-w^2 s^2 / 2) [a e^(-a^2/2) / 2
                                                    + (1 - sqrt(2) a D(a / sqrt(2))) / sqrt(2 pi)],

    D Dawson's function (E_z sin/cos(w (t u + s z)) = sin/cos(w t u) e^(-w^2 s^2 / 2)). So the
    simple activation has a spiky-smooth NNGP with the ReLU kernel as its smooth part and a
    Gaussian spike of gamma = 2 / w^2 and weight rho = 1 / w^2 (the cross term is at most about
    2 / (sqrt(2 pi) w^3), at t near +-1), not the kernel of the exact map above.
    """
    w = float(w)
    if not (np.isfinite(w) and w > 0):
        raise ValueError(f"w = {w!r} is not allowed: it must be > 0 and finite")
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.abs(t) <= 1.0):
        raise ValueError("t must lie in [-1, 1] (t = <x, x'> on the unit sphere)")
    s2 = np.clip(1.0 - t * t, 0.0, None)
    relu = (np.sqrt(s2) + t * (np.pi - np.arccos(t))) / (2.0 * np.pi)
    spike = np.exp(-w * w * (1.0 - t)) / (w * w)
    a = w * t
    half_line = 0.5 * a * np.exp(-0.5 * a * a) + (
        1.0 - np.sqrt(2.0) * a * special.dawsn(a / np.sqrt(2.0))
    ) / np.sqrt(2.0 * np.pi)
    cross = 2.0 / w * np.exp(-0.5 * w * w * s2) * half_line
    return relu + spike + cross
