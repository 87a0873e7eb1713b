"""The classification step: full-batch (sub)gradient descent on the summed hinge loss, one model
at a time, through the generic skeleton `jaxbof.train.step` (this module gives it the hinge
check, the stopping rules and the bookkeeping).

L(W) = sum_i max(0, 1 - yhat_i f(W, x_i)) (Karhadkar et al., Section 2), only W trained.
Two exact parameterizations of the same trajectory (docs/performance.md):

* DIRECT: the state is W_mxd; a step costs two n x d x M products.
* GRAM:   W_t = W_0 + C_t X, the state is C_t^T (stored n x M, so that neither product nor
  update needs a transpose). With G = X X^T and H_0 = X W_0^T computed once, the
  pre-activations are H_t = H_0 + G C_t^T (2 n^2 M FLOPs) and a step updates only C.

The update rule is an optax transformation (`jaxbof.optim`; default: plain GD with step eta).
In the Gram parameterization it is applied to the pseudo-gradient dH (dL/dW = dH^T X), which is
exact for rules linear in past gradients (optim.Optimizer.linear: sgd, momentum, Nesterov);
`gd_step` is the hand-written GD step the optax path is tested against.

Everything here is pure and handles one model; the sweep vmaps and jits it. Padded samples
(mask False) have zero rows in X, G and H_0 and never contribute to the loss or the update.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbof import optim, train
from jaxbof.model import leaky_relu, leaky_relu_slope, network_from_preacts, predict
from jaxbof.numerics import matmul_t


class Stop(enum.IntEnum):
    """Stopping rule (a traced integer inside the trainer)."""

    ZERO_LOSS = 0  # every margin yhat_i f(x_i) >= 1 (theory; GD is then stationary)
    ZERO_ERROR = 1  # every training point classified correctly (published experiments)


class Param(enum.IntEnum):
    DIRECT = 0
    GRAM = 1


class Hyper(NamedTuple):
    """Per-model traced hyper-parameters (scalars; arrays of them under vmap)."""

    alpha: jax.Array  # leaky-ReLU slope
    eta: jax.Array  # GD step size
    stop: jax.Array  # a Stop value
    max_steps: jax.Array  # guard: a run that reaches it is not converged


class Problem(NamedTuple):
    """What one training run needs.

    For DIRECT, G_nxn and H0_nxm are None; for GRAM, X_nxd is None."""

    y_n: jax.Array  # observed labels
    mask_n: jax.Array  # real samples
    a_m: jax.Array  # fixed outer weights
    hyper: Hyper
    X_nxd: jax.Array | None = None
    G_nxn: jax.Array | None = None
    H0_nxm: jax.Array | None = None

    @property
    def param(self) -> Param:
        return Param.DIRECT if self.X_nxd is not None else Param.GRAM


class TrainState(NamedTuple):
    theta: jax.Array  # W_mxd (DIRECT) or C^T, n x M (GRAM)
    steps: jax.Array  # GD updates performed
    done: jax.Array  # stopped (converged, diverged or out of steps)
    converged: jax.Array  # the stopping rule was met
    diverged: jax.Array  # a non-finite output appeared
    f_n: jax.Array  # network outputs on the training inputs at theta (as of the last check)
    opt: object = ()  # the update rule's state (optax; empty for plain GD)


def direct_problem(X_nxd, y_n, mask_n, a_m, hyper: Hyper) -> Problem:
    return Problem(y_n, mask_n, a_m, hyper, X_nxd=X_nxd)


def gram_problem(X_nxd, W0_mxd, y_n, mask_n, a_m, hyper: Hyper) -> Problem:
    """Gram parameterization: G = X X^T, H_0 = X W_0^T (computed once, 2 n d (n + M) FLOPs)."""
    return Problem(
        y_n, mask_n, a_m, hyper, G_nxn=matmul_t(X_nxd, X_nxd), H0_nxm=matmul_t(X_nxd, W0_mxd)
    )


def init_state(problem: Problem, W0_mxd, optimizer: optim.Optimizer = optim.GD) -> TrainState:
    """Start of training: theta = W_0 (DIRECT) or C^T = 0 (GRAM), the rule's initial state.
    ValueError for a rule that is not Gram-exact in the Gram parameterization."""
    if problem.param == Param.DIRECT:
        theta = W0_mxd
    else:
        _check_gram(optimizer)
        theta = jnp.zeros_like(problem.H0_nxm)
    false = jnp.zeros((), bool)
    f = jnp.zeros(problem.y_n.shape, theta.dtype)
    return TrainState(
        theta,
        jnp.zeros((), jnp.int32),
        false,
        false,
        false,
        f,
        optim.init(optimizer, problem.hyper.eta, theta),
    )


def _check_gram(optimizer: optim.Optimizer) -> None:
    if not optimizer.linear:
        raise ValueError(
            f"optimizer {optimizer.spec!r} is not linear in past gradients, so the "
            "Gram parameterization would not be exact; use Param.DIRECT"
        )


def preacts(problem: Problem, theta) -> jax.Array:
    """H_nxm = X W^T, in either parameterization."""
    if problem.param == Param.DIRECT:
        return problem.X_nxd @ theta.T
    return problem.H0_nxm + problem.G_nxn @ theta


def hinge_loss_from_outputs(f_n, y_n, mask_n):
    """Summed hinge loss over the real samples."""
    return jnp.sum(jnp.where(mask_n, jnp.maximum(0.0, 1.0 - y_n * f_n), 0.0))


def hinge_loss(W_mxd, a_m, alpha, X_nxd, y_n, mask_n):
    """L(W) = sum_i max(0, 1 - y_i f(W, x_i)); the outer weights a are frozen (stop_gradient)."""
    f = leaky_relu(X_nxd @ W_mxd.T, alpha) @ jax.lax.stop_gradient(a_m)
    return hinge_loss_from_outputs(f, y_n, mask_n)


def loss_grad_preacts(H_nxm, y_n, mask_n, a_m, alpha):
    """dL/dH_nxm with the subgradient conventions sigma'(0) = 1 (the paper's) and 0 at the hinge's
    kink: a margin of exactly 1 counts as fitted, as in the zero_loss stopping rule."""
    f = network_from_preacts(H_nxm, a_m, alpha)
    active = (y_n * f < 1.0) & mask_n
    g_n = jnp.where(active, -y_n, 0.0)
    return g_n[:, None] * a_m[None, :] * leaky_relu_slope(H_nxm, alpha)


def stop_reached(f_n, y_n, mask_n, stop):
    zero_loss = jnp.all((y_n * f_n >= 1.0) | ~mask_n)
    zero_error = jnp.all((predict(f_n) == y_n) | ~mask_n)
    return jnp.where(stop == Stop.ZERO_LOSS, zero_loss, zero_error)


class _Check(NamedTuple):
    """One forward pass of a step: the stopping test and the loss gradient at theta."""

    f_n: jax.Array
    converged: jax.Array
    diverged: jax.Array
    done: jax.Array  # stopped before this step: converged, diverged or out of steps
    dH_nxm: jax.Array  # dL/dH (dL/dW = dH^T X)


def _check(problem: Problem, state: TrainState) -> _Check:
    hp = problem.hyper
    H = preacts(problem, state.theta)
    f = network_from_preacts(H, problem.a_m, hp.alpha)
    converged = stop_reached(f, problem.y_n, problem.mask_n, hp.stop)
    diverged = ~jnp.all(jnp.isfinite(jnp.where(problem.mask_n, f, 0.0)))
    done = state.done | converged | diverged | (state.steps >= hp.max_steps)
    dH = loss_grad_preacts(H, problem.y_n, problem.mask_n, problem.a_m, hp.alpha)
    return _Check(f, converged, diverged, done, dH)


def _advance(state: TrainState, c: _Check, theta, opt) -> TrainState:
    """The state after a step to (theta, opt): counters and flags frozen once stopped."""
    return TrainState(
        theta=theta,
        steps=state.steps + (~c.done).astype(state.steps.dtype),
        done=c.done,
        converged=jnp.where(state.done, state.converged, c.converged),
        diverged=jnp.where(state.done, state.diverged, c.diverged),
        f_n=jnp.where(state.done, state.f_n, c.f_n),
        opt=opt,
    )


def gd_step(problem: Problem, state: TrainState) -> TrainState:
    """One hand-written GD step (the reference `step` is tested against), or nothing if the run
    has stopped. The stopping test uses the same forward pass as the step, so `steps` counts
    the updates made before the rule was first met."""
    c = _check(problem, state)
    lr = jnp.where(c.done, 0.0, problem.hyper.eta).astype(c.dH_nxm.dtype)  # stopped: no move
    if problem.param == Param.DIRECT:
        theta = state.theta - lr * (c.dH_nxm.T @ problem.X_nxd)  # pyright: ignore[reportOperatorIssue] - DIRECT: set
    else:
        theta = state.theta - lr * c.dH_nxm
    return _advance(state, c, theta, state.opt)


def _train_check(problem: Problem, state: TrainState) -> train.Check:
    c = _check(problem, state)
    dH = c.dH_nxm
    grad = dH.T @ problem.X_nxd if problem.param == Param.DIRECT else dH  # pyright: ignore[reportOperatorIssue] - DIRECT: set
    return train.Check(state.theta, grad, c.done, c)


def step(problem: Problem, state: TrainState, optimizer: optim.Optimizer = optim.GD) -> TrainState:
    """One update by `optimizer` (an optax rule with step size eta, `jaxbof.optim`), or nothing
    if the run has stopped; the same stopping test and counters as `gd_step`, which it equals
    bit for bit for the default plain GD. GRAM: the rule sees the pseudo-gradient dH (n x M) and
    updates C^T, exact for linear rules only (checked at init_state)."""
    return train.step(
        _train_check,
        lambda state, c, theta, opt: _advance(state, c.aux, theta, opt),
        lambda problem, c: jnp.asarray(problem.hyper.eta, c.grads.dtype),
        optimizer,
    )(problem, state)


def run(
    problem: Problem, state: TrainState, max_iters=None, optimizer: optim.Optimizer = optim.GD
) -> tuple[TrainState, jax.Array]:
    """Step until the run stops (or for at most `max_iters` more steps). Returns (state, iters)."""
    limit = jnp.iinfo(jnp.int32).max if max_iters is None else max_iters

    def cond(carry):
        s, i = carry
        return (~s.done) & (i < limit)

    def body(carry):
        s, i = carry
        return step(problem, s, optimizer), i + 1

    return jax.lax.while_loop(cond, body, (state, jnp.zeros((), jnp.int32)))


def final_weights(problem: Problem, theta, W0_mxd, X_nxd):
    """W_mxd of the trained network (W_0 + C X in the Gram parameterization)."""
    if problem.param == Param.DIRECT:
        return theta
    return W0_mxd + theta.T @ X_nxd


def final_outputs(problem: Problem, theta):
    """Network outputs f_n on the training inputs for the state theta."""
    return network_from_preacts(preacts(problem, theta), problem.a_m, problem.hyper.alpha)
