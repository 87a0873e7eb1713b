"""Experiments as plug-ins: the registry, and a theorem from outside jaxbof (tests/toy_plugin,
installed with pip into a private directory) run through `jaxbof sweep` and `jaxbof plot` on
one and two devices, with nothing in jaxbof edited."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxbof import experiments

TOY = Path(__file__).parent / "toy_plugin"


def test_the_registry_knows_every_built_in_experiment_and_nothing_else_by_default():
    assert experiments.names()[:4] == [
        "classification",
        "regression",
        "ntk-concentration",
        "optimizers",
    ]
    for name in experiments.names():
        assert experiments.plugin(name).name == name
    assert set(experiments.reproducible()) >= {
        "karhadkar-fig1",
        "karhadkar-fig2",
        "park-regression",
        "ntk-concentration",
        "optimizers",
    }
    with pytest.raises(ValueError, match="unknown experiment 'ridge'; known: classification"):
        experiments.plugin("ridge")
    with pytest.raises(ValueError, match="names no experiment kind"):
        experiments.kind_of({"experiment": {"name": "x"}}, "DIR")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The toy package installed by pip (its entry point included) into a private target."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(TOY),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "jaxbof_toy").is_dir()
    return target


def _jaxbof(args, site, tmp_path, devices=1):
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "JAX_NUM_CPU_DEVICES": str(devices),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_an_installed_plugin_runs_through_sweep_and_plot(installed, tmp_path):
    """The minimal plug-in (four values, a Cell and a grid) gets its flags (one per Cell field),
    its table and its figure from jaxbof's defaults, and its rows are bit for bit the same on
    one and two devices."""
    rows = {}
    for devices in (1, 2):
        out = tmp_path / f"toy{devices}"
        proc = _jaxbof(
            [
                "sweep",
                "toy-linear",
                "--lr",
                "0.1,0.9",
                "--seed",
                "0:2",
                "--out",
                str(out),
                "--no-progress",
            ],
            installed,
            tmp_path,
            devices,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"on {devices} cpu device(s)" in proc.stderr
        # the default table: one line per lr, means over the seeds of every measured column
        lines = proc.stdout.splitlines()
        assert lines[0] == (
            "lr,w,w_sem,w_exact,w_exact_sem,lr_s,lr_s_sem,error,error_sem,runs,flagged"
        )
        assert [line.split(",")[0] for line in lines[1:]] == ["0.1", "0.9"]
        assert all(line.endswith(",3,0") for line in lines[1:])
        assert (out / "toy-linear.png").stat().st_size > 0  # the default figure
        with open(out / "results.csv") as f:
            got = list(csv.DictReader(f))
        assert all(float(r["error"]) < 1e-5 for r in got)  # the closed form holds
        rows[devices] = sorted(map(tuple, (r.values() for r in got)))
        assert len(rows[devices]) == 2 * 3  # lr x seeds
        config = json.loads((out / "config.json").read_text())  # what its rows mean
        assert config["keys"] == ["lr", "seed"]
        assert config["flags"] == {"diverged": True} and "0 flagged (diverged)" in proc.stderr
    assert rows[1] == rows[2]  # bit for bit on one and two devices
    again = _jaxbof(["plot", str(tmp_path / "toy1")], installed, tmp_path)
    assert again.returncode == 0 and "toy-linear.png" in again.stdout
    bad = _jaxbof(["sweep", "toy-linear", "--lr", "fast"], installed, tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "jaxbof: error: --lr: 'fast' is not a valid float" in bad.stderr
    # without the package on the path, the same directory is a one-line error
    gone = subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", "plot", str(tmp_path / "toy1")],
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 2 and "unknown experiment 'toy-linear'" in gone.stderr


def test_the_minimal_plugin_stays_minimal():
    """The docs' example (docs/adding-a-theorem.md): at most 80 lines in all, comments
    included, and at most 15 more for its claim."""
    files = [
        p
        for p in TOY.rglob("*")
        if p.is_file()
        and p.suffix in (".py", ".toml")
        and "egg-info" not in str(p)
        and "build" not in p.parts
    ]
    text = "".join(p.read_text() for p in files)
    claim = text[text.index("\n\n\ndef agreement") + 1 : text.index("PLUGIN = ")]  # 2 blanks
    assert len(text.splitlines()) - len(claim.splitlines()) <= 80
    assert len(claim.splitlines()) <= 15


def test_the_toy_claim_holds_on_its_rows_and_fails_on_tampered_ones(installed, tmp_path):
    """`jaxbof verify toy-linear` runs the toy's default grid and finds its closed form (T1
    holds, exit 0); the same rows with every w moved by 0.1% make T1 fail, which contradicts
    its expectation: exit 1."""
    out = tmp_path / "v"
    ok = _jaxbof(["verify", "toy-linear", "--out", str(out), "--no-progress"], installed, tmp_path)
    assert ok.returncode == 0, ok.stderr
    line = next(x for x in ok.stdout.splitlines() if x.startswith("| T1 |"))
    assert "| holds | holds |" in line and (out / "report.html").stat().st_size > 0
    results = out / "toy-linear" / "results.csv"
    with open(results, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(results, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "w": repr(float(r["w"]) * 1.001)} for r in rows)
    bad = _jaxbof(["verify", "toy-linear", "--results", str(out)], installed, tmp_path)
    assert bad.returncode == 1, bad.stderr
    line = next(x for x in bad.stdout.splitlines() if x.startswith("| T1 |"))
    assert "| fails **(contradicts)** | holds |" in line


@pytest.mark.parametrize("name", ["classification", "regression", "cnn"])
def test_built_in_experiments_declare_their_flags_as_the_default_reads_them(name):
    """Each built-in experiment declares its failure columns (recorded in config.json); they
    are those `stats.FLAGS` reads from its schema, so its figures, which read rows with the
    default, leave out exactly the runs the sweep flagged."""
    from jaxbof import stats

    plugin = experiments.plugin(name)
    study = plugin.reproduce[0].study(True)
    schema = plugin.experiment(study.protocol, study.cells[:2]).schema
    assert schema.flags and set(schema.flags) <= set(schema.columns)
    assert stats.declared_flags(schema.columns, schema.flags) == stats.declared_flags(
        schema.columns
    )


def _entry_point(tmp_path, dist: str, line: str):
    """A directory holding only a distribution's metadata that registers `line` under the
    jaxbof.experiments group (what installing a package with that entry point leaves)."""
    site = tmp_path / dist
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[jaxbof.experiments]\n{line}\n")
    return site


def test_a_plugin_named_like_a_built_in_is_refused(installed, tmp_path):
    site = _entry_point(tmp_path, "clash", "classification = jaxbof_toy:PLUGIN")
    proc = _jaxbof(
        ["sweep", "classification", "--help"], f"{installed}{os.pathsep}{site}", tmp_path
    )
    assert proc.returncode == 2
    assert "plug-in 'classification' (jaxbof_toy:PLUGIN) clashes with jaxbof's own" in proc.stderr


def test_a_plugin_that_fails_to_load_is_named_and_leaves_the_others_working(tmp_path):
    site = _entry_point(tmp_path, "broken", "broken = no_such_module:PLUGIN")
    ok = _jaxbof(["sweep", "--help"], site, tmp_path)
    assert ok.returncode == 0 and "classification" in ok.stdout
    assert "plug-in 'broken' (no_such_module:PLUGIN) failed to load" in ok.stderr
    bad = _jaxbof(["plot", str(tmp_path)], site, tmp_path)  # no config: the usual one line
    assert bad.returncode == 2


def test_a_plugin_adds_a_command_of_its_own(tmp_path):
    """Plugin.commands: `jaxbof NAME ...` parses the plug-in's flags and runs it; its
    ValueError is one line with exit code 2."""
    pkg = tmp_path / "cmd_site"
    pkg.mkdir()
    (pkg / "hello_plugin.py").write_text(
        "from jaxbof.experiments import Command, Plugin\n"
        "def add(p):\n"
        "    p.add_argument('--times', default='2')\n"
        "def run(args):\n"
        "    if not args.times.isdigit():\n"
        "        raise ValueError(f'--times: {args.times!r} is not a count')\n"
        "    print('hello ' * int(args.times))\n"
        "    return 0\n"
        "PLUGIN = Plugin('hello', 'says hello',\n"
        "                commands=(Command('hello', 'say it', add, run),))\n"
    )
    site = _entry_point(tmp_path, "hello", "hello = hello_plugin:PLUGIN")
    path = f"{pkg}{os.pathsep}{site}"
    ok = _jaxbof(["hello", "--times", "3"], path, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "hello hello hello"
    bad = _jaxbof(["hello", "--times", "x"], path, tmp_path)
    assert bad.returncode == 2 and bad.stderr == "jaxbof: error: --times: 'x' is not a count\n"
