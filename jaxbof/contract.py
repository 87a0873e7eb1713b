"""What an experiment hands jaxbof, as typed values (JAX-free: the registry, `jaxbof plot` and a
plug-in's package import this without JAX).

The required core of an experiment is four values, in the spirit of optax's
GradientTransformation (`init` and `update`):

    init(key, cell, shape) -> slot       sample one run's data and parameters (device, one cell)
    step(slot, state) -> state           one update of one run (device); slot.state is the part
                                         the training loop carries, with `done` (bool: halted,
                                         the host must look at it) and `steps` (int32)
    report(halted) -> [rows per run]     measure the halted runs on the host (`Halted`)
    schema                               the rows' columns, key columns, final column, flags

Everything else the engine works out from NamedTuple cells and a hashable protocol: the
coordinates folded into a cell's keys (every field of the cell), its keys, the cell a stored
row belongs to, an example cell of each shape, the compile-cache key. An experiment overrides
any of these through `Cells`, and refines batching through one optional `Batching` value whose
defaults are right for a small experiment (one compiled shape, runs that halt only when they
finish, one unit of cost per step).

The engine enforces what the core cannot say in types: a halted run's state stays put (it
selects the old state where `done`), and a slot without `state.done` (bool) and `state.steps`
(int32) is refused when the first program is traced, naming what is missing.

Claims (`Claim`, `Criterion`, `Estimate`: a theorem's predictions checked on a study's rows by
`jaxbof verify`) and studies (what one command runs into a directory) are here too: `Study`
(cells of an engine experiment), `HostStudy` (rows computed on the host, such as float64 kernel
regression) and `Suite` (several studies in subdirectories of one directory). `jaxbof.runner`
runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol


class Halting(Protocol):
    """The loop-carried state of a run: what the engine reads."""

    done: Any  # bool scalar per run: halted (finished, or the host must measure it)
    steps: Any  # int32 scalar per run: steps taken


class Slot(Protocol):
    """One run on the device: loop-invariant data plus the carried `state`."""

    state: Any  # a Halting NamedTuple


class Schema(NamedTuple):
    """What an experiment's rows mean.

    columns: {column: "int" | "float" | "bool" | "str"} in CSV order.
    keys: the columns that name a row (resuming writes no key twice); None: the cell's fields.
    final: the bool column marking a run's last row when a run writes several (None: every row
        is a run's last), so a run cut short by a crash is trained again and only its missing
        rows are added.
    flags: {column: value}: a row holding any of these values is a flagged run (diverged, not
        converged), left out of every mean and counted; None: those of `stats.FLAGS` that are
        columns.
    """

    columns: Mapping[str, str]
    keys: tuple[str, ...] | None = None
    final: str | None = None
    flags: Mapping[str, Any] | None = None


class Report(NamedTuple):
    """One halted run's measurement, where it may go on (`Batching.resume`)."""

    rows: list[dict]  # measured rows (may be empty, or many: one per recorded time)
    finished: bool  # True: the run is over and its slot is free; False: resume it


class Halted(NamedTuple):
    """What `Experiment.report` measures: the halted runs of a batch of slots."""

    slots: Any  # the whole batch (device arrays with a leading slot axis)
    index: list[int]  # the halted slots' positions in the batch
    cells: list  # their cells, in the same order
    bucket: Hashable = None  # the compiled shape (`Batching.shape`)
    programs: Mapping[str, Callable] = {}  # compiled `Batching.programs`, by name

    def runs(self) -> list:
        """Host (NumPy) copies of the halted slots, one pytree per run, in `index` order. It
        copies the whole batch to the host: right for small slots; an experiment with large
        ones measures on the device (`Batching.programs`) or takes what it needs from
        `slots`."""
        import numpy as np

        whole = _tree_map(np.asarray, self.slots)
        return [_tree_map(lambda a, s=s: a[s], whole) for s in self.index]


def _tree_map(fn, tree):
    """fn on every leaf of nested NamedTuples, tuples, lists and dicts (no JAX needed)."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_tree_map(fn, t) for t in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_tree_map(fn, t) for t in tree)
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    return None if tree is None else fn(tree)


class Batching(NamedTuple):
    """Optional refinements of how cells are batched; each None means the simple default.

    shape(cell) -> Hashable: the compiled shape (bucket) a cell trains in (None: one shape,
        passed to init as None).
    prep_shapes({bucket: cells}) -> {bucket: prep_shape}: sample several buckets' cells at one
        larger shape (None: each bucket's own); then `crop(slot, bucket) -> slot` cuts a slot
        sampled at the larger shape down to the bucket's, exactly.
    resume(slot) -> slot: continue a halted run that `report` says is not finished (None: runs
        halt only when finished, and are measured while the next chunk trains).
    programs(bucket, slot_shapes, B) -> {name: engine.Program}: extra device programs that
        `report` calls through `Halted.programs`; the name is the cache key and must say every
        shape the program depends on.
    step_flops(bucket, cell) -> float: FLOPs of one step (cell None: a padded slot of the
        bucket); for throughput figures and ordering (None: 1.0).
    run_cost(bucket, cell) -> float: a run's relative cost, biggest buckets first (None:
        step_flops).
    """

    shape: Callable[[Any], Hashable] | None = None
    prep_shapes: Callable[[dict], dict] | None = None
    crop: Callable[[Any, Hashable], Any] | None = None
    resume: Callable[[Any], Any] | None = None
    programs: Callable[[Hashable, Any, int], dict] | None = None
    step_flops: Callable[[Hashable, Any], float] | None = None
    run_cost: Callable[[Hashable, Any], float] | None = None


class Cells(NamedTuple):
    """How cells become keys and traced inputs, and rows become cells again; each None means
    the default the engine derives from NamedTuple cells.

    coords(cell) -> uint32[C]: what is folded into the cell's keys (default: every field; an
        int as itself, a bool as 0/1, a float as the two words of its float64 bits, a str by
        CRC32). Leaving a field out shares randomness across it (the same data at every lr).
    keys(base_key, coords) -> keys: the cell's PRNG keys on the device (default: fold_in of
        each coordinate in turn).
    inputs(cells, keys_B, dtype) -> tuple of host arrays with a leading cell axis: the traced
        arguments of init before the shape (default: (key, cell) with the cell's ints as int32,
        floats in the sweep's dtype, bools as bool).
    cell_of(row) -> cell: the cell a stored row belongs to (default: the cell's fields read
        from the row, typed like the study's cells).
    example_cell(bucket) -> cell: a cell of that shape, to trace programs (default: one of the
        sweep's cells in that bucket).
    """

    coords: Callable[[Any], Any] | None = None
    keys: Callable[[Any, Any], Any] | None = None
    inputs: Callable[[Sequence, Any, Any], tuple] | None = None
    cell_of: Callable[[Mapping], Any] | None = None
    example_cell: Callable[[Hashable], Any] | None = None


class Experiment(NamedTuple):
    """An experiment as the engine sees it: the required core (init, step, report, schema),
    the protocol (hashable: everything the compiled programs depend on besides shapes) and the
    sweep's base seed, and the optional refinements.

    init(*inputs, shape) -> slot: one run from a cell; inputs are (key, cell) by default, with
        the cell's fields as traced scalars (`Cells.inputs` to change them).
    step(slot, state) -> state: one update; set state.done to halt (the engine keeps a halted
        state as it is).
    report(halted: Halted) -> one entry per halted run: a list of rows (the run is finished) or
        a `Report` (rows, finished), for runs that `Batching.resume` continues.
    """

    init: Callable[..., Any]
    step: Callable[[Any, Any], Any]
    report: Callable[[Halted], Sequence[Report | list[dict]]]
    schema: Schema
    protocol: Hashable = None
    seed: int = 0
    batching: Batching = Batching()
    cells: Cells = Cells()


# ----------------------------------------------------------------------------- studies


class Study(NamedTuple):
    """What one run command trains on the engine: the experiment's kind (its plug-in's name), a
    name (the default --out is runs/NAME), its axes and protocol (as written to config.json),
    the cells."""

    kind: str
    name: str
    description: str
    grid: Any
    protocol: Any
    cells: tuple


class HostStudy(NamedTuple):
    """Rows computed on the host (NumPy/SciPy, float64, one process), such as kernel regression
    or an NTK concentration grid, written and resumed like an engine study's.

    compute(on_rows, stored) computes every row not in `stored` (the rows already in the
    directory) and hands each batch to on_rows as soon as it exists. config: the protocol,
    written to config.json as experiment.config; part: a name for a study that is one part of
    a Suite (config.json's experiment.part), None otherwise. x64: the computation runs JAX in
    float64, switched on by the runner before it (a NumPy computation needs nothing; an engine
    study in the same Suite would then train in float64 too, so such a Suite takes --x64).
    """

    kind: str
    name: str
    description: str
    config: Any
    schema: Schema
    compute: Callable[[Callable[[list[dict]], Any], list[dict]], Any]
    part: str | None = None
    x64: bool = False


class Suite(NamedTuple):
    """Several studies into subdirectories of one directory ("" is the directory itself), run in
    order, then summarised from the directory: `table(root) -> lines` on stdout and the
    plug-in's figures of the root. write_root(root, run) writes ROOT/config.json first (run:
    its "run" entry) when the root holds no study of its own (None: the study at "" does);
    ValueError when the root holds another study."""

    kind: str
    name: str
    parts: tuple  # ((subdir, Study | HostStudy), ...)
    table: Callable[[Any], list[str]] | None = None
    write_root: Callable[[Any, dict], Any] | None = None


# ----------------------------------------------------------------------------- claims


class Criterion(NamedTuple):
    """Where a claim's estimate must lie: low <= estimate <= high (None: unbounded), fixed
    before any measurement. `verdict` compares an interval with it: holds when the whole
    interval satisfies it, fails when the whole interval violates it, else inconclusive."""

    low: float | None = None
    high: float | None = None

    def verdict(self, low: float, high: float) -> str:
        if not (low <= high):  # an undefined interval (nan) says nothing
            return "inconclusive"
        if (self.low is not None and high < self.low) or (
            self.high is not None and low > self.high
        ):
            return "fails"
        if (self.low is None or low >= self.low) and (self.high is None or high <= self.high):
            return "holds"
        return "inconclusive"

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f">= {self.low:g}"
        return f"<= {self.high:g}" if self.high is not None else "anything"


class Estimate(NamedTuple):
    """A measured quantity with its interval, and how the interval was obtained."""

    value: float
    low: float
    high: float
    method: str  # e.g. "bootstrap, 2000 resamples of 30 seeds, seed 0"; "exact (Clopper-Pearson)"
    cell: str = ""  # for a claim over every cell of a grid: which cell ("n=50")
    level: float = 0.95  # the interval's confidence (Bonferroni-corrected for a cell)


class Claim(NamedTuple):
    """A theorem's prediction as a value jaxbof can check (`jaxbof verify`), JAX-free.

    id, statement (in the paper's terms), source (paper, theorem or figure).
    reads: the `jaxbof reproduce` name of the preset whose results it reads.
    estimate(rows, config, level) -> Estimate, or one Estimate per cell for a claim over every
        cell (each at the Bonferroni-corrected level, so that the family is at `level`); rows
        and config are those of the preset's results directory (results.csv, config.json).
    criterion: where the estimate must lie (fixed before the measurement).
    expected: "holds", or "fails" for a known finding, with its reason in one line.
    """

    id: str
    statement: str
    source: str
    reads: str
    estimate: Callable[[list, Mapping, float], Any]
    criterion: Criterion
    expected: str = "holds"
    reason: str = ""
