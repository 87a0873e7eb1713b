"""Experiments as plug-ins: the one map from an experiment's name to what the command line and
the figures need of it. Nothing outside this package names an experiment kind.

Built in (each a package, importable without JAX; their device code loads on first use):

    classification     Karhadkar et al. (NeurIPS 2024): hinge-loss GD on noisy labels
    regression         Park et al. (2024): square-loss gradient flow in the NTK regime
    ntk-concentration  ||H_M - H_inf||_op / ||H_inf||_op against width (jaxbof.concentration)
    optimizers         both experiments under GD, momentum and Adam, paired by run
    cnn                Kou et al. (ICML 2023): signal against noise in a two-layer ReLU CNN
    learning-curves    kernel ridge regression against the eigenlearning prediction
    sphere-spectrum    kernel eigenvalues on the sphere against empirical Gram spectra
    spiky-kernel       Haas et al. (NeurIPS 2023): spiky-smooth kernel regression, fixed d
    spiky-net          Haas et al. (NeurIPS 2023): ReLU against spiky-smooth networks, SGD

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

from jaxbof.contract import HostStudy, Study, Suite

__all__ = [
    "Command",
    "HostStudy",
    "Plugin",
    "Reproduce",
    "Study",
    "Suite",
    "arguments",
    "default_study",
    "deferred",
    "figures_of",
    "kind_of",
    "lazy_api",
    "names",
    "plugin",
    "plugins",
    "reproducible",
    "study_from",
    "sweepable",
    "table_of",
]

GROUP = "jaxbof.experiments"  # the entry-point group of plug-ins from other packages

# name -> module holding PLUGIN, or "module:ATTR" for a package of several plug-ins (imported
# on first use)
BUILTIN = {
    "classification": "jaxbof.experiments.classification",
    "regression": "jaxbof.experiments.regression",
    "ntk-concentration": "jaxbof.experiments.ntk_concentration",
    "optimizers": "jaxbof.experiments.optimizers",
    "cnn": "jaxbof.experiments.cnn",
    "learning-curves": "jaxbof.experiments.learning_curves",
    "sphere-spectrum": "jaxbof.experiments.sphere_spectrum",
    "spiky-kernel": "jaxbof.experiments.haas_spikes:KERNEL",
    "spiky-net": "jaxbof.experiments.haas_spikes:NET",
}


class Reproduce(NamedTuple):
    """`jaxbof reproduce NAME [--quick]`: `study(quick)` gives what to run, a Study (cells of
    the engine), a HostStudy (rows on the host) or a Suite (several in subdirectories)."""

    name: str
    help: str
    study: Callable[[bool], Study | HostStudy | Suite]


class Command(NamedTuple):
    """A command of a plug-in's own (`jaxbof NAME ...`): its flags and what runs them (exit
    code; a ValueError is reported in one line with exit code 2)."""

    name: str
    help: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any], int]


class Plugin(NamedTuple):
    """An experiment as the command line and the figures see it. Only `name`, `description`
    and, for `jaxbof sweep NAME`, `experiment`, `cell` and `grid` are needed; the rest has
    defaults (`arguments`, `study_from`, `table_of`, `figures_of`).

    experiment(protocol, cells) -> contract.Experiment.
    cell: the NamedTuple type of a grid point; `jaxbof sweep NAME` gets one flag per field.
    grid: {field: default flag text} ("0.1,0.5", "0:3": parsed by flags.parse_values).
    protocol: what every cell of a sweep runs under (hashable; written to config.json).
    add_arguments(parser) / from_args(args) -> Study: override the flags derived from `cell`.
    reproduce: its `jaxbof reproduce` names.
    table(rows, config) -> lines: the terminal summary (default: means over seeds).
    figures(directory, config, out) -> paths: the pictures (JAX-free; default: each measured
        column against the first axis of the grid).
    engine() -> engine.Engine: its own batching defaults when --slots is not given.
    commands: commands of its own (`Command`).
    claims: reserved for the theorem's checkable claims (jaxbof verify).
    """

    name: str
    description: str
    paper: str = ""
    experiment: Callable[[Any, tuple], Any] | None = None
    cell: type | None = None
    grid: Mapping[str, str] | None = None
    protocol: Any = None
    add_arguments: Callable | None = None
    from_args: Callable | None = None
    reproduce: tuple = ()
    table: Callable | None = None
    figures: Callable | None = None
    engine: Callable | None = None
    commands: tuple = ()
    claims: tuple = ()


def sweepable(plugin: Plugin) -> bool:
    """Whether `jaxbof sweep NAME` exists for the plug-in."""
    return plugin.from_args is not None or plugin.cell is not None


def arguments(plugin: Plugin, group) -> None:
    """The plug-in's flags: its own add_arguments, else one per field of its cell."""
    if plugin.add_arguments is not None:
        plugin.add_arguments(group)
        return
    grid = plugin.grid or {}
    cell: Any = plugin.cell  # without add_arguments: a NamedTuple class (`sweepable`)
    for field in cell._fields:
        default = grid.get(field, cell._field_defaults.get(field))
        group.add_argument(
            "--" + field.replace("_", "-"),
            dest=field,
            default=None if default is None else str(default),
            required=default is None,
            help=f"values of {field} (a comma list or start:stop[:step])",
        )


def study_from(plugin: Plugin, args) -> Study:
    """The sweep the flags ask for: its own from_args, else every combination of the values
    of the cell's fields (ValueError naming a bad flag)."""
    import itertools

    from jaxbof.flags import parse_values

    if plugin.from_args is not None:
        return plugin.from_args(args)
    cell: Any = plugin.cell  # without from_args: a NamedTuple class (`sweepable`)
    kinds = _field_kinds(cell)
    values = {
        f: parse_values(getattr(args, f), kinds[f], f.replace("_", "-")) for f in cell._fields
    }
    cells = tuple(cell(*combo) for combo in itertools.product(*values.values()))
    return Study(plugin.name, plugin.name, plugin.description, values, plugin.protocol, cells)


def default_study(plugin: Plugin) -> Study:
    """The sweep `jaxbof sweep NAME` runs with no flag (the grid's defaults)."""
    import argparse

    parser = argparse.ArgumentParser()
    arguments(plugin, parser)
    return study_from(plugin, parser.parse_args([]))


def _field_kinds(cell: type) -> dict:
    """{field: int | float | str} from the NamedTuple's annotations (or its defaults)."""
    hints = getattr(cell, "__annotations__", {})
    out = {}
    for f in cell._fields:
        hint = hints.get(f, type(cell._field_defaults.get(f, 0.0)))
        name = hint if isinstance(hint, str) else getattr(hint, "__name__", "float")
        out[f] = {"int": int, "float": float, "str": str, "bool": int}.get(name, float)
    return out


def table_of(plugin: Plugin) -> Callable | None:
    """The plug-in's table, or the default for a plug-in with a cell (`summary_table`)."""
    if plugin.table is not None or plugin.cell is None:
        return plugin.table
    return summary_table


def figures_of(plugin: Plugin) -> Callable | None:
    """The plug-in's figures, or the default for a plug-in with a cell."""
    if plugin.figures is not None or plugin.cell is None:
        return plugin.figures
    return deferred("jaxbof.plots:summary_figure")


def summary_table(rows, config) -> list[str]:
    """Mean and standard error over seeds of every measured float column, one CSV line per
    cell without its seed; flagged runs left out and counted (config.json's keys and flags)."""
    from jaxbof import stats

    by, measured, flags = summary_columns(config, rows)
    lines = [",".join([*by, *(f"{c},{c}_sem" for c in measured), "runs", "flagged"])]
    if not measured:
        return lines
    sums = {c: stats.aggregate(rows, by, c, flags) for c in measured}
    for key, first in sums[measured[0]].items():
        vals = [f"{sums[c][key].mean:.6g},{sums[c][key].sem:.2g}" for c in measured]
        lines.append(",".join([*map(str, key), *vals, str(first.count), str(first.flagged)]))
    return lines


def summary_columns(config, rows=()) -> tuple[list[str], list[str], dict]:
    """(the key columns but seed, the float columns that are not keys or flags, in the rows'
    order, the flags) of a results directory's config.json and rows."""
    schema, keys = config.get("schema", {}), config.get("keys") or []
    flags = config.get("flags") or {}
    by = [k for k in keys if k != "seed"]
    order = list(rows[0]) if rows else list(schema)
    measured = [c for c in order if schema.get(c) == "float" and c not in keys and c not in flags]
    return by, measured, flags


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
        raise ValueError(
            f"plug-in {clash[0]!r} ({external[clash[0]].value}) clashes with "
            "jaxbof's own experiment of that name; rename it"
        )
    return list(BUILTIN) + sorted(external)


def plugin(name: str) -> Plugin:
    """The plug-in registered as `name`; ValueError naming the known ones otherwise."""
    if name in _LOADED:
        return _LOADED[name]
    known = names()
    if name not in known:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(known)}")
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        found = getattr(importlib.import_module(module), attr or "PLUGIN")
    else:
        ep = _external()[name]
        try:
            found = ep.load()
        except Exception as e:  # noqa: BLE001 - another package's code: name it, one line
            raise ValueError(
                f"plug-in {name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}"
            ) from None
        found = getattr(found, "PLUGIN", found)  # a module, or the Plugin itself
    if not isinstance(found, Plugin) or found.name != name:
        raise ValueError(
            f"plug-in {name!r} must be a jaxbof.experiments.Plugin named {name!r}, "
            f"got {type(found).__name__}"
        )
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
                raise ValueError(
                    f"reproduce {r.name!r} is defined by both {out[r.name][0].name} and {p.name}"
                )
            out[r.name] = (p, r)
    return out


def kind_of(config: Mapping | None, directory="results") -> str:
    """The experiment kind stored at config["experiment"]["kind"]; ValueError without one."""
    if config is None:
        raise ValueError(
            f"no config.json in {directory}: cannot tell which experiment its results hold"
        )
    experiment = config.get("experiment")
    kind = experiment.get("kind") if isinstance(experiment, Mapping) else None
    if not kind:
        raise ValueError(
            f"{directory}/config.json names no experiment kind "
            "(experiment.kind); known: " + ", ".join(names())
        )
    plugin(kind)  # unknown: ValueError naming the known kinds
    return kind
