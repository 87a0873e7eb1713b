"""Measuring a regression run: the device programs a report runs (the net on test points,
the empirical NTK) and the host-side closed forms of the population and linearised flows, in
float64 (approximation, estimation and kernel-gap errors, NTK drift), one row per record."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

from jaxbof import engine as _engine
from jaxbof import ntk
from jaxbof.experiments.regression.grid import (
    Cell,
    Protocol,
    _eta,
    _noise_var,
    eigenvalues_for,
    parse_target,
    record_steps,
)
from jaxbof.experiments.regression.step import Shape, Slot, _layers
from jaxbof.model import TwoLayerParams, two_layer_apply

_EIGSH_ABOVE = 300  # ntk_drift: dense eigvalsh up to this n, scipy eigsh above


def measure_fn(W, b, a, W0, Xt):
    """(f_test (n_test,), weight_move) of one slot (engine.take): the net on the test points
    and max_j ||w_j - w_j(0)|| (device program)."""
    p = TwoLayerParams(W, a, b)
    f = two_layer_apply(p, Xt)
    move = jnp.max(jnp.sqrt(jnp.sum((W - W0) ** 2, axis=-1)))
    return f, move


def ntk_fn(W, b, a, X, *, train_outer: bool):
    """H_t (n, n): empirical NTK Gram of the trained layers at one slot's params (device)."""
    return ntk.structured_ntk(
        TwoLayerParams(W, a, b), X, layers=_layers(train_outer), train_bias=True
    )


def init_fn(p: TwoLayerParams, X, Xt, *, train_outer: bool):
    """(K0 (n, n), K_test (n_test, n), f0_train (n,), f0_test (n_test,)) of one slot: the
    empirical NTK of the trained layers at theta_0 (ntk.structured_ntk) on the training points
    and test x train, and the initial outputs (0 under the antisymmetric init). Device."""
    layers = _layers(train_outer)
    return (
        ntk.structured_ntk(p, X, layers=layers, train_bias=True),
        ntk.structured_ntk(p, Xt, X, layers=layers, train_bias=True),
        two_layer_apply(p, X),
        two_layer_apply(p, Xt),
    )


# ----------------------------------------------------------------------------- host side


def _phi(x):
    """(1 - e^{-x}) / x, = 1 at x = 0, computed stably with expm1 (float64)."""
    x = np.asarray(x, np.float64)
    safe = np.where(x == 0.0, 1.0, x)
    return np.where(np.abs(x) < 1e-12, 1.0 - 0.5 * x, -np.expm1(-safe) / safe)


def linear_prediction(t: float, n: int, lam, P_test, z, f0_test) -> np.ndarray:
    """f_t^lin on the test points: f_0 + K_tX U diag((1 - e^{-t lam/n}) / lam) U^T (y - f_0(X))
    given K = U diag(lam) U^T, P_test = K_tX U and z = U^T (y - f_0(X)) (the linearised flow
    df/dt = -(1/n) K_.X (f(X) - y); the factor -> t/n as lam -> 0, via expm1)."""
    lam = np.asarray(lam, np.float64)
    return f0_test + P_test @ (t / n * _phi(t * lam / n) * z)


def approx_error(t: float, mu_K, c_K) -> float:
    """sum_k exp(-2 t mu_k) c_k^2: ||f_t^pop - f*||^2 of the population flow from f_0 = 0."""
    mu_K, c_K = np.asarray(mu_K, np.float64), np.asarray(c_K, np.float64)
    return float(np.sum(np.exp(-2.0 * t * mu_K) * c_K**2))


def _op_norm(D) -> float:
    """||D||_op of a symmetric matrix (float64): dense eigvalsh for n <= 300, else ARPACK eigsh
    from a fixed start vector (so rows are reproducible), falling back to eigvalsh."""
    D = 0.5 * (D + D.T)
    n = D.shape[0]
    if not np.any(D):
        return 0.0
    if n > _EIGSH_ABOVE:
        try:
            ev = eigsh(
                D, k=1, which="LM", v0=np.full(n, 1.0 / math.sqrt(n)), return_eigenvectors=False
            )
            return float(np.max(np.abs(ev)))
        except (ArpackNoConvergence, ArpackError):  # the dense route
            pass
    return float(np.max(np.abs(np.linalg.eigvalsh(D))))


class _HostCell(NamedTuple):
    """Per-cell host data (float64), built at the cell's first report, dropped when it ends."""

    y: np.ndarray  # (n,)
    Y_test: np.ndarray  # (n_test, K)
    fstar_test: np.ndarray  # (n_test,)
    f0_test: np.ndarray  # (n_test,)
    c: np.ndarray  # (K,) coefficients over the experiment's degrees (0 where absent)
    present: np.ndarray  # (K,) bool
    mu: np.ndarray  # (K,) mu_k of the experiment's degrees
    lam: np.ndarray  # (n,) eigenvalues of K0
    P_test: np.ndarray  # (n_test, n) K_test U
    z: np.ndarray  # (n,) U^T (y - f_0(X))
    K0: np.ndarray  # (n, n)
    h0_norm: float  # ||K0||_op
    steps: np.ndarray  # recording steps
    eta: float


def _host_cell(
    cell: Cell, slots: Slot, s: int, degrees, protocol: Protocol, init_prog
) -> _HostCell:
    """Host data of the cell in slot s: its labels and test features, and the eigendecomposition
    K0 = U diag(lam) U^T (float64) of the empirical NTK at init (device program `init_prog`)."""
    d = slots.data
    K0, K_test, f0_train, f0_test = (
        np.asarray(x, np.float64) for x in init_prog(*_engine.take((d.init, d.X, d.X_test), s))
    )
    y, Y_test = np.asarray(d.y[s], np.float64), np.asarray(d.Y_test[s], np.float64)
    K0 = 0.5 * (K0 + K0.T)
    lam, U = scipy.linalg.eigh(K0, driver="evr")  # MRRR: several times faster than evd here
    tgt = dict(parse_target(cell.target))
    c = np.array([tgt.get(k, 0.0) for k in degrees], np.float64)
    present = np.array([k in tgt for k in degrees])
    mu = eigenvalues_for(cell, max(degrees))[list(degrees)]
    eta = _eta(cell, protocol)
    return _HostCell(
        y,
        Y_test,
        Y_test @ c,
        f0_test,
        c,
        present,
        mu,
        lam,
        K_test @ U,
        U.T @ (y - f0_train),
        K0,
        float(np.max(np.abs(lam))),
        record_steps(eta, protocol.t_max, protocol.times),
        eta,
    )


def _row(
    cell: Cell,
    hc: _HostCell,
    degrees,
    *,
    step: int,
    final: bool,
    diverged: bool,
    f_n,
    f_test,
    weight_move: float,
    ntk_drift: float,
) -> dict:
    """One row (float64): the cell's coordinates, its time t = eta * step, and the module
    docstring's measurements from the training outputs f_n and the test outputs f_test."""
    t = hc.eta * step
    n = cell.n
    decay = -np.expm1(-t * hc.mu)  # 1 - e^{-t mu_k}
    f_pop = hc.Y_test @ (decay * hc.c)
    f_lin = linear_prediction(t, n, hc.lam, hc.P_test, hc.z, hc.f0_test)
    coef = hc.Y_test.T @ f_test / len(f_test)
    row = dict(cell._asdict())
    row.update(
        eta=hc.eta,
        step=int(step),
        t=float(t),
        final=bool(final),
        diverged=bool(diverged),
        train_risk=float(np.mean((f_n - hc.y) ** 2)),
        excess_risk=float(np.mean((f_test - hc.fstar_test) ** 2)),
        approx_error=approx_error(t, hc.mu[hc.present], hc.c[hc.present]),
        estimation_error=float(np.mean((f_test - f_pop) ** 2)),
        kernel_gap=float(np.mean((f_test - f_lin) ** 2)),
        weight_move=float(weight_move),
        ntk_drift=float(ntk_drift),
        target_norm2=float(np.sum(hc.c**2)),
        noise_var=_noise_var(cell),
    )
    for j, k in enumerate(degrees):
        row[f"coef_{k}"] = float(coef[j])
        row[f"pop_coef_{k}"] = float(decay[j] * hc.c[j]) if hc.present[j] else math.nan
    return row


def _measure_name(b: Shape, n_test: int, dtype) -> str:
    return f"reg_measure_{b.d}_{b.width}_{int(b.bias)}_{n_test}_{jnp.dtype(dtype).name}"


def _init_name(b: Shape, n_test: int, dtype) -> str:
    return (
        f"reg_init_{b.n}_{b.d}_{b.width}_{int(b.bias)}_{int(b.train_outer)}_{n_test}_"
        f"{jnp.dtype(dtype).name}"
    )


def _ntk_name(b: Shape, dtype) -> str:
    return (
        f"reg_ntk_{b.n}_{b.d}_{b.width}_{int(b.bias)}_{int(b.train_outer)}_{jnp.dtype(dtype).name}"
    )


def step_flops(bucket: Shape, cell: Cell | None = None) -> float:
    """FLOPs of one GD step (its dense products): 4 n d M (X W^T and dH^T X), plus 2 n M for
    the outer-layer product A^T r when a is trained. Same for every cell of a bucket."""
    n, d, M = bucket.n, bucket.d, bucket.width
    return 4.0 * n * d * M + (2.0 * n * M if bucket.train_outer else 0.0)


def step_bytes(bucket: Shape, itemsize: int = 4) -> float:
    """Estimated bytes moved per GD step: about 5 passes over n x M arrays (write H, read it
    for the output and for the mask, write dH, read it for gW and gb), + 1 with train_outer
    (A^T r); the n x d and M x d arrays are negligible for small d."""
    passes = 5 + (1 if bucket.train_outer else 0)
    return float(passes * bucket.n * bucket.width * itemsize)
