"""Throughput of the regression experiment's GD step (Park et al. 2024; docs/performance.md).

Prints, all measured in this one process (float32):
  * per bucket shape (n, M) of the quick and full `park-regression` presets: model-steps per
    second of the batched step (B slots in lock-step, no recording halts), FLOPs per step, the
    ratio of the step's time to a dense matmul of the same FLOPs, and the step's time in units
    of ONE elementwise pass over an n x M float32 array of the same size (sum of relu(x),
    measured here): the step's real cost model, since at small d it is elementwise work;
  * the DRAM bandwidth of a large elementwise op, and what the bytes of an unfused step
    (5 passes over n x M arrays, `regression.step_bytes`) would need of it;
  * the speedup of the batched step over one model at a time (B = 1, its own compile);
  * the quick preset end to end through the engine (wall, compile, model-steps per second);
  * the gradient-flow check: one cell at eta and eta / 2, the largest relative change of the
    excess and training risk at matching times.

At small d the step does 4 n d M FLOPs but elementwise work on n x M arrays: it is bound by that
work, not by matmul FLOPs. The step computes the pre-activations as d broadcast products that
XLA fuses into their consumers, so fewer bytes move than an unfused step's; the number of
elementwise passes it costs is the figure of merit (an unfused step needs at least 5).

Usage: python benchmarks/regression_throughput.py [--steps K] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import engine
from jaxbof.experiments import regression as R


def best_time(fn, *args, reps: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def matmul_time(flops: float) -> float:
    """Seconds of one square float32 matmul of about `flops` FLOPs (2 s^3)."""
    s = max(8, int(round((flops / 2.0) ** (1.0 / 3.0))))
    a = jax.random.normal(jax.random.PRNGKey(0), (s, s), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return best_time(f, a) * flops / (2.0 * s**3)


def elementwise_bandwidth(size: int = 1 << 26) -> float:
    """Bytes per second of y = 2 x + 1 over `size` float32s (reads 4, writes 4 bytes each)."""
    x = jnp.ones((size,), jnp.float32)
    f = jax.jit(lambda v: 2.0 * v + 1.0)
    return 8.0 * size / best_time(f, x)


def elementwise_pass_time(n: int, M: int, B: int) -> float:
    """Seconds of one read-reduce pass, sum(relu(x)), over B arrays of n x M float32s."""
    x = jax.random.normal(jax.random.PRNGKey(1), (B, M, n), jnp.float32)
    f = jax.jit(lambda v: jnp.sum(jnp.maximum(v, 0.0), axis=(1, 2)))
    return best_time(f, x)


def batched_slots(cells, protocol, B: int):
    """Prepared slots of the first B cells (recording halts removed, so the step only steps)."""
    exp = engine.plan(R.experiment(protocol, cells), cells)
    cells = (list(cells) * B)[:B]
    keys = jax.jit(jax.vmap(exp.keys, in_axes=(None, 0)))(
        jax.random.PRNGKey(protocol.seed), np.stack([exp.coords(c) for c in cells])
    )
    (inp,) = exp.inputs(cells, keys, np.float32)  # init's one traced argument
    inp = inp._replace(rec_steps=np.full_like(inp.rec_steps, np.iinfo(np.int32).max))
    sh = exp.shape(cells[0])
    slots = jax.jit(jax.vmap(lambda x: exp.prepare((x,), sh)))(inp)
    return exp, sh, slots


def step_rate(cells, protocol, B: int, K: int) -> float:
    """Model-steps per second of K batched steps of B models."""
    exp, _, slots = batched_slots(cells, protocol, B)

    @jax.jit
    def run(slots):
        return jax.lax.fori_loop(0, K, lambda i, st: jax.vmap(exp.step)(slots, st), slots.state)

    return B * K / best_time(run, slots)


def flow_check(eta: float) -> tuple[float, float]:
    """Largest relative change of excess / training risk when eta is halved (one cell). The
    eta / 2 run is recorded at 20x as many times and interpolated in log t to the eta run's
    times, so that interpolation error (~1e-2 at 12 times) does not pass for a step effect."""
    cell = R.cells(n=250, d=3, width=1024, seeds=1)[0]
    out = []
    for e, times in ((eta, 12), (eta / 2, 240)):
        rows, _ = R.run_cells([cell], R.Protocol(eta=e, t_max=1000.0, times=times))
        out.append(sorted(rows, key=lambda r: r["t"]))
    a, b = out
    ta = np.array([r["t"] for r in a])
    tb = np.array([r["t"] for r in b])
    res = []
    for col in ("excess_risk", "train_risk"):
        va = np.array([r[col] for r in a])
        vb = np.interp(np.log(ta[1:]), np.log(tb[1:]), np.array([r[col] for r in b])[1:])
        res.append(float(np.max(np.abs(vb - va[1:]) / np.abs(va[1:]))))
    return res[0], res[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200, help="GD steps per timing")
    ap.add_argument("--skip-e2e", action="store_true", help="skip the quick preset end to end")
    args = ap.parse_args()
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float32, "
        f"jax {jax.__version__}"
    )
    B = engine.default_slots()
    bw = elementwise_bandwidth()
    shapes = {}
    for quick in (True, False):
        for c in R.presets(quick):
            if c.init == "antisymmetric" and not c.bias and not c.train_outer:
                shapes.setdefault((c.n, c.d, c.width), (c, R.preset_protocol(quick)))
    lines = []
    for (n, d, M), (cell, protocol) in sorted(shapes.items()):
        bucket = R.Shape(n, d, M, False, False)
        flops, nbytes = R.step_flops(bucket), R.step_bytes(bucket)
        rate = step_rate([cell], protocol, B, args.steps)
        one = step_rate([cell], protocol, 1, max(args.steps // 4, 10))
        mm = matmul_time(flops)
        passes = (B / rate) / elementwise_pass_time(n, M, B)
        lines.append(
            f"n={n:5d} d={d} M={M:6d}  {rate:8.0f} model-steps/s  {1e9 / rate / (n * M):5.2f} ns "
            f"per n*M  {flops / 1e6:6.2f} MFLOP/step  step/matmul(same FLOPs) {1 / rate / mm:5.1f}x"
            f"  = {passes:4.1f} elementwise passes  unfused bytes need {rate * nbytes / bw:4.1f}x "
            f"DRAM bandwidth  batched/one-at-a-time {rate / one:4.1f}x"
        )
    print(f"\nDRAM bandwidth of 2x+1 over 256 MB: {bw / 1e9:.1f} GB/s; batch B = {B}")
    print("\n".join(lines))

    if not args.skip_e2e:
        cells, protocol = R.presets(True), R.preset_protocol(True)
        t0 = time.perf_counter()
        rows, st = R.run_cells(cells, protocol)
        wall = time.perf_counter() - t0
        steps = sum(r["step"] for r in rows if r["final"])
        print(
            f"\nquick preset end to end: {st.models} models, {len(rows)} rows, {wall:.1f} s "
            f"(compile {st.compile_s:.1f} s summed), {steps / wall:.0f} model-steps/s "
            f"including measurements"
        )
    eta = R.default_eta(R.cells(n=250, d=3, width=1024, seeds=1)[0])
    ex, tr = flow_check(eta)
    print(
        f"\ngradient flow: eta = {eta:.3g} against eta / 2 (n = 250, M = 1024, t <= 1000): "
        f"max relative change of excess risk {ex:.2e}, of training risk {tr:.2e}"
    )


if __name__ == "__main__":
    main()
