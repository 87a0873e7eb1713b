"""Throughput of the sweep engine on the published Figure 1 protocol (docs/performance.md).

Prints, all measured in this one process:
  * trained models, wall time, compile time (summed; compiled ahead, it overlaps training);
  * GD-step FLOPs executed and the waste against the cheapest exact algorithm (the Gram
    parameterization, 2 n^2 M per step, for the steps each model needed);
  * the roofline ratio: executed FLOP/s over the FLOP/s of one large dense float32 matmul;
  * where the wall time goes (the engine's phases), and the GD step at the largest bucket: time
    per model-step against its batched matmul alone and the dense-matmul roofline;
  * the speedup over training a sub-grid model by model (one jit per model, no vmap);
  * optionally (--scaling) wall time against grid size, with the fitted slope;
  * optionally (--authors DIR) the published PyTorch code's own Figure-1 loop on the same grid,
    timed in this process after jaxbof, side by side: both wall times and their ratio.

Usage: python benchmarks/sweep_throughput.py [--quick] [--scaling] [--subgrid K]
           [--authors DIR [--authors-cells K] [--authors-trials T]]

--authors DIR: DIR is a checkout of the published code (git clone of kedar2/benign_overfitting);
run in a venv with PyTorch and jaxbof (pip install torch matplotlib; pip install -e <jaxbof>).
The Figure-1 cell of DIR/experiments.ipynb is executed as published, over this run's grid (the
full Figure 1, or --quick's), with the minimum patch documented at AUTHORS_PATCH below.
--authors-cells K runs only K (n, d/n) cells spread evenly over the grid (--authors-trials T
trials each, default the grid's) and extrapolates the published time per model to the grid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof.experiments import classification as sweep
from jaxbof.experiments.classification import metrics
from jaxbof.experiments.classification.grid import cell_coords, choose_param
from jaxbof.experiments.classification.presets import FIG1, FIG1_QUICK
from jaxbof.experiments.classification.step import run


def best_seconds(f, *args, reps: int = 3) -> float:
    """Fastest of `reps` timed calls of f(*args), after one untimed call (compile, warm-up)."""
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t)
    return best


def dense_matmul_gflops(size: int = 4096, reps: int = 3) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    return 2.0 * size**3 / best_seconds(jax.jit(lambda x: x @ x), a, reps=reps) / 1e9


def step_efficiency(n: int, width: int, slots: int, steps: int = 256) -> dict:
    """Seconds per model-step of the engine's GD step (Gram parameterization, `slots` models
    vmapped, a fori_loop of `steps` steps that never stops) and of its batched matmul
    G C^T alone, at one bucket's shape; best of 3 runs each."""
    from jaxbof.experiments.classification import step as S

    key = jax.random.PRNGKey(0)
    X = jax.random.normal(key, (slots, n, 2 * n), jnp.float32) / np.sqrt(2 * n)
    W0 = jax.random.normal(key, (slots, width, 2 * n), jnp.float32) * 1e-3
    y = jnp.sign(jax.random.normal(jax.random.PRNGKey(1), (slots, n)))
    a = jnp.tile(jnp.where(jnp.arange(width) % 2 == 0, 1.0, -1.0) / width, (slots, 1))
    full = lambda v, dt=jnp.float32: jnp.full(slots, v, dt)
    hyper = S.Hyper(full(0.1), full(1.0 / (width * n)), full(0, jnp.int32), full(2**30, jnp.int32))
    prob = jax.vmap(S.gram_problem)(X, W0, y, jnp.ones((slots, n), bool), a, hyper)
    state = jax.vmap(S.init_state)(prob, W0)

    @jax.jit
    def train(prob, st):
        def body(_, s):
            s = jax.vmap(S.step)(prob, s)
            return s._replace(done=jnp.zeros_like(s.done))

        return jax.lax.fori_loop(0, steps, body, st)

    @jax.jit
    def matmul(G, C):
        return jax.lax.fori_loop(
            0, steps, lambda _, C: C + 1e-3 * jnp.einsum("bij,bjm->bim", G, C), C
        )

    per = steps * slots
    return {
        "step": best_seconds(train, prob, state) / per,
        "matmul": best_seconds(matmul, prob.G_nxn, state.theta) / per,
        "flops": 2.0 * n * n * width,
    }


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
            err = metrics.test_error_mc(
                slot.extras.test_key,
                out["WWt"],
                out["Wv"],
                slot.problem.a_m,
                slot.problem.hyper.alpha,
                slot.extras.gamma,
                slot.extras.d,
                protocol.n_test,
            )
            return state.steps, err

        s, _ = train_one(sc)
        steps.append(int(s))
    return time.perf_counter() - t0, steps


# ---- the published code (--authors) ----
# Karhadkar et al.'s experiments.ipynb: cell "from train import train_till_convergence" (with
# IPython autoreload magics), cell "# Default hyperparameters" (m = 64, corruption_rate = 0.1),
# cell "# Generate heatmaps" (Figure 1: for n, for d/n, 5 trials of train_till_convergence(d, n,
# m, corruption_rate, 5/n), then a pandas table, a seaborn heatmap and a csv). We exec those three
# cells' source in one namespace. The minimum patch, each an exact text match (exactly once, else
# exit 2: the notebook changed):
#   * import cell: the two '%' lines (IPython magics %load_ext autoreload / %autoreload 2) dropped;
#   * the plotting-imports cell (pandas, seaborn, pyplot, tqdm) is not executed: the namespace
#     gets np = numpy and tqdm = the identity (no progress bar);
#   * Figure-1 cell: the loop bounds are set by us (AUTHORS_PATCH: n values, d/n values per n,
#     trials), and everything from AUTHORS_CUT on (pandas table, heatmap, plt.show, and a to_csv
#     that would overwrite the checkout's d_over_n_heatmap.csv) is cut;
#   * not in the notebook: torch.manual_seed(protocol seed) before the loop (the published cell is
#     unseeded), and train_till_convergence wrapped to time each call with perf_counter.
# Nothing inside train.py, model.py or dataset.py is touched; they run from DIR as checked out.
AUTHORS_PATCH = (
    ("for n in tqdm(np.arange(50, 160, 10)):", "for n in tqdm(_bench_n):"),
    ("for d_over_n in np.arange(1, 11, 1):", "for d_over_n in _bench_d_over_n[n]:"),
    ("sample_size = 5\n", "sample_size = _bench_trials\n"),
)
AUTHORS_CUT = "df = pd.DataFrame("
AUTHORS_CELLS = (
    "from train import train_till_convergence",
    "# Default hyperparameters",
    "# Generate heatmaps",
)


def _die(msg: str):
    print(f"sweep_throughput.py --authors: {msg}", file=sys.stderr)
    sys.exit(2)


def authors_setup(path: str) -> tuple[dict, object, str]:
    """Check what --authors needs; returns (namespace, patched Figure-1 code, label).

    Exits 2 if not."""
    missing = []
    for mod in ("torch", "matplotlib"):  # torch: train.py; matplotlib: the cell's LogNorm import
        try:
            __import__(mod)
        except ImportError as e:
            missing.append(f"{mod} ({e})")
    if missing:
        _die(
            f"needs {' and '.join(missing)}: run it in a PyTorch venv "
            "(pip install torch matplotlib, and jaxbof)"
        )
    nb_path = os.path.join(path, "experiments.ipynb")
    for f in ("experiments.ipynb", "train.py", "model.py", "dataset.py"):
        if not os.path.isfile(os.path.join(path, f)):
            _die(
                f"{os.path.join(path, f)} not found: DIR must be a checkout of "
                "github.com/kedar2/benign_overfitting"
            )
    with open(nb_path) as fh:
        code = ["".join(c["source"]) for c in json.load(fh)["cells"] if c["cell_type"] == "code"]
    found = []
    for mark in AUTHORS_CELLS:
        hits = [c for c in code if mark in c]
        if len(hits) != 1:
            _die(f"{nb_path}: expected one code cell containing {mark!r}, found {len(hits)}")
        found.append(hits[0])
    imports, hyper, fig1 = found
    imports = "".join(
        line for line in imports.splitlines(True) if not line.lstrip().startswith("%")
    )
    for old, new in AUTHORS_PATCH:
        if fig1.count(old) != 1:
            _die(f"{nb_path}: Figure-1 cell does not contain {old.strip()!r} exactly once")
        fig1 = fig1.replace(old, new)
    if fig1.count(AUTHORS_CUT) != 1:
        _die(f"{nb_path}: Figure-1 cell does not contain {AUTHORS_CUT!r} exactly once")
    fig1 = fig1[: fig1.index(AUTHORS_CUT)]

    sys.path.insert(0, os.path.abspath(path))
    ns = {"__name__": "__authors__", "np": np, "tqdm": lambda it: it}
    exec(compile(imports, f"{nb_path}[import cell]", "exec"), ns)
    exec(compile(hyper, f"{nb_path}[hyperparameters cell]", "exec"), ns)
    train_mod = sys.modules[ns["train_till_convergence"].__module__]
    if os.path.dirname(os.path.abspath(train_mod.__file__)) != os.path.abspath(path):
        _die(f"'train' was imported from {train_mod.__file__}, not from {path}")
    try:
        rev = subprocess.run(
            ["git", "-C", path, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    outer = sys.modules["model"].TwoLayerNet(2, 4).fc2.flatten().tolist()
    import torch  # pyright: ignore[reportMissingImports] - only for --authors

    label = (
        f"{path}{f' @ {rev}' if rev else ''}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, outer weights {outer[:4]}..."
    )
    return ns, compile(fig1, f"{nb_path}[Figure-1 cell, patched]", "exec"), label


def authors_run(ns: dict, fig1, pairs, trials: int, seed: int) -> tuple[float, list]:
    """Exec the patched Figure-1 cell over `pairs` ((n, d/n) in grid order), `trials` each.
    Returns (wall seconds, [(n, d, seconds, test error) per model])."""
    import torch  # pyright: ignore[reportMissingImports] - only for --authors

    calls = []
    published = ns["train_till_convergence"]

    def timed(d, n, *a, **k):
        t = time.perf_counter()
        out = published(d, n, *a, **k)
        calls.append((int(n), int(d), time.perf_counter() - t, float(out[1])))
        return out

    by_n = {}
    for n, r in pairs:
        by_n.setdefault(int(n), []).append(int(r))
    ns.update(
        train_till_convergence=timed,
        _bench_trials=trials,
        _bench_n=np.array(list(by_n)),  # np.int64 like the published np.arange
        _bench_d_over_n={n: np.array(rs) for n, rs in by_n.items()},
    )
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    exec(fig1, ns)
    return time.perf_counter() - t0, calls


def authors_report(args, preset, cells, rows, st, gflops, authors):
    ns, fig1, label = authors
    pairs = list(dict.fromkeys((c.n, c.d_over_n) for c in cells))
    trials = args.authors_trials or preset.grid.seeds
    k = args.authors_cells
    sub = (k is not None and k < len(pairs)) or trials != preset.grid.seeds
    if k is not None and k < len(pairs):
        # evenly spaced indices over the grid order (n-major, d/n-minor): a stride that is not
        # a multiple of the d/n count, so the sub-grid covers every d/n, not one column
        pairs = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, k).round()]
    wall, calls = authors_run(ns, fig1, pairs, trials, preset.protocol.seed)
    per = np.array([c[2] for c in calls])
    print(f"\n== published code, same process: {label} ==")
    if sub:
        print(
            f"SUB-GRID: {len(pairs)} (n, d/n) cells spread over {preset.name}, {trials} "
            f"trials each = {len(calls)} models (of {st.models}); published time "
            f"extrapolated per model"
        )
        print("cells: " + ", ".join(f"n={n} d/n={r:g}" for n, r in pairs))
    print(
        f"published wall time            {wall:8.2f} s   ({len(calls)} models, "
        f"{wall / len(calls):.2f} s/model, min {per.min():.2f} max {per.max():.2f})"
    )
    pub_grid = wall / len(calls) * st.models if sub else wall
    what = f"published, whole grid{', EXTRAPOLATED' if sub else ''}"
    print(f"{what:<31}{pub_grid:8.2f} s   ({preset.name}, {st.models} models)")
    print(
        f"jaxbof, same grid (above)      {st.wall_s:8.2f} s   ratio published / jaxbof "
        f"{pub_grid / st.wall_s:.1f}x{' (extrapolated)' if sub else ''}"
    )
    keep = {(n, r) for n, r in pairs}
    if sub:
        g = preset.grid.__class__(**{**preset.grid.__dict__, "seeds": trials})
        sub_cells = [c for c in g.cells() if (c.n, c.d_over_n) in keep]
        rows, sub_st = sweep.run_cells(sub_cells, preset.protocol, max_margin=False)
        print(
            f"jaxbof, same sub-grid          {sub_st.wall_s:8.2f} s   ratio published / "
            f"jaxbof {wall / sub_st.wall_s:.1f}x ({sub_st.models} models; run after the full grid)"
        )
    jerr = np.mean(
        [r["test_error"] for r in rows if (r["n"], r["d_over_n"]) in keep and r["seed"] < trials]
    )
    print(f"dense f32 matmul 4096^3 (JAX)  {gflops:8.1f} GFLOP/s")
    print(
        f"mean test error, same cells    published {np.mean([c[3] for c in calls]):.4f}, "
        f"jaxbof {jerr:.4f} (different random draws; a sanity check only)"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the quick Figure 1 grid")
    ap.add_argument("--subgrid", type=int, default=6, help="models in the one-by-one baseline")
    ap.add_argument("--scaling", action="store_true", help="also time 1, 2, 3 seeds per cell")
    ap.add_argument(
        "--authors",
        metavar="DIR",
        help="checkout of the published code (kedar2/benign_overfitting): time its "
        "Figure-1 loop on the same grid, side by side (needs PyTorch)",
    )
    ap.add_argument(
        "--authors-cells",
        type=int,
        metavar="K",
        help="with --authors: only K (n, d/n) cells, spread evenly; extrapolated",
    )
    ap.add_argument(
        "--authors-trials",
        type=int,
        metavar="T",
        help="with --authors: trials per cell (default: the grid's)",
    )
    args = ap.parse_args()
    if (args.authors_cells is not None or args.authors_trials is not None) and not args.authors:
        ap.error("--authors-cells and --authors-trials need --authors DIR")
    if (args.authors_cells is not None and args.authors_cells < 1) or (
        args.authors_trials is not None and args.authors_trials < 1
    ):
        ap.error("--authors-cells and --authors-trials must be >= 1")
    authors = authors_setup(args.authors) if args.authors else None
    preset = FIG1_QUICK if args.quick else FIG1
    cells = preset.grid.cells()
    if authors and any(c.d_over_n != int(c.d_over_n) for c in cells):
        _die("the published loop takes integer d/n (d = n * d_over_n)")
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float32, "
        f"jax {jax.__version__}"
    )

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

    # the GD step at the largest bucket, with the engine's slots per device
    big = max(cells, key=lambda c: c.n)
    eff = step_efficiency(big.n, big.width, st.slots // st.devices)

    exec_rate = st.flops_executed / st.wall_s / 1e9
    print(f"\n== {preset.name}: {st.models} models, {st.buckets} shape buckets ==")
    print(f"steps per model: mean {steps.mean():.0f}, max {steps.max()}, flagged runs {flagged}")
    print(f"wall time (compile included)   {st.wall_s:8.2f} s")
    print(
        f"compile time (summed)          {st.compile_s:8.2f} s   compile share "
        f"{st.compile_s / st.wall_s:.2f} (compiled ahead on a second thread: overlaps)"
    )
    print(f"GD FLOPs executed              {st.flops_executed / 1e12:8.3f} TFLOP")
    print(f"GD FLOPs useful (Gram, exact)  {st.flops_useful / 1e12:8.3f} TFLOP")
    print(f"waste (executed / useful)      {st.flops_executed / st.flops_useful:8.2f} x")
    print(f"dense f32 matmul 4096^3        {gflops:8.1f} GFLOP/s")
    print(
        f"executed rate over wall        {exec_rate:8.1f} GFLOP/s   roofline ratio "
        f"{exec_rate / gflops:.2f}"
    )
    print(
        "where the wall time goes (engine phases, main thread; compiles on a second thread): "
        + ", ".join(
            f"{k} {st.phases[k]:.2f} s"
            for k in ("setup", "compile_wait", "prepare", "train", "report", "write", "other")
        )
    )
    B = st.slots // st.devices
    step_rate, mm_rate = eff["flops"] / eff["step"] / 1e9, eff["flops"] / eff["matmul"] / 1e9
    print(
        f"GD step at n = {big.n}, M = {big.width}, {B} slots: {eff['step'] * 1e6:.1f} us per "
        f"model-step ({step_rate:.1f} GFLOP/s, roofline ratio {step_rate / gflops:.2f}); its "
        f"batched matmul G C^T alone {eff['matmul'] * 1e6:.1f} us ({mm_rate:.1f} GFLOP/s, "
        f"{mm_rate / gflops:.2f}); the rest of the step {(eff['step'] - eff['matmul']) * 1e6:.1f}"
        " us"
    )
    per_loop = loop_s / len(sub)
    print(
        f"one-by-one ({len(sub)} models)       {loop_s:8.2f} s  ({per_loop:.2f} s/model, "
        f"same step counts as the engine: {same_steps})"
    )
    print(
        f"engine on the same sub-grid    {sub_st.wall_s:8.2f} s   speedup "
        f"{loop_s / sub_st.wall_s:.1f}x"
    )
    print(
        f"engine, full grid, per model   {st.wall_s / st.models:8.3f} s   speedup "
        f"{per_loop / (st.wall_s / st.models):.1f}x (one-by-one extrapolated to the grid: "
        f"{per_loop * st.models:.0f} s)"
    )
    if not authors:
        print(
            "published code: not timed here (run with --authors DIR in a PyTorch venv for "
            "the side-by-side ratio)"
        )
    if scaling:
        m, t = np.array(scaling, float).T
        slope, icpt = np.polyfit(m, t, 1)
        print(
            "scaling (programs already compiled): "
            + ", ".join(f"{int(a)} models {b:.1f} s" for a, b in scaling)
            + f"; slope {slope * 1e3:.1f} ms/model, intercept {icpt:.1f} s"
        )
    if authors:
        authors_report(args, preset, cells, rows, st, gflops, authors)


if __name__ == "__main__":
    main()
