"""Drawing helpers the figures of every experiment share (matplotlib only, never JAX).

Figures are drawn with the object-oriented API on an Agg canvas, not pyplot: no global backend
switch, so importing this module in a notebook leaves the notebook's backend alone, and figures
are never left open. Titles say which grid axes a mean pools over (`pooled`), footnotes which
runs were left out (`flag_note`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from jaxbof import stats, store

ZERO_COLOUR = "white"  # outside the colour map, so an exact 0 is never read as "small"
MISSING_COLOUR = "0.6"
CMAP = "viridis"


def save(fig: Figure, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return str(path)


def pooled(
    rows, by: Sequence[str], ignore: Sequence[str] = (), axes: Sequence[str] = ()
) -> list[str]:
    """The grid `axes` (not in `by`) that take more than one value within some group of `by`."""
    out = []
    for axis in axes:
        if axis in by or axis in ignore:
            continue
        seen: dict = {}
        for r in rows:
            seen.setdefault(tuple(r[c] for c in by), set()).add(r[axis])
        if any(len(v) > 1 for v in seen.values()):
            out.append(axis)
    return out


def subtitle(
    extra: str | None, rows, by: Sequence[str], ignore: Sequence[str] = (), axes: Sequence[str] = ()
) -> str:
    """Title lines under the main one: pooled grid axes (honesty about what a mean mixes),
    then the caller's text."""
    pooled_ = pooled(rows, by, ignore, axes)
    lines = ["averaged over differing " + ", ".join(pooled_) if pooled_ else None, extra]
    return "\n".join(filter(None, lines))


def heading(
    main: str,
    extra: str | None,
    rows,
    by: Sequence[str],
    ignore: Sequence[str] = (),
    axes: Sequence[str] = (),
):
    sub = subtitle(extra, rows, by, ignore, axes)
    return main + (f"\n{sub}" if sub else "")


def results(directory) -> list[dict]:
    """The rows of a results directory (`store.load_results`); ValueError naming the file
    when there are none, so that no figure is drawn from nothing."""
    rows = store.load_results(directory)
    if not rows:
        raise ValueError(f"no results in {Path(directory) / store.RESULTS}")
    return rows


def footnote(fig: Figure, lines) -> None:
    """Text under the axes that constrained layout makes room for (a legend of bare labels)."""
    lines = [t for t in lines if t]
    if lines:
        handles = [Patch(visible=False, label=t) for t in lines]
        fig.legend(
            handles=handles,
            loc="outside lower left",
            fontsize=7,
            frameon=False,
            handlelength=0,
            handletextpad=0,
            borderaxespad=0.2,
        )


def n_flagged(rows, flags=None) -> int:
    return sum(stats.is_flagged(r, flags) for r in rows)


def flag_note(rows, flags=None) -> str | None:
    """ "k of N runs diverged or not converged: excluded" (`stats.describe_flags`), or None."""
    k = n_flagged(rows, flags)
    if not k:
        return None
    return f"{k} of {len(rows)} runs {stats.describe_flags(flags)}: excluded"


# ----------------------------------------------------------------------------- Figure 1


def find(obj, key: str):
    """First value stored under `key` anywhere in a nested dict/list (None if absent)."""
    if isinstance(obj, Mapping):
        if key in obj:
            return obj[key]
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = find(child, key)
        if found is not None:
            return found
    return None


def describe(experiment: Mapping | None, default_name: str) -> str:
    """One title line: the experiment's name and the Monte Carlo precision of a test error."""
    experiment = experiment or {}
    name = experiment.get("name") or default_name
    n_test = find(experiment, "n_test")
    precision = experiment.get("precision")
    name = f"{name} ({precision})" if precision else str(name)
    if n_test:
        return f"{name}: {n_test} test points per trial (resolution {1 / n_test:.2g})"
    return name
