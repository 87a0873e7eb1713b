"""Experiments as plug-ins: the one map from an experiment's name to what the command line and
the figures need of it. Nothing outside this package names an experiment kind.

Built in (each a package, importable without JAX; their device code loads on first use):

    classification     Karhadkar et al. (NeurIPS 2024): hinge-loss GD on noisy labels
    regression         Park et al. (2024): square-loss gradient flow in the NTK regime
    ntk-concentration  ||H_M - H_inf||_op / ||H_inf||_op against width (jaxbof.concentration)
    optimizers         both experiments under GD, momentum and Adam, paired by run
    cnn                Kou et al. (ICML 2023): signal against noise in a two-layer ReLU CNN
    learning-curves    kernel ridge regression against the eigenlearning prediction

A researcher's own package adds a theorem without editing jaxbof: it names a `Plugin` under the
entry-point group "jaxbof.experiments" in its pyproject.toml,

    [project.entry-points."jaxbof.experiments"]
    my-theorem = "my_package:PLUGIN"

and `jaxbof sweep my-theorem ...`, `jaxbof reproduce ...` and `jaxbof plot DIR` find it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

GROUP = "jaxbof.experiments"  # the entry-point group of plug-ins from other packages

# name -> module holding PLUGIN (imported on first use)
BUILTIN = {
    "classification": "jaxbof.experiments.classification",
    "regression": "jaxbof.experiments.regression",
    "ntk-concentration": "jaxbof.experiments.ntk_concentration",
    "optimizers": "jaxbof.experiments.optimizers",
    "cnn": "jaxbof.experiments.cnn",
    "learning-curves": "jaxbof.experiments.learning_curves",
}


class Study(NamedTuple):
    """What one run command trains: the experiment's kind (its plug-in's name), a name (the
    default --out is runs/NAME), its axes and protocol (as written to config.json), the cells."""

    kind: str
    name: str
    description: str
    grid: Any
    protocol: Any
    cells: tuple


class Reproduce(NamedTuple):
    """`jaxbof reproduce NAME [--quick]`: one sweep (`study(quick) -> Study`), or anything
    else (`run(args, host) -> exit code`, host a `Host`)."""

    name: str
    help: str
    study: Callable | None = None
    run: Callable | None = None


class Host(NamedTuple):
    """What the command line lends a plug-in's own `Reproduce.run`."""

    runtime: Callable  # (args) -> Runtime: distributed runtime, precision, compile cache
    run: Callable  # (study, args, runtime, tables=True) -> exit code: one sweep into args.out
    meta: Callable  # (runtime) -> dict: config.json's "run" entry
    open_writer: Callable  # (out, config, columns, part=None, keys=None, flags=None) -> store.ResultsWriter
    error: type  # raise error(message): one line on stderr, exit code 2


class Plugin(NamedTuple):
    """An experiment as the command line and the figures see it.

    name: its kind, as in config.json and `jaxbof sweep NAME`.
    add_arguments(parser): its flags for `jaxbof sweep NAME` (strings; parsed in from_args).
    from_args(args) -> Study: the sweep the flags ask for; ValueError (one line) on a bad value.
    experiment(protocol, cells) -> engine.Experiment.
    reproduce: its `jaxbof reproduce` names.
    table(rows, config) -> lines: the terminal summary after a run (config: config.json).
    figures(directory, config, out) -> paths: the pictures DIR's rows support (JAX-free).
    engine() -> engine.Engine: its own batching defaults when --slots is not given.
    """

    name: str
    description: str
    paper: str = ""
    add_arguments: Callable | None = None
    from_args: Callable | None = None
    experiment: Callable | None = None
    reproduce: tuple = ()
    table: Callable | None = None
    figures: Callable | None = None
    engine: Callable | None = None


def deferred(target: str) -> Callable:
    """A function that calls `module:name`, importing it on the first call: a plug-in's
    package stays importable without JAX or matplotlib (the registry, `jaxbof plot`)."""
    module, _, attr = target.partition(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)
    call.__name__, call.__qualname__ = attr, target
    return call


def lazy_api(package: str, submodules, api: str) -> Callable:
    """A package's module-level __getattr__ (PEP 562): its `submodules`, else the names of its
    `api` submodule, each imported on first use."""
    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(importlib.import_module(f"{package}.{api}"), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    return __getattr__


def host_side(args, host: Host, name: str, *, x64: bool = False) -> None:
    """Refuse, in one line each, the engine's flags on a `reproduce NAME` that computes on the
    host in float64 in one process (its own `Reproduce.run`): --optimizer, --x64 (unless `x64`:
    a part that runs on the engine takes it), --slots and the multi-process flags."""
    if args.optimizer is not None:
        raise host.error(f"--optimizer does not apply to reproduce {name}")
    if x64 and args.slots is not None:
        raise host.error(f"{name} takes no --slots")
    if not x64 and (args.x64 or args.slots is not None):
        raise host.error(f"{name} always runs in float64 and takes no --x64/--slots")
    if (args.coordinator, args.num_processes, args.process_id) != (None, None, None):
        raise host.error(f"{name} runs in one process (no --coordinator, "
                         "--num-processes, --process-id)")


_LOADED: dict[str, Plugin] = {}


def _external() -> dict:
    """{name: entry point} of the plug-ins other packages register."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """Every registered experiment: the built-in ones, then other packages' (sorted)."""
    external = _external()
    clash = sorted(set(external) & set(BUILTIN))
    if clash:
        raise ValueError(f"plug-in {clash[0]!r} ({external[clash[0]].value}) clashes with "
                         "jaxbof's own experiment of that name; rename it")
    return list(BUILTIN) + sorted(external)


def plugin(name: str) -> Plugin:
    """The plug-in registered as `name`; ValueError naming the known ones otherwise."""
    if name in _LOADED:
        return _LOADED[name]
    known = names()
    if name not in known:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(known)}")
    if name in BUILTIN:
        found = importlib.import_module(BUILTIN[name]).PLUGIN
    else:
        ep = _external()[name]
        try:
            found = ep.load()
        except Exception as e:  # noqa: BLE001 - another package's code: name it, one line
            raise ValueError(f"plug-in {name!r} ({ep.value}) failed to load: "
                             f"{type(e).__name__}: {e}") from None
        found = getattr(found, "PLUGIN", found)  # a module, or the Plugin itself
    if not isinstance(found, Plugin) or found.name != name:
        raise ValueError(f"plug-in {name!r} must be a jaxbof.experiments.Plugin named {name!r}, "
                         f"got {type(found).__name__}")
    _LOADED[name] = found
    return found


def plugins() -> list[Plugin]:
    """Every plug-in that loads; another package's that fails to load is left out with a
    one-line warning (it must not take the built-in experiments down with it)."""
    out = []
    for n in names():
        try:
            out.append(plugin(n))
        except ValueError as e:
            if n in BUILTIN:
                raise
            warnings.warn(str(e), stacklevel=2)
    return out


def reproducible() -> dict[str, tuple[Plugin, Reproduce]]:
    """{reproduce name: (plug-in, Reproduce)} over every plug-in; a name twice is an error."""
    out: dict = {}
    for p in plugins():
        for r in p.reproduce:
            if r.name in out:
                raise ValueError(f"reproduce {r.name!r} is defined by both {out[r.name][0].name}"
                                 f" and {p.name}")
            out[r.name] = (p, r)
    return out


def kind_of(config: Mapping | None, directory="results") -> str:
    """The experiment kind stored at config["experiment"]["kind"]; ValueError without one."""
    if config is None:
        raise ValueError(f"no config.json in {directory}: cannot tell which experiment its "
                         "results hold")
    experiment = config.get("experiment")
    kind = experiment.get("kind") if isinstance(experiment, Mapping) else None
    if not kind:
        raise ValueError(f"{directory}/config.json names no experiment kind "
                         "(experiment.kind); known: " + ", ".join(names()))
    plugin(kind)  # unknown: ValueError naming the known kinds
    return kind
