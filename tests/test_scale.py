"""Scale-out end to end through the CLI, in subprocesses (device counts and the distributed
runtime are fixed per process): several CPU devices give the rows of one, bit for bit; two
processes on 127.0.0.1 give the rows of one; a process killed with SIGKILL at any moment loses
nothing, and rerunning the same command gives exactly the rows of an uninterrupted run; a warm
compile cache is hit."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

GRID = ["sweep", "classification", "--n", "12,16", "--d-over-n", "1,3", "--seeds", "2",
        "--gamma", "0.3", "--width", "4", "--n-test", "200", "--max-steps", "4000",
        "--no-progress", "--no-plots"]


def _env(tmp_path, devices=1):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("XLA_FLAGS", None)
    return env


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "jaxbof.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _rows(directory):
    lines = (directory / "results.csv").read_text().splitlines()
    return lines[0], sorted(lines[1:])


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    rc, _, err = _finish(_cli(GRID + ["--out", str(tmp / "one")], _env(tmp)))
    assert rc == 0, err
    return _rows(tmp / "one")


def test_devices_give_the_rows_of_one_device(tmp_path, reference):
    for n in (2, 4):
        out = tmp_path / f"dev{n}"
        rc, _, err = _finish(_cli(GRID + ["--out", str(out), "--devices", str(n)],
                                  _env(tmp_path, devices=4)))
        assert rc == 0, err
        assert _rows(out) == reference
        run = json.loads((out / "config.json").read_text())["run"]
        assert (run["devices"], run["processes"]) == (n, 1)
    rc, _, err = _finish(_cli(GRID + ["--out", str(tmp_path / "bad"), "--devices", "5"],
                              _env(tmp_path, devices=4)))
    assert rc == 2 and "--devices" in err and "allowed 1 to 4" in err and "Traceback" not in err


def _two_processes(out, env, kill_after_rows=None):
    port = _port()
    procs = [_cli(GRID + ["--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                          "--num-processes", "2", "--process-id", str(i)], env)
             for i in range(2)]
    if kill_after_rows is not None:  # kill process 1 once its part holds that many rows
        part = out / "results.part-1-of-2.csv"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and procs[1].poll() is None:
            if part.exists() and part.read_text().count("\n") > kill_after_rows:
                break
            time.sleep(0.02)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
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
    results = _two_processes(out, _env(tmp_path))
    for rc, _, err in results:
        assert rc == 0, err
    assert _rows(out) == reference
    assert not list(out.glob("results.part-*"))  # folded into results.csv
    assert json.loads((out / "config.json").read_text())["run"]["processes"] == 2
    assert any("models to train" in err and "for the other processes" in err
               for _, _, err in results)


def test_killed_process_is_recovered_by_rerunning(tmp_path, reference):
    out = tmp_path / "killed"
    env = _env(tmp_path)
    # killed once its part is open (header written), before it has finished its cells
    assert _two_processes(out, env, kill_after_rows=0) == -signal.SIGKILL
    header, rows = _rows(out) if (out / "results.csv").exists() else (None, [])
    assert len(rows) < len(reference[1])  # the sweep is incomplete before the rerun
    for rc, _, err in _two_processes(out, env):
        assert rc == 0, err
    assert _rows(out) == reference


@pytest.mark.parametrize("delay", [0.0, 6.0])
def test_sigkill_at_any_moment_then_rerun(tmp_path, reference, delay):
    """Killed before anything is written (0 s: still importing) or mid-sweep, the rerun gives
    exactly the rows of an uninterrupted run, and the lock of the killed run is gone."""
    out = tmp_path / "one"
    env = _env(tmp_path)
    p = _cli(GRID + ["--out", str(out)], env)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    rc, _, err = _finish(_cli(GRID + ["--out", str(out)], env))
    assert rc == 0, err
    assert _rows(out) == reference


def test_second_sweep_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "busy"
    env = _env(tmp_path)
    first = _cli(GRID + ["--out", str(out)], env)
    deadline = time.monotonic() + 120
    while not (out / "results.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _finish(_cli(GRID + ["--out", str(out)], env))
    rc1, _, err1 = _finish(first)
    assert rc1 == 0, err1
    rc, _, err = second
    if rc == 0:  # the first sweep had already finished: nothing to refuse
        pytest.skip("first sweep finished before the second started")
    assert rc == 2 and "is in use by another sweep" in err and "Traceback" not in err


def test_warm_compile_cache_is_hit(tmp_path):
    """The second run of a sweep reads its programs from the persistent cache."""
    code = ("import sys, jax\n"
            "hits = []\n"
            "jax.monitoring.register_event_listener(lambda e, **k: hits.append(e))\n"
            "from jaxbof import cli\n"
            "rc = cli.main(sys.argv[1:])\n"
            "print('hits', hits.count('/jax/compilation_cache/cache_hits'))\n"
            "sys.exit(rc)\n")
    cache = tmp_path / "xla"
    counts = []
    for run in ("cold", "warm"):
        p = subprocess.run([sys.executable, "-c", code, *GRID, "--out", str(tmp_path / run),
                            "--compile-cache", str(cache)], env=_env(tmp_path),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        counts.append(int(p.stdout.split("hits")[-1]))
    assert counts[0] == 0 < counts[1]
    assert any(cache.iterdir())
