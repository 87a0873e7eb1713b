"""Top eigenpairs of a symmetric n x n operator that is never formed (host-side, float64).

Two exact routes, both returning `TopEigen` with the residual norm ||A v - lambda v|| of every
pair (computed from a fresh product, so it checks the pair rather than restating the solver):

- `lobpcg(matmat, n, k)`: locally optimal block preconditioned conjugate gradient (Knyazev 2001)
  without preconditioner, for any product V_nxb -> A V_nxb (an NTK-vector product through
  jvp/vjp, a kernel built tile by tile, a user's function). Rayleigh-Ritz, orthogonalisation and
  the running blocks are float64 NumPy on the host; the product may run anywhere (a jitted JAX
  function) and in whatever precision it is given. Memory about 9 n b floats (b = block size),
  cost per iteration one product of b vectors plus O(n b^2).
- `from_features(rows, n, p, k)`: for a Gram A = Phi Phi^T of n x p features (an empirical NTK
  has Phi = the Jacobian, p = the number of trained parameters), the nonzero eigenvalues are
  those of the p x p matrix Phi^T Phi, accumulated over row blocks in float64 and diagonalised
  densely; v = Phi u / sqrt(lambda). Exact, no iterations, memory O(p^2 + block p), cost
  n p^2 + p^3: the route of choice when p <= n (rank(A) <= p).

Neither forms the n x n matrix, so memory grows like n (b + p), not n^2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import linalg

__all__ = ["TopEigen", "from_features", "lobpcg", "residual_norms"]


class TopEigen(NamedTuple):
    """The k largest eigenpairs: eigenvalue (k,) decreasing, eigenvector (n, k) orthonormal
    columns, residual (k,) = ||A v - lambda v||_2 from a separate product, iterations (0 for a
    direct route), converged: every residual <= tol * max(|lambda|, tiny)."""

    eigenvalue: np.ndarray
    eigenvector: np.ndarray
    residual: np.ndarray
    iterations: int
    converged: bool


def _check(n: int, k: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if int(k) != k or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n = {n}], got {k}")


def _product(matmat: Callable, V: np.ndarray) -> np.ndarray:
    out = np.asarray(matmat(V), dtype=np.float64)
    if out.shape != V.shape:
        raise ValueError(f"matmat returned shape {out.shape} for input {V.shape}")
    return out


def residual_norms(matmat: Callable, eigenvalue, eigenvector, block: int = 64) -> np.ndarray:
    """||A v_j - lambda_j v_j||_2 per pair, products of `block` columns at a time."""
    lam = np.asarray(eigenvalue, np.float64)
    V = np.asarray(eigenvector, np.float64)
    out = np.empty(V.shape[1])
    for s in range(0, V.shape[1], block):
        cols = slice(s, s + block)
        out[cols] = np.linalg.norm(_product(matmat, V[:, cols]) - V[:, cols] * lam[cols], axis=0)
    return out


def _svqb(W: np.ndarray, rtol: float):
    """T with W T orthonormal (SVQB, Stathopoulos & Wu 2002): from the eigendecomposition of
    W^T W, directions whose singular value is below rtol times the largest are dropped. BLAS-3
    only (a Gram and a small eigh), unlike a pivoted QR."""
    G = W.T @ W
    scale = np.sqrt(np.maximum(np.diag(G), np.finfo(np.float64).tiny))
    s, U = np.linalg.eigh(G / np.outer(scale, scale))
    keep = s > rtol**2 * max(s[-1], np.finfo(np.float64).tiny)
    return (U[:, keep] / np.sqrt(s[keep])) / scale[:, None]


def _orthonormalize(W: np.ndarray, *bases: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Columns of W made orthogonal to every basis (two passes of block Gram-Schmidt) and
    orthonormal among themselves (SVQB twice); columns that were (numerically) in the span are
    dropped."""
    for _ in range(2):
        for Q in bases:
            if Q is not None and Q.shape[1]:
                W = W - Q @ (Q.T @ W)
    for _ in range(2):
        if not W.shape[1]:
            break
        W = W @ _svqb(W, rtol)
    return W


def _orthonormal_pair(P: np.ndarray, AP: np.ndarray, rtol: float = 1e-8):
    """(Q, A Q) with Q orthonormal spanning the well-conditioned part of P, the image carried by
    the same transformation; (None, None) if nothing is left."""
    for _ in range(2):
        if not P.shape[1]:
            return None, None
        T = _svqb(P, rtol)
        P, AP = P @ T, AP @ T
    return (P, AP) if P.shape[1] else (None, None)


def _combine(parts, C: np.ndarray) -> np.ndarray:
    """[parts[0] parts[1] ...] @ C without concatenating the parts."""
    out, start = None, 0
    for part in parts:
        stop = start + part.shape[1]
        term = part @ C[start:stop]
        out = term if out is None else out.__iadd__(term)
        start = stop
    return out  # pyright: ignore[reportReturnType] - parts is never empty


def lobpcg(
    matmat: Callable,
    n: int,
    k: int,
    *,
    block: int | None = None,
    tol: float = 1e-8,
    max_iters: int = 500,
    seed: int = 0,
    X0=None,
    progress: Callable | None = None,
) -> TopEigen:
    """k largest eigenpairs of the symmetric operator V_nxb -> A V (see module docstring).

    block: vectors iterated together (default k + max(8, k // 4), at most n); guard vectors
    beyond k speed up convergence when the k-th eigenvalue sits inside a cluster (the sphere's
    degenerate levels). tol: a pair has converged when ||A v - theta v|| <= tol * |theta|, so
    theta is within tol |theta| of an eigenvalue of A (a relative bound for each pair; the
    eigenvalue error is usually far smaller, ~ residual^2 / gap). X0 (n, block): a start
    (default orthonormalised Gaussian columns from `seed`). If max_iters is reached first the
    result has converged=False and its residuals say how far each pair is. progress: called as
    progress(iteration, converged, k, worst) after each iteration's residuals (converged: pairs
    among the k wanted within tol; worst: their largest relative residual).
    """
    _check(n, k)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    b = min(n, block if block is not None else k + max(8, k // 4))
    if b < k:
        raise ValueError(f"block must be >= k = {k}, got {block}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, b)) if X0 is None else np.asarray(X0, np.float64).reshape(n, -1)
    X = _orthonormalize(X)
    if X.shape[1] < b:
        raise ValueError(f"X0 must have {b} linearly independent columns")
    AX = _product(matmat, X)
    theta, C = np.linalg.eigh(0.5 * (X.T @ AX + AX.T @ X))
    order = np.argsort(-theta)
    theta, X, AX = theta[order], X @ C[:, order], AX @ C[:, order]
    P = AP = None
    it, fresh = 0, True
    tiny = np.finfo(np.float64).tiny
    for it in range(1, max_iters + 1):
        R = AX - X * theta
        rnorm = np.linalg.norm(R, axis=0)
        done = rnorm <= tol * np.maximum(np.abs(theta), tiny)
        if progress is not None:
            progress(
                it,
                int(done[:k].sum()),
                k,
                float(np.max(rnorm[:k] / np.maximum(np.abs(theta[:k]), tiny))),
            )
        if done[:k].all():
            if fresh:
                break
            # the carried images drift by rounding: confirm with a fresh product before stopping
            AX, fresh = _product(matmat, X), True
            continue
        fresh = False
        # iterate only the directions still moving; converged columns stay in X (soft locking)
        W = _orthonormalize(R[:, ~done], X, P)
        if not W.shape[1]:
            break
        AW = _product(matmat, W)
        blocks, images = [X, W], [AX, AW]
        if P is not None:
            blocks.append(P)
            images.append(AP)
        # the Rayleigh-Ritz problem on S = [X W P] block by block: S and A S are never
        # concatenated (each would be another n x 3b copy)
        G = np.block([[Si.T @ ASj for ASj in images] for Si in blocks])
        G = 0.5 * (G + G.T)
        # S is orthonormal by construction (X from the last Rayleigh-Ritz, W and P orthogonalised
        # against it); rounding is checked, not assumed
        B = np.block([[Si.T @ Sj for Sj in blocks] for Si in blocks])
        if np.abs(B - np.eye(B.shape[0])).max() < 1e-12:
            vals, C = np.linalg.eigh(G)
        else:
            try:
                vals, C = linalg.eigh(G, 0.5 * (B + B.T))
            except linalg.LinAlgError:
                # P has become (numerically) dependent on X and W: restart without it
                m = X.shape[1] + W.shape[1]
                blocks, images = blocks[:2], images[:2]
                vals, C = np.linalg.eigh(G[:m, :m])
        order = np.argsort(-vals)[:b]
        theta, C = vals[order], C[:, order]
        X, AX = _combine(blocks, C), _combine(images, C)
        # the new search direction: the part of the update outside the new X, orthonormalised
        # with its image carried along (A Q = (AP - AX X^T P) R^-1)
        P, AP = _combine(blocks[1:], C[b:]), _combine(images[1:], C[b:])
        del blocks, images, W, AW  # the old basis: free before the next products
        proj = X.T @ P
        P, AP = P - X @ proj, AP - AX @ proj
        P, AP = _orthonormal_pair(P, AP)
    lam, V = theta[:k], X[:, :k]
    resid = residual_norms(matmat, lam, V)
    ok = bool(np.all(resid <= tol * np.maximum(np.abs(lam), tiny) * (1 + 1e-6)))
    return TopEigen(lam, V, resid, it, ok)


def from_features(
    rows: Callable[[int, int], np.ndarray],
    n: int,
    p: int,
    k: int,
    *,
    block: int = 4096,
    matmat: Callable | None = None,
    tol: float = 1e-8,
) -> TopEigen:
    """k largest eigenpairs of A = Phi Phi^T, Phi (n, p) given by rows(start, stop) -> the
    (stop - start, p) block (any array type; used in float64), read twice: once for
    C = Phi^T Phi (symmetric rank-b updates in float64), once for v = Phi u / sqrt(lambda).

    A has rank <= p, so k <= min(n, p) is required. The residuals come from `matmat` (a
    separate product, e.g. an NTK-vector product) if given, else from Phi (Phi^T v), which is
    itself a second computation of A v. converged = every residual <= tol * lambda.
    """
    _check(n, k)
    if k > p:
        raise ValueError(f"k = {k} exceeds the rank bound p = {p} of Phi Phi^T")
    C = np.zeros((p, p), order="F")
    for s in range(0, n, block):
        Z = np.asarray(rows(s, min(n, s + block)), np.float64)
        if Z.shape != (min(n, s + block) - s, p):
            raise ValueError(
                f"rows({s}, {min(n, s + block)}) returned shape {Z.shape}, "
                f"expected ({min(n, s + block) - s}, {p})"
            )
        # upper triangle only, half the FLOPs of Z.T @ Z
        C = linalg.blas.dsyrk(1.0, Z, beta=1.0, c=C, trans=1, overwrite_c=1)
    lam, U = linalg.eigh(C, lower=False, subset_by_index=(p - k, p - 1))
    lam, U = lam[::-1], U[:, ::-1]
    # below max(n, p) eps lambda_max an eigenvalue of Phi^T Phi is rounding, not spectrum
    nonzero = lam > max(n, p) * np.finfo(np.float64).eps * max(lam[0], 0.0)
    if not nonzero.all():
        raise ValueError(
            f"Phi has numerical rank {int(nonzero.sum())} < k = {k}: only that "
            "many eigenvalues are nonzero"
        )
    V = np.empty((n, k))
    for s in range(0, n, block):
        V[s : s + block] = np.asarray(rows(s, min(n, s + block)), np.float64) @ U
    V /= np.sqrt(lam)

    def through_features(W):
        out = np.zeros((p, W.shape[1]))
        for s in range(0, n, block):
            out += np.asarray(rows(s, min(n, s + block)), np.float64).T @ W[s : s + block]
        Y = np.empty_like(W)
        for s in range(0, n, block):
            Y[s : s + block] = np.asarray(rows(s, min(n, s + block)), np.float64) @ out
        return Y

    resid = residual_norms(matmat if matmat is not None else through_features, lam, V)
    return TopEigen(lam, V, resid, 0, bool(np.all(resid <= tol * lam * (1 + 1e-6))))
