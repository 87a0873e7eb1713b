"""Command line: a thin layer over jaxbof.runner, the experiments and jaxbof.plots.

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
  jaxbof new NAME [--dir DIR]       (a package for your own theorem: jaxbof.scaffold)
  jaxbof NAME ...                   (a plug-in's own command, Plugin.commands)

The experiments come from the registry (jaxbof.experiments): `sweep NAME` and `reproduce NAME`
exist for every plug-in, other packages' included, and `plot DIR` draws through the plug-in
named in DIR/config.json. Bad arguments print one line `jaxbof: error: ...` and exit with code
2. Rerunning a command on the same --out resumes it (jaxbof.runner): runs whose last row is in
DIR/results.csv are not trained again, and a run cut short is trained again with only its
missing rows added.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

from jaxbof import runner
from jaxbof.runner import UsageError  # a bad argument: one line, exit code 2

EXIT_USAGE = 2


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
        q.add_argument(
            "--slots", type=int, default=None, help="models per compiled batch on each device"
        )
        q.add_argument("--chunk", type=int, default=64, help="GD steps between host checks")
        q.add_argument("--no-plots", action="store_true")
        q.add_argument("--no-progress", action="store_true")
        q.add_argument(
            "--devices",
            type=int,
            default=None,
            help="local devices to shard each batch over (default: all)",
        )
        q.add_argument(
            "--matmul-precision",
            default="float32",
            help="float32 (full, default), tensorfloat32, bfloat16 or default "
            "(the backend's: TF32 on recent NVIDIA GPUs)",
        )
        q.add_argument(
            "--compile-cache",
            default=None,
            metavar="DIR",
            help="persistent XLA compile cache (default: $XDG_CACHE_HOME/jaxbof/xla)",
        )
        q.add_argument("--no-compile-cache", action="store_true")
        q.add_argument(
            "--optimizer",
            default=None,
            metavar="SPEC",
            help="update rule (default sgd: the published GD): sgd, momentum:BETA, "
            "nesterov:BETA, adam:LR, adamw:LR:WD, rmsprop:LR, adagrad:LR, "
            "sign:LR (sgd/momentum/nesterov use the published step; the others "
            "an absolute LR)",
        )
        h = q.add_argument_group("several processes (hosts), through jax.distributed")
        h.add_argument(
            "--coordinator",
            default=None,
            metavar="HOST:PORT",
            help="address of process 0 (omit under srun/mpirun: detected)",
        )
        h.add_argument("--num-processes", type=int, default=None)
        h.add_argument("--process-id", type=int, default=None)

    r = sub.add_parser("reproduce", help="run a published protocol")
    r.add_argument(
        "experiment",
        help="; ".join(f"{name}: {rep.help}" for name, (_, rep) in reproducible.items()),
    )
    r.add_argument("--quick", action="store_true", help="a small grid that runs in seconds")
    run_options(r)

    s = sub.add_parser("sweep", help="run a custom grid of one experiment")
    kinds = s.add_subparsers(
        dest="kind",
        required=True,
        parser_class=_Parser,
        metavar="{" + ",".join(p.name for p in plugins if experiments.sweepable(p)) + "}",
    )
    for plugin in filter(experiments.sweepable, plugins):
        k = kinds.add_parser(plugin.name, help=f"{plugin.description} ({plugin.paper})")
        experiments.arguments(plugin, k.add_argument_group(f"{plugin.name} ({plugin.paper})"))
        run_options(k)

    pl = sub.add_parser("plot", help="plot a results directory")
    pl.add_argument("dir")

    nw = sub.add_parser("new", help="write a pip-installable package for your own theorem")
    nw.add_argument("name", help="the experiment's name (my-theorem: package my_theorem)")
    nw.add_argument(
        "--dir", default=None, help="where to write it (default ./NAME); must be new or empty"
    )

    v = sub.add_parser(
        "verify",
        help="check the theorems' claims: run the presets they read "
        "(or read --results) and write DIR/report.md, .json and .html",
    )
    v.add_argument(
        "kinds",
        nargs="*",
        metavar="KIND",
        help="experiments whose claims to check (plug-in names; none: all)",
    )
    v.add_argument("--quick", action="store_true", help="the quick presets (seconds to minutes)")
    v.add_argument(
        "--out",
        default=None,
        help="where the presets run and the report goes "
        "(default runs/verify[-quick]; with --results: the results directory)",
    )
    v.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="no training: evaluate the claims on the results under DIR",
    )
    v.add_argument("--no-progress", action="store_true")
    v.add_argument("--no-plots", action="store_true")

    for plugin in plugins:  # a plug-in's own commands (`Plugin.commands`)
        for command in plugin.commands:
            if command.name in sub.choices:
                raise UsageError(
                    f"plug-in {plugin.name!r}: its command {command.name!r} is "
                    "already a jaxbof command; rename it"
                )
            c = sub.add_parser(command.name, help=command.help)
            command.add_arguments(c)
            c.set_defaults(run_command=command.run)

    sp = sub.add_parser("spectrum", help="kernel eigenvalues on the sphere S^{d-1}")
    sp.add_argument(
        "--kernel", default="ntk-first-layer", help="ntk-first-layer, ntk-both-layers or relu-nngp"
    )
    sp.add_argument("--alpha", default="0", help="leaky-ReLU slope (0 = ReLU)")
    sp.add_argument("--d", required=True, help="input dimension (sphere S^{d-1})")
    sp.add_argument("--k-max", required=True, help="highest degree")
    sp.add_argument(
        "--empirical-n",
        default=None,
        help="also: eigenvalues of the Gram / n of this many uniform points",
    )
    sp.add_argument(
        "--bias",
        action="store_true",
        help="pre-activation <w, x> + b, b ~ N(0, 1), trained with the first layer",
    )
    sp.add_argument(
        "--width",
        default=None,
        help="empirical Gram of the width-M net at init (antisymmetric, even M) "
        "instead of the analytic kernel; needs --empirical-n",
    )
    sp.add_argument("--seed", default="0", help="key of the empirical points and weights")
    sp.add_argument(
        "--top",
        default=None,
        help="also write the largest this many eigenvalues of Gram / n with their "
        "residuals ||K v - lambda v|| / n (top.csv); needs --empirical-n",
    )
    sp.add_argument(
        "--matrix-free",
        action="store_true",
        help="never form the n x n Gram (needs --top): with --width the p x p "
        "Jacobian route when the parameter count p <= n, else LOBPCG on "
        "NTK-vector products; without it LOBPCG on tile-by-tile products",
    )
    sp.add_argument("--out", required=True)
    return p


class _SpectrumOptions(NamedTuple):
    """The flags of `jaxbof spectrum`, validated (None: the flag was not given)."""

    kernel: object  # spectra.Kernel
    d: int
    k_max: int
    alpha: float
    bias: bool
    n: int | None  # --empirical-n: the points of the Gram
    width: int | None  # the Gram of the width-M net at init instead of the analytic kernel's
    top: int | None  # the largest eigenvalues of Gram / n with residuals (top.csv)
    matrix_free: bool
    seed: int
    out: Path


def _spectrum(args) -> int:
    """`jaxbof spectrum`: the eigenvalues mu_k of a kernel on S^{d-1} (spectrum.csv and .png),
    with --empirical-n those of the Gram / n of n uniform points grouped into the degree levels
    (and with --top the largest ones with their residuals, top.csv), computed by jaxbof.gram."""
    from jaxbof import gram, spectra

    o = _spectrum_options(args)
    spec = spectra.eigenvalues(o.kernel, o.d, o.k_max, alpha=o.alpha, bias=o.bias)
    empirical = None
    if o.n is not None:
        import jax

        jax.config.update("jax_enable_x64", True)  # spectra are float64 (entry point)
        try:
            empirical = gram.empirical_spectrum(
                o.kernel,
                spec,
                o.d,
                o.n,
                alpha=o.alpha,
                bias=o.bias,
                width=o.width,
                top=o.top,
                matrix_free=o.matrix_free,
                seed=o.seed,
                progress=_solver_progress(),
            )
        except ValueError as e:
            raise UsageError(str(e)) from None
    _write_spectrum(o, spec, empirical)
    return 0


def _spectrum_options(args) -> _SpectrumOptions:
    """`jaxbof spectrum`'s flags, checked one by one (UsageError at the first bad one); says on
    stderr what the analytic kernel's matrix-free products will cost when n is large."""
    from jaxbof import gram, spectra

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
        raise UsageError(
            f"--empirical-n: {n} must be in [1, {n_max}]"
            + ("" if free else " (larger with --top K --matrix-free)")
        )
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
            raise UsageError(
                f"--width: {width} must be even, >= 2 and with n * width <= 1e8 "
                f"(n = {n}; any n with --top K --matrix-free)"
            )
        p = gram.trained_count(kernel, d, width, args.bias)
        if free and p > 20_000:
            raise UsageError(
                f"--width: {width} gives {p} trained parameters; --matrix-free "
                "handles at most 20000"
            )
        if top is not None and top > p // 2:
            raise UsageError(
                f"--top: {top} exceeds the rank bound {p // 2} of the width-{width} "
                "Gram (p / 2: the antisymmetric init pairs equal neurons)"
            )
    elif free:  # the analytic kernel's Gram-vector products, tile by tile
        if n > 200_000:  # pyright: ignore[reportOptionalOperand] - n is set when free
            raise UsageError(
                f"--empirical-n: {n} must be <= 200000 for the analytic kernel "
                "with --matrix-free (each product costs n^2); use --width for "
                "larger n"
            )
        if n > 20_000:  # pyright: ignore[reportOptionalOperand] - n is set when free
            print(
                f"jaxbof: the analytic kernel's products cost n^2 = {float(n) ** 2:.1e} kernel "
                "entries each, about 30 of them: minutes to hours on a CPU (n = 20000 took 2 "
                "min on 2 cores; the time grows like n^2)",
                file=sys.stderr,
            )
        if kernel == spectra.Kernel.RELU_NNGP:
            raise UsageError(
                f"--matrix-free: the analytic {kernel.value} kernel has no "
                "matrix-free product; use --width for its finite-width Gram"
            )
    return _SpectrumOptions(
        kernel, d, k_max, alpha, args.bias, n, width, top, free, seed, Path(args.out)
    )


def _write_spectrum(o: _SpectrumOptions, spec, empirical) -> None:
    """spectrum.csv (mu_k by degree, and with a `gram.EmpiricalSpectrum` its level means and
    relative errors), spectrum.png and top.csv (with --top), each announced on stdout, then the
    level table."""
    import csv

    import numpy as np

    from jaxbof import plots, spectra

    fit = None if empirical is None else empirical.fit
    top = None if empirical is None else empirical.top
    mult = spectra.multiplicity(o.d, spec.k)
    logm = spectra.log_multiplicity(o.d, spec.k)
    o.out.mkdir(parents=True, exist_ok=True)
    columns = ["k", "multiplicity", "log_multiplicity", "eigenvalue", "log_eigenvalue"]
    if fit is not None:
        columns += ["empirical_mean", "rel_error"]
        by_k = {int(k): (m, e) for k, m, e in zip(fit.k, fit.empirical_mean, fit.rel_error)}
    with open(o.out / "spectrum.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i, k in enumerate(spec.k):
            row = [
                int(k),
                repr(float(mult[i])),
                repr(float(logm[i])),
                repr(float(spec.eigenvalue[i])),
                repr(float(spec.log_eigenvalue[i])),
            ]
            if fit is not None:
                row += [repr(float(v)) for v in by_k.get(int(k), (float("nan"),) * 2)]
            w.writerow(row)
    n, width = o.n, o.width
    title = (
        f"{o.kernel.value}, alpha={o.alpha:g}, d={o.d}"
        + (", bias" if o.bias else "")
        + (f", n={n} points" if n else "")
        + (f", empirical NTK of width {width}" if width else "")
        + (" (float64)" if n else "")
    )
    png = plots.spectrum(
        spec.k,
        mult,
        spec.eigenvalue,
        o.out / "spectrum.png",
        None if fit is None else fit.sorted_empirical,
        title=title,
        max_index=None if n else 2000,
    )
    print(f"wrote {o.out / 'spectrum.csv'}\nwrote {png}")
    if top is not None:
        with open(o.out / "top.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "eigenvalue", "residual", "rel_residual"])
            for i, (lam_i, r_i) in enumerate(zip(top.eigenvalue / n, top.residual / n)):
                w.writerow([i + 1, repr(float(lam_i)), repr(float(r_i)), repr(float(r_i / lam_i))])
        how = (
            (
                "matrix-free, "
                + (
                    f"{top.iterations} LOBPCG iterations"
                    if top.iterations
                    else "p x p Jacobian route"
                )
            )
            if o.matrix_free
            else "dense eigh"
        )
        print(
            f"wrote {o.out / 'top.csv'}: top {o.top} eigenvalues of Gram / n ({how}), largest "
            f"relative residual {float(np.max(top.residual / top.eigenvalue)):.2g}"
            + ("" if top.converged else " (NOT converged)")
        )
    if fit is not None:
        print("k,multiplicity,eigenvalue,empirical_mean,rel_error")
        for k, m, mu, e, r in zip(
            fit.k, fit.multiplicity, fit.eigenvalue, fit.empirical_mean, fit.rel_error
        ):
            print(f"{k},{m},{mu:.6g},{e:.6g},{r:.3g}")


def _solver_progress(every: float = 10.0):
    """A LOBPCG progress callback: one line on stderr at most every `every` seconds, so that a
    long solve is never silent."""
    start = last = time.monotonic()

    def report(it, converged, k, worst):
        nonlocal last
        now = time.monotonic()
        if now - last >= every:
            last = now
            print(
                f"jaxbof: LOBPCG iteration {it}: {converged} of {k} eigenpairs converged, "
                f"largest relative residual {worst:.1e}, {now - start:.0f} s",
                file=sys.stderr,
            )

    return report


def _plugin(kind: str):
    from jaxbof import experiments

    try:
        return experiments.plugin(kind)
    except ValueError as e:
        raise UsageError(str(e)) from None


# ----------------------------------------------------------------------------- commands


def _options(args) -> runner.Options:
    """The run flags as runner.Options (nothing below the command line reads argparse)."""
    return runner.Options(
        out=args.out,
        x64=args.x64,
        slots=args.slots,
        chunk=args.chunk,
        plots=not args.no_plots,
        progress=not args.no_progress,
        devices=args.devices,
        matmul_precision=args.matmul_precision,
        compile_cache=args.compile_cache,
        no_compile_cache=args.no_compile_cache,
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )


def _plot(directory) -> int:
    from jaxbof import plots

    try:
        paths = plots.plot_dir(directory)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    for path in paths:
        print(f"wrote {path}")
    return 0


def _new(name: str, directory) -> int:
    """`jaxbof new NAME [--dir DIR]`: the package of a user's own theorem (jaxbof.scaffold)."""
    from jaxbof import scaffold

    try:
        paths = scaffold.new(name, directory)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for path in paths:
        print(f"wrote {path}")
    print(f"next: cd {paths[0].parent} && pip install -e . && jaxbof sweep {name} --out runs/x")
    return 0


def _verify(args) -> int:
    """`jaxbof verify`: exit 1 where a verdict contradicts its expectation (jaxbof.verify)."""
    from jaxbof import verify

    try:
        chosen = verify.claims(args.kinds)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not chosen:
        raise UsageError(f"no claims to check in {', '.join(args.kinds) or 'any experiment'}")

    def say(line):
        print(line, file=sys.stderr)

    try:
        if args.results is not None:
            if args.quick:
                raise UsageError(
                    "--quick runs the quick presets; --results reads results "
                    "that exist: give one of them"
                )
            results = verify.scan(args.results, chosen, say)
            out = args.out or args.results
        else:
            out = args.out or "runs/verify" + ("-quick" if args.quick else "")
            rc = verify.run_presets(
                chosen,
                out,
                args.quick,
                runner.Options(plots=not args.no_plots, progress=not args.no_progress),
            )
            if rc:
                return rc
            results = verify.scan(out, chosen, say)
        lines, code = verify.report(results, out)
    except OSError as e:
        raise UsageError(f"{e.filename or args.out}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    for line in lines:
        print(line)
    return code


def _study(args):
    """The study `reproduce NAME` or `sweep KIND ...` asks for."""
    from jaxbof import experiments

    if args.command == "reproduce":
        known = experiments.reproducible()
        if args.experiment not in known:
            raise UsageError(
                f"reproduce: unknown experiment {args.experiment!r}; known: {', '.join(known)}"
            )
        return known[args.experiment][1].study(bool(args.quick))
    try:
        return experiments.study_from(_plugin(args.kind), args)
    except ValueError as e:
        raise UsageError(str(e)) from None


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "plot":
            return _plot(args.dir)
        if args.command == "new":
            return _new(args.name, args.dir)
        if args.command == "spectrum":
            return _spectrum(args)
        if args.command == "verify":
            return _verify(args)
        if args.command not in ("reproduce", "sweep"):  # a plug-in's own command
            try:
                return args.run_command(args)
            except ValueError as e:
                raise UsageError(str(e)) from None
        for name in ("slots", "chunk"):
            v = getattr(args, name)
            if v is not None and v < 1:
                raise UsageError(f"--{name}: {v} must be >= 1")
        study = runner.with_optimizer(_study(args), args.optimizer)
        return runner.run(study, _options(args))
    except UsageError as e:
        print(f"jaxbof: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
