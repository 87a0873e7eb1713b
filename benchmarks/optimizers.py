"""Cost of each update rule (jaxbof.optim) per model-step, against plain GD, in one process.

For every rule, the batched step of three buckets (float32, no recording halts, every run
stepping; a halted run costs the same in lock-step):
  * classification, Gram parameterization (linear rules only): n = 100, d = 500, M = 64, B = 8;
  * classification, direct parameterization: the same cells (Adam & co. always run here);
  * regression: n = 500, d = 3, M = 1024, B = 1 (its CPU default), first layer trained.
Prints microseconds per model-step and the ratio to sgd in the same bucket, measured in this run
(every program compiled first, then the best of R round-robin calls of K steps inside one
compiled loop each).

Usage: python benchmarks/optimizers.py [--steps K] [--reps R]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from jaxbof import engine, optim
from jaxbof.experiments import classification as C
from jaxbof.experiments import regression as R
from jaxbof.experiments.classification.grid import Cell, Protocol
from jaxbof.experiments.classification.step import Param

RULES = (
    "sgd",
    "momentum:0.9",
    "nesterov:0.9",
    "adam:1e-3",
    "adamw:1e-3:1e-2",
    "rmsprop:1e-3",
    "adagrad:1e-2",
    "sign:1e-3",
)


def timed(fn, *args) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def slots_of(exp, cells, seed: int):
    keys = jax.jit(jax.vmap(exp.keys, in_axes=(None, 0)))(
        jax.random.PRNGKey(seed), np.stack([exp.coords(c) for c in cells])
    )
    inp = exp.inputs(cells, keys, np.float32)
    sh = exp.shape(cells[0])
    return jax.jit(jax.vmap(lambda x: exp.prepare(x, sh)))(inp)


def per_step(exp, slots, B: int, K: int):
    """(compiled K batched steps of B models, its slots, model-steps per call)."""

    @jax.jit
    def run(slots):
        return jax.lax.fori_loop(0, K, lambda i, st: jax.vmap(exp.step)(slots, st), slots.state)

    jax.block_until_ready(run(slots))  # compile and warm up
    return run, slots, B * K


def classification_step(rule: str, param: Param, K: int):
    protocol = Protocol(optimizer=rule, param=param, max_steps=2**30)
    cells = [Cell(100, 500, 5.0, 0.05, 0.1, 0.1, 64, s) for s in range(8)]
    exp = engine.plan(C.experiment(protocol, max_margin=False, cells=cells), cells)
    return per_step(exp, slots_of(exp, cells, protocol.seed), len(cells), K)


def regression_step(rule: str, K: int):
    protocol = dataclasses.replace(R.Protocol(t_max=1e9, times=1), optimizer=rule)
    cells = R.cells(n=500, d=3, width=1024, seeds=1)
    exp = engine.plan(R.experiment(protocol, cells), cells)
    slots = slots_of(exp, cells, protocol.seed)
    # past the record at step 0; the next record (t_max) is never reached in K steps
    slots = jax.vmap(R.resume_slot)(slots)
    return per_step(exp, slots, 1, K)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    K = args.steps
    progs = {}  # (rule, bucket) -> (fn, slots, model-steps): all compiled before any timing
    for rule in RULES:
        if optim.parse(rule).linear:
            progs[rule, 0] = classification_step(rule, Param.GRAM, K)
        progs[rule, 1] = classification_step(rule, Param.DIRECT, K)
        progs[rule, 2] = regression_step(rule, K)
    best = {k: float("inf") for k in progs}
    for _ in range(args.reps):  # round robin, so a slow spell of the machine hits every rule
        for k, (fn, slots, count) in progs.items():
            best[k] = min(best[k], timed(fn, slots) / count)
    print(
        f"{jax.default_backend()} ({jax.devices()[0].device_kind}), float32, {K} steps per "
        f"call, best of {args.reps} round-robin calls; us per model-step (ratio to sgd in the "
        "same bucket)"
    )
    print(f"{'rule':<18} {'class. Gram':>18} {'class. direct':>18} {'regression':>18}")
    for rule in RULES:
        cols = []
        for b in range(3):
            x = best.get((rule, b))
            cols.append(
                "n/a (not linear)" if x is None else f"{1e6 * x:8.1f} ({x / best['sgd', b]:4.2f}x)"
            )
        print(f"{rule:<18} " + " ".join(f"{c:>18}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
