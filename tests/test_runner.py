"""What the runner promises, tried as a user would: through the command line, in subprocesses.
Whatever stops a sweep (a full disk, SIGTERM, Ctrl-C) it ends with one line on stderr saying
where the rows are, how many, and how to resume, and rerunning the same command gives exactly
the rows of an uninterrupted run; a damaged results directory (a garbage row, a corrupt
config.json) or a busy one is refused in one line naming the file (and the line), exit code 2,
by `jaxbof plot` and by a resuming sweep alike, and nothing in it is changed. Stops come from
the fault hook (JAXBOF_FAULT=KIND:ROWS: after ROWS rows), so nothing depends on timing. The
runs share the test session's compile cache (conftest), so only the reference run compiles."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from jaxbof import store

GRID = [
    "sweep",
    "classification",
    "--n",
    "20,30",
    "--d-over-n",
    "1,2",
    "--seeds",
    "2",
    "--no-progress",
    "--no-plots",
]
CELLS = 8  # one row per model


def _cli(args, fault=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAXBOF_FAULT", None)
    env.pop("XLA_FLAGS", None)
    if fault is not None:
        env["JAXBOF_FAULT"] = fault
    p = subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return p.returncode, p.stdout, p.stderr


def _rows(directory):
    """(header, sorted rows) of DIR/results.csv, as text: equal means bit for bit."""
    lines = (directory / store.RESULTS).read_text().splitlines()
    return lines[0], sorted(lines[1:])


def _one_line(err: str) -> str:
    """The one line of stderr that says what happened: the only `jaxbof:` line, the last one,
    and no traceback."""
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.startswith("jaxbof:")]
    assert len(said) == 1, err
    assert err.splitlines()[-1] == said[0], err
    return said[0]


def _files(directory):
    """The results files of DIR, byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(directory.glob("results*.csv"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: the rows every interrupted and resumed run must give."""
    out = tmp_path_factory.mktemp("reference") / "run"
    rc, _, err = _cli(GRID + ["--out", str(out)])
    assert rc == 0, err
    assert len(_rows(out)[1]) == CELLS
    return out


# ----------------------------------------------------------------------------- stops


def test_full_disk_stops_in_one_line_and_the_rerun_loses_nothing(tmp_path, reference):
    out = tmp_path / "full"
    rc, _, err = _cli(GRID + ["--out", str(out)], fault="enospc:2")
    line = _one_line(err)
    saved = len(store.load_results(out))
    assert rc == 1 and 2 <= saved < CELLS
    assert line == (
        f"jaxbof: stopped writing {out}/results.csv (No space left on device, as "
        f"JAXBOF_FAULT=enospc:2 asks); {saved} rows are saved in {out}/results.csv; "
        "free some "
        "space (or copy the directory to a larger disk and point --out at it) and "
        "rerun the same command to resume"
    )
    with open(out / store.RESULTS, "a") as f:  # what a write cut short by a full disk leaves
        f.write(_rows(reference)[1][0][:40])
    rc, _, err = _cli(GRID + ["--out", str(out)])
    assert rc == 0, err
    assert f"{CELLS - saved} models to train ({saved} already in {out})" in err
    assert _rows(out) == _rows(reference)


def test_a_full_disk_after_training_is_one_line_too(tmp_path, monkeypatch, capsys):
    """The pictures (or a merge) may meet the full disk after every row is written: one line,
    exit code 1, every row kept."""
    import errno

    from jaxbof import cli, draw

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(draw, "save", full)
    out = tmp_path / "pictures"
    assert cli.main([a for a in GRID if a != "--no-plots"] + ["--out", str(out)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(
        f"jaxbof: stopped writing {out} (No space left on device); "
        f"{CELLS} rows are saved in {out}/results.csv"
    )
    assert len(_rows(out)[1]) == CELLS  # (in this process's JAX configuration: not bit-compared)


@pytest.mark.parametrize(
    "kind, code, why",
    [("sigterm", 143, "terminated (SIGTERM)"), ("sigint", 130, "interrupted (SIGINT)")],
)
def test_a_signal_stops_in_one_line_and_the_rerun_resumes(tmp_path, reference, kind, code, why):
    out = tmp_path / kind
    rc, _, err = _cli(GRID + ["--out", str(out)], fault=f"{kind}:2")
    line = _one_line(err)
    saved = len(store.load_results(out))
    assert rc == code and 2 <= saved < CELLS
    assert line == (
        f"jaxbof: {why}; {saved} rows are saved in {out}/results.csv; rerun the "
        "same command to resume"
    )
    rc, _, err = _cli(GRID + ["--out", str(out)])
    assert rc == 0, err
    assert f"({saved} already in {out})" in err
    assert _rows(out) == _rows(reference)


def test_a_bad_fault_is_one_line():
    rc, _, err = _cli(GRID + ["--out", "unused"], fault="sigterm:soon")
    assert rc == 2
    assert _one_line(err).startswith(
        "jaxbof: error: JAXBOF_FAULT='sigterm:soon': expected KIND:ROWS"
    )


# ----------------------------------------------------------------------------- damaged directories


def _set(line: str, header: str, column: str, value: str) -> str:
    """The CSV line with `column` set to `value`."""
    fields = next(csv.reader([line]))
    fields[next(csv.reader([header])).index(column)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


def _garbage_line(header, rows):
    rows.insert(3, "garbage")  # line 5 of results.csv
    return {store.RESULTS: [header] + rows}, store.RESULTS, "line 5: 1 field, the header has 35"


def _not_an_int(header, rows):
    rows[4] = _set(rows[4], header, "n", "abc")  # line 6
    return {store.RESULTS: [header] + rows}, store.RESULTS, "line 6: column n: 'abc' is not an int"


def _bad_part(header, rows):
    """Two rows left in the part of an earlier two-process run, the second one damaged."""
    part = store.part_name(1, 2)
    return (
        {
            store.RESULTS: [header] + rows[:5],
            part: [header, rows[5], _set(rows[6], header, "test_error", "oops"), rows[7]],
        },
        part,
        "line 3: column test_error: 'oops' is not a float",
    )


@pytest.mark.parametrize("damage", [_garbage_line, _not_an_int, _bad_part])
def test_a_garbage_row_is_named_by_plot_and_by_a_resuming_sweep(tmp_path, reference, damage):
    out = tmp_path / "damaged"
    shutil.copytree(reference, out)
    header, rows = _rows(reference)
    files, bad, what = damage(header, rows)
    for name, lines in files.items():
        (out / name).write_text("".join(x + "\n" for x in lines))
    before = _files(out)
    want = f"jaxbof: error: {out / bad}: {what}"
    for args in (["plot", str(out)], GRID + ["--out", str(out)]):
        rc, _, err = _cli(args)
        assert rc == 2 and _one_line(err) == want, (args[0], err)
        assert _files(out) == before  # nothing folded, repaired or dropped


def test_a_corrupt_config_is_named_by_plot_and_by_a_resuming_sweep(tmp_path, reference):
    out = tmp_path / "corrupt"
    shutil.copytree(reference, out)
    text = '{"experiment":\n'  # cut short
    (out / store.CONFIG).write_text(text)
    with pytest.raises(json.JSONDecodeError) as e:
        json.loads(text)
    before = _files(out)
    want = f"jaxbof: error: {out}/config.json: not valid JSON ({e.value})"
    assert "(Expecting value: line 2 column 1 (char 15))" in want
    for args in (["plot", str(out)], GRID + ["--out", str(out)]):
        rc, _, err = _cli(args)
        assert rc == 2 and _one_line(err) == want, (args[0], err)
        assert _files(out) == before and (out / store.CONFIG).read_text() == text


def test_a_busy_directory_is_refused_in_one_line(tmp_path, reference):
    """A directory whose lock another writer holds (here this test process) is refused, naming
    the holder; the rows there are untouched."""
    out = tmp_path / "busy"
    shutil.copytree(reference, out)
    config = store.load_config(out)
    columns = {c: config["schema"][c] for c in _rows(out)[0].split(",")}  # in the file's order
    with store.ResultsWriter(out, config, columns, keys=config["keys"], flags=config["flags"]):
        before = _files(out)
        rc, _, err = _cli(GRID + ["--out", str(out)])
        line = _one_line(err)
        assert rc == 2 and line.startswith(
            f"jaxbof: error: {out} is in use by another sweep (pid {os.getpid()} "
        )
        assert _files(out) == before
    rc, _, err = _cli(GRID + ["--out", str(out)])  # free again: nothing left to train
    assert rc == 0 and f"0 models to train ({CELLS} already in {out})" in err
    assert _rows(out) == _rows(reference)


def test_a_float64_host_study_leaves_jax_as_it_found_it(tmp_path):
    """A HostStudy that switches float64 on (x64=True) switches it back: presets run one after
    another in one process (`jaxbof verify`) train in the precision they record. (It leaked
    before: kou-cnn --quick after ntk-concentration --quick trained with x64 on.)"""
    import jax

    from jaxbof import runner
    from jaxbof.contract import HostStudy, Schema

    seen = []

    def compute(on_rows, stored):
        seen.append(jax.numpy.zeros(()).dtype.name)
        on_rows([{"i": 0}])

    study = HostStudy(
        "classification",
        "x64-study",
        "one row",
        {},
        Schema({"i": "int"}),
        compute,
        part="part",
        x64=True,
    )
    before = jax.config.jax_enable_x64
    try:
        for start in (False, True):
            jax.config.update("jax_enable_x64", start)
            out = tmp_path / f"from-{start}"
            assert runner.run(study, runner.Options(out=str(out), plots=False)) == 0
            assert jax.config.jax_enable_x64 is start
    finally:
        jax.config.update("jax_enable_x64", before)
    assert seen == ["float64", "float64"]
