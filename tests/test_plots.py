"""Plots: every figure writes a PNG from synthetic rows; the heatmap shows exact zeros."""

import math

import numpy as np
import pytest

from jaxbof import plots, store

PNG = b"\x89PNG\r\n\x1a\n"


def make_row(n, d_over_n, seed, gamma=None, test_error=0.05, converged=True, snr=1.0):
    row = {c: 0.5 for c in store.COLUMNS}
    row.update(n=n, d=round(n * d_over_n), d_over_n=d_over_n,
               gamma=5 / n if gamma is None else gamma, alpha=0.1, noise_rate=0.1, width=64,
               seed=seed, param="gram", steps=100, converged=converged, diverged=False,
               n_corrupt=3, test_error=test_error, snr=snr)
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
    t = plots.heatmap_table(grid_rows())
    assert t.n_x == (50, 60, 70) and t.dn_y == (1.0, 2.0, 3.0)
    assert t.zero_yx.tolist() == [[False] * 3, [False] * 3, [True, True, False]]
    assert t.labels_yx[2][:2] == ["0", "0"]
    assert t.labels_yx[0][1].endswith("*") and t.flagged_yx.sum() == 1
    assert t.count_yx[0, 1] == 3
    np.testing.assert_allclose(t.mean_yx[0, 1], 0.08 * 1.1)  # flagged 0.6 not averaged in
    assert t.labels_yx[0][0] == f"{0.08 * 1.1:.3g}"


def test_heatmap_figure_draws_zero_layer_and_labels():
    t = plots.heatmap_table(grid_rows())
    fig = plots.heatmap_figure(t, title="precision note")
    ax = fig.axes[0]
    layers = {c.get_gid(): c for c in ax.collections}
    assert {"positive_cells", "zero_cells"} <= set(layers)
    zero_drawn = ~np.ma.getmaskarray(layers["zero_cells"].get_array()).reshape(t.zero_yx.shape)
    assert (zero_drawn == t.zero_yx).all()
    pos_drawn = ~np.ma.getmaskarray(layers["positive_cells"].get_array()).reshape(t.zero_yx.shape)
    assert (pos_drawn == ~t.zero_yx).all()
    texts = {(round(x.get_position()[0] - 0.5), round(x.get_position()[1] - 0.5)): x.get_text()
             for x in ax.texts}
    assert len(texts) == 9
    for (j, i), s in texts.items():
        assert s == t.labels_yx[i][j]
    legend = [x.get_text() for x in fig.legends[0].get_texts()]
    assert any(s.startswith("0:") for s in legend) and any(s.startswith("*") for s in legend)
    assert "precision note" in ax.get_title()


@pytest.mark.parametrize("fn", [plots.heatmap, plots.gamma_curve, plots.error_vs_dn,
                                plots.snr_vs_error])
def test_each_plot_writes_png(tmp_path, fn):
    path = fn(grid_rows(), tmp_path / "sub" / f"{fn.__name__}.png")
    assert is_png(path)


def test_error_vs_dn_all_zero_and_single_point(tmp_path):
    zeros = [make_row(50, r, s, test_error=0.0) for r in (1.0, 2.0) for s in range(2)]
    assert is_png(plots.error_vs_dn(zeros, tmp_path / "a.png"))
    single = [make_row(50, 2.0, s, test_error=0.1) for s in range(2)]
    assert is_png(plots.error_vs_dn(single, tmp_path / "b.png"))


def write_dir(path, rows, experiment):
    with store.ResultsWriter(path, {"experiment": experiment}) as w:
        w.write(rows)


def test_plot_dir_fig1_grid(tmp_path):
    write_dir(tmp_path, grid_rows(), {"name": "fig1", "protocol": {"n_test": 1000}})
    paths = plots.plot_dir(tmp_path)
    # gamma = 5/n differs between n only: no gamma curve
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "error_vs_dn.png", "heatmap.png", "snr_vs_error.png"]
    assert all(is_png(p) for p in paths)
    assert "fig1: 1000 clean test points" in plots.describe({"name": "fig1", "p": {"n_test": 1000}},
                                                            "x")


def test_plot_dir_fig2_grid(tmp_path):
    rows = [make_row(n, 2.0, s, gamma=g, test_error=max(0.5 - 8 * g, 0.02))
            for n in (50, 100) for g in (0.0, 0.03, 0.06) for s in range(2)]
    write_dir(tmp_path, rows, {"name": "fig2"})
    out = tmp_path / "plots"
    paths = plots.plot_dir(tmp_path, out)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "error_vs_dn.png", "gamma_curve.png", "snr_vs_error.png"]
    assert all(p.startswith(str(out)) and is_png(p) for p in paths)


def test_plot_dir_empty_refused(tmp_path):
    write_dir(tmp_path, [], {})
    with pytest.raises(ValueError, match="no results"):
        plots.plot_dir(tmp_path)
