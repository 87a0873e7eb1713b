"""Command line: a thin layer over jaxbof.engine, the experiments, jaxbof.store and jaxbof.plots.

  jaxbof reproduce karhadkar-fig1 [--quick] [--out DIR]
  jaxbof reproduce karhadkar-fig2 [--quick] [--out DIR]
  jaxbof reproduce park-regression [--quick] [--out DIR]
  jaxbof sweep classification --n 50:150:10 --d-over-n 1:10 --seeds 5 [...] --out DIR
  jaxbof sweep regression --n 250,500 --d 5 --width 256,4096 --seeds 3
                          --target "1:0.5,2:0.5,4:0.5" --noise 0.5 [...] --out DIR
  jaxbof plot DIR
  jaxbof reproduce ntk-concentration [--quick] [--out DIR]
  jaxbof reproduce optimizers [--quick] [--out DIR]
  jaxbof reproduce kou-cnn [--quick] [--out DIR]       (also cao-cnn)
  jaxbof sweep cnn --n 20 --d 100,400,1000 --signal 0:9.9:0.1 --seeds 10 [...] --out DIR
  (reproduce and sweep take --optimizer SPEC: sgd, momentum:0.9, adam:1e-3, ...; default sgd)
  jaxbof spectrum --kernel ntk-first-layer --d D --k-max K [--alpha A] [--bias]
                  [--empirical-n N [--width M]] --out DIR

The experiments come from the registry (jaxbof.experiments): `sweep NAME` and `reproduce NAME`
exist for every plug-in, other packages' included, and `plot DIR` draws through the plug-in
named in DIR/config.json. Bad arguments print one line `jaxbof: error: ...` and exit with code 2. Rerunning a command on
the same --out resumes it: runs whose last row is in DIR/results.csv are not trained again, and
a run cut short is trained again with only its missing rows added.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported in one line, exit code 2."""


# ----------------------------------------------------------------------------- parsing


def _number(text: str, kind, name: str):
    from jaxbof.flags import number

    try:
        return number(text, kind, name)
    except ValueError as e:
        raise UsageError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no traceback
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from jaxbof import experiments

    try:  # the registry: built-in experiments and other packages' plug-ins
        plugins, reproducible = experiments.plugins(), experiments.reproducible()
    except ValueError as e:  # a plug-in named like another one
        raise UsageError(str(e)) from None
    p = _Parser(prog="jaxbof", description="Benign overfitting in leaky-ReLU networks, in JAX.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def run_options(q):
        q.add_argument("--out", default=None, help="results directory (resumed if it exists)")
        q.add_argument("--x64", action="store_true", help="train in float64 (default float32)")
        q.add_argument("--slots", type=int, default=None,
                       help="models per compiled batch on each device")
        q.add_argument("--chunk", type=int, default=64, help="GD steps between host checks")
        q.add_argument("--no-plots", action="store_true")
        q.add_argument("--no-progress", action="store_true")
        q.add_argument("--devices", type=int, default=None,
                       help="local devices to shard each batch over (default: all)")
        q.add_argument("--matmul-precision", default="float32",
                       help="float32 (full, default), tensorfloat32, bfloat16 or default "
                            "(the backend's: TF32 on recent NVIDIA GPUs)")
        q.add_argument("--compile-cache", default=None, metavar="DIR",
                       help="persistent XLA compile cache (default: $XDG_CACHE_HOME/jaxbof/xla)")
        q.add_argument("--no-compile-cache", action="store_true")
        q.add_argument("--optimizer", default=None, metavar="SPEC",
                       help="update rule (default sgd: the published GD): sgd, momentum:BETA, "
                            "nesterov:BETA, adam:LR, adamw:LR:WD, rmsprop:LR, adagrad:LR, "
                            "sign:LR (sgd/momentum/nesterov use the published step; the others "
                            "an absolute LR)")
        h = q.add_argument_group("several processes (hosts), through jax.distributed")
        h.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="address of process 0 (omit under srun/mpirun: detected)")
        h.add_argument("--num-processes", type=int, default=None)
        h.add_argument("--process-id", type=int, default=None)

    r = sub.add_parser("reproduce", help="run a published protocol")
    r.add_argument("experiment", help="; ".join(f"{name}: {rep.help}" for name, (_, rep)
                                              in reproducible.items()))
    r.add_argument("--quick", action="store_true", help="a small grid that runs in seconds")
    run_options(r)

    s = sub.add_parser("sweep", help="run a custom grid of one experiment")
    kinds = s.add_subparsers(dest="kind", required=True, parser_class=_Parser,
                             metavar="{" + ",".join(p.name for p in plugins if p.from_args) + "}")
    for plugin in plugins:
        if plugin.add_arguments is None:
            continue
        k = kinds.add_parser(plugin.name, help=f"{plugin.description} ({plugin.paper})")
        plugin.add_arguments(k.add_argument_group(f"{plugin.name} ({plugin.paper})"))
        run_options(k)

    pl = sub.add_parser("plot", help="plot a results directory")
    pl.add_argument("dir")

    sp = sub.add_parser("spectrum", help="kernel eigenvalues on the sphere S^{d-1}")
    sp.add_argument("--kernel", default="ntk-first-layer",
                    help="ntk-first-layer, ntk-both-layers or relu-nngp")
    sp.add_argument("--alpha", default="0", help="leaky-ReLU slope (0 = ReLU)")
    sp.add_argument("--d", required=True, help="input dimension (sphere S^{d-1})")
    sp.add_argument("--k-max", required=True, help="highest degree")
    sp.add_argument("--empirical-n", default=None,
                    help="also: eigenvalues of the Gram / n of this many uniform points")
    sp.add_argument("--bias", action="store_true",
                    help="pre-activation <w, x> + b, b ~ N(0, 1), trained with the first layer")
    sp.add_argument("--width", default=None,
                    help="empirical Gram of the width-M net at init (antisymmetric, even M) "
                         "instead of the analytic kernel; needs --empirical-n")
    sp.add_argument("--seed", default="0", help="key of the empirical points and weights")
    sp.add_argument("--top", default=None,
                    help="also write the largest this many eigenvalues of Gram / n with their "
                         "residuals ||K v - lambda v|| / n (top.csv); needs --empirical-n")
    sp.add_argument("--matrix-free", action="store_true",
                    help="never form the n x n Gram (needs --top): with --width the p x p "
                         "Jacobian route when the parameter count p <= n, else LOBPCG on "
                         "NTK-vector products; without it LOBPCG on tile-by-tile products")
    sp.add_argument("--out", required=True)
    return p


def _spectrum(args) -> int:
    import csv
    from pathlib import Path

    import numpy as np

    from jaxbof import plots, spectra

    try:
        kernel = spectra.Kernel(args.kernel)
    except ValueError:
        allowed = ", ".join(k.value for k in spectra.Kernel)
        raise UsageError(f"--kernel: {args.kernel!r} is not one of {allowed}") from None
    d, k_max = _number(args.d, int, "d"), _number(args.k_max, int, "k-max")
    alpha = _number(args.alpha, float, "alpha")
    if d < 2:
        raise UsageError(f"--d: {d} must be >= 2")
    if not 0 <= k_max <= 100_000:
        raise UsageError(f"--k-max: {k_max} must be in [0, 100000]")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha: {alpha} must be in [0, 1]")
    n = None if args.empirical_n is None else _number(args.empirical_n, int, "empirical-n")
    top = None if args.top is None else _number(args.top, int, "top")
    free = args.matrix_free
    if free and top is None:
        raise UsageError("--matrix-free: needs --top (how many eigenvalues to find)")
    if top is not None and n is None:
        raise UsageError("--top: needs --empirical-n (the number of points of the Gram)")
    n_max = 1_000_000 if free else 20_000
    if n is not None and not 1 <= n <= n_max:
        raise UsageError(f"--empirical-n: {n} must be in [1, {n_max}]"
                         + ("" if free else " (larger with --top K --matrix-free)"))
    if top is not None and not 1 <= top <= min(n, 2000):
        raise UsageError(f"--top: {top} must be in [1, min(n, 2000)] (n = {n})")
    seed = _number(args.seed, int, "seed")
    if not 0 <= seed < 2**32:
        raise UsageError(f"--seed: {seed} must be in [0, 2^32)")

    width = None if args.width is None else _number(args.width, int, "width")
    if width is not None:
        if n is None:
            raise UsageError("--width: needs --empirical-n (the number of points of the Gram)")
        if width < 2 or width % 2 or (not free and n * width > 10**8):
            raise UsageError(f"--width: {width} must be even, >= 2 and with n * width <= 1e8 "
                             f"(n = {n}; any n with --top K --matrix-free)")
        p = _trained_count(kernel, d, width, args.bias)
        if free and p > 20_000:
            raise UsageError(f"--width: {width} gives {p} trained parameters; --matrix-free "
                             "handles at most 20000")
        if top is not None and top > p // 2:
            raise UsageError(f"--top: {top} exceeds the rank bound {p // 2} of the width-{width} "
                             "Gram (p / 2: the antisymmetric init pairs equal neurons)")
    if free and width is None and n > 200_000:
        raise UsageError(f"--empirical-n: {n} must be <= 200000 for the analytic kernel with "
                         "--matrix-free (each product costs n^2); use --width for larger n")
    if free and width is None and n > 20_000:
        print(f"jaxbof: the analytic kernel's products cost n^2 = {float(n) ** 2:.1e} kernel "
              "entries each, about 30 of them: minutes to hours on a CPU (n = 20000 took 2 min "
              "on 2 cores; the time grows like n^2)", file=sys.stderr)

    spec = spectra.eigenvalues(kernel, d, k_max, alpha=alpha, bias=args.bias)
    mult = spectra.multiplicity(d, spec.k)
    logm = spectra.log_multiplicity(d, spec.k)
    fit = empirical = found = None
    if n is not None:
        import jax

        jax.config.update("jax_enable_x64", True)  # spectra are float64 (entry point)
        key = jax.random.PRNGKey(seed)
        from jaxbof import sphere

        x = sphere.uniform(key, n, d)
        net = None if width is None else _two_layer(kernel, d, width, alpha, args.bias,
                                                     jax.random.fold_in(key, width))
        if free:
            found = _top_matrix_free(kernel, x, top, net, alpha, args.bias)
            lam = found.eigenvalue / n
        else:
            if width is None:
                xh = np.asarray(x, np.float64)
                u = np.clip(xh @ xh.T, -1.0, 1.0)
                # <x, x> = 1 exactly: rounding it to 1 - eps moves arccos by 1e-8
                np.fill_diagonal(u, 1.0)
                K = spectra.kernel_fn(kernel, alpha, args.bias)(u)
            else:
                K = np.asarray(_empirical_gram(net, x))
            K = 0.5 * (K + K.T)
            if top is None:
                lam = np.linalg.eigvalsh(K) / n
            else:
                found = _top_dense(K, top)
                lam = found.eigenvalue / n
        fit = spectra.levels_of(lam, spec, d)
        empirical = fit.sorted_empirical
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["k", "multiplicity", "log_multiplicity", "eigenvalue", "log_eigenvalue"]
    if fit is not None:
        columns += ["empirical_mean", "rel_error"]
        by_k = {int(k): (m, e) for k, m, e in zip(fit.k, fit.empirical_mean, fit.rel_error)}
    with open(out / "spectrum.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i, k in enumerate(spec.k):
            row = [int(k), repr(float(mult[i])), repr(float(logm[i])),
                   repr(float(spec.eigenvalue[i])), repr(float(spec.log_eigenvalue[i]))]
            if fit is not None:
                row += [repr(float(v)) for v in by_k.get(int(k), (float("nan"),) * 2)]
            w.writerow(row)
    title = (f"{kernel.value}, alpha={alpha:g}, d={d}" + (", bias" if args.bias else "")
             + (f", n={n} points" if n else "")
             + (f", empirical NTK of width {width}" if width else "") + (" (float64)" if n else ""))
    png = plots.spectrum(spec.k, mult, spec.eigenvalue, out / "spectrum.png", empirical,
                         title=title, max_index=None if n else 2000)
    print(f"wrote {out / 'spectrum.csv'}\nwrote {png}")
    if found is not None:
        with open(out / "top.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "eigenvalue", "residual", "rel_residual"])
            for i, (lam_i, r_i) in enumerate(zip(found.eigenvalue / n, found.residual / n)):
                w.writerow([i + 1, repr(float(lam_i)), repr(float(r_i)), repr(float(r_i / lam_i))])
        how = ("matrix-free, " + (f"{found.iterations} LOBPCG iterations" if found.iterations
                                  else "p x p Jacobian route")) if free else "dense eigh"
        print(f"wrote {out / 'top.csv'}: top {top} eigenvalues of Gram / n ({how}), largest "
              f"relative residual {float(np.max(found.residual / found.eigenvalue)):.2g}"
              + ("" if found.converged else " (NOT converged)"))
    if fit is not None:
        print("k,multiplicity,eigenvalue,empirical_mean,rel_error")
        for k, m, mu, e, r in zip(fit.k, fit.multiplicity, fit.eigenvalue, fit.empirical_mean,
                                  fit.rel_error):
            print(f"{k},{m},{mu:.6g},{e:.6g},{r:.3g}")
    return 0


def _two_layer(kernel, d: int, width: int, alpha: float, bias: bool, key):
    """(params, apply_fn, trainable, route) of the width-`width` two-layer net at init whose
    empirical Gram approximates the analytic `kernel`: first layer (and bias) trained for
    ntk-first-layer, all for ntk-both-layers, the outer weights alone (the finite-width NNGP,
    generic route) for relu-nngp."""
    import functools

    from jaxbof import ntk, spectra

    params = ntk.init_two_layer(key, width, d, bias=bias)
    b = True if bias else None
    mask = {spectra.Kernel.NTK_FIRST_LAYER: ntk.TwoLayerParams(True, False, b),
            spectra.Kernel.NTK_BOTH_LAYERS: ntk.TwoLayerParams(True, True, b),
            spectra.Kernel.RELU_NNGP: ntk.TwoLayerParams(False, True, False if bias else None)}
    route = ntk.Route.NTVP if kernel == spectra.Kernel.RELU_NNGP else ntk.Route.STRUCTURED
    return params, functools.partial(ntk.two_layer_apply, alpha=alpha), mask[kernel], route


def _trained_count(kernel, d: int, width: int, bias: bool) -> int:
    """Trained parameters of `_two_layer`'s net: the rank bound of its Gram (before pairing)."""
    from jaxbof import spectra

    if kernel == spectra.Kernel.RELU_NNGP:
        return width
    return width * (d + bias + (kernel == spectra.Kernel.NTK_BOTH_LAYERS))


def _empirical_gram(net, x):
    """The dense n x n empirical NTK Gram of `_two_layer`'s net."""
    from jaxbof import ntk

    params, apply_fn, trainable, route = net
    route = ntk.Route.JACOBIAN if route is ntk.Route.NTVP else route
    return ntk.empirical_ntk_fn(apply_fn, route=route, trainable=trainable)(params, x)


def _top_dense(K, top: int):
    """eigsolve.TopEigen of the dense Gram K: the `top` largest pairs by eigh, residuals
    ||K v - lambda v|| from K."""
    from scipy import linalg

    from jaxbof import eigsolve

    n = K.shape[0]
    lam, V = linalg.eigh(K, subset_by_index=(n - top, n - 1))
    lam, V = lam[::-1], V[:, ::-1]
    resid = eigsolve.residual_norms(lambda W: K @ W, lam, V)
    return eigsolve.TopEigen(lam, V, resid, 0, True)


def _top_matrix_free(kernel, x, top: int, net, alpha: float, bias: bool):
    """The `top` largest eigenpairs of the Gram without forming it (ntk.top_eigenpairs)."""
    from jaxbof import ntk, spectra

    if net is None:
        layers = {spectra.Kernel.NTK_FIRST_LAYER: ntk.Layers.FIRST,
                  spectra.Kernel.NTK_BOTH_LAYERS: ntk.Layers.BOTH}.get(kernel)
        if layers is None:
            raise UsageError(f"--matrix-free: the analytic {kernel.value} kernel has no "
                             "matrix-free product; use --width for its finite-width Gram")
        return ntk.top_eigenpairs(x, top, layers=layers, alpha=alpha, bias=bias,
                                  progress=_solver_progress())
    params, apply_fn, trainable, route = net
    return ntk.top_eigenpairs(x, top, params=params, apply_fn=apply_fn, trainable=trainable,
                              route=route, progress=_solver_progress())


def _solver_progress(every: float = 10.0):
    """A LOBPCG progress callback: one line on stderr at most every `every` seconds, so that a
    long solve is never silent."""
    start = last = time.monotonic()

    def report(it, converged, k, worst):
        nonlocal last
        now = time.monotonic()
        if now - last >= every:
            last = now
            print(f"jaxbof: LOBPCG iteration {it}: {converged} of {k} eigenpairs converged, "
                  f"largest relative residual {worst:.1e}, {now - start:.0f} s", file=sys.stderr)
    return report


def _with_optimizer(study, spec: str | None):
    """The study under the update rule `spec` (--optimizer; None: the protocol's, plain GD).
    A rule other than GD gets its own name, hence its own default --out."""
    if spec is None:
        return study
    from jaxbof import optim

    try:
        opt = optim.parse(spec)
    except ValueError as e:
        raise UsageError(f"--optimizer: {e}") from None
    p = study.protocol
    if not (dataclasses.is_dataclass(p) and "optimizer" in {f.name for f in dataclasses.fields(p)}):
        raise UsageError(f"--optimizer does not apply to {study.kind}: it trains with its own "
                         "update rule")
    name = study.name if opt == optim.GD else f"{study.name}-{opt.spec.replace(':', '-')}"
    return study._replace(name=name, protocol=dataclasses.replace(study.protocol, optimizer=opt))


def _plugin(kind: str):
    from jaxbof import experiments

    try:
        return experiments.plugin(kind)
    except ValueError as e:
        raise UsageError(str(e)) from None


# ----------------------------------------------------------------------------- commands


MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")


def compile_cache_dir(args) -> Path | None:
    """--compile-cache DIR, else $XDG_CACHE_HOME/jaxbof/xla (~/.cache if unset); None with
    --no-compile-cache."""
    if args.no_compile_cache:
        if args.compile_cache is not None:
            raise UsageError("--compile-cache and --no-compile-cache exclude each other")
        return None
    if args.compile_cache is not None:
        return Path(args.compile_cache)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxbof" / "xla"


class Runtime(NamedTuple):
    """How this process runs: what config.json's "run" records beside the versions."""

    process: int
    processes: int
    devices: int
    matmul_precision: str
    compile_cache: str | None


def _runtime(args) -> Runtime:
    """Set up JAX for a run command, in this order: the distributed runtime (before anything
    touches a device), precision, the compile cache. Entry point only: library modules never
    change JAX's configuration."""
    import jax

    from jaxbof import engine as eng

    if args.matmul_precision not in MATMUL_PRECISIONS:
        raise UsageError(f"--matmul-precision: {args.matmul_precision!r} is not one of "
                         f"{', '.join(MATMUL_PRECISIONS)}")
    if args.coordinator is not None and not args.coordinator.rpartition(":")[2].isdigit():
        raise UsageError(f"--coordinator: {args.coordinator!r} is not HOST:PORT")
    cache = compile_cache_dir(args)
    try:
        process, processes = eng.init_processes(args.coordinator, args.num_processes,
                                                args.process_id)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        devices = len(eng.local_devices(args.devices))
    except ValueError as e:
        raise UsageError(f"--devices: {e}") from None
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--compile-cache {str(cache)!r}: cannot write there "
                             f"({e.strerror or e})") from None
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return Runtime(process, processes, devices, args.matmul_precision,
                   None if cache is None else str(cache))


def _run_meta(engine=None, runtime: Runtime | None = None) -> dict:
    import jax

    import jaxbof

    meta = {"jaxbof": jaxbof.__version__, "jax": jax.__version__,
            "device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
            "python": platform.python_version(), "host": platform.node(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
    if engine is not None:
        meta["engine"] = engine
    if runtime is not None:
        meta.update(runtime._asdict())
    return meta


def _open_writer(out: Path, config: dict, columns, part=None, keys=None, flags=None):
    """store.ResultsWriter, with every way of failing to open DIR reported in one line."""
    from jaxbof import store

    try:
        return store.ResultsWriter(out, config, columns, part=part, keys=keys, flags=flags)
    except ValueError as e:  # store.Busy included: another live sweep writes there
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"--out {str(out)!r}: cannot write results there "
                         f"({e.strerror or e})") from None


def _experiment(study):
    return _plugin(study.kind).experiment(study.protocol, study.cells)


def _run(study, args, runtime: Runtime | None = None, *, tables: bool = True) -> int:
    """Train a study into --out (resuming), print its table, draw its plots. runtime: set up
    already (several studies in one process); tables False: no table on stdout. With the
    environment variable JAXBOF_PHASES set, the last line on stderr says where the time went
    (engine.PHASES, and here: runtime, import, results, plots)."""
    clock = [time.perf_counter()]
    times: dict = {}

    def lap(name):  # the time since the previous lap goes to `name`
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - clock[0]
        clock[0] = now

    runtime = runtime or _runtime(args)
    lap("runtime")
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from jaxbof import engine as eng
    from jaxbof import store
    from jaxbof.stats import declared_flags, describe_flags, is_flagged
    lap("import")

    try:
        engine = eng.Engine(slots=args.slots, chunk=args.chunk, devices=args.devices)
    except ValueError as e:
        raise UsageError(str(e)) from None
    plugin = _plugin(study.kind)
    if plugin.engine is not None and args.slots is None:  # the experiment's own batching
        engine = dataclasses.replace(plugin.engine(), chunk=args.chunk, devices=args.devices)
    out = Path(args.out or f"runs/{study.name}")
    precision = "float64" if args.x64 else "float32"
    exp = _experiment(study)
    config = {
        "experiment": {"kind": exp.kind, "name": study.name, "description": study.description,
                       "grid": study.grid, "protocol": study.protocol, "precision": precision,
                       "matmul_precision": runtime.matmul_precision},
        "run": _run_meta(engine, runtime),
    }
    many = runtime.processes > 1
    part = (runtime.process, runtime.processes) if many else None
    who = f"process {runtime.process} of {runtime.processes}: " if many else ""
    flags = declared_flags(exp.columns, exp.flags)
    with _open_writer(out, config, exp.columns, part, exp.key_columns, flags) as writer:
        resume = eng.resume(exp, store.load_results(out))
        todo = [c for c in study.cells if c not in resume.done]
        cells = [c for c in todo if eng.owner(exp, c, runtime.processes) == runtime.process]
        print(f"{who}{study.name}: {len(cells)} models to train "
              f"({len(study.cells) - len(todo)} already in {out}"
              + (f", {len(todo) - len(cells)} for the other processes" if many else "")
              + f"), {precision} on {runtime.devices} {jax.default_backend()} device(s)",
              file=sys.stderr)
        bar = tqdm(total=len(cells), unit="model", disable=args.no_progress or not cells,
                   file=sys.stderr)

        importing = [args.no_plots]

        def on_rows(rows):
            if not importing[0]:  # matplotlib loads while the device trains
                importing[0] = True
                threading.Thread(target=importlib.import_module, args=("jaxbof.plots",),
                                 name="jaxbof-import-plots", daemon=True).start()
            writer.write(resume.new_rows(exp, rows))
            if exp.final is None:
                bar.update(len(rows))
            else:
                bar.update(sum(bool(r[exp.final]) for r in rows))

        dtype = jnp.float64 if args.x64 else jnp.float32
        lap("results")
        try:
            _, stats = eng.run(exp, cells, engine, on_rows=on_rows, dtype=dtype)
        except KeyboardInterrupt:
            bar.close()
            saved = len(store.load_results(out))
            print(f"jaxbof: interrupted; {saved} rows are saved in {out}; rerun the same "
                  f"command to resume", file=sys.stderr)
            return 130
        bar.close()
        lap("sweep")
    if many:  # fold every part written so far into results.csv; the last process completes it
        store.merge(out, exp.key_columns)
    rows = store.load_results(out)
    done = eng.resume(exp, rows).done
    left = [c for c in study.cells if c not in done]
    flagged = sum(is_flagged(r, flags) for r in rows)
    print(f"{who}trained {stats.models} models in {stats.wall_s:.1f} s "
          f"(compile {stats.compile_s:.1f} s, {stats.buckets} shape buckets, {stats.slots} slots"
          f" on {stats.devices} device(s)); {len(rows)} rows in {out}/results.csv; {flagged} "
          f"flagged ({describe_flags(flags)})", file=sys.stderr)
    if left:
        print(f"{who}{len(left)} models of other processes are not in {out} yet; the last "
              "process to finish merges all rows into results.csv", file=sys.stderr)
    else:
        if tables and plugin.table is not None:
            for line in plugin.table(rows, store.load_config(out)):
                print(line)
        lap("results")
        if not args.no_plots:
            from jaxbof import plots
            with store.exclusive(out, "plots"):  # processes finishing together draw in turn
                for path in plots.plot_dir(out):
                    print(f"wrote {path}", file=sys.stderr)
            lap("plots")
    if os.environ.get("JAXBOF_PHASES"):
        lap("results")
        sweep = times.pop("sweep", 0.0)
        parts = {**times, **stats.phases, "sweep_other": sweep - stats.wall_s}
        print(f"{who}phases (s): " + " ".join(f"{k}={v:.3f}" for k, v in parts.items()),
              file=sys.stderr)
    return 0


def _host():
    from jaxbof.experiments import Host

    return Host(runtime=_runtime, run=_run, meta=lambda runtime: _run_meta(runtime=runtime),
                open_writer=_open_writer, error=UsageError)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "plot":
            from jaxbof import plots
            try:
                paths = plots.plot_dir(args.dir)
            except (ValueError, FileNotFoundError) as e:
                raise UsageError(str(e)) from None
            for path in paths:
                print(f"wrote {path}")
            return 0
        if args.command == "spectrum":
            return _spectrum(args)
        for name in ("slots", "chunk"):
            v = getattr(args, name)
            if v is not None and v < 1:
                raise UsageError(f"--{name}: {v} must be >= 1")
        from jaxbof import experiments

        if args.command == "reproduce":
            known = experiments.reproducible()
            if args.experiment not in known:
                raise UsageError(f"reproduce: unknown experiment {args.experiment!r}; known: "
                                 f"{', '.join(known)}")
            _, rep = known[args.experiment]
            if rep.run is not None:
                return rep.run(args, _host())
            chosen = rep.study(bool(args.quick))
        else:
            try:
                chosen = _plugin(args.kind).from_args(args)
            except ValueError as e:
                raise UsageError(str(e)) from None
        return _run(_with_optimizer(chosen, args.optimizer), args)
    except UsageError as e:
        print(f"jaxbof: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
