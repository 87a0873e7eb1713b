"""Throughput of the sweep engine on the published Figure 1 protocol (performance.md).

Prints, all measured in this one process:
  * trained models, wall time, compile time (summed; compiled ahead, it overlaps training);
  * GD-step FLOPs executed and the waste against the cheapest exact algorithm (the Gram
    parameterization, 2 n^2 M per step, for the steps each model needed);
  * the roofline ratio: executed FLOP/s over the FLOP/s of one large dense float32 matmul;
  * the speedup over training a sub-grid model by model (one jit per model, no vmap);
  * optionally (--scaling) wall time against grid size, with the fitted slope.

Usage: python benchmarks/sweep_throughput.py [--quick] [--scaling] [--subgrid K]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import metrics
from jaxbof.experiments import FIG1, FIG1_QUICK
from jaxbof.experiments import classification as sweep
from jaxbof.grid import cell_coords, choose_param
from jaxbof.train import run


def dense_matmul_gflops(size: int = 4096, reps: int = 3) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * size**3 / best / 1e9


def one_by_one(cells, protocol) -> tuple[float, list[int]]:
    """The naive way: one jit per model (its own shapes), no batching. Returns (seconds, steps)."""
    key = jax.random.PRNGKey(protocol.seed)
    keys_fn = jax.jit(jax.vmap(sweep.cell_keys, in_axes=(None, 0)))
    t0 = time.perf_counter()
    steps = []
    for cell in cells:
        param = choose_param(cell, protocol)
        keys = keys_fn(key, cell_coords(cell)[None])
        sc = jax.tree.map(lambda x: x[0], sweep.scalars([cell], keys, protocol, np.float32))

        @jax.jit
        def train_one(sc):
            slot = sweep.prepare(sc, n_pad=cell.n, d_pad=cell.d, width=cell.width, param=param)
            state, _ = run(slot.problem, slot.state)
            slot = slot._replace(state=state)
            out = sweep.measure_train(slot)
            err = metrics.test_error_mc(slot.extras.test_key, out["WWt"], out["Wv"],
                                        slot.problem.a_m, slot.problem.hyper.alpha,
                                        slot.extras.gamma, slot.extras.d, protocol.n_test)
            return state.steps, err

        s, _ = train_one(sc)
        steps.append(int(s))
    return time.perf_counter() - t0, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the quick Figure 1 grid")
    ap.add_argument("--subgrid", type=int, default=6, help="models in the one-by-one baseline")
    ap.add_argument("--scaling", action="store_true", help="also time 1, 2, 3 seeds per cell")
    args = ap.parse_args()
    preset = FIG1_QUICK if args.quick else FIG1
    cells = preset.grid.cells()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float32, "
          f"jax {jax.__version__}")

    rows, st = sweep.run_cells(cells, preset.protocol, max_margin=False)
    flagged = sum(not r["converged"] for r in rows)
    steps = np.array([r["steps"] for r in rows])

    # model by model on an evenly spread sub-grid, against the engine on the same sub-grid
    sub = cells[:: max(1, len(cells) // args.subgrid)][: args.subgrid]
    loop_s, loop_steps = one_by_one(sub, preset.protocol)
    sub_rows, sub_st = sweep.run_cells(sub, preset.protocol, max_margin=False)
    by_cell = {tuple(r[k] for k in ("n", "d", "gamma", "seed")): r["steps"] for r in sub_rows}
    same_steps = all(by_cell[(c.n, c.d, c.gamma, c.seed)] == s for c, s in zip(sub, loop_steps))

    gflops = dense_matmul_gflops()
    scaling = []
    if args.scaling:
        for seeds in (1, 2, 3):
            g = preset.grid.__class__(**{**preset.grid.__dict__, "seeds": seeds})
            _, s = sweep.run_cells(g.cells(), preset.protocol, max_margin=False)
            scaling.append((s.models, s.wall_s))

    exec_rate = st.flops_executed / st.wall_s / 1e9
    print(f"\n== {preset.name}: {st.models} models, {st.buckets} shape buckets ==")
    print(f"steps per model: mean {steps.mean():.0f}, max {steps.max()}, flagged runs {flagged}")
    print(f"wall time (compile included)   {st.wall_s:8.2f} s")
    print(f"compile time (summed)          {st.compile_s:8.2f} s   compile share "
          f"{st.compile_s / st.wall_s:.2f} (compiled ahead on a second thread: overlaps)")
    print(f"GD FLOPs executed              {st.flops_executed / 1e12:8.3f} TFLOP")
    print(f"GD FLOPs useful (Gram, exact)  {st.flops_useful / 1e12:8.3f} TFLOP")
    print(f"waste (executed / useful)      {st.flops_executed / st.flops_useful:8.2f} x")
    print(f"dense f32 matmul 4096^3        {gflops:8.1f} GFLOP/s")
    print(f"executed rate over wall        {exec_rate:8.1f} GFLOP/s   roofline ratio "
          f"{exec_rate / gflops:.2f}")
    per_loop = loop_s / len(sub)
    print(f"one-by-one ({len(sub)} models)       {loop_s:8.2f} s  ({per_loop:.2f} s/model, "
          f"same step counts as the engine: {same_steps})")
    print(f"engine on the same sub-grid    {sub_st.wall_s:8.2f} s   speedup "
          f"{loop_s / sub_st.wall_s:.1f}x")
    print(f"engine, full grid, per model   {st.wall_s / st.models:8.3f} s   speedup "
          f"{per_loop / (st.wall_s / st.models):.1f}x (one-by-one extrapolated to the grid: "
          f"{per_loop * st.models:.0f} s)")
    print("anchor: published PyTorch code 657 s on the 2-core dev machine; target <= 30 s")
    if scaling:
        m, t = np.array(scaling, float).T
        slope, icpt = np.polyfit(m, t, 1)
        print("scaling (programs already compiled): " + ", ".join(f"{int(a)} models {b:.1f} s" for a, b in scaling)
              + f"; slope {slope * 1e3:.1f} ms/model, intercept {icpt:.1f} s")


if __name__ == "__main__":
    main()
