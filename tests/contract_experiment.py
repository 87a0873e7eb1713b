"""An experiment that exercises every optional part of the engine's contract (the minimal
example is tests/toy_plugin): 1-D least squares by GD with its closed form, as there, with n
a cell field. Its cell_of is the engine's default (from the NamedTuple Cell).

A run halts every 2 * record steps and reports two rows (the record in the middle, carried in
the state, and the current one): several rows per report, and `resume` continues it. Buckets
are per n; every bucket is sampled at the largest n and cropped (`prep_shapes`, `crop`), exact
because point i is drawn from fold_in(key, i). One extra device program (`programs`) computes
the training loss that `report` writes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import engine

COLUMNS = {
    "n": "int",
    "lr": "float",
    "seed": "int",
    "step": "int",
    "w": "float",
    "w_exact": "float",
    "loss": "float",
    "final": "bool",
    "diverged": "bool",
}


class Cell(NamedTuple):
    n: int
    lr: float
    seed: int


class Protocol(NamedTuple):
    steps: int = 40
    record: int = 10


class State(NamedTuple):
    w: jax.Array
    w_mid: jax.Array  # w at the middle record of the current halt interval
    steps: jax.Array
    done: jax.Array


class Slot(NamedTuple):
    x: jax.Array  # [n] (padded points are zero: they add nothing to a sum)
    y: jax.Array
    n: jax.Array
    lr: jax.Array
    state: State


def _draw(key, count):
    """Points 0..count-1, point i from fold_in(key, i): a larger draw holds a smaller one."""

    def point(i):
        kx, ke = jax.random.split(jax.random.fold_in(key, i))
        x = jax.random.normal(kx)
        return x, 2.0 * x + 0.1 * jax.random.normal(ke)

    return jax.vmap(point)(jnp.arange(count))


def experiment(protocol: Protocol = Protocol(), cells=()) -> engine.Experiment:
    period = 2 * protocol.record

    def coords(c: Cell):
        return np.array([c.n, c.seed], np.uint32)

    def keys(base, c):
        return jax.random.fold_in(base, c[1])  # the data of a seed is shared across n: nested

    def inputs(cs, keys_B, dtype):  # init's traced arguments: (key, n, lr)
        return (
            np.asarray(keys_B),
            np.array([c.n for c in cs], np.int32),
            np.array([c.lr for c in cs], dtype),
        )

    def init(key, n, lr, n_max):
        x, y = _draw(key, n_max)
        keep = jnp.arange(n_max) < n
        x, y = jnp.where(keep, x, 0).astype(lr.dtype), jnp.where(keep, y, 0).astype(lr.dtype)
        zero = jnp.zeros((), lr.dtype)
        return Slot(x, y, n, lr, State(zero, zero, jnp.zeros((), jnp.int32), jnp.array(False)))

    def crop(slot, n):
        return slot._replace(x=slot.x[:n], y=slot.y[:n])

    def step(slot, st):
        grad = jnp.sum((st.w * slot.x - slot.y) * slot.x) / slot.n
        w = jnp.where(st.done, st.w, st.w - slot.lr * grad)
        steps = st.steps + (~st.done).astype(jnp.int32)
        w_mid = jnp.where(steps % period == protocol.record, w, st.w_mid)
        done = st.done | (steps % period == 0) | (steps >= protocol.steps)
        return State(w, w_mid, steps, done)

    def resume(slot):
        return slot._replace(state=slot.state._replace(done=jnp.array(False)))

    def loss(x, y, n, w):
        return jnp.sum((w * x - y) ** 2) / (2 * n)

    def programs(b, shapes, B):
        return {
            f"toy_loss_{b}": engine.Program(
                jax.vmap(loss), (shapes.x, shapes.y, shapes.n, shapes.state.w)
            )
        }

    def report(h: engine.Halted):
        b, slots, idx, cells_, progs = h.bucket, h.slots, h.index, h.cells, h.programs
        losses = np.asarray(progs[f"toy_loss_{b}"](slots.x, slots.y, slots.n, slots.state.w))
        x, y = np.asarray(slots.x, np.float64), np.asarray(slots.y, np.float64)
        out = []
        for s, c in zip(idx, cells_):
            steps = int(slots.state.steps[s])
            s2 = np.sum(x[s] ** 2) / c.n
            w_star = np.sum(x[s] * y[s]) / c.n / s2
            exact = lambda t: w_star * (1 - (1 - c.lr * s2) ** t)
            finished = steps >= protocol.steps
            w = float(slots.state.w[s])
            row = dict(
                n=c.n, lr=c.lr, seed=c.seed, w=w, loss=float(losses[s]), diverged=not np.isfinite(w)
            )
            mid = steps - protocol.record
            rows = (
                []
                if mid <= 0 or steps % period
                else [
                    dict(
                        row,
                        step=mid,
                        w=float(slots.state.w_mid[s]),
                        w_exact=exact(mid),
                        loss=float("nan"),
                        final=False,
                    )
                ]
            )
            rows.append(dict(row, step=steps, w_exact=exact(steps), final=finished))
            out.append(engine.Report(rows, finished))
        return out

    return engine.Experiment(
        init=init,
        step=step,
        report=report,
        schema=engine.Schema(
            COLUMNS, ("n", "lr", "seed", "step"), final="final", flags={"diverged": True}
        ),
        protocol=tuple(protocol),
        batching=engine.Batching(
            shape=lambda c: c.n,
            prep_shapes=lambda groups: dict.fromkeys(groups, max(groups)),
            crop=crop,
            resume=resume,
            programs=programs,
            step_flops=lambda b, c: 4.0 * (b if c is None else c.n),
        ),
        cells=engine.Cells(
            coords=coords, keys=keys, inputs=inputs, example_cell=lambda n: Cell(n, 0.1, 0)
        ),
    )
