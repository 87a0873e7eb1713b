"""Throughput of the CNN experiment (Kou et al. 2023) on the published grid, and the published
PyTorch loop side by side.

Prints, measured in this one process:
  * jaxbof: the kou-cnn grid (--quick: the quick preset) trained cold (no compile cache: every
    program compiled in this run), wall time with compile, per-phase times, networks per second;
  * with --authors FILE (FILE: syntheticrelu.py of uclaml/Benign_ReLU_CNN; run in a venv with
    PyTorch and jaxbof): the published grid loop's own body, executed verbatim (its source is
    read from FILE) for K (||mu||, d) cells spread evenly over the grid, T trainings each, after
    jaxbof in this same process; seconds per training, extrapolated to the grid; the ratio.

Usage: python benchmarks/cnn_throughput.py [--quick] [--authors FILE [--authors-cells K]
           [--authors-trials T]]
"""

from __future__ import annotations

import argparse
import ast
import random
import sys
import time
from pathlib import Path

import jax

from jaxbof.experiments.cnn import cli as cnn_cli
from jaxbof.experiments.cnn import program as P


def jaxbof_run(quick: bool):
    study = cnn_cli.kou_study(quick)
    jax.config.update("jax_enable_compilation_cache", False)  # cold: every compile counted
    t = time.perf_counter()
    rows, stats = P.run_cells(study.cells, study.protocol)
    return study, rows, stats, time.perf_counter() - t


def authors_setup(path: str):
    """The published module's imports, classes and functions (not its top-level runs), and the
    source of the inner `for j in range(10)` training loop of its grid."""
    # the file is a Colab export: its shell lines (`!cp ...`) are commented out, nothing else
    source = "".join(
        "# " + line if line.lstrip().startswith("!") else line
        for line in Path(path).read_text().splitlines(keepends=True)
    )
    tree = ast.parse(source)
    plotting = ("colab", "seaborn", "matplotlib")  # drawing and Drive only: not timed
    keep = [
        n
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        or isinstance(n, (ast.Import, ast.ImportFrom))
        and not any(p in ast.get_source_segment(source, n) for p in plotting)
    ]
    ns: dict = {"__name__": "__authors__"}
    exec(compile(ast.Module(keep, []), path, "exec"), ns)
    inner = None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.For)
            and isinstance(node.iter, ast.Call)
            and ast.get_source_segment(source, node.iter) == "range(10)"
            and isinstance(node.target, ast.Name)
            and node.target.id == "j"
        ):
            inner = node
    if inner is None:
        raise SystemExit(f"{path}: no `for j in range(10)` grid loop found")
    loop = ast.get_source_segment(source, inner).replace("range(10)", "range(TRIALS)", 1)
    return ns, compile(loop, path, "exec")


def authors_run(ns, loop, pairs, trials: int) -> float:
    """Seconds for len(pairs) cells x trials trainings of the published loop, its constants
    as in syntheticrelu.py (n = 20, 1000 test points, m = 10, sigma_p = 1, p = 0.1, 100
    epochs of SGD at lr 0.1)."""
    import numpy as np
    import torch  # pyright: ignore[reportMissingImports] - only for --authors

    random.seed(205348320)
    np.random.seed(0)  # noqa: NPY002 - the authors' code draws from NumPy's global RNG
    torch.manual_seed(0)
    ns.update(
        num_epochs=100,
        DATA_NUM=20,
        TEST_DATA_NUM=1000,
        CLUSTER_NUM=1,
        PATCH_NUM=2,
        Noiselevel=1.0,
        flip=0.1,
        TRIALS=trials,
        optim=torch.optim,
    )
    t = time.perf_counter()
    for bmu, patch_len in pairs:
        ns.update(bmu=bmu, PATCH_LEN=patch_len, test1=0, train1=0)
        exec(loop, ns)
    return time.perf_counter() - t


def _spread(length: int, k: int) -> list[int]:
    return [round(i * (length - 1) / max(k - 1, 1)) for i in range(k)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--authors", metavar="FILE")
    ap.add_argument("--authors-cells", type=int, default=12)
    ap.add_argument("--authors-trials", type=int, default=2)
    args = ap.parse_args()
    authors = authors_setup(args.authors) if args.authors else None
    study, rows, stats, wall = jaxbof_run(args.quick)
    nets = len(rows)
    print(
        f"jaxbof {study.name}: {nets} networks ({stats.models} cells x "
        f"{len(study.protocol.signals)} ||mu||) in {wall:.1f} s cold, compile "
        f"{stats.compile_s:.1f} s, {stats.buckets} bucket(s), {stats.slots} slots on "
        f"{stats.devices} {jax.default_backend()} device(s); {nets / wall:.0f} networks/s"
    )
    print("phases (s): " + " ".join(f"{k}={v:.1f}" for k, v in stats.phases.items()))
    if authors is None:
        return 0
    ns, loop = authors
    grid = study.grid
    signals, dims = grid["signal"], grid["d"]
    k = args.authors_cells
    pairs = [
        (signals[i], dims[j]) for i, j in zip(_spread(len(signals), k), _spread(len(dims), k)[::-1])
    ]
    secs = authors_run(ns, loop, pairs, args.authors_trials)
    per = secs / (k * args.authors_trials)
    total = per * nets
    import torch  # pyright: ignore[reportMissingImports] - only for --authors

    print(
        f"published loop (syntheticrelu.py, PyTorch {torch.__version__}): "
        f"{k} cells x {args.authors_trials} trainings in {secs:.1f} s = {per:.3f} s per "
        f"training; the grid's {nets} trainings: {total:.0f} s extrapolated"
    )
    print(
        f"side by side, same machine, same process: jaxbof {wall:.1f} s, published "
        f"{total:.0f} s: x{total / wall:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
