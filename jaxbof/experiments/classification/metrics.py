"""Errors, margins, SNR and the theory quantities of Karhadkar et al. (NeurIPS 2024).

Device functions (JAX, one model; the sweep vmaps them) take the trained network only through
its second moments WWt_mxm = W W^T and Wv_m = W v: a test point x = sqrt(gamma) y v +
sqrt(1-gamma) z enters the network only through W x, and W z ~ N(0, W (I - v v^T) W^T / d).
Sampling that M-dimensional Gaussian is exact in distribution and costs O(M^2) per test point
instead of O(M d), so Monte Carlo test errors are cheap even for d in the thousands.

Host functions (NumPy/SciPy, float64) cover the max-margin linear classifier and closed forms
of tiny probabilities.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.optimize

from jaxbof.model import leaky_relu, network_from_preacts, predict

# ----------------------------------------------------------------------------- device side


def gram_moments(C_mxn, G_nxn, H0_nxm, S0_mxm, W0v_m, Xv_n):
    """W W^T and W v for W = W_0 + C X, from Gram quantities only (no d-sized array).

    W W^T = W_0 W_0^T + C H_0 + H_0^T C^T + C G C^T,  W v = W_0 v + C X v.
    """
    CH = C_mxn @ H0_nxm
    WWt = S0_mxm + CH + CH.T + C_mxn @ G_nxn @ C_mxn.T
    return 0.5 * (WWt + WWt.T), W0v_m + C_mxn @ Xv_n


def direct_moments(W_mxd, v_d):
    return W_mxd @ W_mxd.T, W_mxd @ v_d


class WeightStats(NamedTuple):
    w_norm: jax.Array  # ||W||_F
    A_1: jax.Array  # f(W, v)
    A_m1: jax.Array  # -f(W, -v)
    A_min: jax.Array
    z_norm: jax.Array  # ||Z||_F, Z the rows of W projected orthogonally to v
    snr: jax.Array  # A_min / ||Z||_F (upper-bound SNR, Lemma D.2)
    A_lin: jax.Array  # sum_j a_j <w_j, v>
    zlin_norm: jax.Array  # ||sum_j a_j z_j||
    snr_lin: jax.Array  # A_lin / ||z_lin|| (lower-bound SNR)


def weight_stats(WWt_mxm, Wv_m, a_m, alpha) -> WeightStats:
    """Signal/noise decomposition w_j = (w_j . v) v + z_j of the trained first layer."""
    w_norm = jnp.sqrt(jnp.trace(WWt_mxm))
    A_1 = leaky_relu(Wv_m, alpha) @ a_m
    A_m1 = -(leaky_relu(-Wv_m, alpha) @ a_m)
    ZZt = WWt_mxm - jnp.outer(Wv_m, Wv_m)
    z_norm = jnp.sqrt(jnp.maximum(jnp.trace(ZZt), 0.0))
    A_min = jnp.minimum(A_1, A_m1)
    A_lin = a_m @ Wv_m
    zlin = jnp.sqrt(jnp.maximum(a_m @ ZZt @ a_m, 0.0))
    return WeightStats(w_norm, A_1, A_m1, A_min, z_norm, A_min / z_norm, A_lin, zlin, A_lin / zlin)


def test_error_mc(key, WWt_mxm, Wv_m, a_m, alpha, gamma, d, num: int):
    """Monte Carlo test error on `num` fresh clean points, sampled in the M-dim projection W x.

    Equal in distribution to sampling x in R^d (see the module docstring and the tests). One
    model, for direct use; it factors Sigma with jnp.linalg.eigh, a library (LAPACK) kernel on
    CPU. The sweep factors on the host instead (`noise_factor`) and calls
    `test_error_mc_factor`, so that its device programs are pure XLA (engine.py: Devices).
    """
    Sigma = (WWt_mxm - jnp.outer(Wv_m, Wv_m)) / d
    evals, U = jnp.linalg.eigh(0.5 * (Sigma + Sigma.T))
    S = (U * jnp.sqrt(jnp.maximum(evals, 0.0))[None, :]) @ U.T
    return test_error_mc_factor(key, S, Wv_m, a_m, alpha, gamma, num)


def noise_factor(WWt_mxm, Wv_m, d) -> np.ndarray:
    """The symmetric PSD square root S of Sigma = (W W^T - (W v)(W v)^T) / d, the covariance of
    W z (host, float64). The square root is unique, so the test points drawn from it do not
    depend on how an eigensolver orders or signs its eigenvectors."""
    WWt, Wv = np.asarray(WWt_mxm, np.float64), np.asarray(Wv_m, np.float64)
    Sigma = (WWt - np.outer(Wv, Wv)) / float(d)
    evals, U = np.linalg.eigh(0.5 * (Sigma + Sigma.T))
    return (U * np.sqrt(np.maximum(evals, 0.0))[None, :]) @ U.T


def test_error_mc_factor(key, S_mxm, Wv_m, a_m, alpha, gamma, num: int):
    """Monte Carlo test error on `num` fresh clean points from the symmetric factor S of W z's
    covariance (`noise_factor`): W x = sqrt(gamma) y W v + sqrt(1 - gamma) S eps, eps ~ N(0, I_M).
    Matrix products and random draws only (no library kernel)."""
    y_key, e_key = jax.random.split(key)
    y = jnp.where(jax.random.bernoulli(y_key, shape=(num,)), 1.0, -1.0)
    eps = jax.random.normal(e_key, (num, Wv_m.shape[0]), dtype=S_mxm.dtype)
    H = jnp.sqrt(gamma) * y[:, None] * Wv_m[None, :] + jnp.sqrt(1.0 - gamma) * eps @ S_mxm
    f = network_from_preacts(H, a_m, alpha)
    return jnp.mean(predict(f) != y)


def error_rate(f_n, y_n, mask_n):
    """Fraction of real samples misclassified (f > 0 predicts +1)."""
    wrong = (predict(f_n) != y_n) & mask_n
    return jnp.sum(wrong) / jnp.sum(mask_n)


# ----------------------------------------------------------------------------- host side


class MaxMargin(NamedTuple):
    norm: float  # ||w*||, nan where not computed
    alpha: np.ndarray  # dual variables, w* = X^T (yhat * alpha)
    min_margin: float  # min_i yhat_i <w*, x_i>, >= 1 up to solver accuracy
    ok: bool  # separable and solved


def max_margin(G_nxn, y_n, *, tol: float = 1e-6) -> MaxMargin:
    """Hard-margin linear classifier w* = argmin ||w|| s.t. y_i <w, x_i> >= 1, from the Gram matrix.

    Dual: min_{alpha >= 0} 1/2 alpha^T Q alpha - 1^T alpha with Q = diag(y) G diag(y). With
    Q = L L^T this is the non-negative least-squares problem min ||L^T alpha - L^{-1} 1||, solved
    exactly by the Lawson-Hanson active-set method (scipy.optimize.nnls) in float64;
    ||w*||^2 = alpha^T Q alpha. Needs Q positive definite (linearly independent inputs, a.s. when
    d >= n); otherwise returns ok=False and nan.
    """
    G = np.asarray(G_nxn, np.float64)
    y = np.asarray(y_n, np.float64)
    Q = y[:, None] * G * y[None, :]
    n = len(y)
    try:
        L = np.linalg.cholesky(Q)
    except np.linalg.LinAlgError:
        return MaxMargin(math.nan, np.full(n, np.nan), math.nan, False)
    b = scipy.linalg.solve_triangular(L, np.ones(n), lower=True)
    alpha, _ = scipy.optimize.nnls(L.T, b, maxiter=50 * n)
    margins = Q @ alpha
    min_margin = float(margins.min())
    norm = float(np.sqrt(max(alpha @ margins, 0.0)))
    return MaxMargin(norm, alpha, min_margin, bool(min_margin >= 1.0 - tol))


def linear_test_error(a_v, z_norm, gamma, d) -> float:
    """Closed-form test error of a linear classifier w = a_v v + z (z orthogonal to v):
    P(error) = Phi(-sqrt(gamma d / (1 - gamma)) a_v / ||z||), in float64 (tiny values kept)."""
    if z_norm == 0.0:
        return 0.0 if a_v > 0 else 1.0
    t = math.sqrt(gamma * d / (1.0 - gamma)) * a_v / z_norm
    return 0.5 * math.erfc(t / math.sqrt(2.0))


def max_margin_linear_error(mm: MaxMargin, y_n, Xv_n, gamma, d) -> float:
    """Closed-form test error of the max-margin linear classifier (the linear baseline)."""
    if not mm.ok:
        return math.nan
    a_v = float(np.sum(mm.alpha * np.asarray(y_n, np.float64) * np.asarray(Xv_n, np.float64)))
    z_norm = math.sqrt(max(mm.norm**2 - a_v**2, 0.0))
    return linear_test_error(a_v, z_norm, gamma, d)


# ----------------------------------------------------------------------------- theory ratios
# The theorems hold with unspecified absolute constants C. We report the constant each
# measurement implies; a theorem is consistent with the data when these stay bounded over a grid.


def implied_constants(*, w_norm, wstar_norm, steps, eta, alpha, width, gamma, k, snr, d):
    """Implied constants of Thm 3.1 (norm and steps), Lemma B.3 and Lemma D.2 (normalised SNR).

    m = width / 2 (the paper's network has 2m neurons).
    """
    m = width / 2.0
    out = {
        # Thm 3.1: ||W||_F <= C ||w*|| / (alpha sqrt m)
        "thm31_norm_C": w_norm * alpha * math.sqrt(m) / wstar_norm,
        # Thm 3.1: T <= C ||w*||^2 / (eta alpha^2 m)
        "thm31_steps_C": steps * eta * alpha**2 * m / wstar_norm**2,
        # Lemma B.3: ||w*|| <= C sqrt(1/gamma + k/(1-gamma))
        "lemB3_C": wstar_norm / math.sqrt(1.0 / gamma + k / (1.0 - gamma))
        if gamma > 0
        else math.nan,
        # Lemma D.2: error <= eps once snr >= C sqrt((1-gamma) M log(1/eps) / (gamma d));
        # we report snr / sqrt((1-gamma) M / (gamma d)).
        "snr_normalized": snr / math.sqrt((1.0 - gamma) * width / (gamma * d))
        if gamma > 0
        else math.nan,
    }
    return out


def fit_exponential_rate(d_over_n, errors):
    """Least-squares fit of log(error) = log(A) - C d/n over points with error > 0.

    Returns (C, A, number of points used). Cor. 3.2.1 / Thm 3.3 predict exp(-C d/n) behaviour.
    """
    x = np.asarray(d_over_n, np.float64)
    e = np.asarray(errors, np.float64)
    keep = np.isfinite(e) & (e > 0)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return math.nan, math.nan, int(keep.sum())
    slope, intercept = np.polyfit(x[keep], np.log(e[keep]), 1)
    return float(-slope), float(math.exp(intercept)), int(keep.sum())
