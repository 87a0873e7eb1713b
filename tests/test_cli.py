"""The command line end to end on a 2 x 2 x 2 grid, resuming, and bad input (exit code 2)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxbof import cli, store

GRID_ARGS = [
    "sweep",
    "classification",
    "--n",
    "12,16",
    "--d-over-n",
    "1:2",
    "--seeds",
    "2",
    "--gamma",
    "0.3",
    "--width",
    "4",
    "--n-test",
    "100",
    "--no-progress",
]
REQUIRED = [
    "n",
    "d",
    "d_over_n",
    "gamma",
    "alpha",
    "noise_rate",
    "width",
    "seed",
    "steps",
    "converged",
    "train_error",
    "test_error",
    "hinge_loss",
    "w_norm",
    "snr",
    "wstar_norm",
]


def test_sweep_end_to_end_then_resume_then_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(GRID_ARGS + ["--out", str(out)]) == 0
    rows = store.load_results(out)
    assert len(rows) == 8
    assert {(r["n"], r["d"], r["seed"]) for r in rows} == {
        (n, round(r * n), s) for n in (12, 16) for r in (1, 2) for s in (0, 1)
    }
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert all(c in header for c in REQUIRED)
    assert all(r["converged"] and r["train_error"] == 0.0 for r in rows)
    config = json.loads((out / "config.json").read_text())
    run = config["run"]
    assert run["jax"] and run["jaxbof"] and run["device"] and run["backend"]
    assert config["experiment"]["precision"] == "float32"
    assert config["experiment"]["protocol"]["stop"] == "ZERO_ERROR"
    assert (out / "heatmap.png").stat().st_size > 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("n,d_over_n,gamma,mean_test_error") and len(table) == 5

    # rerunning resumes: nothing is trained again and no row is duplicated
    assert cli.main(GRID_ARGS + ["--out", str(out), "--no-plots"]) == 0
    assert "0 models to train (8 already" in capsys.readouterr().err
    assert len(store.load_results(out)) == 8

    # the same directory with another protocol is refused
    assert cli.main(GRID_ARGS + ["--out", str(out), "--stop", "zero_loss"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxbof: error:") and "protocol.stop" in err

    (out / "heatmap.png").unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert (out / "heatmap.png").exists()


REG_ARGS = [
    "sweep",
    "regression",
    "--n",
    "24,40",
    "--d",
    "3",
    "--width",
    "64",
    "--seeds",
    "1",
    "--target",
    "1:0.5,3:0.5",
    "--noise",
    "0.2",
    "--t-max",
    "60",
    "--times",
    "5",
    "--n-test",
    "300",
    "--no-progress",
]


def _canon(rows):
    """Rows sorted by (n, step), nan replaced by a marker so that == compares them exactly."""
    fix = lambda v: "nan" if isinstance(v, float) and v != v else v
    return sorted(
        ({k: fix(v) for k, v in r.items()} for r in rows), key=lambda r: (r["n"], r["step"])
    )


def test_regression_sweep_end_to_end_resume_and_plot(tmp_path, capsys):
    out = tmp_path / "reg"
    assert cli.main(REG_ARGS + ["--out", str(out)]) == 0
    rows = store.load_results(out)
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"]["kind"] == "regression"
    assert config["schema"]["target"] == "str" and config["schema"]["final"] == "bool"
    runs = {(r["n"], r["seed"]) for r in rows}
    assert runs == {(24, 0), (40, 0)}
    finals = [r for r in rows if r["final"]]
    assert len(finals) == 2 and not any(r["diverged"] for r in rows)
    per_run = len(rows) // 2
    assert per_run >= 4 and all(
        r["t"] == max(q["t"] for q in rows if q["n"] == r["n"]) for r in finals
    )
    assert all(r["target"] == "1:0.5,3:0.5" and r["init"] == "antisymmetric" for r in rows)
    # a bias-free ReLU network has mu_3 = 0: the cubic part is never learned
    assert all(r["pop_coef_3"] == 0.0 for r in rows)
    assert (out / "risks.png").stat().st_size > 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("target,init,bias") and len(table) == 3

    # rerun: nothing trained, nothing duplicated
    assert cli.main(REG_ARGS + ["--out", str(out), "--no-plots"]) == 0
    assert "0 models to train (2 already" in capsys.readouterr().err
    assert _canon(store.load_results(out)) == _canon(rows)

    # a run cut short (its last rows lost) is trained again; only the missing rows are added
    path = out / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    keep = [ln for ln in lines if not ln.startswith("40,")]
    keep += [ln for ln in lines if ln.startswith("40,")][:2]
    path.write_text("".join(keep))
    assert cli.main(REG_ARGS + ["--out", str(out), "--no-plots"]) == 0
    assert "1 models to train (1 already" in capsys.readouterr().err
    assert _canon(store.load_results(out)) == _canon(rows)

    # another protocol in the same directory is refused, naming the key
    assert cli.main(REG_ARGS + ["--out", str(out), "--t-max", "80"]) == 2
    assert "protocol.t_max" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--n", "-5"], "n=-5"),
        (["--width", "63"], "width=63 must be even"),
        (["--target", "1:0.5,2"], "--target"),
        (["--target", "x:1"], "--target"),
        (["--noise", "-0.1"], "--noise: -0.1 must be >= 0"),
        (["--eta", "0"], "--eta: 0 must be > 0"),
        (["--t-max", "-1"], "--t-max: -1 must be > 0"),
        (["--noise-kind", "gauss"], "'gauss' is not one of uniform, rademacher"),
        (["--init", "zero"], "'zero' is not one of antisymmetric, gaussian"),
        (["--out", "/proc/jaxbof-reg"], "cannot write results there"),
    ],
)
def test_regression_bad_input_exits_2(args, needle, capsys):
    assert cli.main(["sweep", "regression", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxbof: error:") and needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sweep", "classification", "--n", "0"], "n=0"),
        (["sweep", "classification", "--n", "abc"], "'abc'"),
        (["sweep", "classification", "--d-over-n", "3:1"], "below start"),
        (["sweep", "classification", "--n", "10:20:3"], "multiple of step"),
        (["sweep", "classification", "--gamma", "1.5"], "gamma=1.5"),
        (["sweep", "classification", "--alpha", "2"], "alpha=2.0"),
        (["sweep", "classification", "--noise-rate", "0.7"], "noise rate=0.7"),
        (["sweep", "classification", "--stop", "never"], "'never' is not one of zero_loss"),
        (["sweep", "classification", "--seeds", "0"], "seeds=0"),
        (["sweep", "classification", "--max-steps", "0"], "max_steps=0"),
        (["sweep", "classification", "--max-steps", "3000000000"], "max_steps=3000000000"),
        (["sweep", "classification", "--seed", "-1"], "seed=-1"),
        (["sweep", "ridge"], "invalid choice: 'ridge' (choose from 'classification', 'regression'"),
        (["sweep", "classification", "--target", "3:1"], "unrecognized arguments: --target 3:1"),
        (["sweep", "regression", "--gamma", "0.1"], "unrecognized arguments: --gamma 0.1"),
        (["sweep", "classification", "--out", "/proc/jaxbof"], "--out '/proc/jaxbof'"),
        (["sweep", "classification", "--chunk", "0"], "--chunk"),
        (["reproduce", "karhadkar-fig9"], "unknown experiment 'karhadkar-fig9'"),
        (["reproduce"], "experiment"),
        (["frobnicate"], "invalid choice"),
        (["plot", "/nonexistent/dir"], "no config.json in /nonexistent/dir"),
        (["sweep", "classification", "--matmul-precision", "fp8"], "'fp8' is not one of float32"),
        (["sweep", "classification", "--devices", "0"], "--devices"),
        (["sweep", "classification", "--devices", "9"], "allowed 1 to 1"),
        (
            ["sweep", "classification", "--compile-cache", "/tmp/x", "--no-compile-cache"],
            "exclude each other",
        ),
        (["sweep", "classification", "--coordinator", "nohost"], "'nohost' is not HOST:PORT"),
        (["sweep", "classification", "--num-processes", "2"], "go together"),
        (
            [
                "sweep",
                "classification",
                "--coordinator",
                "127.0.0.1:1",
                "--num-processes",
                "2",
                "--process-id",
                "2",
            ],
            "need 0 <= process_id < num_processes",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle, capsys):
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxbof: error:") and needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_console_entry_point_exit_code():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", "sweep", "classification", "--alpha", "-1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("jaxbof: error:") and "Traceback" not in proc.stderr


def test_spectrum_end_to_end(tmp_path, capsys):
    out = tmp_path / "spec"
    assert (
        cli.main(
            [
                "spectrum",
                "--kernel",
                "ntk-first-layer",
                "--d",
                "3",
                "--k-max",
                "8",
                "--empirical-n",
                "600",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = (out / "spectrum.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["k", "multiplicity", "log_multiplicity", "eigenvalue"]
    assert "empirical_mean" in header and len(lines) == 10
    row1 = dict(zip(header, lines[2].split(",")))
    assert float(row1["multiplicity"]) == 3 and float(row1["eigenvalue"]) == 1 / 12  # 1/(4d)
    assert abs(float(row1["rel_error"])) < 0.1
    row3 = dict(zip(header, lines[4].split(",")))
    assert float(row3["eigenvalue"]) == 0.0  # odd degrees >= 3 vanish without a bias
    assert (out / "spectrum.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--d", "1", "--k-max", "3"], "--d: 1 must be >= 2"),
        (["--d", "3", "--k-max", "-1"], "--k-max: -1"),
        (["--d", "3", "--k-max", "3", "--kernel", "rbf"], "'rbf' is not one of ntk-first-layer"),
        (["--d", "3", "--k-max", "3", "--alpha", "1.5"], "--alpha: 1.5"),
        (["--d", "3", "--k-max", "3", "--empirical-n", "0"], "--empirical-n: 0"),
        (["--d", "3", "--k-max", "3", "--width", "64"], "--width: needs --empirical-n"),
        (
            ["--d", "3", "--k-max", "3", "--empirical-n", "10", "--width", "7"],
            "--width: 7 must be even",
        ),
        (["--d", "3", "--k-max", "3", "--empirical-n", "10", "--width", "x"], "--width: 'x'"),
        (
            ["--d", "3", "--k-max", "3", "--empirical-n", "30000"],
            "--empirical-n: 30000 must be in [1, 20000] (larger with --top K --matrix-free)",
        ),
        (
            ["--d", "3", "--k-max", "3", "--empirical-n", "10", "--matrix-free"],
            "--matrix-free: needs --top",
        ),
        (["--d", "3", "--k-max", "3", "--top", "5"], "--top: needs --empirical-n"),
        (["--d", "3", "--k-max", "3", "--empirical-n", "10", "--top", "0"], "--top: 0 must be in"),
        (
            ["--d", "3", "--k-max", "3", "--empirical-n", "100", "--width", "8", "--top", "13"],
            "--top: 13 exceeds the rank bound 12 of the width-8 Gram",
        ),
        (
            [
                "--d",
                "3",
                "--k-max",
                "3",
                "--empirical-n",
                "100",
                "--top",
                "5",
                "--matrix-free",
                "--kernel",
                "relu-nngp",
            ],
            "the analytic relu-nngp kernel has no matrix-free product",
        ),
        (
            ["--d", "3", "--k-max", "3", "--empirical-n", "300000", "--top", "5", "--matrix-free"],
            "--empirical-n: 300000 must be <= 200000 for the analytic kernel",
        ),
    ],
)
def test_spectrum_bad_input_exits_2(args, needle, tmp_path, capsys):
    assert cli.main(["spectrum", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxbof: error:") and needle in err and len(err.splitlines()) == 1


def _top_csv(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "index,eigenvalue,residual,rel_residual"
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


@pytest.mark.parametrize("width", [None, "64"])
def test_spectrum_top_matrix_free_equals_dense(width, tmp_path, capsys):
    """--top K --matrix-free (LOBPCG for the analytic kernel; the p x p Jacobian route at width
    64, p = 192 < n) writes the same top eigenvalues of Gram / n as dense eigh, each with a small
    residual, and the same degree clusters."""
    base = ["spectrum", "--d", "3", "--k-max", "8", "--empirical-n", "400", "--top", "30"]
    base += ["--width", width] if width else []
    dense, free = tmp_path / "dense", tmp_path / "free"
    assert cli.main(base + ["--out", str(dense)]) == 0
    assert cli.main(base + ["--matrix-free", "--out", str(free)]) == 0
    printed = capsys.readouterr().out
    assert "dense eigh" in printed and "matrix-free" in printed and "NOT" not in printed
    a, b = _top_csv(dense / "top.csv"), _top_csv(free / "top.csv")
    assert a.shape == b.shape == (30, 4)
    np.testing.assert_allclose(b[:, 1], a[:, 1], rtol=1e-9)
    assert np.all(np.diff(b[:, 1]) <= 0) and np.all(b[:, 3] < 1e-7)
    # the clusters that fit in the top 30 (levels 1, 0, 2, 4, 6: 31 > 30, so up to k = 4)
    for out in (dense, free):
        rows = [line.split(",") for line in (out / "spectrum.csv").read_text().splitlines()[1:]]
        means = {int(r[0]): r[5] for r in rows}
        assert means[4] != "nan" and means[6] == "nan"
    np.testing.assert_allclose(
        [
            float(r.split(",")[5])
            for r in (free / "spectrum.csv").read_text().splitlines()[1:6]
            if r.split(",")[5] != "nan"
        ],
        [
            float(r.split(",")[5])
            for r in (dense / "spectrum.csv").read_text().splitlines()[1:6]
            if r.split(",")[5] != "nan"
        ],
        rtol=1e-9,
    )


def test_spectrum_bias_and_finite_width(tmp_path, capsys):
    """With a bias the odd level k = 3 is positive, and the Gram of a width-4096 net at init
    clusters at the analytic mu_k (Monte Carlo error ~ 1/sqrt(M) plus finite n)."""
    out = tmp_path / "spec"
    assert (
        cli.main(
            [
                "spectrum",
                "--kernel",
                "ntk-both-layers",
                "--bias",
                "--d",
                "3",
                "--k-max",
                "4",
                "--empirical-n",
                "500",
                "--width",
                "4096",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = (out / "spectrum.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert float(rows[3]["eigenvalue"]) > 1e-3 * float(rows[2]["eigenvalue"])
    assert all(float(r["rel_error"]) < 0.15 for r in rows[:4])
    assert (out / "spectrum.png").stat().st_size > 0


def test_reproduce_ntk_concentration_quick(tmp_path, capsys):
    from jaxbof import concentration, store

    out = tmp_path / "conc"
    assert cli.main(["reproduce", "ntk-concentration", "--quick", "--out", str(out)]) == 0
    rows = store.load_results(out)
    q = concentration.QUICK
    assert len(rows) == len(q.nd) * len(q.widths) * q.seeds
    assert (out / "concentration.png").stat().st_size > 0
    printed = capsys.readouterr().out.splitlines()
    i = printed.index("n,d,slope,prefactor,widths")
    slopes = [float(line.split(",")[2]) for line in printed[i + 1 : i + 1 + len(q.nd)]]
    assert all(-0.6 < s < -0.4 for s in slopes), slopes
    # rerun: resumes with nothing to do, same rows
    assert (
        cli.main(["reproduce", "ntk-concentration", "--quick", "--out", str(out), "--no-plots"])
        == 0
    )
    assert store.load_results(out) == rows
    # the full protocol in the same directory is refused, naming what differs
    assert cli.main(["reproduce", "ntk-concentration", "--out", str(out)]) == 2
    assert "experiment.config.widths" in capsys.readouterr().err


def test_spectrum_warns_of_the_analytic_kernels_cost_above_20000(monkeypatch, capsys, tmp_path):
    """--matrix-free for the analytic kernel above n = 20000 says on stderr what it will cost
    before it starts (here it is stopped where the points are drawn); at 20000 it says nothing."""
    from jaxbof import sphere

    class Started(Exception):
        pass

    def stop(*args, **kwargs):
        raise Started

    monkeypatch.setattr(sphere, "uniform", stop)
    for n, warned in (("20001", True), ("20000", False)):
        with pytest.raises(Started):
            cli.main(
                [
                    "spectrum",
                    "--d",
                    "3",
                    "--k-max",
                    "4",
                    "--empirical-n",
                    n,
                    "--top",
                    "5",
                    "--matrix-free",
                    "--out",
                    str(tmp_path / n),
                ]
            )
        err = capsys.readouterr().err
        assert ("n^2 = " in err and "minutes to hours" in err) == warned, (n, err)
        if warned:
            assert f"{20001**2:.1e}" in err
