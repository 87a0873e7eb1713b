"""Results on disk: one directory per experiment, holding config.json and results.csv.

results.csv holds an experiment's rows (one per trained model, or one per model and recorded
time), with the columns and types of the experiment's schema. Rows are appended and fsync'ed batch by batch, so an interrupted sweep loses nothing it reported; a
crash in the middle of a write leaves at most one incomplete final line, which readers ignore
and the next writer removes. Floats are written with repr, so they read back bit for bit (nan
and inf included); bools are written as 1/0.

config.json records what the rows mean: the experiment (its kind and protocol, written by the
caller) and the schema {column: type} (written here), which is how a reader types the rows;
nothing is inferred from column names. Resuming a directory with a different experiment or
schema is an error naming the keys that differ, so results of two protocols are never mixed
in one file. The module knows no experiment and imports no JAX.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

CONFIG = "config.json"
RESULTS = "results.csv"
TYPES = ("int", "float", "bool", "str")


def check_schema(columns: Mapping[str, str]) -> dict:
    """{column: type} in CSV order, type one of TYPES; ValueError naming a bad entry."""
    columns = dict(columns)
    if not columns:
        raise ValueError("a results schema needs at least one column")
    for name, kind in columns.items():
        if kind not in TYPES:
            raise ValueError(f"column {name!r}: type {kind!r} is not one of {', '.join(TYPES)}")
        if not name or any(ch in name for ch in ',"\n\r'):
            raise ValueError(f"column name {name!r}: must be non-empty, without commas, "
                             "quotes or line breaks")
    return columns


# ----------------------------------------------------------------------------- config


def jsonable(obj):
    """obj with enums as their names, dataclasses/NamedTuples as dicts, tuples as lists and
    numpy scalars as Python numbers, i.e. exactly what json.load gives back."""
    if isinstance(obj, enum.Enum):
        return obj.name
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {k: jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _diff(old, new, prefix: str) -> list[str]:
    """Dotted paths where two JSON values differ (nan equals nan)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            path = f"{prefix}.{k}" if prefix else k
            if k not in old or k not in new:
                out.append(path)
            else:
                out += _diff(old[k], new[k], path)
        return out
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return []
    if type(old) is bool or type(new) is bool:  # True == 1 in Python, not in a config
        return [] if type(old) is type(new) and old == new else [prefix]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in _diff(a, b, f"{prefix}[{i}]")]
    return [] if old == new else [prefix]


def load_config(directory) -> dict | None:
    path = Path(directory) / CONFIG
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- writing


def _format(column: str, kind: str, value) -> str:
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"column {column}: expected a bool, got {value!r}")
        return "1" if value else "0"
    if kind == "int":
        if int(value) != value:
            raise TypeError(f"column {column}: expected an integer, got {value!r}")
        return str(int(value))
    if kind == "str":
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"column {column}: line breaks not allowed in {text!r}")
        return text
    return repr(float(value))  # shortest string that reads back to the same float


class ResultsWriter:
    """Appends sweep rows to DIR/results.csv; opening it writes or checks DIR/config.json.

    config: {"experiment": ..., "run": ...} or any JSON-able dict; the schema is stored with it
    under "schema". Every top-level key except those in `ignore` (run metadata: dates, host,
    versions) must match an existing config.json, else ValueError naming the differing keys.
    A matching existing config.json is left as is. Use as a context manager; `write` can be
    passed as the sweep's on_rows callback.
    columns: the schema {column: type} (type one of TYPES), e.g. engine.Experiment.columns.
    """

    def __init__(self, directory, config: Mapping, columns: Mapping[str, str], *,
                 ignore: Iterable[str] = ("run",)):
        self.schema = check_schema(columns)
        self.columns = tuple(self.schema)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        config = jsonable({**dict(config), "schema": self.schema})
        ignore = set(ignore)
        results = self.directory / RESULTS
        old = load_config(self.directory)
        if old is None:
            if results.exists() and results.stat().st_size > 0:
                raise ValueError(f"{results} exists without {CONFIG}: cannot tell what it holds")
            text = json.dumps(config, indent=2, sort_keys=True) + "\n"
            _write_atomic(self.directory / CONFIG, text)
        else:
            keep = lambda c: {k: v for k, v in c.items() if k not in ignore}  # noqa: E731
            differ = _diff(keep(old), keep(config), "")
            if differ:
                raise ValueError(f"{self.directory / CONFIG} describes a different experiment; "
                                 f"differing keys: {', '.join(differ)}")
        self._lock = threading.Lock()
        self._file = open(results, "a+b")
        self._repair()

    def _repair(self) -> None:
        """Drop an incomplete final line (a crash mid-write), then check or write the header."""
        f = self._file
        f.seek(0)
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
            data = data[:end]
        header = ",".join(self.columns)
        if data:
            first = data[: data.find(b"\n")].decode()
            if first != header:
                raise ValueError(f"{f.name}: header {first!r} on disk, expected {header!r}")
        else:
            f.write((header + "\n").encode())
            self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, rows: Sequence[Mapping]) -> int:
        """Append rows (dicts with exactly the keys `columns`) and fsync. Returns the count."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for row in rows:
            missing = [c for c in self.columns if c not in row]
            extra = [k for k in row if k not in self.columns]
            if missing or extra:
                raise ValueError(f"row does not match the columns: missing {missing}, "
                                 f"unknown {extra}")
            w.writerow([_format(c, k, row[c]) for c, k in self.schema.items()])
        with self._lock:
            self._file.write(buf.getvalue().encode())
            self._sync()
        return len(rows)

    def close(self) -> None:
        if not self._file.closed:
            self._sync()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- reading


def _parse(column: str, kind: str | None, text: str):
    if kind == "bool":
        if text in ("1", "True", "true"):
            return True
        if text in ("0", "False", "false"):
            return False
        raise ValueError(f"column {column}: not a bool: {text!r}")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text) if text else math.nan
    if kind == "str":
        return text
    try:  # a column the schema does not list (a directory written before schemas were stored)
        return float(text)
    except ValueError:
        return text


def load_schema(directory) -> dict | None:
    """The {column: type} schema stored in DIR/config.json (None if there is none)."""
    config = load_config(directory)
    return None if config is None or "schema" not in config else check_schema(config["schema"])


def load_results(directory) -> list[dict]:
    """Rows of DIR/results.csv typed by the schema in DIR/config.json (int, float, bool, str);
    an incomplete final line (a crash mid-write) is ignored. A column the schema lacks (older
    directories have none) reads as float where it parses as one, else as str."""
    path = Path(directory) / RESULTS
    if not path.exists():
        return []
    schema = load_schema(directory) or {}
    text = path.read_text()
    end = text.rfind("\n") + 1
    lines = text[:end].splitlines()
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    rows = []
    for i, fields in enumerate(csv.reader(lines[1:]), start=2):
        if len(fields) != len(header):
            raise ValueError(f"{path}:{i}: {len(fields)} fields, header has {len(header)}")
        rows.append({c: _parse(c, schema.get(c), t) for c, t in zip(header, fields)})
    return rows


# ----------------------------------------------------------------------------- summaries


class Summary(NamedTuple):
    mean: float  # over valid runs; nan if there are none
    sem: float  # standard error of the mean, std(ddof=1) / sqrt(count); nan if count < 2
    count: int  # valid runs: converged and not diverged
    flagged: int  # runs left out: not converged within max_steps, or diverged


def is_flagged(row: Mapping) -> bool:
    """A run not to be averaged in: diverged, or (where the experiment has a stopping rule)
    not converged."""
    return bool(row.get("diverged", False)) or not row.get("converged", True)


def aggregate(rows: Iterable[Mapping], by: str | Sequence[str] = ("n", "d_over_n"),
              value: str = "test_error") -> dict:
    """{key: Summary} of `value` grouped by the columns `by`, sorted by key.

    key is the tuple of the `by` values (the value itself when `by` is one column name).
    Flagged runs (not converged, or diverged) are counted, never averaged in.
    """
    single = isinstance(by, str)
    cols = (by,) if single else tuple(by)
    groups: dict = {}
    for r in rows:
        key = r[cols[0]] if single else tuple(r[c] for c in cols)
        vals, flagged = groups.setdefault(key, ([], [0]))
        if is_flagged(r):
            flagged[0] += 1
        else:
            vals.append(float(r[value]))
    out = {}
    for key in sorted(groups):
        vals, flagged = groups[key]
        x = np.asarray(vals, np.float64)
        mean = float(x.mean()) if len(x) else math.nan
        sem = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) >= 2 else math.nan
        out[key] = Summary(mean, sem, len(x), flagged[0])
    return out
