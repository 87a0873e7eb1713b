"""Results on disk: exact round trip, crash tolerance, resume checks, summaries."""

import errno
import fcntl
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxbof import stats, store
from jaxbof.experiments import classification as cls
from jaxbof.experiments.classification.grid import Grid, Protocol


def make_row(
    n=50, d_over_n=2.0, seed=0, gamma=0.1, test_error=0.05, converged=True, diverged=False, **over
):
    row = {c: 0.25 for c in cls.COLUMNS}
    row.update(
        n=n,
        d=round(n * d_over_n),
        d_over_n=d_over_n,
        gamma=gamma,
        alpha=0.1,
        noise_rate=0.1,
        width=64,
        seed=seed,
        param="gram",
        steps=123,
        converged=converged,
        diverged=diverged,
        n_corrupt=5,
        test_error=test_error,
    )
    row.update(over)
    return row


CONFIG = {
    "experiment": {"name": "t", "protocol": {"max_steps": 10, "n_test": 1000}},
    "run": {"started": "today"},
}


def same(a, b):
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )


def test_round_trip_types_and_values(tmp_path):
    rows = [
        make_row(
            seed=0,
            test_error=float(np.float32(0.1)),
            snr=math.nan,
            A_1=-math.inf,
            w_norm=1e-300,
            min_margin=np.float32(1.0000001),
        ),
        make_row(
            seed=np.int32(1),
            n=np.int64(60),
            converged=np.bool_(False),
            diverged=True,
            param="direct",
            test_error=0.0,
            hinge_loss=1 / 3,
        ),
    ]
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w:
        w.write(rows[:1])
        w.write(rows[1:])
    back = store.load_results(tmp_path)
    assert len(back) == 2
    for r, b in zip(rows, back):
        assert list(b) == list(cls.COLUMNS)
        for c, kind in cls.COLUMNS.items():
            want = {"bool": bool, "int": int, "str": str, "float": float}[kind]
            assert type(b[c]) is want, c
            expect = want(r[c])
            assert same(b[c], expect), (c, b[c], expect)


def test_truncated_last_line_ignored_and_repaired(tmp_path):
    rows = [make_row(seed=s, test_error=s / 7) for s in range(3)]
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w:
        w.write(rows)
    path = tmp_path / store.RESULTS
    full = path.read_text()
    with open(path, "a") as f:  # a crash half-way through the next row
        f.write(full.splitlines()[1][:17])
    assert [r["test_error"] for r in store.load_results(tmp_path)] == [0, 1 / 7, 2 / 7]
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w:  # resuming drops the partial line
        w.write([make_row(seed=9)])
    back = store.load_results(tmp_path)
    assert [r["seed"] for r in back] == [0, 1, 2, 9]
    assert path.read_text().startswith(full)


def test_config_mismatch_names_the_key(tmp_path):
    store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS).close()
    # run metadata may differ on resume; config.json then describes the latest run
    store.ResultsWriter(tmp_path, {**CONFIG, "run": {"started": "tomorrow"}}, cls.COLUMNS).close()
    assert store.load_config(tmp_path)["run"] == {"started": "tomorrow"}
    other = {"experiment": {"name": "t", "protocol": {"max_steps": 20, "n_test": 1000}}, "run": {}}
    with pytest.raises(ValueError, match=r"experiment\.protocol\.max_steps"):
        store.ResultsWriter(tmp_path, other, cls.COLUMNS)
    assert store.load_config(tmp_path) == {
        **CONFIG,
        "run": {"started": "tomorrow"},
        "schema": dict(cls.COLUMNS),
    }
    # another schema (a column renamed or retyped) is another experiment
    with pytest.raises(ValueError, match=r"schema\.steps"):
        store.ResultsWriter(tmp_path, CONFIG, {**cls.COLUMNS, "steps": "float"})


def test_rows_typed_by_the_stored_schema_not_by_names(tmp_path):
    schema = {"n": "str", "steps": "float", "ok": "bool", "note": "str"}
    with store.ResultsWriter(tmp_path, {"experiment": "x"}, schema) as w:
        w.write([{"n": "12", "steps": 3.5, "ok": True, "note": "1:0.5,2:0.5"}])
    (row,) = store.load_results(tmp_path)
    assert row == {"n": "12", "steps": 3.5, "ok": True, "note": "1:0.5,2:0.5"}
    with pytest.raises(ValueError, match="'complex'"):
        store.ResultsWriter(tmp_path / "bad", {}, {"x": "complex"})


def test_config_with_dataclasses_and_enums_resumes(tmp_path):
    cfg = {"experiment": {"protocol": Protocol(), "grid": Grid(n=(50,), d_over_n=(1.0,))}}
    store.ResultsWriter(tmp_path, cfg, cls.COLUMNS).close()
    store.ResultsWriter(tmp_path, cfg, cls.COLUMNS).close()
    assert store.load_config(tmp_path)["experiment"]["protocol"]["stop"] == "ZERO_ERROR"
    with pytest.raises(ValueError, match=r"experiment\.protocol\.n_test"):
        store.ResultsWriter(
            tmp_path,
            {
                "experiment": {
                    "protocol": Protocol(n_test=5),
                    "grid": Grid(n=(50,), d_over_n=(1.0,)),
                }
            },
            cls.COLUMNS,
        )


def test_rows_must_match_columns(tmp_path):
    row = make_row()
    del row["snr"]
    with (
        store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w,
        pytest.raises(ValueError, match="snr"),
    ):
        w.write([row])


def test_results_without_config_refused(tmp_path):
    (tmp_path / store.RESULTS).write_text("n\n1\n")
    with pytest.raises(ValueError, match="config.json"):
        store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS)


def test_completed_cells_equal_grid_cells(tmp_path):
    grid = Grid(n=(50, 70), d_over_n=(1.0, 1.5, 2.3), gamma=("5/n", 0.07), seeds=2)
    cells = grid.cells()
    rows = [make_row(**c._asdict()) for c in cells]
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w:
        w.write(rows)
    done = cls.completed_cells(store.load_results(tmp_path))
    assert done == set(cells)
    assert [c for c in grid.cells() if c not in done] == []


def test_aggregate_excludes_and_counts_flagged():
    rng = np.random.default_rng(0)
    rows, kept = [], {}
    for n in (50, 60):
        for r in (1.0, 2.0):
            vals = rng.uniform(0, 0.1, 5)
            kept[(n, r)] = vals
            rows += [
                make_row(n=n, d_over_n=r, seed=s, test_error=float(v)) for s, v in enumerate(vals)
            ]
    rows.append(make_row(n=50, d_over_n=1.0, seed=7, test_error=0.9, converged=False))
    rows.append(make_row(n=50, d_over_n=1.0, seed=8, test_error=0.9, diverged=True))
    rows.append(make_row(n=60, d_over_n=3.0, seed=0, test_error=0.9, converged=False))
    agg = stats.aggregate(rows, by=("n", "d_over_n"), value="test_error")
    assert list(agg) == sorted(agg)
    for key, vals in kept.items():
        s = agg[key]
        assert s.count == 5
        np.testing.assert_allclose(s.mean, np.mean(vals), rtol=1e-12)
        np.testing.assert_allclose(s.sem, np.std(vals, ddof=1) / np.sqrt(5), rtol=1e-12)
    assert agg[(50, 1.0)].flagged == 2 and agg[(60, 2.0)].flagged == 0
    only_flagged = agg[(60, 3.0)]
    assert only_flagged.count == 0 and only_flagged.flagged == 1 and math.isnan(only_flagged.mean)
    by_dn = stats.aggregate(rows, by="d_over_n", value="test_error")
    assert set(by_dn) == {1.0, 2.0, 3.0} and by_dn[1.0].count == 10


# ----------------------------------------------------------------------------- locks and parts

KEYS = ("n", "d_over_n", "gamma", "alpha", "noise_rate", "width", "seed")


def test_second_writer_is_refused_and_a_closed_one_frees_the_directory(tmp_path):
    w = store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS)
    with pytest.raises(store.Busy, match=rf"{os.getpid()}"):  # names the holder
        store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS)
    with pytest.raises(store.Busy, match="one-process sweep"):  # nor a multi-process member
        store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(1, 2))
    w.write([make_row(seed=0)])
    w.close()
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(0, 2)) as p0:
        with pytest.raises(store.Busy, match="another process 0"):
            store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(0, 2))
        with pytest.raises(store.Busy, match="multi|one-process|another sweep"):
            store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS)
        with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(1, 2)) as p1:  # a peer
            p1.write([make_row(seed=2)])
        p0.write([make_row(seed=1)])
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w:  # free again: parts folded in
        assert store.part_files(tmp_path) == []
    assert sorted(r["seed"] for r in store.load_results(tmp_path)) == [0, 1, 2]


def test_peers_opening_at_once_never_see_a_part_without_config(tmp_path, monkeypatch):
    """Two processes of one sweep open a fresh directory together: the one that finds no
    config.json must not then find the other's part (it would refuse the directory). The steps
    are ordered by events, not sleeps: part 1 reads the missing config first; only then does
    part 0 start opening, and part 1 goes on once part 0 has either opened (the window: part 1
    would then find its part) or is about to wait for a lock that part 1 holds (the config
    lock, which closes the window)."""
    import threading

    load = store.load_config
    part_0_came = threading.Event()  # part 0 has opened, or waits for the config lock
    errors = []

    def open_part(i):
        try:
            with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(i, 2)) as w:
                part_0_came.set() if i == 0 else None
                w.write([make_row(seed=i)])
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    part_0 = threading.Thread(target=open_part, args=(0,), name="part-0")

    def load_config(directory):
        config = load(directory)
        if threading.current_thread().name == "part-1" and part_0.ident is None:
            assert config is None  # part 1 reads first
            part_0.start()
            assert part_0_came.wait(timeout=60), "part 0 neither opened nor waited for the lock"
        return config

    flock = fcntl.flock

    def flock_(f, mode):
        if threading.current_thread() is part_0:
            try:
                return flock(f, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                part_0_came.set()  # it waits for a lock that part 1 holds
                if mode & fcntl.LOCK_NB:
                    raise
        return flock(f, mode)

    monkeypatch.setattr(store, "load_config", load_config)
    monkeypatch.setattr(fcntl, "flock", flock_)
    part_1 = threading.Thread(target=open_part, args=(1,), name="part-1")
    part_1.start()
    part_1.join()
    part_0.join()
    assert errors == []
    assert sorted(r["seed"] for r in store.load_results(tmp_path)) == [0, 1]


def test_lock_of_a_killed_writer_is_released(tmp_path):
    code = (
        f"import sys, os, signal; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from jaxbof import store\n"
        "from test_store import CONFIG, cls\n"
        f"w = store.ResultsWriter({str(tmp_path)!r}, CONFIG, cls.COLUMNS)\n"
        "print('locked', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL and "locked" in proc.stdout
    store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS).close()  # not stuck


def test_opening_a_part_never_touches_another_writers_rows(tmp_path):
    """A peer's part with a half-written last line (it is mid-write) is left byte for byte;
    readers skip the partial line; merging folds in the complete rows and keeps the live part."""
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(1, 2)) as p1:
        p1.write([make_row(seed=5)])
        part = tmp_path / store.part_name(1, 2)
        p1._file.write(b"50,2.0,partial")  # mid-write, not synced as a row
        p1._file.flush()
        before = part.read_bytes()
        with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(0, 2)) as p0:
            p0.write([make_row(seed=4)])
        assert part.read_bytes() == before
        assert sorted(r["seed"] for r in store.load_results(tmp_path)) == [4, 5]
        m = store.merge(tmp_path, KEYS)
        assert (m.rows, m.parts_removed) == (2, 1)  # part 0 removed, part 1 still live
        assert part.read_bytes() == before
        assert store.part_files(tmp_path) == [part]
    m = store.merge(tmp_path, KEYS)  # its writer is gone: folded in (partial line dropped)
    assert (m.rows, m.parts_removed, m.conflicts) == (2, 1, 0)
    assert store.part_files(tmp_path) == []
    assert sorted(r["seed"] for r in store.load_results(tmp_path)) == [4, 5]


def test_merge_keeps_each_key_once(tmp_path):
    for i, seeds in enumerate(((0, 1), (1, 2))):  # seed 1 in both parts (two runs of one cell)
        with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(i, 2)) as w:
            w.write([make_row(seed=s) for s in seeds])
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, part=(0, 3)) as w:
        w.write([make_row(seed=2, test_error=0.5)])  # same key, other value
    with pytest.warns(UserWarning, match="1 rows have the key"):
        m = store.merge(tmp_path, KEYS)
    assert (m.rows, m.parts_removed, m.conflicts) == (3, 3, 1)
    rows = store.load_results(tmp_path)
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    assert [r["test_error"] for r in rows if r["seed"] == 2] == [0.05]  # the first one kept


# ----------------------------------------------------------------------------- keys and flags

FLAGS = {"converged": False, "diverged": True}


def test_config_records_keys_and_flags_and_merge_reads_the_keys(tmp_path):
    """config.json carries the key columns and the flags beside the schema, so a reader needs
    no copy of them: merge folds parts by the recorded keys when given none."""
    for i, seeds in enumerate(((0, 1), (1, 2))):  # seed 1 in both parts
        with store.ResultsWriter(
            tmp_path, CONFIG, cls.COLUMNS, part=(i, 2), keys=KEYS, flags=FLAGS
        ) as w:
            w.write([make_row(seed=s, test_error=0.1 * (i + 1)) for s in seeds])
    config = store.load_config(tmp_path)
    assert config["keys"] == list(KEYS) and config["flags"] == FLAGS
    assert stats.flags_of(config) == FLAGS
    with pytest.warns(UserWarning, match="1 rows have the key"):  # by key, not by line
        m = store.merge(tmp_path)
    assert (m.rows, m.parts_removed, m.conflicts) == (3, 2, 1)


def test_a_directory_without_keys_and_flags_takes_them_on_and_other_flags_are_refused(tmp_path):
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as w:  # as older versions wrote it
        w.write([make_row(seed=0)])
    assert "flags" not in store.load_config(tmp_path)
    assert stats.flags_of(store.load_config(tmp_path)) == stats.FLAGS  # the old reading
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, keys=KEYS, flags=FLAGS) as w:
        w.write([make_row(seed=1)])
    assert store.load_config(tmp_path)["flags"] == FLAGS
    assert len(store.load_results(tmp_path)) == 2
    with pytest.raises(ValueError, match="differing keys: flags"):
        store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, keys=KEYS, flags={"diverged": True})
    with pytest.raises(ValueError, match=r"flags \['divergd'\] are not columns"):
        store.ResultsWriter(tmp_path / "typo", CONFIG, cls.COLUMNS, flags={"divergd": True})


def test_flags_are_what_the_experiment_declares():
    """A plug-in names its own failure columns; rows are flagged by those alone."""
    flags = {"nan_loss": True, "fitted": False}
    ok, nan, unfitted = (
        {"nan_loss": a, "fitted": b, "err": e}
        for a, b, e in ((False, True, 0.1), (True, True, 0.9), (False, False, 0.8))
    )
    assert [stats.is_flagged(r, flags) for r in (ok, nan, unfitted)] == [False, True, True]
    assert not stats.is_flagged(nan)  # the default flags (diverged, converged) name neither
    s = stats.aggregate([ok, nan, unfitted], by="fitted", value="err", flags=flags)
    assert (s[True].count, s[True].flagged, s[False].flagged) == (1, 1, 1)
    assert stats.describe_flags(flags) == "nan_loss or not fitted"
    assert stats.describe_flags() == "diverged or not converged"
    assert stats.declared_flags(["diverged", "x"]) == {"diverged": True}  # none declared
    assert stats.declared_flags(["x"], flags) == flags


# -------------------------------------------------------------------------- damage and full disks


def _write_lines(path, lines):
    path.write_text("".join(x + "\n" for x in lines))


def _results_with(tmp_path, seeds=(0, 1, 2)):
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS, keys=KEYS) as w:
        w.write([make_row(seed=s) for s in seeds])
    return (tmp_path / store.RESULTS).read_text().splitlines()


def _with_field(line, column, value):
    fields = line.split(",")
    fields[list(cls.COLUMNS).index(column)] = value
    return ",".join(fields)


@pytest.mark.parametrize(
    "bad, what",
    [
        ("garbage", "1 field, the header has 35"),
        ("", "an empty line, the header has 35"),
        (("n", "abc"), "column n: 'abc' is not an int"),
        (("test_error", "0.1x"), "column test_error: '0.1x' is not a float"),
        (("converged", "yes"), "column converged: 'yes' is not a bool (1 or 0)"),
        (("param", '"gram'), "a quote opened in this row is never closed"),
    ],
)
def test_a_bad_row_is_named_by_its_file_and_line(tmp_path, bad, what):
    lines = _results_with(tmp_path)
    line = bad if isinstance(bad, str) else _with_field(lines[2], *bad)
    _write_lines(tmp_path / store.RESULTS, lines[:2] + [line] + lines[2:])  # line 3
    with pytest.raises(ValueError) as e:
        store.load_results(tmp_path)
    assert str(e.value) == f"{tmp_path / store.RESULTS}: line 3: {what}"


def test_a_bad_row_of_a_part_is_named_there_and_never_folded_in(tmp_path):
    """Rows come from results.csv and from parts not merged yet: the message names the part and
    its own line number; merging (and opening a one-process writer, which merges) refuses it
    and leaves every file as it was."""
    lines = _results_with(tmp_path)
    part = tmp_path / store.part_name(1, 2)
    bad = _with_field(make_row_line(lines, seed=7), "n", "1.5")
    _write_lines(part, [lines[0], lines[1], make_row_line(lines, seed=5), bad])  # line 4
    before = {p.name: p.read_bytes() for p in tmp_path.glob("results*.csv")}
    want = f"{part}: line 4: column n: '1.5' is not an int"
    for read in (
        store.load_results,
        lambda d: store.merge(d, KEYS),
        lambda d: store.ResultsWriter(d, CONFIG, cls.COLUMNS, keys=KEYS),
    ):
        with pytest.raises(ValueError) as e:
            read(tmp_path)
        assert str(e.value) == want
        assert {p.name: p.read_bytes() for p in tmp_path.glob("results*.csv")} == before
    _write_lines(part, [lines[0], "50,2.0"])  # too few fields for the keys: named, no IndexError
    with pytest.raises(ValueError, match=rf"{part.name}: line 2: 2 fields, the header has 35"):
        store.merge(tmp_path, KEYS)


def make_row_line(lines, **over):
    """The CSV line of make_row(**over), as ResultsWriter writes it (lines: a file's lines)."""
    fields = [store._format(c, k, make_row(**over)[c]) for c, k in cls.COLUMNS.items()]
    assert lines[0] == ",".join(cls.COLUMNS)
    return ",".join(fields)


def test_bytes_that_are_not_text_are_named_by_line(tmp_path):
    lines = _results_with(tmp_path)
    with open(tmp_path / store.RESULTS, "ab") as f:
        f.write(b"\xff\xfe\n")  # line 5
    with pytest.raises(ValueError, match=rf"{store.RESULTS}: line 5: not UTF-8 text"):
        store.load_results(tmp_path)
    assert len(lines) == 4


@pytest.mark.parametrize(
    "text, what",
    [
        ('{"experiment":\n', "not valid JSON (Expecting value: line 2 column 1 (char 15))"),
        ("[1, 2]\n", "holds an array, not a JSON object"),
        ("null\n", "holds null, not a JSON object"),
    ],
)
def test_a_corrupt_config_is_named(tmp_path, text, what):
    _results_with(tmp_path)
    (tmp_path / store.CONFIG).write_text(text)
    for read in (
        store.load_config,
        store.load_results,
        lambda d: store.ResultsWriter(d, CONFIG, cls.COLUMNS),
    ):
        with pytest.raises(ValueError) as e:
            read(tmp_path)
        assert str(e.value) == f"{tmp_path / store.CONFIG}: {what}"
    assert (tmp_path / store.CONFIG).read_text() == text  # left for the user to look at


def test_close_whose_last_flush_fails_still_closes_and_frees_the_directory(tmp_path, monkeypatch):
    w = store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS)
    w.write([make_row(seed=0)])

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(w, "_sync", full)
    with pytest.raises(OSError) as e:
        w.close()
    assert e.value.errno == errno.ENOSPC
    assert w._file.closed
    w.close()  # a second close does nothing
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as again:  # the locks are free
        again.write([make_row(seed=1)])
    assert [r["seed"] for r in store.load_results(tmp_path)] == [0, 1]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_a_writer_loses_no_earlier_row(tmp_path):
    """The file turns into one that refuses every write (/dev/full: ENOSPC), with a row still
    in Python's buffer: write raises, close raises too but closes the file and frees the
    directory, and the rows written before are all there."""
    w = store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS)
    w.write([make_row(seed=0)])
    w._file.close()
    w._file = open("/dev/full", "wb")  # noqa: SIM115 - the writer closes it
    with pytest.raises(OSError) as e:
        w.write([make_row(seed=1)])
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        w.close()
    assert w._file.closed and w._locks == []
    w.close()
    with store.ResultsWriter(tmp_path, CONFIG, cls.COLUMNS) as again:
        again.write([make_row(seed=2)])
    assert [r["seed"] for r in store.load_results(tmp_path)] == [0, 2]
