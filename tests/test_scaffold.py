"""`jaxbof new NAME`: the package it writes installs with pip (into a private directory), runs
through `jaxbof sweep NAME` and `jaxbof plot` with no other flag, and its own test passes; a bad
NAME or a non-empty DIR is one line and exit code 2."""

import csv
import os
import subprocess
import sys

import pytest

from jaxbof import cli, scaffold


def _run(args, site, cwd):
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )


def test_a_new_package_installs_sweeps_plots_and_passes_its_own_test(tmp_path, capsys):
    home = tmp_path / "my-theorem"
    assert cli.main(["new", "my-theorem", "--dir", str(home)]) == 0
    written = [
        line.removeprefix("wrote ")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("wrote ")
    ]
    assert written == [
        str(home / p)
        for p in (
            "pyproject.toml",
            "README.md",
            "my_theorem/__init__.py",
            "tests/test_my_theorem.py",
        )
    ]
    assert 'my-theorem = "my_theorem:PLUGIN"' in (home / "pyproject.toml").read_text()
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(home),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr

    sweep = _run(
        ["-m", "jaxbof.cli", "sweep", "my-theorem", "--out", "runs/x", "--no-progress"],
        site,
        tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert "0 flagged (diverged)" in sweep.stderr
    with open(tmp_path / "runs/x/results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4  # the default grid: lr 0.1,0.5,1 x seed 0:3 (0, 1, 2, 3)
    assert all(float(r["error"]) < 1e-4 for r in rows)  # the closed form holds
    png = tmp_path / "runs/x/my-theorem.png"
    png.unlink()
    plot = _run(["-m", "jaxbof.cli", "plot", "runs/x"], site, tmp_path)
    assert plot.returncode == 0, plot.stderr
    assert png.stat().st_size > 0

    test = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], site, home)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "2 passed" in test.stdout

    # installed, the name is an experiment's; and the directory is no longer empty
    for args, says in (
        (
            ["my-theorem", "--dir", str(tmp_path / "elsewhere")],
            "NAME 'my-theorem' is already an experiment",
        ),
        (["other-theorem", "--dir", str(home)], f"--dir {str(home)!r} exists"),
    ):
        bad = _run(["-m", "jaxbof.cli", "new", *args], site, tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert bad.stderr.startswith("jaxbof: error: new: ") and says in bad.stderr
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    "name, says",
    [
        ("", "NAME '' is not a valid name; allowed: a letter, then letters, digits, '-' and '_'"),
        ("1theorem", "NAME '1theorem' is not a valid name; allowed: a letter"),
        ("my theorem", "NAME 'my theorem' is not a valid name"),
        ("my.theorem", "NAME 'my.theorem' is not a valid name"),
        ("my-", "NAME 'my-' is not a valid name"),
        ("regression", "NAME 'regression' is already an experiment (known: classification, "),
        ("class", "NAME 'class' would make the package 'class', a Python keyword"),
        ("numpy", "NAME 'numpy' would make the package 'numpy', which is already importable"),
    ],
)
def test_a_bad_name_is_one_line_and_exit_code_2(name, says, tmp_path, capsys):
    assert cli.main(["new", name, "--dir", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxbof: error: new: ") and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "pkg").exists()


def test_an_empty_directory_is_filled_and_a_hyphen_makes_an_underscore(tmp_path):
    (tmp_path / "pkg").mkdir()
    paths = scaffold.new("a-b_c", tmp_path / "pkg")
    assert {p.relative_to(tmp_path / "pkg").as_posix() for p in paths} == {
        "pyproject.toml",
        "README.md",
        "a_b_c/__init__.py",
        "tests/test_a_b_c.py",
    }
    text = (tmp_path / "pkg/a_b_c/__init__.py").read_text()
    assert 'Plugin("a-b_c",' in text and "__NAME__" not in text and "__PACKAGE__" not in text
    compile(text, "a_b_c/__init__.py", "exec")
    compile((tmp_path / "pkg/tests/test_a_b_c.py").read_text(), "test_a_b_c.py", "exec")
    with pytest.raises(ValueError, match="exists and is not an empty directory"):
        scaffold.new("d-e", tmp_path / "pkg")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="--dir .* exists and is not an empty directory"):
        scaffold.new("d-e", tmp_path / "file")
