"""The one training step every experiment's runs take: check, update, bookkeeping.

An experiment supplies three pure functions of one run (the engine vmaps and jits them):

    check(slot, state) -> Check     its forward pass: the trained parameters, the gradient of its
                                    loss in them, whether the run halts before this step (its
                                    stopping rule), and what its bookkeeping needs (`aux`);
    step_size(slot, check) -> eta   the step size (traced: a per-run value);
    advance(state, check, params, opt) -> state
                                    its counters and flags after the update.

`step(check, advance, step_size, optimizer)` returns `(slot, state) -> state`: the check, then
the update by `optimizer` (an optax rule, `jaxbof.optim`; default plain GD) with parameters and
rule state frozen where the run halts, then the bookkeeping. The hinge-loss classification step
(`experiments.classification.step`), the square-loss regression step
(`experiments.regression.step`) and the CNN's logistic-loss step on its filters' coefficients
(`experiments.cnn.program.step`) are this skeleton with their own check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jaxbof import optim


class Check(NamedTuple):
    """One forward pass of a run, as the update needs it."""

    params: Any  # the trained parameters (a pytree)
    grads: Any  # the loss gradient in them (the same structure)
    halt: jax.Array  # bool: no update this step (stopped, halted to record, diverged)
    aux: Any = None  # what the experiment's bookkeeping keeps from this pass


def step(
    check: Callable, advance: Callable, step_size: Callable, optimizer: optim.Optimizer = optim.GD
) -> Callable:
    """(slot, state) -> state: one update of one run, or its bookkeeping alone if it halts."""

    def one(slot, state):
        c = check(slot, state)
        params, opt = optim.update(
            optimizer, step_size(slot, c), c.grads, state.opt, c.params, c.halt
        )
        return advance(state, c, params, opt)

    return one
