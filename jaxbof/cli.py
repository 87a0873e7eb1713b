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
  (reproduce and sweep take --optimizer SPEC: sgd, momentum:0.9, adam:1e-3, ...; default sgd)
  jaxbof spectrum --kernel ntk-first-layer --d D --k-max K [--alpha A] [--bias]
                  [--empirical-n N [--width M]] --out DIR

Bad arguments print one line `jaxbof: error: ...` and exit with code 2. Rerunning a command on
the same --out resumes it: runs whose last row is in DIR/results.csv are not trained again, and
a run cut short is trained again with only its missing rows added.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import math
import os
import platform
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported in one line, exit code 2."""


# ----------------------------------------------------------------------------- parsing


def _number(text: str, kind, name: str):
    try:
        value = kind(Fraction(text)) if kind is float else kind(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--{name}: {text!r} is not a valid {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"--{name}: {text!r} must be finite")
    return value


def parse_values(text: str, kind=float, name: str = "value", allow_per_n: bool = False) -> tuple:
    """'start:stop:step' (inclusive; step 1 if omitted) or a comma list. With allow_per_n,
    entries may be 'c/n' (gamma = c / n)."""
    text = text.strip()
    if not text:
        raise UsageError(f"--{name}: empty value")
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(f"--{name}: {text!r} must be start:stop or start:stop:step")
        start, stop = (_number(p, kind, name) for p in parts[:2])
        step = _number(parts[2], kind, name) if len(parts) == 3 else kind(1)
        if step <= 0:
            raise UsageError(f"--{name}: step {parts[2]!r} must be > 0")
        if stop < start:
            raise UsageError(f"--{name}: stop {parts[1]!r} is below start {parts[0]!r}")
        count = (stop - start) / step
        if abs(count - round(count)) > 1e-9:
            raise UsageError(f"--{name}: {text!r}: (stop - start) is not a multiple of step")
        if round(count) + 1 > 100_000:
            raise UsageError(f"--{name}: {text!r} has more than 100000 values")
        vals = [start + i * step for i in range(round(count) + 1)]
        return tuple(round(v, 12) if kind is float else v for v in vals)
    out = []
    for item in text.split(","):
        item = item.strip()
        if allow_per_n and item.replace(" ", "").endswith("/n"):
            _number(item.replace(" ", "")[:-2], float, name)
            out.append(item.replace(" ", ""))
        else:
            out.append(_number(item, kind, name))
    return tuple(out)


def _enum_choice(enum_cls, text: str, name: str):
    try:
        return enum_cls[text.upper().replace("-", "_")]
    except KeyError:
        allowed = ", ".join(m.name.lower() for m in enum_cls)
        raise UsageError(f"--{name}: {text!r} is not one of {allowed}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no traceback
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
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
    r.add_argument("experiment",
                   help="karhadkar-fig1, karhadkar-fig2, park-regression, ntk-concentration or "
                        "optimizers (both experiments under GD, momentum and Adam)")
    r.add_argument("--quick", action="store_true", help="a small grid that runs in seconds")
    run_options(r)

    s = sub.add_parser("sweep", help="run a custom grid")
    s.add_argument("kind", help="classification or regression")
    s.add_argument("--n", default=None, help="classification: 50:150:10; regression: 250,500")
    s.add_argument("--seeds", default=None, help="seeds per cell (5; regression 3)")
    s.add_argument("--width", default=None, help="classification: 64; regression: 256,4096")
    s.add_argument("--seed", default="0", help="base seed of the whole sweep")
    s.add_argument("--n-test", default=None, help="Monte Carlo test points per model")
    c = s.add_argument_group("classification (Karhadkar et al.)")
    c.add_argument("--d-over-n", default="1:10")
    c.add_argument("--gamma", default="5/n", help="values, ranges or c/n (gamma = c / n)")
    c.add_argument("--alpha", default="0.1")
    c.add_argument("--noise-rate", default="0.1")
    c.add_argument("--stop", default="zero_error", help="zero_error or zero_loss")
    c.add_argument("--corruption", default="bernoulli", help="bernoulli or exact")
    c.add_argument("--outer", default="alternating", help="alternating or all_negative")
    c.add_argument("--signal", default="e1", help="e1 or random")
    c.add_argument("--max-steps", default="200000")
    c.add_argument("--init-scale", default="1", help="init std = init_scale / (M sqrt d)")
    c.add_argument("--lr-scale", default="1", help="step size = lr_scale / (M n)")
    g = s.add_argument_group("regression (Park et al.)")
    g.add_argument("--d", default="5", help="input dimension (sphere S^{d-1})")
    g.add_argument("--target", default="1:0.5,2:0.5,4:0.5",
                   help="f* = sum c_k Y_k as degree:coefficient pairs")
    g.add_argument("--noise", default="0.5", help="label noise level s")
    g.add_argument("--noise-kind", default="uniform", help="uniform (on [-s, s]) or rademacher")
    g.add_argument("--init", default="antisymmetric", help="antisymmetric or gaussian")
    g.add_argument("--bias", action="store_true", help="a bias b ~ N(0, 1), trained")
    g.add_argument("--train-outer", action="store_true", help="train the outer layer too")
    g.add_argument("--eta", default=None, help="GD step (default 0.05 / max_k mu_k)")
    g.add_argument("--t-max", default=None, help="last recorded time t = eta * steps")
    g.add_argument("--times", default=None, help="log-spaced recording times")
    run_options(s)

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
    if n is not None and not 1 <= n <= 20_000:
        raise UsageError(f"--empirical-n: {n} must be in [1, 20000]")
    seed = _number(args.seed, int, "seed")
    if not 0 <= seed < 2**32:
        raise UsageError(f"--seed: {seed} must be in [0, 2^32)")

    width = None if args.width is None else _number(args.width, int, "width")
    if width is not None:
        if n is None:
            raise UsageError("--width: needs --empirical-n (the number of points of the Gram)")
        if width < 2 or width % 2 or n * width > 10**8:
            raise UsageError(f"--width: {width} must be even, >= 2 and with n * width <= 1e8 "
                             f"(n = {n})")

    spec = spectra.eigenvalues(kernel, d, k_max, alpha=alpha, bias=args.bias)
    mult = spectra.multiplicity(d, spec.k)
    logm = spectra.log_multiplicity(d, spec.k)
    fit = empirical = None
    if n is not None:
        import jax

        jax.config.update("jax_enable_x64", True)  # spectra are float64 (entry point)
        key = jax.random.PRNGKey(seed)
        from jaxbof import sphere

        x = sphere.uniform(key, n, d)
        if width is None:
            xh = np.asarray(x, np.float64)
            u = np.clip(xh @ xh.T, -1.0, 1.0)
            K = spectra.kernel_fn(kernel, alpha, args.bias)(u)
        else:
            K = np.asarray(_empirical_gram(kernel, x, width, alpha, args.bias,
                                           jax.random.fold_in(key, width)))
        fit = spectra.empirical_levels(K, spec, d)
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
    if fit is not None:
        print("k,multiplicity,eigenvalue,empirical_mean,rel_error")
        for k, m, mu, e, r in zip(fit.k, fit.multiplicity, fit.eigenvalue, fit.empirical_mean,
                                  fit.rel_error):
            print(f"{k},{m},{mu:.6g},{e:.6g},{r:.3g}")
    return 0


def _empirical_gram(kernel, x, width: int, alpha: float, bias: bool, key):
    """Gram of the width-`width` two-layer net at init for the analytic `kernel`'s parameters:
    first layer (and bias) for ntk-first-layer, all for ntk-both-layers, the outer weights alone
    (the finite-width NNGP) for relu-nngp."""
    import functools

    from jaxbof import ntk, spectra

    params = ntk.init_two_layer(key, width, x.shape[1], bias=bias, dtype=x.dtype)
    b = True if bias else None
    mask = {spectra.Kernel.NTK_FIRST_LAYER: ntk.TwoLayerParams(True, False, b),
            spectra.Kernel.NTK_BOTH_LAYERS: ntk.TwoLayerParams(True, True, b),
            spectra.Kernel.RELU_NNGP: ntk.TwoLayerParams(False, True, False if bias else None)}
    route = ntk.Route.JACOBIAN if kernel == spectra.Kernel.RELU_NNGP else ntk.Route.STRUCTURED
    fn = ntk.empirical_ntk_fn(functools.partial(ntk.two_layer_apply, alpha=alpha), route=route,
                              trainable=mask[kernel])
    return fn(params, x)


def _concentration(args) -> int:
    """jaxbof reproduce ntk-concentration: ||H_M - H_inf||_op / ||H_inf||_op against width."""
    import jax

    jax.config.update("jax_enable_x64", True)  # operator norms of kernel differences: float64
    from jaxbof import concentration, plots, store

    if args.x64 or args.slots is not None:
        raise UsageError("ntk-concentration always runs in float64 and takes no --x64/--slots")
    if (args.coordinator, args.num_processes, args.process_id) != (None, None, None):
        raise UsageError("ntk-concentration runs in one process (no --coordinator, "
                         "--num-processes, --process-id)")
    runtime = _runtime(args)
    config = concentration.QUICK if args.quick else concentration.Config()
    name = "ntk-concentration" + ("-quick" if args.quick else "")
    out = Path(args.out or f"runs/{name}")
    meta = {
        "experiment": {"kind": "ntk-concentration", "name": name, "config": config._asdict(),
                       "precision": "float64"},
        "run": _run_meta(runtime=runtime),
    }
    writer = _open_writer(out, meta, concentration.SCHEMA)
    done = {(r["n"], r["d"], r["width"], r["seed"]) for r in store.load_results(out)}
    total = len(config.nd) * len(config.widths) * config.seeds
    print(f"{name}: {total - len(done)} Grams to compute ({len(done)} already in {out}), "
          f"float64 on {jax.default_backend()}", file=sys.stderr)
    with writer:
        try:
            concentration.run(config, on_row=lambda row: writer.write([row]), skip=done)
        except KeyboardInterrupt:
            print(f"jaxbof: interrupted; {len(store.load_results(out))} rows are saved in "
                  f"{out}/results.csv; rerun the same command to resume", file=sys.stderr)
            return 130
    rows = store.load_results(out)
    print("n,d,slope,prefactor,widths")
    for fit in concentration.fit_slopes(rows):
        print(f"{fit.n},{fit.d},{fit.slope:.4f},{fit.prefactor:.4g},{fit.widths}")
    if not args.no_plots:
        for path in plots.plot_dir(out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


_CLASSIFICATION_ONLY = ("d_over_n", "gamma", "alpha", "noise_rate", "stop", "corruption",
                        "outer", "signal", "max_steps", "init_scale", "lr_scale")
_REGRESSION_ONLY = ("d", "target", "noise", "noise_kind", "init", "bias", "train_outer", "eta",
                    "t_max", "times")


def _classification_sweep(args):
    from jaxbof.experiments.classification.data import Corruption, Signal
    from jaxbof.experiments.classification.presets import Preset
    from jaxbof.experiments.classification.grid import Grid, Protocol
    from jaxbof.model import Outer
    from jaxbof.train import Stop

    seeds = _number(args.seeds or "5", int, "seeds")
    try:
        grid = Grid(n=parse_values(args.n or "50:150:10", int, "n"),
                    d_over_n=parse_values(args.d_over_n, float, "d-over-n"),
                    gamma=parse_values(args.gamma, float, "gamma", allow_per_n=True),
                    alpha=parse_values(args.alpha, float, "alpha"),
                    noise_rate=parse_values(args.noise_rate, float, "noise-rate"),
                    width=parse_values(args.width or "64", int, "width"), seeds=seeds)
        protocol = Protocol(
            corruption=_enum_choice(Corruption, args.corruption, "corruption"),
            outer=_enum_choice(Outer, args.outer, "outer"),
            signal=_enum_choice(Signal, args.signal, "signal"),
            stop=_enum_choice(Stop, args.stop, "stop"),
            init_scale=_number(args.init_scale, float, "init-scale"),
            lr_scale=_number(args.lr_scale, float, "lr-scale"),
            max_steps=_number(args.max_steps, int, "max-steps"),
            n_test=_number(args.n_test or "1000", int, "n-test"),
            seed=_number(args.seed, int, "seed"))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return _classification_study(Preset("classification-sweep", "custom classification grid", grid,
                                        protocol))


class Study(NamedTuple):
    """What one run command trains: the experiment's kind, a name, its axes and protocol (as
    written to config.json) and the cells."""

    kind: str
    name: str
    description: str
    grid: object
    protocol: object
    cells: tuple


def _with_optimizer(study: Study, spec: str | None) -> Study:
    """The study under the update rule `spec` (--optimizer; None: the protocol's, plain GD).
    A rule other than GD gets its own name, hence its own default --out."""
    if spec is None:
        return study
    from jaxbof import optim

    try:
        opt = optim.parse(spec)
    except ValueError as e:
        raise UsageError(f"--optimizer: {e}") from None
    name = study.name if opt == optim.GD else f"{study.name}-{opt.spec.replace(':', '-')}"
    return study._replace(name=name, protocol=dataclasses.replace(study.protocol, optimizer=opt))


def _classification_study(preset) -> Study:
    return Study("classification", preset.name, preset.description, preset.grid,
                 preset.protocol, tuple(preset.grid.cells()))


def _regression_sweep(args):
    from jaxbof.experiments import regression as R

    def choice(text, allowed, name):
        if text not in allowed:
            raise UsageError(f"--{name}: {text!r} is not one of {', '.join(allowed)}")
        return text

    def positive(text, kind, name):
        if text is None:
            return None
        v = _number(text, kind, name)
        if not v > 0:
            raise UsageError(f"--{name}: {text} must be > 0")
        return v

    try:
        target = R.canonical_target(R.parse_target(args.target))
    except ValueError as e:
        raise UsageError(f"--target: {e}") from None
    noise = _number(args.noise, float, "noise")
    if noise < 0:
        raise UsageError(f"--noise: {args.noise} must be >= 0")
    axes = dict(n=parse_values(args.n or "250,500", int, "n"),
                d=parse_values(args.d, int, "d"),
                width=parse_values(args.width or "256,4096", int, "width"),
                seeds=_number(args.seeds or "3", int, "seeds"), target=(target,), noise=(noise,),
                noise_kind=(choice(args.noise_kind, ("uniform", "rademacher"), "noise-kind"),),
                init=(choice(args.init, ("antisymmetric", "gaussian"), "init"),),
                bias=(bool(args.bias),), train_outer=(bool(args.train_outer),))
    kw = {}
    for name, kind in (("eta", float), ("t_max", float), ("times", int), ("n_test", int)):
        v = positive(getattr(args, name), kind, name.replace("_", "-"))
        if v is not None:
            kw[name] = v
    try:
        protocol = R.Protocol(seed=_number(args.seed, int, "seed"), **kw)
        cells = R.cells(**axes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return Study("regression", "regression-sweep", "custom regression sweep", axes, protocol,
                 tuple(cells))


def _sweep_preset(args):
    if args.kind not in ("classification", "regression"):
        raise UsageError(f"sweep: unknown kind {args.kind!r}; allowed: classification, regression")
    base = build_parser().parse_args(["sweep", args.kind])  # the defaults
    other = _REGRESSION_ONLY if args.kind == "classification" else _CLASSIFICATION_ONLY
    for name in other:  # a flag of the other experiment is a mistake, not something to ignore
        if getattr(args, name) != getattr(base, name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is a flag of the "
                             f"{'regression' if args.kind == 'classification' else 'classification'}"
                             f" sweep, not of {args.kind}")
    return _classification_sweep(args) if args.kind == "classification" else _regression_sweep(args)


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


def _open_writer(out: Path, config: dict, columns, part=None, keys=None):
    """store.ResultsWriter, with every way of failing to open DIR reported in one line."""
    from jaxbof import store

    try:
        return store.ResultsWriter(out, config, columns, part=part, keys=keys)
    except ValueError as e:  # store.Busy included: another live sweep writes there
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"--out {str(out)!r}: cannot write results there "
                         f"({e.strerror or e})") from None


def _experiment(study: Study):
    if study.kind == "classification":
        from jaxbof.experiments import classification
        return classification.experiment(study.protocol, cells=study.cells)
    from jaxbof.experiments import regression
    return regression.experiment(study.protocol, study.cells)


def _run(study: Study, args, runtime: Runtime | None = None, *, tables: bool = True) -> int:
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
    lap("import")

    try:
        engine = eng.Engine(slots=args.slots, chunk=args.chunk, devices=args.devices)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if study.kind == "regression" and args.slots is None:  # the experiment's own batching choice
        from jaxbof.experiments import regression
        engine = dataclasses.replace(regression.default_engine(), chunk=args.chunk,
                                     devices=args.devices)
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
    with _open_writer(out, config, exp.columns, part, exp.key_columns) as writer:
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
    flagged = sum(store.is_flagged(r) for r in rows)
    print(f"{who}trained {stats.models} models in {stats.wall_s:.1f} s "
          f"(compile {stats.compile_s:.1f} s, {stats.buckets} shape buckets, {stats.slots} slots"
          f" on {stats.devices} device(s)); {len(rows)} rows in {out}/results.csv; {flagged} "
          "flagged (not converged/diverged)", file=sys.stderr)
    if left:
        print(f"{who}{len(left)} models of other processes are not in {out} yet; the last "
              "process to finish merges all rows into results.csv", file=sys.stderr)
    else:
        if tables:
            (_print_table if study.kind == "classification" else _print_regression_table)(rows)
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


def _optimizer_study(args) -> int:
    """jaxbof reproduce optimizers: every part of experiments.optimizers into DIR/<part>, then
    the comparison (table on stdout, DIR/optimizers.png) once every part is complete."""
    from jaxbof import engine as eng
    from jaxbof import plots, store
    from jaxbof.experiments import optimizers as O

    quick = bool(args.quick)
    root = Path(args.out or "runs/optimizers" + ("-quick" if quick else ""))
    runtime = _runtime(args)
    try:
        O.write_root_config(root, {**O.config(quick), "run": _run_meta(runtime=runtime)})
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"--out {str(root)!r}: cannot write there ({e.strerror or e})") from None
    complete = True
    for part in O.parts(quick):
        study = Study(part.kind, part.name, part.description, part.grid, part.protocol,
                      part.cells)
        sub = argparse.Namespace(**{**vars(args), "out": str(root / part.subdir)})
        print(f"optimizers: {part.subdir}", file=sys.stderr)
        rc = _run(study, sub, runtime, tables=False)
        if rc:
            return rc
        exp = _experiment(study)
        done = eng.resume(exp, store.load_results(root / part.subdir)).done
        complete &= all(c in done for c in part.cells)
    if not complete:
        print("optimizers: parts of other processes are still running; the last process "
              "draws the comparison", file=sys.stderr)
        return 0
    for line in plots.optimizer_table(root):
        print(line)
    if not args.no_plots:
        with store.exclusive(root, "plots"):
            for path in plots.plot_dir(root):
                print(f"wrote {path}", file=sys.stderr)
    return 0


def _print_regression_table(rows) -> None:
    """Final-time means over seeds, one line per (target, init, bias, outer, n, width)."""
    import numpy as np

    groups: dict = {}
    for r in rows:
        if r["final"]:
            key = (r["target"], r["init"], r["bias"], r["train_outer"], r["n"], r["width"])
            groups.setdefault(key, []).append(r)
    print("target,init,bias,train_outer,n,width,t,train_risk,excess_risk,approx_error,"
          "estimation_error,kernel_gap,runs,diverged")
    for key in sorted(groups):
        g = groups[key]
        ok = [r for r in g if not r["diverged"]]
        mean = lambda c: float(np.mean([r[c] for r in ok])) if ok else float("nan")  # noqa: E731
        target, init, bias, outer, n, width = key
        print(f"\"{target}\",{init},{int(bias)},{int(outer)},{n},{width},{mean('t'):.4g},"
              f"{mean('train_risk'):.4g},{mean('excess_risk'):.4g},{mean('approx_error'):.4g},"
              f"{mean('estimation_error'):.4g},{mean('kernel_gap'):.4g},{len(ok)},"
              f"{len(g) - len(ok)}")


def _print_table(rows) -> None:
    from jaxbof import store

    agg = store.aggregate(rows, by=("n", "d_over_n", "gamma"))
    print("n,d_over_n,gamma,mean_test_error,sem,count,flagged")
    for (n, r, g), s in agg.items():
        print(f"{n},{r:g},{g:.6g},{s.mean:.4f},{s.sem:.4f},{s.count},{s.flagged}")


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
        if args.command == "reproduce" and args.experiment in ("ntk-concentration",
                                                               "optimizers"):
            if args.optimizer is not None:
                raise UsageError(f"--optimizer does not apply to reproduce {args.experiment}")
            if args.experiment == "optimizers":
                return _optimizer_study(args)
            return _concentration(args)
        if args.command == "reproduce" and args.experiment == "park-regression":
            from jaxbof.experiments import regression
            cells, protocol = regression.presets(args.quick), regression.preset_protocol(args.quick)
            name = "park-regression" + ("-quick" if args.quick else "")
            chosen = Study("regression", name, "Park et al. (2024): gradient flow in the NTK "
                           "regime, excess risk decomposed", {"preset": name}, protocol,
                           tuple(cells))
        elif args.command == "reproduce":
            from jaxbof.experiments.classification.presets import preset
            try:
                chosen = _classification_study(preset(args.experiment, args.quick))
            except ValueError as e:
                raise UsageError(str(e)) from None
        else:
            chosen = _sweep_preset(args)
        return _run(_with_optimizer(chosen, args.optimizer), args)
    except UsageError as e:
        print(f"jaxbof: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
