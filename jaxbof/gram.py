"""Gram matrices of the `jaxbof.spectra` kernels on n uniform points of S^{d-1}, and their spectra.

The bridge between `spectra` (closed-form eigenvalues mu_k, host-side NumPy) and `ntk` (JAX):
the Gram is either the analytic kernel's or the empirical NTK of the width-M two-layer net at
init whose infinite-width limit is that kernel (`two_layer`); its eigenvalues are all n of them
(dense eigh), or the largest k with residuals, from the dense Gram (`top_dense`) or without ever
forming it (`top_matrix_free`: the p x p Jacobian route or LOBPCG on Gram-vector products).
`empirical_spectrum` does the whole of `jaxbof spectrum --empirical-n N` and groups the
eigenvalues of Gram / n into the degree levels of mu_k (`spectra.levels_of`).

Nothing here enables x64: the entry point does (`jax.config.update("jax_enable_x64", True)`)
before calling, so that points, weights and Grams are float64. A combination that cannot be
computed raises ValueError.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from scipy import linalg

from jaxbof import eigsolve, ntk, spectra, sphere

__all__ = [
    "EmpiricalSpectrum",
    "TwoLayerNet",
    "analytic_gram",
    "empirical_gram",
    "empirical_spectrum",
    "top_dense",
    "top_matrix_free",
    "trained_count",
    "two_layer",
]

# the analytic kernels with a matrix-free Gram-vector product (ntk.analytic_matmat)
_MATRIX_FREE_LAYERS = {
    spectra.Kernel.NTK_FIRST_LAYER: ntk.Layers.FIRST,
    spectra.Kernel.NTK_BOTH_LAYERS: ntk.Layers.BOTH,
}


class TwoLayerNet(NamedTuple):
    """A two-layer net at init and how its empirical NTK is taken (`ntk.top_eigenpairs`)."""

    params: ntk.TwoLayerParams
    apply_fn: Callable  # ntk.two_layer_apply with the net's alpha
    trainable: ntk.TwoLayerParams  # a mask: True for the trained leaves
    route: ntk.Route  # STRUCTURED (closed form) or NTVP (generic) for the matrix-free products


def two_layer(kernel, d: int, width: int, alpha: float, bias: bool, key) -> TwoLayerNet:
    """The width-`width` two-layer net at init (antisymmetric, so `width` must be even) whose
    empirical Gram approximates the analytic `kernel`: first layer (and bias) trained for
    ntk-first-layer, all for ntk-both-layers, the outer weights alone (the finite-width NNGP,
    generic route) for relu-nngp."""
    kernel = spectra.Kernel(kernel)
    params = ntk.init_two_layer(key, width, d, bias=bias)
    b = True if bias else None
    mask = {
        spectra.Kernel.NTK_FIRST_LAYER: ntk.TwoLayerParams(True, False, b),
        spectra.Kernel.NTK_BOTH_LAYERS: ntk.TwoLayerParams(True, True, b),
        spectra.Kernel.RELU_NNGP: ntk.TwoLayerParams(False, True, False if bias else None),
    }
    route = ntk.Route.NTVP if kernel == spectra.Kernel.RELU_NNGP else ntk.Route.STRUCTURED
    return TwoLayerNet(
        params, functools.partial(ntk.two_layer_apply, alpha=alpha), mask[kernel], route
    )


def trained_count(kernel, d: int, width: int, bias: bool) -> int:
    """Trained parameters p of `two_layer`'s net: the rank bound of its Gram (before the
    antisymmetric init pairs equal neurons, which halves it)."""
    kernel = spectra.Kernel(kernel)
    if kernel == spectra.Kernel.RELU_NNGP:
        return width
    return width * (d + bias + (kernel == spectra.Kernel.NTK_BOTH_LAYERS))


def _symmetric(K_nxn) -> np.ndarray:
    K_nxn = np.asarray(K_nxn)
    return 0.5 * (K_nxn + K_nxn.T)  # exactly symmetric: eigh reads one triangle


def analytic_gram(kernel, x_nxd, alpha: float, bias: bool) -> np.ndarray:
    """The n x n Gram k(<x_i, x_j>) of the analytic `kernel` on unit-norm rows, on the host in
    float64 (symmetrised)."""
    x = np.asarray(x_nxd, np.float64)
    u_nxn = np.clip(x @ x.T, -1.0, 1.0)
    np.fill_diagonal(u_nxn, 1.0)  # <x, x> = 1 exactly: rounding it to 1 - eps moves arccos by 1e-8
    return _symmetric(spectra.kernel_fn(kernel, alpha, bias)(u_nxn))


def empirical_gram(net: TwoLayerNet, x_nxd) -> np.ndarray:
    """The dense n x n empirical NTK Gram of `two_layer`'s net (symmetrised), in x's dtype."""
    route = ntk.Route.JACOBIAN if net.route is ntk.Route.NTVP else net.route
    K = ntk.empirical_ntk_fn(net.apply_fn, route=route, trainable=net.trainable)(net.params, x_nxd)
    return _symmetric(K)


def top_dense(K_nxn, k: int) -> eigsolve.TopEigen:
    """The `k` largest eigenpairs of the dense symmetric K by eigh (decreasing), residuals
    ||K v - lambda v|| from K."""
    n = K_nxn.shape[0]
    lam, V = linalg.eigh(K_nxn, subset_by_index=(n - k, n - 1))
    lam, V = lam[::-1], V[:, ::-1]
    resid = eigsolve.residual_norms(lambda W: K_nxn @ W, lam, V)
    return eigsolve.TopEigen(lam, V, resid, 0, True)


def top_matrix_free(
    kernel,
    x_nxd,
    k: int,
    net: TwoLayerNet | None = None,
    alpha: float = 0.0,
    bias: bool = False,
    progress: Callable | None = None,
) -> eigsolve.TopEigen:
    """The `k` largest eigenpairs of the Gram without forming it (`ntk.top_eigenpairs`): of
    `net`'s empirical NTK when given (the p x p Jacobian route when p <= n, else LOBPCG), else of
    the analytic `kernel` by LOBPCG on tile-by-tile products (relu-nngp has none: ValueError).
    `progress` goes to LOBPCG (`eigsolve.lobpcg`)."""
    if net is not None:
        return ntk.top_eigenpairs(
            x_nxd,
            k,
            params=net.params,
            apply_fn=net.apply_fn,
            trainable=net.trainable,
            route=net.route,
            progress=progress,
        )
    kernel = spectra.Kernel(kernel)
    if kernel not in _MATRIX_FREE_LAYERS:
        raise ValueError(
            f"the analytic {kernel.value} kernel has no matrix-free product; use "
            "the Gram of a finite-width net (`net`) instead"
        )
    return ntk.top_eigenpairs(
        x_nxd, k, layers=_MATRIX_FREE_LAYERS[kernel], alpha=alpha, bias=bias, progress=progress
    )


class EmpiricalSpectrum(NamedTuple):
    """Eigenvalues of the Gram / n of n uniform points, grouped into the degree levels of mu_k."""

    fit: spectra.LevelFit  # the levels that fit among the eigenvalues found (all n, or the top k)
    top: eigsolve.TopEigen | None  # the top k pairs of the Gram itself (not / n); None: all n


def empirical_spectrum(
    kernel,
    mu_k,
    d: int,
    n: int,
    *,
    alpha: float = 0.0,
    bias: bool = False,
    width: int | None = None,
    top: int | None = None,
    matrix_free: bool = False,
    seed: int = 0,
    progress: Callable | None = None,
) -> EmpiricalSpectrum:
    """The eigenvalues of Gram / n for n uniform points on S^{d-1} (from PRNGKey(seed)), grouped
    into the levels of mu_k (a `spectra.Spectrum` or mu_0..mu_K: `spectra.levels_of`).

    The Gram is the analytic `kernel`'s, or with `width` the empirical NTK of `two_layer`'s net
    (weights from fold_in(the points' key, width)). All n eigenvalues by dense eigh, or with
    `top` the largest `top` with residuals: from the dense Gram, or with `matrix_free` never
    forming it (`top_matrix_free`; `progress` reports its LOBPCG iterations).
    """
    if matrix_free and top is None:
        raise ValueError("matrix_free needs top: how many eigenvalues to find")
    key = jax.random.PRNGKey(seed)
    x_nxd = sphere.uniform(key, n, d)
    net = (
        None
        if width is None
        else two_layer(kernel, d, width, alpha, bias, jax.random.fold_in(key, width))
    )
    if matrix_free:
        found = top_matrix_free(kernel, x_nxd, top, net, alpha, bias, progress)
        lam = found.eigenvalue / n
    else:
        K_nxn = (
            analytic_gram(kernel, x_nxd, alpha, bias) if net is None else empirical_gram(net, x_nxd)
        )
        found = None if top is None else top_dense(K_nxn, top)
        lam = np.linalg.eigvalsh(K_nxn) / n if found is None else found.eigenvalue / n
    return EmpiricalSpectrum(spectra.levels_of(lam, mu_k, d), found)
