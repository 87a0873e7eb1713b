"""Neural tangent kernels: empirical (any scalar-output model) and analytic (infinite width).

Regression two-layer net (Park et al. 2024, arXiv 2410.06191; Du et al. 2019), defined in
`jaxbof.model` and re-exported here (`TwoLayerParams`, `init_two_layer`, `two_layer_apply`):

    f(theta, x) = (1/sqrt(M)) sum_j a_j sigma(<w_j, x> + b_j),   sigma(z) = max(z, alpha z),

with w_j ~ N(0, I_d), a_j = +-1, b_j ~ N(0, 1) (optional). The empirical NTK of any scalar
model is K(x, x') = <grad_theta f(x), grad_theta f(x')>, summed over the trainable leaves.
Three routes compute the Gram K_[n1 x n2] (`Route`): explicit Jacobian contraction (the
reference), NTK-vector products (jax.vjp then jax.jvp, one Jacobian column block at a time) and
the closed form of the two-layer net (`structured_ntk`).

Analytic kernels (`analytic_ntk`) are the M -> infinity limits of the empirical NTK at init in
the 1/sqrt(M) parameterisation, written with the arc-cosine kernels (Cho & Saul 2009) for
general input norms: for a centred Gaussian pair (z, z') with variances s^2, s'^2 and
correlation rho,

    E[1(z > 0) 1(z' > 0)] = kappa0(rho),     E[relu(z) relu(z')] = s s' kappa1(rho),
    kappa0(rho) = (pi - arccos rho) / (2 pi),
    kappa1(rho) = (rho (pi - arccos rho) + sqrt(1 - rho^2)) / (2 pi).

Here z = <w, x> [+ b], so c = Cov(z, z') = <x, x'> [+ 1], s^2 = |x|^2 [+ 1], rho = c / (s s').
Unit-norm inputs without bias: rho = u; with bias b ~ N(0, 1): c = u + 1, s^2 = 2, rho = (u+1)/2.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# the two-layer net lives in `jaxbof.model` (one model for both experiments); TwoLayerParams,
# init_two_layer and two_layer_apply are re-exported so `ntk.init_two_layer` etc. keep working
from jaxbof.model import (
    TwoLayerParams,
    init_two_layer,
    leaky_relu,
    leaky_relu_slope,
    two_layer_apply,
    two_layer_preacts,
)

__all__ = [
    "Layers",
    "Method",
    "Route",
    "TwoLayerParams",
    "analytic_matmat",
    "analytic_ntk",
    "empirical_ntk_fn",
    "gram_matmat_fn",
    "init_two_layer",
    "jacobian_rows_fn",
    "ntk_vector_product_fn",
    "structured_features",
    "structured_ntk",
    "top_eigenpairs",
    "two_layer_apply",
]


# --------------------------------------------------------------------------- empirical NTK


class Route(enum.Enum):
    """How the empirical NTK Gram is computed (all agree to rounding)."""

    JACOBIAN = enum.auto()  # per-example Jacobians J1, J2, K = J1 J2^T (reference)
    NTVP = enum.auto()  # columns K e_j = J1 (J2^T e_j): vjp then jvp, no full Jacobian
    STRUCTURED = enum.auto()  # closed form, two-layer net only (`structured_ntk`)


class Layers(enum.Enum):
    """Which layers of the two-layer net are trained (the bias, if any, belongs to the first)."""

    FIRST = enum.auto()
    BOTH = enum.auto()


def _full_mask(trainable, params):
    """Boolean leaf list (flattened like params) from None, a prefix mask or a callable."""
    if trainable is None:
        return [True] * len(jax.tree.leaves(params))
    mask = trainable(params) if callable(trainable) else trainable
    full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask, params)
    return jax.tree.leaves(full)


def _split(params, trainable):
    """(theta, rebuild): theta the trainable leaves, rebuild(theta) the full params pytree."""
    leaves, treedef = jax.tree.flatten(params)
    mask = _full_mask(trainable, params)
    if len(mask) != len(leaves):
        raise ValueError("trainable mask does not match the params pytree")
    theta = [leaf for leaf, m in zip(leaves, mask) if m]

    def rebuild(theta_):
        it = iter(theta_)
        return jax.tree.unflatten(
            treedef, [next(it) if m else leaf for leaf, m in zip(leaves, mask)]
        )

    return theta, rebuild


def _jacobian_block(f, theta, x1, x2):
    """K = sum over leaves of J1 J2^T with J_i = grad_theta f(x_i) stacked (n, *leaf.shape)."""
    J1 = jax.vmap(jax.grad(f), (None, 0))(theta, x1)
    J2 = J1 if x2 is x1 else jax.vmap(jax.grad(f), (None, 0))(theta, x2)
    K = 0.0
    for j1, j2 in zip(J1, J2):
        K = K + j1.reshape(j1.shape[0], -1) @ j2.reshape(j2.shape[0], -1).T
    return K


def _ntvp_block(f, theta, x1, x2):
    """Columns K[:, j] = J1 v_j with v_j = J2^T e_j = vjp of f(., x2_j) at cotangent 1,
    pushed forward by jvp of f(., x1); only one params-sized tangent per column is live."""
    f1 = lambda th: jax.vmap(f, (None, 0))(th, x1)

    def column(x):
        out, pullback = jax.vjp(lambda th: f(th, x), theta)
        (v,) = pullback(jnp.ones_like(out))
        return jax.jvp(f1, (theta,), (v,))[1]

    return jax.vmap(column)(x2).T


def _blocked(block_fn, x1, x2, batch_size):
    """K_[n1 x n2] from block_fn(x1_b, x2_b) on blocks of `batch_size` rows (padded by
    repeating the last row, then cut), with lax.map so one block pair is live at a time."""
    n1, n2 = x1.shape[0], x2.shape[0]
    b = batch_size

    def blocks(x):
        n = x.shape[0]
        pad = -n % b
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
        return x.reshape((-1, b) + x.shape[1:])

    X1, X2 = blocks(x1), blocks(x2)
    K = jax.lax.map(lambda a: jax.lax.map(lambda c: block_fn(a, c), X2), X1)  # (B1, B2, b, b)
    K = K.transpose(0, 2, 1, 3).reshape(X1.shape[0] * b, X2.shape[0] * b)
    return K[:n1, :n2]


def _structured_setup(apply_fn, trainable, params):
    """(alpha, layers, train_bias) for Route.STRUCTURED, or a ValueError."""
    alpha = 0.0
    fn = apply_fn
    if isinstance(fn, functools.partial):
        if fn.args or set(fn.keywords) - {"alpha"}:
            raise ValueError(
                "Route.STRUCTURED supports two_layer_apply (optionally "
                "functools.partial(two_layer_apply, alpha=...)) only"
            )
        alpha = fn.keywords.get("alpha", 0.0)
        fn = fn.func
    if fn is not two_layer_apply or not isinstance(params, TwoLayerParams):
        raise ValueError("Route.STRUCTURED needs apply_fn=two_layer_apply and TwoLayerParams")
    W_m, a_m, *b_m = _full_mask(trainable, params)
    if not W_m:
        raise ValueError("Route.STRUCTURED needs W trainable")
    return alpha, (Layers.BOTH if a_m else Layers.FIRST), (bool(b_m[0]) if b_m else False)


def empirical_ntk_fn(
    apply_fn: Callable,
    *,
    route: Route = Route.JACOBIAN,
    trainable=None,
    batch_size: int | None = None,
) -> Callable:
    """ntk(params, x1_n1x..., x2_n2x... = None) -> K_[n1 x n2], K_ij = <df(x1_i), df(x2_j)>.

    apply_fn(params, x): scalar output for a single input x (vmapped here); any params pytree,
    e.g. a Flax module: apply_fn = lambda p, x: module.apply(p, x[None])[0, 0].
    trainable: None (all leaves), a pytree prefix of bools, or a callable params -> such a mask;
    frozen leaves contribute nothing (e.g. TwoLayerParams(True, False, None) = first layer).
    batch_size: compute the Gram in blocks of that many inputs (memory O(batch_size * P) for the
    autodiff routes instead of O(n * P)); equal to the unbatched result up to rounding.
    x2 = None means x2 = x1. Cost: JACOBIAN and NTVP about n1 n2 P + (n1 + n2) cost(f) FLOPs.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def ntk(params, x1, x2=None):
        same = x2 is None
        x2 = x1 if same else x2
        if route is Route.STRUCTURED:
            alpha, layers, train_bias = _structured_setup(apply_fn, trainable, params)
            block = lambda a, c: structured_ntk(
                params, a, c, layers=layers, alpha=alpha, train_bias=train_bias
            )
        else:
            theta, rebuild = _split(params, trainable)
            f = lambda th, x: apply_fn(rebuild(th), x)
            inner = {Route.JACOBIAN: _jacobian_block, Route.NTVP: _ntvp_block}[route]
            block = lambda a, c: inner(f, theta, a, c)
        if batch_size is None:
            return block(x1, x1 if same else x2)
        return _blocked(block, x1, x2, batch_size)

    return ntk


def ntk_vector_product_fn(apply_fn: Callable, *, trainable=None) -> Callable:
    """mvp(params, x1, x2, v_n2) -> (K v)_n1 = J1 (J2^T v): one vjp through f(., x2) and one jvp
    through f(., x1), never forming J or K (for iterative eigensolvers, CG on the NTK)."""

    def mvp(params, x1, x2, v):
        theta, rebuild = _split(params, trainable)
        f = lambda th, x: apply_fn(rebuild(th), x)
        _, pullback = jax.vjp(lambda th: jax.vmap(f, (None, 0))(th, x2), theta)
        (u,) = pullback(v)
        return jax.jvp(lambda th: jax.vmap(f, (None, 0))(th, x1), (theta,), (u,))[1]

    return mvp


def structured_ntk(
    params: TwoLayerParams,
    x1,
    x2=None,
    *,
    layers: Layers = Layers.FIRST,
    alpha=0.0,
    train_bias: bool = True,
):
    """Closed-form empirical NTK of `two_layer_apply`, K_[n1 x n2]; x2 = None means x2 = x1.

    With H = X W^T + b, S = sigma'(H), A = sigma(H):
      first layer (W, and b if present and train_bias):
          K = (X1 X2^T [+ 1]) * (S1 diag(a^2) S2^T) / M
      both layers adds the outer-weight term A1 A2^T / M.
    Cost about 2 n1 n2 (M + d) + 2 (n1 + n2) M d FLOPs (x2 = None: 2 n^2 (M + d) + 2 n M d;
    both layers add 2 n1 n2 M), memory O(n M + n^2).
    """
    same = x2 is None
    x2 = x1 if same else x2
    M = params.W_mxd.shape[0]
    H1 = two_layer_preacts(params, x1)
    H2 = H1 if same else two_layer_preacts(params, x2)
    S1 = leaky_relu_slope(H1, alpha) * params.a_m**2
    G = x1 @ x2.T
    if params.b_m is not None and train_bias:
        G = G + 1.0
    K = G * (S1 @ leaky_relu_slope(H2, alpha).T)
    if layers is Layers.BOTH:
        K = K + leaky_relu(H1, alpha) @ leaky_relu(H2, alpha).T
    return K / M


def structured_features(
    params: TwoLayerParams, x, *, layers: Layers = Layers.FIRST, alpha=0.0, train_bias: bool = True
):
    """Z_[n x p] with Z Z^T = structured_ntk(params, x, ...): the rows of the Jacobian of
    `two_layer_apply` in closed form, p = M d [+ M if a bias is trained] [+ M for both layers].

    Row i: (x_i (x) a sigma'(h_i), [a sigma'(h_i)], [sigma(h_i)]) / sqrt(M), with (x) the outer
    product flattened (d-major), so the first block contracts to (x.x') (S diag(a^2) S'^T) / M.
    Cost 2 n M d; x of shape (n, d).
    """
    M = params.W_mxd.shape[0]
    H = two_layer_preacts(params, x)
    S = leaky_relu_slope(H, alpha) * params.a_m
    parts = [(x[:, :, None] * S[:, None, :]).reshape(x.shape[0], -1)]
    if params.b_m is not None and train_bias:
        parts.append(S)
    if layers is Layers.BOTH:
        parts.append(leaky_relu(H, alpha))
    return jnp.concatenate(parts, axis=1) / jnp.sqrt(jnp.asarray(M, H.dtype))


def jacobian_rows_fn(apply_fn: Callable, *, trainable=None) -> Callable:
    """rows(params, x_bx...) -> J_[b x p]: per-example gradients of the scalar model over its
    trainable leaves, flattened and concatenated (J J^T = the empirical NTK Gram)."""

    def rows(params, x):
        theta, rebuild = _split(params, trainable)
        grads = jax.vmap(jax.grad(lambda th, xi: apply_fn(rebuild(th), xi)), (None, 0))(theta, x)
        return jnp.concatenate([g.reshape(x.shape[0], -1) for g in grads], axis=1)

    return rows


def _padded_blocks(x, block: int):
    """x (n, ...) -> (n_blocks, block, ...), the last block padded by repeating the last row."""
    pad = -x.shape[0] % block
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
    return x.reshape((-1, block) + x.shape[1:])


def gram_matmat_fn(
    apply_fn: Callable, *, route: Route = Route.NTVP, trainable=None, block: int = 1024
) -> Callable:
    """matmat(params, x_n, V_nxc) -> K V for the empirical NTK Gram K of n inputs, never formed:
    K V = J (J^T V), taken over row blocks of `block` inputs (memory O(block c P) for NTVP,
    O(block P + c P) for STRUCTURED), cost about 4 n c P.

    NTVP: J^T V by a vjp per block (cotangents = V's rows), then J U by a jvp per block, for any
    apply_fn. STRUCTURED: the same two passes through `structured_features` (two-layer net).
    """
    if route is Route.JACOBIAN:
        raise ValueError("gram_matmat_fn: route must be Route.NTVP or Route.STRUCTURED")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")

    def matmat(params, x, V):
        n = x.shape[0]
        Xb = _padded_blocks(x, block)
        Vb = _padded_blocks(
            jnp.concatenate([V, jnp.zeros((-n % block,) + V.shape[1:], V.dtype)]), block
        )
        if route is Route.STRUCTURED:
            alpha, layers, train_bias = _structured_setup(apply_fn, trainable, params)
            feats = lambda xb: structured_features(
                params, xb, layers=layers, alpha=alpha, train_bias=train_bias
            )
            U = jax.lax.scan(
                lambda acc, xv: (acc + feats(xv[0]).T @ xv[1], None),
                jnp.zeros((feats(x[:1]).shape[1], V.shape[1]), V.dtype),
                (Xb, Vb),
            )[0]
            out = jax.lax.map(lambda xb: feats(xb) @ U, Xb)
        else:
            theta, rebuild = _split(params, trainable)
            f = lambda th, xb: jax.vmap(lambda xi: apply_fn(rebuild(th), xi))(xb)

            def pull(acc, xv):
                _, back = jax.vjp(lambda th: f(th, xv[0]), theta)
                u = jax.vmap(lambda v: back(v)[0], in_axes=1, out_axes=-1)(xv[1])
                return jax.tree.map(jnp.add, acc, u), None

            zeros = [jnp.zeros(t.shape + (V.shape[1],), V.dtype) for t in theta]
            U = jax.lax.scan(pull, zeros, (Xb, Vb))[0]
            push = lambda xb: jax.vmap(
                lambda u: jax.jvp(lambda th: f(th, xb), (theta,), (u,))[1], in_axes=-1, out_axes=1
            )(U)
            out = jax.lax.map(push, Xb)
        return out.reshape(-1, V.shape[1])[:n]

    return matmat


def analytic_matmat(
    x,
    V,
    *,
    layers: Layers = Layers.FIRST,
    alpha=0.0,
    bias: bool = False,
    train_bias: bool = True,
    block: int = 1024,
):
    """K V for the analytic NTK Gram K = analytic_ntk(x) (n x n), built tile by tile: one
    (block x block) tile live at a time, cost about n^2 (c + a few dozen) FLOPs. The diagonal
    is snapped to rho = 1 as in `analytic_ntk`."""
    n = x.shape[0]
    Xb = _padded_blocks(x, block)
    Vb = _padded_blocks(
        jnp.concatenate([V, jnp.zeros((-n % block,) + V.shape[1:], V.dtype)]), block
    )
    idx = jnp.arange(Xb.shape[0])

    def row(i):
        def add(acc, j):
            tile = analytic_ntk(
                Xb[i], Xb[j], layers=layers, alpha=alpha, bias=bias, train_bias=train_bias
            )
            return acc + tile @ Vb[j], None

        return jax.lax.scan(add, jnp.zeros((block, V.shape[1]), V.dtype), idx)[0]

    return jax.lax.map(row, idx).reshape(-1, V.shape[1])[:n]


class Method(enum.Enum):
    """How `top_eigenpairs` finds the top of a Gram spectrum without forming the Gram."""

    AUTO = "auto"  # FEATURES for an empirical NTK with p <= n, else LOBPCG
    FEATURES = "features"  # the p x p matrix J^T J (exact, rank(K) <= p): eigsolve.from_features
    LOBPCG = "lobpcg"  # block iterations on Gram-vector products: eigsolve.lobpcg


def _column_padded(fn, width: int):
    """A host function V (n, c) -> fn(V) (n, c) that pads c up to a multiple of `width` with zero
    columns, so a jitted fn compiles for a few widths rather than one per column count."""

    def call(V):
        c = V.shape[1]
        pad = -c % width
        Vp = np.concatenate([V, np.zeros((V.shape[0], pad))], axis=1) if pad else V
        return np.asarray(fn(jnp.asarray(Vp)), np.float64)[:, :c]

    return call


def top_eigenpairs(
    x,
    k: int,
    *,
    params=None,
    apply_fn: Callable = two_layer_apply,
    trainable=None,
    route: Route = Route.STRUCTURED,
    method: Method = Method.AUTO,
    layers: Layers = Layers.FIRST,
    alpha=0.0,
    bias: bool = False,
    train_bias: bool = True,
    block: int = 1024,
    tol: float = 1e-8,
    seed: int = 0,
    progress: Callable | None = None,
):
    """The k largest eigenpairs of an n x n NTK Gram, never formed (`eigsolve.TopEigen`: the
    eigenvalues of K itself, not K / n; residuals from a separate Gram-vector product).

    params given: the empirical NTK of apply_fn at params over the trainable leaves, through the
    structured two-layer route (Route.STRUCTURED: apply_fn = two_layer_apply, optionally a
    partial with alpha) or the generic one (Route.NTVP: Jacobian rows and jvp/vjp products, any
    scalar model). Method.AUTO takes FEATURES when the number of trained parameters p is at most
    n (then rank(K) <= p and the p x p problem is exact and cheaper), else LOBPCG.
    params None: the analytic kernel `analytic_ntk(x, layers, alpha, bias, train_bias)`, by
    LOBPCG over products built tile by tile (O(n^2) per product: the expensive case).
    Everything runs in x's dtype (use float64: enable x64 in the entry point); `block` rows per
    tile or Jacobian block; `progress` is passed to `eigsolve.lobpcg` (LOBPCG routes only).
    """
    from jaxbof import eigsolve

    n = x.shape[0]
    method = Method(method)
    if params is None:
        if method is Method.FEATURES:
            raise ValueError("Method.FEATURES needs params: the analytic kernel has full rank")
        mm = jax.jit(
            functools.partial(
                analytic_matmat,
                layers=layers,
                alpha=alpha,
                bias=bias,
                train_bias=train_bias,
                block=min(block, n),
            )
        )
        width = 1 << max(3, ((k + max(8, k // 4)) // 8 - 1).bit_length())
        matmat = _column_padded(lambda V: mm(x, V), width)
        return eigsolve.lobpcg(matmat, n, k, tol=tol, seed=seed, progress=progress)
    if route is Route.STRUCTURED:
        a, lay, tb = _structured_setup(apply_fn, trainable, params)
        rows = lambda p_, xb: structured_features(p_, xb, layers=lay, alpha=a, train_bias=tb)
    elif route is Route.NTVP:
        rows = jacobian_rows_fn(apply_fn, trainable=trainable)
    else:
        raise ValueError("top_eigenpairs: route must be Route.STRUCTURED or Route.NTVP")
    b = min(block, n)
    p = jax.eval_shape(rows, params, x[:1]).shape[1]
    # column counts padded to a power of two >= b / 8 (b the LOBPCG block): few compiles, and
    # the 64-column blocks of the residuals fit exactly
    width = 1 << max(3, ((k + max(8, k // 4)) // 8 - 1).bit_length())
    # a vjp/jvp over a row block, vmapped over c columns, keeps ~ rows * c * p numbers live
    # (p stands in for the per-row activations); hold that near 2^25
    widest = k + max(8, k // 4) + width
    mm_block = b if route is Route.STRUCTURED else max(1, min(b, (1 << 25) // (widest * p)))
    mm = jax.jit(gram_matmat_fn(apply_fn, route=route, trainable=trainable, block=mm_block))
    matmat = _column_padded(lambda V: mm(params, x, V), width)
    if method is Method.AUTO:
        method = Method.FEATURES if p <= n else Method.LOBPCG
    if method is Method.LOBPCG:
        return eigsolve.lobpcg(matmat, n, k, tol=tol, seed=seed, progress=progress)
    jrows = jax.jit(rows)
    Xb = _padded_blocks(x, b)

    def host_rows(start, stop):
        return np.asarray(jrows(params, Xb[start // b]))[: stop - start]

    return eigsolve.from_features(host_rows, n, p, k, block=b, matmat=matmat, tol=tol)


# --------------------------------------------------------------------------- analytic NTK


def kappa0(rho):
    """(pi - arccos rho) / (2 pi) = E[1(z > 0) 1(z' > 0)] for correlation rho (clipped)."""
    rho = jnp.clip(rho, -1.0, 1.0)
    return (jnp.pi - jnp.arccos(rho)) / (2 * jnp.pi)


def kappa1(rho):
    """(rho (pi - arccos rho) + sqrt(1 - rho^2)) / (2 pi) = E[relu(z) relu(z')] at unit
    variances and correlation rho (clipped)."""
    rho = jnp.clip(rho, -1.0, 1.0)
    return (rho * (jnp.pi - jnp.arccos(rho)) + jnp.sqrt(1.0 - rho * rho)) / (2 * jnp.pi)


def analytic_ntk(
    x1,
    x2=None,
    *,
    layers: Layers = Layers.FIRST,
    alpha=0.0,
    bias: bool = False,
    train_bias: bool = True,
):
    """Infinite-width NTK Gram K_[n1 x n2] of `two_layer_apply` at init, x2 = None -> x1.

    z = <w, x> [+ b], w ~ N(0, I_d), b ~ N(0, 1): c = <x, x'> [+ 1], s = sqrt(|x|^2 [+ 1]),
    rho = c / (s s'). With sigma'(z) = alpha + (1 - alpha) 1(z > 0) and
    sigma(z) = alpha z + (1 - alpha) relu(z) (E[z relu(z')] = c / 2 by symmetry):
      E[sigma'(z) sigma'(z')] = alpha + (1 - alpha)^2 kappa0(rho),
      E[sigma(z) sigma(z')]   = alpha c + (1 - alpha)^2 s s' kappa1(rho),
      first layer: (<x, x'> [+ 1 if bias and train_bias]) E[sigma' sigma'],
      both layers: first layer + E[sigma sigma].
    Unit norms, ReLU, no bias: u kappa0(u) (= 1/2 at u = 1) and u kappa0(u) + kappa1(u) (= 1).
    Exact for any input norms, not only the sphere (zero inputs without bias excluded).
    Near rho = 1 the arccos / sqrt(1 - rho^2) terms amplify the rounding of rho to ~sqrt(eps);
    the diagonal (x2 = None) and exact duplicates are snapped to rho = 1.
    """
    same = x2 is None
    x2 = x1 if same else x2
    G = x1 @ x2.T
    sq1, sq2 = jnp.sum(x1 * x1, axis=-1), jnp.sum(x2 * x2, axis=-1)
    c = G + 1.0 if bias else G
    if bias:
        sq1, sq2 = sq1 + 1.0, sq2 + 1.0
    ss = jnp.sqrt(sq1)[:, None] * jnp.sqrt(sq2)[None, :]
    rho = c / ss
    # arccos is ill-conditioned at rho = 1 (an ulp in rho moves it by ~1e-8): snap rounding
    # noise to 1, and the diagonal of a Gram of x1 with itself exactly
    rho = jnp.where(jnp.abs(1.0 - rho) <= 4 * jnp.finfo(rho.dtype).eps, 1.0, rho)
    if same:
        rho = jnp.where(jnp.eye(rho.shape[0], dtype=bool), 1.0, rho)
    K = (c if (bias and train_bias) else G) * (alpha + (1.0 - alpha) ** 2 * kappa0(rho))
    if layers is Layers.BOTH:
        K = K + alpha * c + (1.0 - alpha) ** 2 * ss * kappa1(rho)
    return K
