"""Plots: every figure writes a PNG from synthetic rows; the heatmap shows exact zeros."""

import math
from pathlib import Path

import numpy as np
import pytest

from jaxbof import draw, plots, stats, store
from jaxbof.experiments.classification import COLUMNS as CLASSIFICATION
from jaxbof.experiments.classification import figures as cfig
from jaxbof.experiments.regression import figures as rfig

PNG = b"\x89PNG\r\n\x1a\n"


def make_row(n, d_over_n, seed, gamma=None, test_error=0.05, converged=True, snr=1.0):
    row = {c: 0.5 for c in CLASSIFICATION}
    row.update(
        n=n,
        d=round(n * d_over_n),
        d_over_n=d_over_n,
        gamma=5 / n if gamma is None else gamma,
        alpha=0.1,
        noise_rate=0.1,
        width=64,
        seed=seed,
        param="gram",
        steps=100,
        converged=converged,
        diverged=False,
        n_corrupt=3,
        test_error=test_error,
        snr=snr,
    )
    return row


def grid_rows():
    """3x3 (n, d/n) grid, 3 seeds: errors fall with d/n, all zero at d/n = 3 except n = 70,
    and one non-converged run (large error, must not enter the mean) at (60, 1)."""
    rows = []
    for n in (50, 60, 70):
        for r in (1.0, 2.0, 3.0):
            for s in range(3):
                e = 0.0 if r == 3.0 and n != 70 else 0.08 * math.exp(-(r - 1)) * (1 + 0.1 * s)
                rows.append(make_row(n, r, s, test_error=e, snr=0.3 * r - 0.4 + 0.01 * s))
    rows.append(make_row(60, 1.0, 3, test_error=0.6, converged=False, snr=-1.0))
    return rows


def is_png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG


def test_heatmap_table_marks_zeros_and_flags():
    t = cfig.heatmap_table(grid_rows())
    assert t.n_x == (50, 60, 70) and t.dn_y == (1.0, 2.0, 3.0)
    assert t.zero_yx.tolist() == [[False] * 3, [False] * 3, [True, True, False]]
    assert t.labels_yx[2][:2] == ["0", "0"]
    assert t.labels_yx[0][1].endswith("*") and t.flagged_yx.sum() == 1
    assert t.count_yx[0, 1] == 3
    np.testing.assert_allclose(t.mean_yx[0, 1], 0.08 * 1.1)  # flagged 0.6 not averaged in
    assert t.labels_yx[0][0] == f"{0.08 * 1.1:.3g}"


def test_heatmap_figure_draws_zero_layer_and_labels():
    t = cfig.heatmap_table(grid_rows())
    fig = cfig.heatmap_figure(t, title="precision note")
    ax = fig.axes[0]
    layers = {c.get_gid(): c for c in ax.collections}
    assert {"positive_cells", "zero_cells"} <= set(layers)
    zero_drawn = ~np.ma.getmaskarray(layers["zero_cells"].get_array()).reshape(t.zero_yx.shape)
    assert (zero_drawn == t.zero_yx).all()
    pos_drawn = ~np.ma.getmaskarray(layers["positive_cells"].get_array()).reshape(t.zero_yx.shape)
    assert (pos_drawn == ~t.zero_yx).all()
    texts = {
        (round(x.get_position()[0] - 0.5), round(x.get_position()[1] - 0.5)): x.get_text()
        for x in ax.texts
    }
    assert len(texts) == 9
    for (j, i), s in texts.items():
        assert s == t.labels_yx[i][j]
    legend = [x.get_text() for x in fig.legends[0].get_texts()]
    assert any(s.startswith("0:") for s in legend) and any(s.startswith("*") for s in legend)
    assert "precision note" in ax.get_title()


@pytest.mark.parametrize(
    "fn", [cfig.heatmap, cfig.gamma_curve, cfig.error_vs_dn, cfig.snr_vs_error]
)
def test_each_plot_writes_png(tmp_path, fn):
    path = fn(grid_rows(), tmp_path / "sub" / f"{fn.__name__}.png")
    assert is_png(path)


def test_error_vs_dn_all_zero_and_single_point(tmp_path):
    zeros = [make_row(50, r, s, test_error=0.0) for r in (1.0, 2.0) for s in range(2)]
    assert is_png(cfig.error_vs_dn(zeros, tmp_path / "a.png"))
    single = [make_row(50, 2.0, s, test_error=0.1) for s in range(2)]
    assert is_png(cfig.error_vs_dn(single, tmp_path / "b.png"))


def write_dir(path, rows, experiment, columns=CLASSIFICATION):
    with store.ResultsWriter(path, {"experiment": experiment}, columns) as w:
        w.write(rows)


def test_plot_dir_fig1_grid(tmp_path):
    write_dir(
        tmp_path,
        grid_rows(),
        {"name": "fig1", "kind": "classification", "protocol": {"n_test": 1000}},
    )
    paths = plots.plot_dir(tmp_path)
    # gamma = 5/n differs between n only: no gamma curve
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "error_vs_dn.png",
        "heatmap.png",
        "snr_vs_error.png",
    ]
    assert all(is_png(p) for p in paths)
    assert "fig1: 1000 test points" in draw.describe({"name": "fig1", "p": {"n_test": 1000}}, "x")


def test_plot_dir_fig2_grid(tmp_path):
    rows = [
        make_row(n, 2.0, s, gamma=g, test_error=max(0.5 - 8 * g, 0.02))
        for n in (50, 100)
        for g in (0.0, 0.03, 0.06)
        for s in range(2)
    ]
    write_dir(tmp_path, rows, {"name": "fig2", "kind": "classification"})
    out = tmp_path / "plots"
    paths = plots.plot_dir(tmp_path, out)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "error_vs_dn.png",
        "gamma_curve.png",
        "snr_vs_error.png",
    ]
    assert all(p.startswith(str(out)) and is_png(p) for p in paths)


def test_plot_dir_empty_refused(tmp_path):
    write_dir(tmp_path, [], {"kind": "classification"})
    with pytest.raises(ValueError, match="no results"):
        plots.plot_dir(tmp_path)


@pytest.mark.parametrize(
    "experiment, needle",
    [
        ({"name": "old"}, "names no experiment kind"),  # never a silent default
        ({"kind": "ridge"}, "unknown experiment 'ridge'; known: classification, regression"),
    ],
)
def test_plot_dir_refuses_a_missing_or_unknown_kind(tmp_path, experiment, needle):
    write_dir(tmp_path, [make_row(50, 1.0, 0)], experiment)
    with pytest.raises(ValueError, match=needle):
        plots.plot_dir(tmp_path)


def test_plot_dir_without_config_refused(tmp_path):
    (tmp_path / store.RESULTS).write_text("n,width\n1,2\n")
    with pytest.raises(ValueError, match="cannot tell"):
        plots.plot_dir(tmp_path)


CONCENTRATION = {
    "n": "int",
    "d": "int",
    "width": "int",
    "seed": "int",
    "rel_op_error": "float",
    "h_inf_op_norm": "float",
}


def test_plot_dir_concentration(tmp_path):
    rows = [
        dict(n=50, d=5, width=m, seed=s, rel_op_error=(1 + 0.1 * s) * m**-0.5, h_inf_op_norm=1.0)
        for m in (64, 256, 1024)
        for s in range(2)
    ]
    write_dir(tmp_path, rows, {"name": "conc", "kind": "ntk-concentration"}, CONCENTRATION)
    paths = plots.plot_dir(tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["concentration.png"] and is_png(paths[0])


# ----------------------------------------------------------------------------- regression

MU = {
    (1, False): 1 / 12,
    (2, False): 7 / 256,
    (3, False): 0.0,
    (4, False): 0.0022786,
    (1, True): 0.09,
    (2, True): 0.03,
    (3, True): 0.004,
    (4, True): 0.003,
}
DEGREES = (1, 2, 3, 4)
MAIN = "1:0.5,2:0.5,4:0.5"
TIMES = (0.0, *np.geomspace(1.0, 5000.0, 12))


def regression_schema():
    cols = dict(
        n="int",
        d="int",
        width="int",
        seed="int",
        target="str",
        noise="float",
        noise_kind="str",
        init="str",
        bias="bool",
        train_outer="bool",
        eta="float",
        step="int",
        t="float",
        final="bool",
        diverged="bool",
    )
    for c in (
        "train_risk",
        "excess_risk",
        "approx_error",
        "estimation_error",
        "kernel_gap",
        "weight_move",
        "ntk_drift",
        "target_norm2",
        "noise_var",
    ):
        cols[c] = "float"
    for k in DEGREES:
        cols[f"coef_{k}"] = cols[f"pop_coef_{k}"] = "float"
    return cols


def run_rows(n, width, seed, target=MAIN, init="antisymmetric", bias=False, diverged=False):
    """One synthetic run: the population-flow formulas, an estimation error ~ 1/n + 1/M and
    NTK-regime quantities ~ M^-1/2; a diverged run blows up at its last time."""
    c = rfig.target_coefs(target)
    rows = []
    for i, t in enumerate(TIMES):
        approx = sum(math.exp(-2 * t * MU[k, bias]) * ck**2 for k, ck in c.items())
        est = (10 / n + 30 / width) * (1 - math.exp(-t / 50)) * (1 + 0.05 * seed)
        gauss = 0.2 if init == "gaussian" else 0.0
        row = dict(
            n=n,
            d=3,
            width=width,
            seed=seed,
            target=target,
            noise=0.5,
            noise_kind="uniform",
            init=init,
            bias=bias,
            train_outer=False,
            eta=1.0,
            step=int(t),
            t=t,
            final=i == len(TIMES) - 1,
            diverged=False,
            train_risk=(1 / 12 + approx) * math.exp(-t / 800),
            excess_risk=approx + est + gauss * math.exp(-t / 100),
            approx_error=approx,
            estimation_error=est + gauss * math.exp(-t / 100),
            kernel_gap=(1 + 10 * gauss) * t / (width * 1000 + t),
            weight_move=2 * width**-0.5 * (1 + 0.01 * seed),
            ntk_drift=3 * width**-0.5 if i in (6, len(TIMES) - 2) else math.nan,
            target_norm2=sum(v**2 for v in c.values()),
            noise_var=0.5**2 / 3,
        )
        for k in DEGREES:
            pop = (1 - math.exp(-t * MU[k, bias])) * c[k] if k in c else math.nan
            row[f"pop_coef_{k}"] = pop
            row[f"coef_{k}"] = (0.0 if math.isnan(pop) else pop) * (1 - 1 / math.sqrt(width))
        rows.append(row)
    if diverged:
        rows[-1].update(
            diverged=True, excess_risk=math.inf, train_risk=math.inf, estimation_error=math.inf
        )
    return rows


def full_study():
    rows = []
    for n in (100, 200, 400):
        for m in (64, 256, 1024):
            for s in range(2):
                rows += run_rows(n, m, s)
    rows += run_rows(400, 1024, 2, diverged=True)
    for s in range(2):
        rows += run_rows(400, 1024, s, init="gaussian")
        for b in (False, True):
            rows += run_rows(200, 256, s, target="3:1.0", bias=b)
    return rows


REGRESSION_FILES = [
    "approx_error.png",
    "cubic_bias.png",
    "estimation_error.png",
    "final_excess.png",
    "init.png",
    "ntk_regime.png",
    "risks.png",
    "staircase.png",
]


def write_regression(path, rows):
    write_dir(
        path,
        rows,
        {"name": "park", "kind": "regression", "precision": "float64"},
        regression_schema(),
    )


def test_plot_dir_regression_full_study(tmp_path):
    write_regression(tmp_path, full_study())
    paths = plots.plot_dir(tmp_path, tmp_path / "plots")
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == REGRESSION_FILES
    assert all(is_png(p) for p in paths)


def test_plot_dir_regression_minimal_study(tmp_path):
    """One n, one width, one seed: no picture against n or M, no side studies."""
    write_regression(tmp_path, run_rows(100, 256, 0))
    paths = plots.plot_dir(tmp_path)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "approx_error.png",
        "risks.png",
        "staircase.png",
    ]


def test_regression_figure_titles_and_footnote():
    rows = full_study()
    main = rfig.main_study(rows)
    assert rfig._values(main, "init") == ["antisymmetric"]
    assert rfig._values(main, "target") == [MAIN]
    label = rfig._subset_label(rfig._biggest(main))
    assert "f* = 1:0.5,2:0.5,4:0.5" in label and "antisymmetric init" in label
    assert "no bias" in label and "d = 3" in label and "M = 1024" in label
    assert "seeds 0, 1, 2" in label
    note = rfig._diverged_note(main)
    assert note.startswith("1 of 19 runs diverged") and "seed=2" in note


def test_mean_curves_leave_diverged_runs_out():
    good = run_rows(400, 1024, 0) + run_rows(400, 1024, 1)
    bad = run_rows(400, 1024, 2, diverged=True)
    for r in bad:  # finite but wild before it diverged: must not enter any mean either
        r["excess_risk"] = 1e6
    curves = rfig.mean_curves(good + bad, "excess_risk", by=("n",), positive_x=True)
    ((key, c),) = curves.items()
    assert key == (400,) and (c.count == 2).all() and len(c.x) == len(TIMES) - 1
    pair = np.array([[r["excess_risk"] for r in run[1:]] for run in (good[:13], good[13:])])
    np.testing.assert_allclose(c.mean, pair.mean(0))
    np.testing.assert_allclose(c.sem, pair.std(0, ddof=1) / math.sqrt(2))
    single = rfig.mean_curves(good[:13], "excess_risk")[()]
    assert np.isnan(single.sem).all() and single.x[0] == 0.0
    drift = rfig.mean_curves(good, "ntk_drift", by=("width",))[(1024,)]
    assert len(drift.x) == 2  # nan outside the drift records is skipped
    finals = rfig._final(good + bad)
    assert len(finals) == 3 and sum(r["diverged"] for r in finals) == 1
    assert all(math.isfinite(r["ntk_drift"]) for r in finals)


def test_fit_loglog_slope_exact():
    m = np.array([64.0, 256, 1024, 4096])
    fit = stats.fit_loglog_slope(m, 3 * m**-0.5)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12) and fit.prefactor == pytest.approx(3)
    assert fit.points == 4
    assert math.isnan(stats.fit_loglog_slope([64.0], [1.0]).slope)
    assert stats.fit_loglog_slope([64.0, 256, 1024], [0.1, np.nan, 0.025]).points == 2


JAX_FREE = (
    "store",
    "stats",
    "draw",
    "spectra",
    "eigenlearning",
    "flags",
    "experiments",
    "contract",
    "runner",
    "verify",
)  # NumPy and SciPy at most


@pytest.mark.parametrize(
    "module",
    [
        "jaxbof.plots",
        "jaxbof.draw",
        "jaxbof.stats",
        "jaxbof.store",
        "jaxbof.experiments",
        "jaxbof.experiments.classification",
        "jaxbof.experiments.classification.figures",
        "jaxbof.experiments.classification.cells",
        "jaxbof.experiments.classification.cli",
        "jaxbof.experiments.regression",
        "jaxbof.experiments.regression.figures",
        "jaxbof.experiments.regression.schema",
        "jaxbof.experiments.cnn",
        "jaxbof.experiments.cnn.cells",
        "jaxbof.experiments.cnn.figures",
        "jaxbof.experiments.cnn.boundary",
        "jaxbof.experiments.cnn.cli",
        "jaxbof.experiments.regression.cli",
        "jaxbof.experiments.optimizers",
        "jaxbof.experiments.optimizers.figures",
        "jaxbof.experiments.ntk_concentration",
        "jaxbof.experiments.ntk_concentration.figures",
        "jaxbof.experiments.learning_curves",
        "jaxbof.experiments.learning_curves.figures",
        "jaxbof.eigenlearning",
        "jaxbof.contract",
        "jaxbof.runner",
        "jaxbof.verify",
        "jaxbof.experiments.classification.claims",
        "jaxbof.experiments.cnn.claims",
        "jaxbof.experiments.regression.claims",
        "jaxbof.experiments.ntk_concentration.run",
        "jaxbof.experiments.learning_curves.run",
        "jaxbof.experiments.optimizers.run",
        "jaxbof.experiments.ntk_concentration.claims",
        "jaxbof.experiments.learning_curves.claims",
        "jaxbof.experiments.sphere_spectrum",
        "jaxbof.experiments.sphere_spectrum.run",
        "jaxbof.experiments.sphere_spectrum.figures",
        "jaxbof.experiments.sphere_spectrum.claims",
        "jaxbof.experiments.haas_spikes",
        "jaxbof.experiments.haas_spikes.grid",
        "jaxbof.experiments.haas_spikes.cli",
        "jaxbof.experiments.haas_spikes.claims",
        "jaxbof.experiments.haas_spikes.figures",
        "jaxbof.experiments.haas_spikes.kernels",
        "jaxbof.experiments.haas_spikes.kernel_claims",
        "jaxbof.experiments.haas_spikes.kernel_figures",
        "jaxbof.experiments.haas_spikes.activations",
        "jaxbof.experiments.haas_spikes.activation_command",
    ],
)
def test_figures_and_the_registry_import_no_jax_at_module_level(module):
    """What `jaxbof plot` and the registry load imports neither JAX nor a module that does;
    device code is imported inside the functions that need it."""
    import ast
    import importlib

    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    names = [a.name for node in tree.body if isinstance(node, ast.Import) for a in node.names]
    froms = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 0]
    names += [node.module for node in froms]
    assert not [m for m in names if m.split(".")[0] in ("jax", "jaxlib", "optax", "flax")]
    own = [a.name for node in froms if node.module == "jaxbof" for a in node.names]
    assert set(own) <= set(JAX_FREE)
    deeper = [
        f"{node.module}.{a.name}"
        for node in froms
        if node.module.startswith("jaxbof.")
        for a in node.names
    ]  # from jaxbof.X import Y: Y a JAX-free module or name in one
    light = ("jaxbof.experiments.", "jaxbof.flags.", "jaxbof.contract.")
    assert all(
        m.startswith(light)
        and (
            m.rsplit(".", 1)[0].split(".")[-1]
            in (
                "experiments",
                "flags",
                "contract",
                "cells",
                "schema",
                "boundary",
                "figures",
                "cli",
                "claims",
                *HAAS,
            )
            or m.rsplit(".", 1)[1]
            in ("cli", "cells", "schema", "boundary", "figures", "claims", *HAAS)
        )
        for m in deeper
    ), deeper


HAAS = (
    "grid",
    "activations",
    "kernels",
    "kernel_claims",
    "kernel_figures",
    "activation_command",
)  # the JAX-free modules of jaxbof.experiments.haas_spikes


def test_target_coefs():
    assert rfig.target_coefs("1:0.5,2:0.5,4:-0.25") == {1: 0.5, 2: 0.5, 4: -0.25}
    assert rfig.target_coefs("3:1.0") == {3: 1.0}


def test_level_errors_draws_one_panel_or_two_with_the_spread(tmp_path):
    import struct

    from jaxbof import plots

    def png_size(path):
        with open(path, "rb") as f:
            head = f.read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        return struct.unpack(">II", head[16:24])

    series = {"analytic": {1: ([1e3, 1e4], [1e-2, 1e-3]), 2: ([1e3, 1e4], [2e-2, 2e-3])}}
    one = plots.level_errors(series, tmp_path / "one.png")
    two = plots.level_errors(series, tmp_path / "two.png", spread=series, title="t")
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert h1 == h2 and abs(w2 / w1 - 2.0) < 0.05  # the spread panel beside the error panel
