"""Running a study into a directory: the one place that sets up the runtime, opens the results
writer, resumes, shows progress, handles an interrupt, a termination or a full disk, merges the
parts of several processes and draws the pictures. The command line and every reproduce go
through `run` with a `Study` (cells of an engine experiment), a `HostStudy` (rows computed on
the host) or a `Suite` (several of those in subdirectories); nothing here parses arguments.

What a user can count on, whatever stops a run (Ctrl-C, SIGTERM from a scheduler, a full disk):
every row reported before it is on disk, the run ends with one line on stderr saying where the
rows are and how many, and rerunning the same command resumes it. `Faults` stops a run after a
given number of rows, as a signal or a full disk would, so those promises are tested without
timing (also from the command line: the environment variable JAXBOF_FAULT).

Imports no JAX at module level (the registry and `jaxbof plot` stay JAX-free).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import importlib
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from jaxbof.contract import HostStudy, Study, Suite

__all__ = [
    "EXIT_INTERRUPTED",
    "Faults",
    "Options",
    "Runtime",
    "Stopped",
    "UsageError",
    "run",
    "setup",
]

EXIT_INTERRUPTED = 130  # SIGINT's conventional exit code; SIGTERM exits 143
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")


class UsageError(ValueError):
    """A bad option or directory: reported in one line, exit code 2."""


class Stopped(Exception):
    """A run stopped from outside (SIGINT, SIGTERM) or by a full disk; rows so far are kept."""

    def __init__(self, why: str, code: int, out: Path | None = None):
        super().__init__(why)
        self.why, self.code, self.out = why, code, out


class Faults(NamedTuple):
    """Deterministic fault injection: after `after` rows written by this process, `kind`
    happens: "sigterm" (the process signals itself, as a scheduler would), "sigint" (Ctrl-C),
    "sigkill" (killed outright, as by the OOM killer: no handler runs, nothing is closed),
    "sigstop" (suspended, as by Ctrl-Z: its locks stay held until it is continued or killed),
    or "enospc" (the next write fails as on a full disk). From the command line:
    JAXBOF_FAULT=KIND:ROWS."""

    kind: str
    after: int

    @staticmethod
    def from_env() -> Faults | None:
        text = os.environ.get("JAXBOF_FAULT")
        if not text:
            return None
        kind, _, after = text.partition(":")
        if kind not in (*_FAULT_SIGNALS, "enospc") or not after.isdigit():
            raise UsageError(
                f"JAXBOF_FAULT={text!r}: expected KIND:ROWS, KIND one of "
                f"{', '.join(_FAULT_SIGNALS)}, enospc"
            )
        return Faults(kind, int(after))


_FAULT_SIGNALS = {
    "sigterm": signal.SIGTERM,
    "sigint": signal.SIGINT,
    "sigkill": signal.SIGKILL,
    "sigstop": signal.SIGSTOP,
}


class Options(NamedTuple):
    """How to run (the run flags of `jaxbof sweep` and `jaxbof reproduce`)."""

    out: str | None = None  # results directory; None: runs/<study name>
    x64: bool = False  # train in float64
    slots: int | None = None  # runs per compiled batch per device; None: the experiment's
    chunk: int = 64  # steps between host checks
    plots: bool = True
    progress: bool = True
    devices: int | None = None  # local devices; None: all
    matmul_precision: str = "float32"
    compile_cache: str | None = None  # None: $XDG_CACHE_HOME/jaxbof/xla
    no_compile_cache: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    faults: Faults | None = None


class Runtime(NamedTuple):
    """How this process runs: what config.json's "run" records beside the versions."""

    process: int
    processes: int
    devices: int
    matmul_precision: str
    compile_cache: str | None


def compile_cache_dir(options: Options) -> Path | None:
    """--compile-cache DIR, else $XDG_CACHE_HOME/jaxbof/xla (~/.cache if unset); None with
    --no-compile-cache."""
    if options.no_compile_cache:
        if options.compile_cache is not None:
            raise UsageError("--compile-cache and --no-compile-cache exclude each other")
        return None
    if options.compile_cache is not None:
        return Path(options.compile_cache)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxbof" / "xla"


def setup(options: Options) -> Runtime:
    """Set up JAX for a run, in this order: the distributed runtime (before anything touches a
    device), precision, the compile cache. Entry points only: library modules never change
    JAX's configuration."""
    import jax

    from jaxbof import engine as eng

    if options.matmul_precision not in MATMUL_PRECISIONS:
        raise UsageError(
            f"--matmul-precision: {options.matmul_precision!r} is not one of "
            f"{', '.join(MATMUL_PRECISIONS)}"
        )
    if options.coordinator is not None and not options.coordinator.rpartition(":")[2].isdigit():
        raise UsageError(f"--coordinator: {options.coordinator!r} is not HOST:PORT")
    cache = compile_cache_dir(options)
    try:
        process, processes = eng.init_processes(
            options.coordinator, options.num_processes, options.process_id
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        devices = len(eng.local_devices(options.devices))
    except ValueError as e:
        raise UsageError(f"--devices: {e}") from None
    if options.x64:
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", options.matmul_precision)
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"--compile-cache {str(cache)!r}: cannot write there ({e.strerror or e})"
            ) from None
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return Runtime(
        process, processes, devices, options.matmul_precision, None if cache is None else str(cache)
    )


def run_meta(engine=None, runtime: Runtime | None = None) -> dict:
    """config.json's "run" entry: versions, device, host, start time, engine and runtime."""
    import jax

    import jaxbof

    meta = {
        "jaxbof": jaxbof.__version__,
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "python": platform.python_version(),
        "host": platform.node(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if engine is not None:
        meta["engine"] = engine
    if runtime is not None:
        meta.update(runtime._asdict())
    return meta


# ----------------------------------------------------------------------------- stopping


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Stopped` in the main thread while the block runs (the one
    interrupt handler of jaxbof); the previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        what = "interrupted" if signum == signal.SIGINT else "terminated"
        raise Stopped(f"{what} ({signal.Signals(signum).name})", 128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Writer:
    """The results writer of one directory as the runner uses it: rows counted, a full disk
    turned into `Stopped`, faults injected where asked."""

    def __init__(self, writer, out: Path, faults: Faults | None, written: list):
        self.writer, self.out, self.faults, self.written = writer, out, faults, written

    def write(self, rows: list[dict]) -> None:
        f = self.faults
        try:
            if f is not None and f.kind == "enospc" and self.written[0] >= f.after:
                raise OSError(
                    errno.ENOSPC, f"No space left on device, as JAXBOF_FAULT=enospc:{f.after} asks"
                )
            self.writer.write(rows)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Stopped(e.strerror or os.strerror(e.errno), 1) from None
            raise
        before = self.written[0]
        self.written[0] += len(rows)
        if f is not None and f.kind in _FAULT_SIGNALS and before < f.after <= self.written[0]:
            os.kill(os.getpid(), _FAULT_SIGNALS[f.kind])


def _stopped_line(stop: Stopped, out: Path) -> str:
    """One line: why the run stopped, how many rows are safe where, how to resume."""
    from jaxbof import store

    try:
        saved = f"{len(store.load_results(out))} rows are saved"
    except (OSError, ValueError):
        saved = "the rows written before are saved"
    if stop.code == 1:
        where = f"{out}/results.csv" if stop.out is None else str(out)
        return (
            f"jaxbof: stopped writing {where} ({stop.why}); {saved} in {out}/results.csv; "
            "free some space (or copy the directory to a larger disk and point --out at "
            "it) and rerun the same command to resume"
        )
    return f"jaxbof: {stop.why}; {saved} in {out}/results.csv; rerun the same command to resume"


def _close(writer) -> None:
    """Close a writer after a stop; a full disk may refuse its last flush (the rows before it
    are on disk, and an incomplete last line is repaired by the next writer)."""
    with contextlib.suppress(OSError):
        writer.close()


def open_writer(out: Path, config: dict, schema, part=None):
    """store.ResultsWriter, with every way of failing to open DIR reported in one line."""
    from jaxbof import stats, store

    flags = stats.declared_flags(schema.columns, schema.flags)
    try:
        return store.ResultsWriter(
            out, config, schema.columns, part=part, keys=schema.keys, flags=flags
        )
    except ValueError as e:  # store.Busy included: another live sweep writes there
        raise UsageError(str(e)) from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UsageError(
                f"--out {str(out)!r}: no space left on the device; free some or "
                "choose another --out (rows already there are kept)"
            ) from None
        raise UsageError(
            f"--out {str(out)!r}: cannot write results there ({e.strerror or e})"
        ) from None


def load_rows(out: Path) -> list[dict]:
    """store.load_results, a bad file reported in one line (UsageError)."""
    from jaxbof import store

    try:
        return store.load_results(out)
    except ValueError as e:
        raise UsageError(str(e)) from None


# ----------------------------------------------------------------------------- studies


class _Clock:
    """Where a run's time goes, for JAXBOF_PHASES (engine.PHASES, and: runtime, import,
    results, plots)."""

    def __init__(self):
        self.last, self.times = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self.last
        self.last = now


def run(
    study: Study | HostStudy | Suite,
    options: Options = Options(),
    runtime: Runtime | None = None,
    *,
    tables: bool = True,
) -> int:
    """Run `study` into options.out (default runs/<name>), resuming what is there; print its
    table, draw its pictures. Returns the exit code: 0, or that of a stop (130 SIGINT, 143
    SIGTERM, 1 full disk) after one line on stderr; UsageError on a bad option."""
    options = options._replace(faults=options.faults or Faults.from_env())
    _refuse_flags(study, options)
    try:
        if isinstance(study, Suite):
            return _suite(study, options, runtime)
        if isinstance(study, HostStudy):
            return _host(study, options, runtime, tables=tables)
        return _engine_study(study, options, runtime, tables=tables)
    except Stopped as stop:  # after training: merging, tables, pictures
        print(_stopped_line(stop, stop.out or _out(study, options)), file=sys.stderr)
        return stop.code


@contextlib.contextmanager
def _reading(out: Path) -> Iterator[None]:
    """Steps after training that read and write in `out` (merge, tables, pictures): a bad file
    is one line (UsageError), a full disk a `Stopped` (nothing trained is lost)."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Stopped(e.strerror or "no space left on the device", 1, out) from None
        raise
    except ValueError as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(str(e)) from None


def _refuse_flags(study, options: Options) -> None:
    """The engine's flags on a study that computes on the host, in one line each."""
    parts = [p for _, p in study.parts] if isinstance(study, Suite) else [study]
    host = [p for p in parts if isinstance(p, HostStudy)]
    if not host:
        return
    name = study.name
    on_engine = len(host) < len(parts)
    if options.slots is not None:
        raise UsageError(
            f"{name} takes no --slots"
            if on_engine
            else f"{name} always runs in float64 and takes no --x64/--slots"
        )
    if options.x64 and not on_engine:
        raise UsageError(f"{name} always runs in float64 and takes no --x64/--slots")
    if (options.coordinator, options.num_processes, options.process_id) != (None, None, None):
        raise UsageError(
            f"{name} runs in one process (no --coordinator, --num-processes, --process-id)"
        )


def _out(study, options: Options) -> Path:
    return Path(options.out or f"runs/{study.name}")


def _draw(out: Path, options: Options) -> None:
    from jaxbof import plots, store

    if options.plots:
        with store.exclusive(out, "plots"):  # processes finishing together draw in turn
            for path in plots.plot_dir(out):
                print(f"wrote {path}", file=sys.stderr)


def _host(
    study: HostStudy, options: Options, runtime: Runtime | None, *, tables: bool = True
) -> int:
    """Compute a HostStudy's missing rows into its directory (one process, float64)."""
    if study.x64:  # its JAX computations in float64, and nothing after it
        import jax

        previous = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            return _host_run(study, options, runtime, tables)
        finally:
            jax.config.update("jax_enable_x64", previous)
    return _host_run(study, options, runtime, tables)


def _host_run(study: HostStudy, options: Options, runtime: Runtime | None, tables: bool) -> int:
    from jaxbof import experiments

    runtime = runtime or setup(options)
    out = _out(study, options)
    experiment = {
        "kind": study.kind,
        **({"part": study.part} if study.part else {}),
        "name": study.name,
        "config": study.config,
        "precision": "float64",
    }
    config = {"experiment": experiment, "run": run_meta(runtime=runtime)}
    written = [0]
    with open_writer(out, config, study.schema) as writer:
        stored = load_rows(out)
        print(
            f"{study.name}: {study.description} ({len(stored)} rows already in {out}), "
            f"float64 on the host",
            file=sys.stderr,
        )
        sink = _Writer(writer, out, options.faults, written)
        try:
            with _stoppable():
                study.compute(sink.write, stored)
        except Stopped as stop:
            _close(writer)
            print(_stopped_line(stop, out), file=sys.stderr)
            return stop.code
    if tables and study.part is None:
        table = experiments.table_of(experiments.plugin(study.kind))
        with _reading(out):
            if table is not None:
                from jaxbof import store

                for line in table(load_rows(out), store.load_config(out)):
                    print(line)
            _draw(out, options)
    return 0


def _suite(suite: Suite, options: Options, runtime: Runtime | None) -> int:
    """Every part into its subdirectory, then the table and pictures of the root once every
    part is complete (several processes: the last one to finish)."""
    root = _out(suite, options)
    if any(isinstance(p, Study) for _, p in suite.parts):
        runtime = runtime or setup(options)
    if suite.write_root is not None:
        try:
            suite.write_root(root, run_meta(runtime=runtime))
        except ValueError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(
                f"--out {str(root)!r}: cannot write there ({e.strerror or e})"
            ) from None
    complete = True
    for sub, part in suite.parts:
        where = root / sub if sub else root
        if sub:
            print(f"{suite.name}: {sub}", file=sys.stderr)
        part_options = options._replace(out=str(where), plots=options.plots and bool(sub))
        if isinstance(part, HostStudy):
            rc = _host(part, part_options, runtime, tables=False)
        else:
            rc = _engine_study(part, part_options, runtime, tables=False)
            complete &= _complete(part, where)
        if rc:
            return rc
    if not complete:
        print(
            f"{suite.name}: parts of other processes are still running; the last process "
            "draws the comparison",
            file=sys.stderr,
        )
        return 0
    with _reading(root):
        if suite.table is not None:
            for line in suite.table(root):
                print(line)
        _draw(root, options)
    return 0


def _complete(study: Study, out: Path) -> bool:
    from jaxbof import engine as eng
    from jaxbof import experiments

    exp = experiments.plugin(study.kind).experiment(study.protocol, study.cells)  # pyright: ignore[reportOptionalCall] - a sweepable kind
    done = eng.resume(exp, load_rows(out), study.cells).done
    return all(c in done for c in study.cells)


def _engine_study(
    study: Study, options: Options, runtime: Runtime | None, *, tables: bool = True
) -> int:
    """Train a Study's missing cells into its directory, then its table and pictures."""
    clock = _Clock()
    runtime = runtime or setup(options)
    clock.lap("runtime")
    import jax

    from jaxbof import engine as eng
    from jaxbof import experiments, store

    clock.lap("import")

    plugin = experiments.plugin(study.kind)
    engine = _engine_for(plugin, options)
    out = _out(study, options)
    plan = eng.plan(plugin.experiment(study.protocol, study.cells), study.cells)  # pyright: ignore[reportOptionalCall] - a sweepable kind
    config = {
        "experiment": {
            "kind": study.kind,
            "name": study.name,
            "description": study.description,
            "grid": study.grid,
            "protocol": study.protocol,
            "precision": "float64" if options.x64 else "float32",
            "matmul_precision": runtime.matmul_precision,
        },
        "run": run_meta(engine, runtime),
    }
    many = runtime.processes > 1
    part = (runtime.process, runtime.processes) if many else None
    who = f"process {runtime.process} of {runtime.processes}: " if many else ""
    schema = _schema(plan)
    written = [0]
    with open_writer(out, config, schema, part) as writer:
        resume = eng.resume(plan, load_rows(out), study.cells)
        todo = [c for c in study.cells if c not in resume.done]
        cells = [c for c in todo if eng.owner(plan, c, runtime.processes) == runtime.process]
        print(
            f"{who}{study.name}: {len(cells)} models to train "
            f"({len(study.cells) - len(todo)} already in {out}"
            + (f", {len(todo) - len(cells)} for the other processes" if many else "")
            + f"), {config['experiment']['precision']} on {runtime.devices} "
            f"{jax.default_backend()} device(s)",
            file=sys.stderr,
        )
        clock.lap("results")
        stats = _train(
            plan, cells, engine, options, _Writer(writer, out, options.faults, written), resume
        )
        if isinstance(stats, Stopped):
            _close(writer)
            print(_stopped_line(stats, out), file=sys.stderr)
            return stats.code
        clock.lap("sweep")
    if many:  # fold every part written so far into results.csv; the last process completes it
        with _reading(out):
            store.merge(out, plan.key_columns)
    with _reading(out):
        _summary(study, plan, out, stats, who, tables and experiments.table_of(plugin), options)
    clock.lap("results")
    if os.environ.get("JAXBOF_PHASES"):
        sweep = clock.times.pop("sweep", 0.0)
        parts = {**clock.times, **stats.phases, "sweep_other": sweep - stats.wall_s}
        print(
            f"{who}phases (s): " + " ".join(f"{k}={v:.3f}" for k, v in parts.items()),
            file=sys.stderr,
        )
    return 0


def _engine_for(plugin, options: Options):
    """engine.Engine of the options; the experiment's own batching where --slots is not
    given."""
    from jaxbof import engine as eng

    try:
        engine = eng.Engine(slots=options.slots, chunk=options.chunk, devices=options.devices)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if plugin.engine is not None and options.slots is None:
        engine = dataclasses.replace(plugin.engine(), chunk=options.chunk, devices=options.devices)
    return engine


def _schema(plan):
    from jaxbof.contract import Schema

    return Schema(plan.columns, plan.key_columns, plan.final, plan.flags)


def _train(plan, cells, engine, options: Options, sink: _Writer, resume):
    """engine.run with rows written as they come and a progress bar: its SweepStats, or the
    `Stopped` that ended it."""
    import jax.numpy as jnp
    from tqdm import tqdm

    from jaxbof import engine as eng

    bar = tqdm(
        total=len(cells), unit="model", disable=not options.progress or not cells, file=sys.stderr
    )
    importing = [not options.plots]

    def on_rows(rows):
        if not importing[0]:  # matplotlib loads while the device trains
            importing[0] = True
            threading.Thread(
                target=importlib.import_module,
                args=("jaxbof.plots",),
                name="jaxbof-import-plots",
                daemon=True,
            ).start()
        sink.write(resume.new_rows(rows))
        bar.update(len(rows) if plan.final is None else sum(bool(r[plan.final]) for r in rows))

    try:
        with _stoppable():
            _, stats = eng.run(
                plan,
                cells,
                engine,
                on_rows=on_rows,
                dtype=jnp.float64 if options.x64 else jnp.float32,
            )
    except Stopped as stop:
        return stop
    finally:
        bar.close()
    return stats


def _summary(
    study: Study, plan, out: Path, stats, who: str, table: Callable | None, options: Options
) -> None:
    """The closing lines on stderr, the table on stdout and the pictures, once every cell of
    the study is in `out` (several processes: the last one to finish)."""
    from jaxbof import engine as eng
    from jaxbof import store
    from jaxbof.stats import declared_flags, describe_flags, is_flagged

    rows = load_rows(out)
    done = eng.resume(plan, rows, study.cells).done
    left = [c for c in study.cells if c not in done]
    flags = declared_flags(plan.columns, plan.flags)
    flagged = sum(is_flagged(r, flags) for r in rows)
    print(
        f"{who}trained {stats.models} models in {stats.wall_s:.1f} s "
        f"(compile {stats.compile_s:.1f} s, {stats.buckets} shape buckets, {stats.slots} slots"
        f" on {stats.devices} device(s)); {len(rows)} rows in {out}/results.csv; {flagged} "
        f"flagged ({describe_flags(flags)})",
        file=sys.stderr,
    )
    if left:
        print(
            f"{who}{len(left)} models of other processes are not in {out} yet; the last "
            "process to finish merges all rows into results.csv",
            file=sys.stderr,
        )
        return
    if table:
        for line in table(rows, store.load_config(out)):
            print(line)
    _draw(out, options)


def with_optimizer(study: Study, spec: str | None) -> Study:
    """The study under the update rule `spec` (--optimizer; None: the protocol's, plain GD).
    A rule other than GD gets its own name, hence its own default --out."""
    if spec is None:
        return study
    if not isinstance(study, Study):
        raise UsageError(f"--optimizer does not apply to reproduce {study.name}")
    from jaxbof import optim

    try:
        opt = optim.parse(spec)
    except ValueError as e:
        raise UsageError(f"--optimizer: {e}") from None
    p: Any = study.protocol
    if not (dataclasses.is_dataclass(p) and "optimizer" in {f.name for f in dataclasses.fields(p)}):
        raise UsageError(
            f"--optimizer does not apply to {study.kind}: it trains with its own update rule"
        )
    name = study.name if opt == optim.GD else f"{study.name}-{opt.spec.replace(':', '-')}"
    return study._replace(name=name, protocol=dataclasses.replace(p, optimizer=opt))
