"""Results on disk: one directory per experiment, holding config.json and results.csv.

results.csv holds an experiment's rows (one per trained model, or one per model and recorded
time), with the columns and types of the experiment's schema. Rows are appended and fsync'ed
batch by batch, so an interrupted sweep loses nothing it reported; a crash in the middle of a
write leaves at most one incomplete final line, which readers ignore and the file's next
writer removes. Floats are written with repr, so they read back bit for bit (nan and inf
included); bools are written as 1/0.

One writer per file, enforced by locks (flock, which the kernel drops when a process dies, so a
killed sweep never leaves a directory locked): a one-process sweep holds DIR/.lock exclusively
and appends to results.csv; process I of a multi-process sweep holds DIR/.lock shared and
DIR/.lock.part-I exclusively and appends to its own part, results.part-I-of-N.csv. A second
sweep on the same directory is refused (`Busy`). Only the holder of a file's lock ever
truncates it. `merge` folds the parts into results.csv (atomically, each row once) and removes
the parts whose writers are gone; `load_results` reads results.csv and any parts not merged yet.

config.json records what the rows mean: the experiment (its kind and protocol, written by the
caller), the schema {column: type}, which is how a reader types the rows, and where the writer
is given them the key columns that name a row ("keys") and the flags that mark a failed run
({column: value}, "flags"; `stats.is_flagged`); nothing is inferred from column names.
Resuming a directory with a different experiment or schema is an error naming the keys that
differ, so results of two protocols are never mixed in one file. The module knows no
experiment and imports no JAX.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import dataclasses
import datetime
import enum
import fcntl
import io
import json
import math
import os
import platform
import re
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

CONFIG = "config.json"
RESULTS = "results.csv"
TYPES = ("int", "float", "bool", "str")
LOCK = ".lock"  # held exclusively by a one-process sweep, shared by a multi-process one
PART_WAIT_S = 3.0  # a part's lock may be held for a moment by a merging peer


def part_name(index: int, count: int) -> str:
    """The results file of process `index` of a `count`-process sweep."""
    return f"results.part-{index}-of-{count}.csv"


_PART = re.compile(r"results\.part-(\d+)-of-(\d+)\.csv")


def part_files(directory) -> list[Path]:
    """The results parts in DIR (not merged yet), in process order."""
    found = []
    for path in Path(directory).glob("results.part-*-of-*.csv"):
        m = _PART.fullmatch(path.name)
        if m:
            found.append((int(m.group(2)), int(m.group(1)), path))
    return [p for _, _, p in sorted(found)]


class Busy(ValueError):
    """Another live sweep is writing to the directory."""


class _Lock:
    """An flock on a file of DIR; released by close() or, for a killed process, the kernel."""

    def __init__(self, path: Path, *, shared: bool = False, wait_s: float | None = 0.0):
        """wait_s: how long to retry before BlockingIOError; None: wait as long as it takes."""
        self.path = path
        self._f = open(path, "a+")  # noqa: SIM115 - held while locked; close() closes it
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + (wait_s or 0.0)
        while True:
            try:
                fcntl.flock(self._f, mode if wait_s is None else mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._f.close()
                    raise
                time.sleep(0.05)
        if not shared:  # who holds it, for the message of a refused second sweep
            self._f.seek(0)
            self._f.truncate()
            self._f.write(
                f"pid {os.getpid()} on {platform.node()} since "
                f"{datetime.datetime.now().isoformat(timespec='seconds')}\n"
            )
            self._f.flush()

    @staticmethod
    def holder(path: Path) -> str:
        try:
            return path.read_text().strip() or "unknown process"
        except OSError:
            return "unknown process"

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _busy(directory: Path, lock: Path, what: str) -> Busy:
    return Busy(
        f"{directory} is in use by {what} ({_Lock.holder(lock)}); wait for it to "
        "finish or choose another --out (a killed sweep holds no lock: rerun it to "
        "resume)"
    )


def check_schema(columns: Mapping[str, str]) -> dict:
    """{column: type} in CSV order, type one of TYPES; ValueError naming a bad entry."""
    columns = dict(columns)
    if not columns:
        raise ValueError("a results schema needs at least one column")
    for name, kind in columns.items():
        if kind not in TYPES:
            raise ValueError(f"column {name!r}: type {kind!r} is not one of {', '.join(TYPES)}")
        if not name or any(ch in name for ch in ',"\n\r'):
            raise ValueError(
                f"column name {name!r}: must be non-empty, without commas, quotes or line breaks"
            )
    return columns


# ----------------------------------------------------------------------------- config


def jsonable(obj) -> Any:
    """obj with enums as their names, dataclasses/NamedTuples as dicts, tuples as lists and
    numpy scalars as Python numbers, i.e. exactly what json.load gives back. An object with a
    `jsonable()` method (e.g. optim.Optimizer, recorded as its specification) gives its result."""
    if callable(getattr(obj, "jsonable", None)) and not isinstance(obj, type):
        return jsonable(obj.jsonable())
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
    """DIR/config.json as a dict; None if there is none. A file that is not a JSON object is a
    ValueError naming it (`DIR/config.json: not valid JSON (...)`)."""
    path = Path(directory) / CONFIG
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        config = json.loads(text.decode())
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        what = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(config), "a number"
        )
        raise ValueError(f"{path}: holds {what}, not a JSON object")
    return config


def write_config(directory, config: Mapping) -> Path:
    """Write DIR/config.json atomically for a directory that holds no results of its own (a
    study's root, whose parts are results directories). An existing config whose "experiment"
    differs is refused (ValueError naming the differing keys), as ResultsWriter refuses one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    new = jsonable(config)
    old = load_config(directory)
    if old is not None:
        diff = _diff(old.get("experiment"), new.get("experiment"), "experiment")
        if diff:
            raise ValueError(
                f"{directory} holds another study ({', '.join(diff)} differ); choose another --out"
            )
    path = directory / CONFIG
    _write_atomic(path, json.dumps(new, indent=2, sort_keys=True) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # the rename itself survives a power loss once the directory is synced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


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
    """Appends sweep rows to DIR/results.csv (or, for process I of a multi-process sweep, to
    DIR/results.part-I-of-N.csv); opening it takes the directory's lock, then writes or checks
    DIR/config.json.

    config: {"experiment": ..., "run": ...} or any JSON-able dict; the schema is stored with it
    under "schema". Every top-level key except those in `ignore` (run metadata: dates, host,
    versions) must match an existing config.json, else ValueError naming the differing keys;
    the ignored keys are rewritten with this run's (by the one process, or process 0).
    columns: the schema {column: type} (type one of TYPES), e.g. contract.Schema.columns.
    part: (index, count) of this process in a multi-process sweep; None (or count 1): one process.
    keys: the columns naming a row (contract.Schema.keys), to fold parts left by an
    earlier multi-process run into results.csv each row once; None: identical lines.
    keys and flags ({column: value} marking a failed run, contract.Schema.flags) are recorded
    in config.json beside the schema; a directory written before they were recorded takes
    them on without complaint.
    Raises Busy when another live sweep writes to DIR. Use as a context manager; `write` can be
    passed as the sweep's on_rows callback.
    """

    def __init__(
        self,
        directory,
        config: Mapping,
        columns: Mapping[str, str],
        *,
        ignore: Iterable[str] = ("run",),
        part: tuple[int, int] | None = None,
        keys: Sequence[str] | None = None,
        flags: Mapping[str, object] | None = None,
    ):
        self.schema = check_schema(columns)
        self.layout = {"schema": self.schema}  # what the rows mean, written beside config
        for name, value in (("keys", keys), ("flags", flags)):
            if value is not None:
                self.layout[name] = list(value) if name == "keys" else dict(value)
                unknown = [c for c in self.layout[name] if c not in self.schema]
                if unknown:
                    raise ValueError(f"{name} {unknown} are not columns of the schema")
        self.columns = tuple(self.schema)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if part is not None and not (part[1] >= 1 and 0 <= part[0] < part[1]):
            raise ValueError(f"part={part!r}: need (index, count) with 0 <= index < count")
        self.part = None if part is None or part[1] == 1 else tuple(part)
        self._locks: list[_Lock] = []
        try:
            self._take_locks()
            # Checking config.json and creating this process's file happen under one lock, so
            # a peer process never sees a part without the config written just before it.
            with exclusive(self.directory, "config"):
                self._check_config(config, set(ignore))
                if self.part is None:  # parts of an earlier multi-process run: fold them in
                    merge(self.directory, keys)
                target = self.directory / (RESULTS if self.part is None else part_name(*self.part))
                self._lock = threading.Lock()
                self._file = open(target, "a+b")  # noqa: SIM115 - the writer closes it
                self._repair()
        except BaseException:
            self._release()
            raise

    def _take_locks(self) -> None:
        d = self.directory
        if self.part is None:
            try:
                self._locks.append(_Lock(d / LOCK))
            except BlockingIOError:
                raise _busy(d, d / LOCK, "another sweep") from None
            return
        try:
            self._locks.append(_Lock(d / LOCK, shared=True))
        except BlockingIOError:
            raise _busy(d, d / LOCK, "a one-process sweep") from None
        lock = d / f"{LOCK}.part-{self.part[0]}"
        try:
            self._locks.append(_Lock(lock, wait_s=PART_WAIT_S))
        except BlockingIOError:
            raise _busy(d, lock, f"another process {self.part[0]}") from None

    def _check_config(self, config: Mapping, ignore: set) -> None:
        config = jsonable({**dict(config), **self.layout})
        results = self.directory / RESULTS
        stored = old = load_config(self.directory)
        if old is not None:  # written before keys and flags were recorded: take them on
            old = {**{k: config[k] for k in ("keys", "flags") if k in config}, **old}
        if old is None:
            held = [results] if results.exists() and results.stat().st_size > 0 else []
            held += part_files(self.directory)
            if held:
                raise ValueError(f"{held[0]} exists without {CONFIG}: cannot tell what it holds")
        else:
            keep = lambda c: {k: v for k, v in c.items() if k not in ignore}
            differ = _diff(keep(old), keep(config), "")
            if differ:
                raise ValueError(
                    f"{self.directory / CONFIG} describes a different experiment; "
                    f"differing keys: {', '.join(differ)}"
                )
        if stored is None or (self.part is None or self.part[0] == 0) and stored != config:
            _write_atomic(
                self.directory / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n"
            )

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
                raise ValueError(
                    f"row does not match the columns: missing {missing}, unknown {extra}"
                )
            w.writerow([_format(c, k, row[c]) for c, k in self.schema.items()])
        with self._lock:
            self._file.write(buf.getvalue().encode())
            self._sync()
        return len(rows)

    def close(self) -> None:
        """Flush, fsync and close the file, then release the locks. Where the last flush fails
        (a full disk), the file is closed and the locks released all the same, then the error
        is raised (the rows of earlier writes are on disk; an incomplete last line is repaired
        by the next writer). Closing again does nothing."""
        f = getattr(self, "_file", None)
        try:
            if f is not None and not f.closed:
                try:
                    self._sync()
                except BaseException:
                    with contextlib.suppress(OSError):
                        f.close()  # flushes again and fails, but closes the descriptor
                    raise
                f.close()
        finally:
            self._release()

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.close()
        self._locks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- reading


def _parse(column: str, kind: str | None, text: str):
    """The value of one field; ValueError `column C: 'abc' is not an int` where it is none."""
    if kind == "bool":
        if text in ("1", "True", "true"):
            return True
        if text in ("0", "False", "false"):
            return False
        raise ValueError(f"column {column}: {text!r} is not a bool (1 or 0)")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"column {column}: {text!r} is not an int") from None
    if kind == "float":
        try:
            return float(text) if text else math.nan
        except ValueError:
            raise ValueError(f"column {column}: {text!r} is not a float") from None
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


def _complete_lines(path: Path) -> list[str]:
    """The lines of a results file up to its last newline (a crash mid-write leaves at most one
    incomplete final line, which is not a row yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    data = data[: data.rfind(b"\n") + 1]
    try:
        return data.decode().splitlines()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 text") from None


class _Lines(NamedTuple):
    """The data lines of results.csv followed by the parts, identical lines once, with the file
    and line each comes from (so that a message names where a bad row is)."""

    header: str | None
    lines: list[str]
    numbers: list[int]  # each line's number in its file (the header is line 1)
    starts: list[int]  # index in `lines` of the first line of each file of `files`
    files: list[Path]

    def where(self, i: int) -> str:
        """`DIR/results.csv: line 7` for lines[i]."""
        return f"{self.files[bisect.bisect_right(self.starts, i) - 1]}: line {self.numbers[i]}"


def _read_all(directory: Path) -> _Lines:
    """results.csv followed by the parts, identical lines once."""
    header, seen = None, set()
    read = _Lines(None, [], [], [], [])
    for path in [directory / RESULTS] + part_files(directory):
        got = _complete_lines(path)
        if not got:
            continue
        if header is None:
            header = got[0]
        elif got[0] != header:
            raise ValueError(
                f"{path}: line 1: header {got[0]!r} differs from {header!r} "
                f"(the header of {read.files[0]})"
            )
        read.starts.append(len(read.lines))
        read.files.append(path)
        for number, line in enumerate(got[1:], start=2):
            if line not in seen:
                seen.add(line)
                read.lines.append(line)
                read.numbers.append(number)
    return read._replace(header=header)


def _records(read: _Lines, width: int):
    """(index in read.lines, fields) of each row; ValueError naming the file and line of a row
    that is not one line of `width` fields."""
    reader = csv.reader(read.lines)
    start = 0  # index of the line the next row starts on
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            at = min(max(reader.line_num - 1, start), len(read.lines) - 1)
            raise ValueError(f"{read.where(at)}: {e}") from None
        if reader.line_num - start > 1:
            raise ValueError(f"{read.where(start)}: a quote opened in this row is never closed")
        if len(fields) != width:
            got = (
                f"{len(fields)} field{'' if len(fields) == 1 else 's'}"
                if fields
                else "an empty line"
            )
            raise ValueError(f"{read.where(start)}: {got}, the header has {width}")
        yield start, fields
        start = reader.line_num


def _typed(read: _Lines, schema: Mapping[str, str]) -> list[dict]:
    """The rows of `read`, typed by `schema`; ValueError naming the file, line and column of a
    value that is not of its column's type."""
    kinds = [(c, schema.get(c)) for c in next(csv.reader([read.header]))]
    rows = []
    for i, fields in _records(read, len(kinds)):
        try:
            rows.append({c: _parse(c, k, t) for (c, k), t in zip(kinds, fields)})
        except ValueError as e:
            raise ValueError(f"{read.where(i)}: {e}") from None
    return rows


def load_results(directory) -> list[dict]:
    """Rows of DIR/results.csv and of any parts not merged yet (each identical row once), typed
    by the schema in DIR/config.json (int, float, bool, str); an incomplete final line (a crash
    mid-write) is ignored. A column the schema lacks (older directories have none) reads as
    float where it parses as one, else as str. A bad row is a ValueError naming its file and
    line: `DIR/results.csv: line 7: column n: 'abc' is not an int`."""
    directory = Path(directory)
    read = _read_all(directory)
    if read.header is None:
        return []
    return _typed(read, load_schema(directory) or {})


class Merged(NamedTuple):
    rows: int  # rows in results.csv after the merge
    parts_removed: int  # parts whose writers are gone, now folded in and deleted
    conflicts: int  # rows whose key was already present with other values (first one kept)


def merge(directory, keys: Sequence[str] | None = None) -> Merged:
    """Fold the parts of a multi-process sweep into DIR/results.csv, each row once (by the
    `keys` columns, else those config.json records, else identical lines), written atomically;
    then delete the parts whose writers are gone (their lock is free). Safe to call from every
    process at any time: each call folds what is there, so the last process to finish leaves
    the complete file. Rows of a part still being written stay in that part and are folded in
    by a later merge. A bad row
    (as `load_results` reads them) is a ValueError naming its file and line, and nothing is
    folded in or removed."""
    directory = Path(directory)
    parts = part_files(directory)
    if not parts:
        return Merged(max(0, len(_complete_lines(directory / RESULTS)) - 1), 0, 0)
    with exclusive(directory, "merge"):
        locks: dict = {}  # process index -> its part lock, where no one writes any more
        held = []  # parts of those: read whole, then removed
        try:
            for path in part_files(directory):
                index = int(_PART.fullmatch(path.name).group(1))  # pyright: ignore[reportOptionalMemberAccess] - part_files matched it
                if index not in locks:
                    try:
                        locks[index] = _Lock(directory / f"{LOCK}.part-{index}")
                    except BlockingIOError:
                        locks[index] = None  # a live writer: fold in what it wrote so far
                if locks[index] is not None:
                    held.append(path)
            read = _read_all(directory)
            header, lines = read.header, read.lines
            if keys is None:
                keys = (load_config(directory) or {}).get("keys")
            if header is not None:  # a bad row is named where it is, never folded in
                _typed(read, load_schema(directory) or {})
            conflicts = 0
            if keys is not None and header is not None:
                names = next(csv.reader([header]))
                idx = [names.index(k) for k in keys]
                first: dict = {}
                kept = []
                for at, fields in _records(read, len(names)):
                    line = lines[at]
                    key = tuple(fields[i] for i in idx)
                    if key in first:
                        conflicts += first[key] != line
                        continue
                    first[key] = line
                    kept.append(line)
                lines = kept
                if conflicts:
                    warnings.warn(
                        f"{directory}: {conflicts} rows have the key of another row "
                        "but other values; the first was kept",
                        stacklevel=2,
                    )
            if header is not None:
                _write_atomic(directory / RESULTS, "".join(x + "\n" for x in [header] + lines))
            for path in held:
                path.unlink(missing_ok=True)
            return Merged(len(lines), len(held), conflicts)
        finally:
            for lock in locks.values():
                if lock is not None:
                    lock.close()


def exclusive(directory, name: str) -> _Lock:
    """A blocking exclusive lock on DIR/.lock.NAME (a context manager), for short steps that
    processes of one sweep take in turn (merging, drawing the pictures)."""
    return _Lock(Path(directory) / f"{LOCK}.{name}", wait_s=None)
