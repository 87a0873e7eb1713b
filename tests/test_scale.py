"""Scale-out end to end through the CLI, in subprocesses (device counts and the distributed
runtime are fixed per process): several CPU devices give the rows of one, bit for bit; two
processes on 127.0.0.1 give the rows of one; a process killed with SIGKILL mid-sweep loses
nothing, and rerunning the same command gives exactly the rows of an uninterrupted run; a warm
compile cache is hit. One cold reference run fills a compile cache that the other runs share.
Where a sweep must be killed or met mid-sweep, it kills or suspends itself after its first
rows (the fault hook, JAXBOF_FAULT=sigkill:ROWS or sigstop:ROWS), so nothing depends on timing."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from jaxbof import store

# default flags: the grid of issue 14's report, which hung on 2 CPU devices before the engine's
# programs were made pure (engine.check_pure)
GRID = [
    "sweep",
    "classification",
    "--n",
    "12,16",
    "--d-over-n",
    "1,3",
    "--seeds",
    "2",
    "--no-progress",
    "--no-plots",
]


def _env(tmp_path, devices=1, fault=None):
    """fault: JAXBOF_FAULT, e.g. sigkill:1 (the process kills itself after its first rows)."""
    env = dict(
        os.environ,
        JAX_NUM_CPU_DEVICES=str(devices),
        JAX_PLATFORMS="cpu",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    env.pop("XLA_FLAGS", None)
    env.pop("JAXBOF_FAULT", None)
    if fault is not None:
        env["JAXBOF_FAULT"] = fault
    return env


def _cli(args, env, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "jaxbof.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _stopped(proc, timeout=300):
    """Wait until `proc` has suspended itself (JAXBOF_FAULT=sigstop:ROWS, after its ROWS-th
    row: the moment is the process's own; this only looks for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid:
            if os.WIFSTOPPED(status):
                return
            _, err = proc.communicate()
            raise AssertionError(f"exited ({status}) instead of stopping:\n{err[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"not stopped after {timeout} s")


def _rows(directory):
    lines = (directory / "results.csv").read_text().splitlines()
    return lines[0], sorted(lines[1:])


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HIT_COUNTER = (
    "import sys, jax\n"
    "hits = []\n"
    "jax.monitoring.register_event_listener(lambda e, **k: hits.append(e))\n"
    "from jaxbof import cli\n"
    "rc = cli.main(sys.argv[1:])\n"
    "print('hits', hits.count('/jax/compilation_cache/cache_hits'))\n"
    "sys.exit(rc)\n"
)


def _counted(args, env):
    """Run the CLI in a subprocess that counts persistent compile-cache hits."""
    p = subprocess.run(
        [sys.executable, "-c", HIT_COUNTER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split("hits")[-1])


class Reference(NamedTuple):
    rows: tuple  # (header, sorted rows) of one uninterrupted single-process run
    cache: Path  # the persistent compile cache that run filled (cold before it)
    cold_hits: int  # cache hits of that run


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One cold single-process run: the rows every other run must reproduce, and a warm compile
    cache that the runs compiling the same programs share (each would otherwise spend ~15 s
    compiling them again). Runs whose timing or cache state matters keep a private cache."""
    tmp = tmp_path_factory.mktemp("ref")
    cache = tmp / "xla"
    hits = _counted(GRID + ["--out", str(tmp / "one"), "--compile-cache", str(cache)], _env(tmp))
    return Reference(_rows(tmp / "one"), cache, hits)


def _warm(reference):
    return ["--compile-cache", str(reference.cache)]


def test_devices_give_the_rows_of_one_device(tmp_path, reference):
    for n in (2, 4):
        out = tmp_path / f"dev{n}"
        args = GRID + ["--out", str(out), "--devices", str(n)] + _warm(reference)
        rc, _, err = _finish(_cli(args, _env(tmp_path, devices=4)))
        assert rc == 0, err
        assert _rows(out) == reference.rows
        run = json.loads((out / "config.json").read_text())["run"]
        assert (run["devices"], run["processes"]) == (n, 1)
    rc, _, err = _finish(
        _cli(GRID + ["--out", str(tmp_path / "bad"), "--devices", "5"], _env(tmp_path, devices=4))
    )
    assert rc == 2 and "--devices" in err and "allowed 1 to 4" in err and "Traceback" not in err


# the presets and a regression sweep as a user runs them (default settings; plots off, which
# changes no row; the compile cache off, since no program of one device count is reused by
# another), on 1, 2 and 4 of the process's 4 CPU devices, one subprocess per preset
PRESETS = {
    "fig1-quick": ["reproduce", "karhadkar-fig1", "--quick"],
    "park-quick": ["reproduce", "park-regression", "--quick"],
    "regression": ["sweep", "regression", "--n", "50", "--seeds", "2"],
}
DEVICES_SCRIPT = (
    "import sys, json\n"
    "from jaxbof import cli\n"
    "for args in json.loads(sys.argv[1]):\n"
    "    rc = cli.main(args)\n"
    "    if rc: sys.exit(rc)\n"
)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_on_1_2_4_devices_give_the_rows_of_one_device(tmp_path, name):
    """reproduce karhadkar-fig1 --quick, reproduce park-regression --quick and a regression
    sweep with default flags on 1, 2 and 4 CPU devices: every run finishes (a stall would hit
    the timeout; before issue 14's fix fig1-quick hung on 2 and 4 devices) and gives the rows
    of one device, bit for bit."""
    # one process per device count, run side by side: independent runs, so nothing they share
    # but the two cores (the single-threaded parts, compiling and the host's measurement,
    # overlap)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                DEVICES_SCRIPT,
                json.dumps(
                    [
                        PRESETS[name]
                        + [
                            "--out",
                            str(tmp_path / f"dev{n}"),
                            "--devices",
                            str(n),
                            "--no-progress",
                            "--no-plots",
                            "--no-compile-cache",
                        ]
                    ]
                ),
            ],
            env=_env(tmp_path, devices=4),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2, 4)
    ]
    try:
        for p in procs:
            _, err = p.communicate(timeout=900)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    one = _rows(tmp_path / "dev1")
    assert len(one[1]) > 0
    for n in (2, 4):
        assert _rows(tmp_path / f"dev{n}") == one, n
        run = json.loads((tmp_path / f"dev{n}" / "config.json").read_text())["run"]
        assert run["devices"] == n


def _two_processes(out, env, fault=None, extra=()) -> Any:  # a list, or with fault an int
    """Both processes of a two-process sweep; fault: JAXBOF_FAULT of process 1 (sigkill:ROWS:
    it kills itself after ROWS rows), whose exit status is then returned."""
    port = _port()
    procs = [
        _cli(
            GRID
            + [
                *extra,
                "--out",
                str(out),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            dict(env, JAXBOF_FAULT=fault) if fault is not None and i == 1 else env,
        )
        for i in range(2)
    ]
    if fault is not None:
        procs[1].communicate(timeout=300)
        try:  # its peer finishes or is stopped by the runtime; do not wait for that here
            procs[0].wait(timeout=5)
        except subprocess.TimeoutExpired:
            procs[0].send_signal(signal.SIGKILL)
        for p in procs:
            p.communicate()
        return procs[1].returncode
    return [_finish(p) for p in procs]


def test_two_processes_give_the_rows_of_one(tmp_path, reference):
    out = tmp_path / "two"
    results = _two_processes(out, _env(tmp_path), extra=_warm(reference))
    for rc, _, err in results:
        assert rc == 0, err
    assert _rows(out) == reference.rows
    assert not list(out.glob("results.part-*"))  # folded into results.csv
    assert json.loads((out / "config.json").read_text())["run"]["processes"] == 2
    assert any(
        "models to train" in err and "for the other processes" in err for _, _, err in results
    )


def test_killed_process_is_recovered_by_rerunning(tmp_path, reference):
    out = tmp_path / "killed"
    env = _env(tmp_path)
    # process 1 kills itself (SIGKILL: nothing closed, no handler) after its first rows, before
    # it has finished its cells
    assert _two_processes(out, env, fault="sigkill:1", extra=_warm(reference)) == -signal.SIGKILL
    saved = len(store.load_results(out))  # results.csv and the parts
    assert saved < len(reference.rows[1])  # the sweep is incomplete before the rerun
    for rc, _, err in _two_processes(out, env, extra=_warm(reference)):
        assert rc == 0, err
    assert _rows(out) == reference.rows


def test_sigkill_while_importing_then_rerun(tmp_path, reference):
    """Killed before anything is written (still importing), the rerun gives exactly the rows of
    an uninterrupted run."""
    out = tmp_path / "one"
    env = _env(tmp_path)
    p = _cli(GRID + ["--out", str(out)], env)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    rc, _, err = _finish(_cli(GRID + ["--out", str(out)] + _warm(reference), env))
    assert rc == 0, err
    assert _rows(out) == reference.rows


def test_second_sweep_is_refused_then_sigkill_mid_sweep_then_rerun(tmp_path, reference):
    """While a sweep runs, a second one on the same --out is refused in one line naming it;
    the first, killed with SIGKILL mid-sweep, leaves no lock behind: the rerun gives exactly
    the rows of an uninterrupted run. The first sweep suspends itself after its first rows
    (JAXBOF_FAULT=sigstop:1, as Ctrl-Z would), holding its lock, so the second always meets it
    mid-sweep, however fast the machine."""
    out = tmp_path / "busy"
    env = _env(tmp_path)
    first = _cli(GRID + ["--out", str(out)] + _warm(reference), _env(tmp_path, fault="sigstop:1"))
    _stopped(first)
    assert 0 < len(store.load_results(out)) < len(reference.rows[1])
    rc, _, err = _finish(_cli(GRID + ["--out", str(out)] + _warm(reference), env))
    assert rc == 2 and f"is in use by another sweep (pid {first.pid} " in err, err
    assert "Traceback" not in err and err.strip().count("\n") == 0
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL  # killed, not finished
    rc, _, err = _finish(_cli(GRID + ["--out", str(out)] + _warm(reference), env))
    assert rc == 0, err
    assert _rows(out) == reference.rows


def test_warm_compile_cache_is_hit(tmp_path, reference):
    """The reference run started with an empty persistent cache and filled it; a second run of
    the sweep reads its programs from it and gives the same rows."""
    assert reference.cold_hits == 0
    assert any(reference.cache.iterdir())
    out = tmp_path / "warm"
    hits = _counted(GRID + ["--out", str(out)] + _warm(reference), _env(tmp_path))
    assert hits > 0
    assert _rows(out) == reference.rows
