"""NTK concentration at init: the M^(-1/2) law, the slope fit, resumable and deterministic rows."""

import numpy as np
import pytest

from jaxbof import concentration as C
from jaxbof import ntk

SMALL = C.Config(nd=((40, 5),), widths=(16, 64, 256, 1024, 4096), seeds=4)


def test_deviation_follows_inverse_square_root_of_width():
    rows = C.run(SMALL)
    (fit,) = C.fit_slopes(rows)
    assert -0.62 < fit.slope < -0.38, fit
    by_m = {m: np.mean([r["rel_op_error"] for r in rows if r["width"] == m]) for m in SMALL.widths}
    assert by_m[4096] < by_m[16] / 8  # sqrt(256) = 16, allowing Monte Carlo scatter


def test_bias_and_both_layers_concentrate_too():
    cfg = SMALL._replace(widths=(32, 2048), seeds=2, layers=ntk.Layers.BOTH, bias=True, alpha=0.1)
    rows = C.run(cfg)
    small = np.mean([r["rel_op_error"] for r in rows if r["width"] == 32])
    large = np.mean([r["rel_op_error"] for r in rows if r["width"] == 2048])
    assert large < small / 4  # sqrt(64) = 8 expected


def test_fit_slopes_recovers_an_exact_power_law():
    rows = [
        dict(n=10, d=3, width=m, seed=s, rel_op_error=2.5 * m**-0.5 * (1 + 0.1 * (-1) ** s))
        for m in (8, 32, 128)
        for s in (0, 1)
    ]
    (fit,) = C.fit_slopes(rows)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.prefactor == pytest.approx(2.5, rel=1e-12)
    assert C.fit_slopes(rows[:2]) == []  # one width: no fit


TINY = C.Config(nd=((20, 4),), widths=(8, 32), seeds=2)


@pytest.fixture(scope="module")
def tiny_rows():
    return C.run(TINY)


def test_rows_are_deterministic_and_skip_resumes(tiny_rows):
    cfg, full = TINY, tiny_rows
    seen = []
    rest = C.run(cfg, on_row=seen.append, skip={(20, 4, 8, 0), (20, 4, 32, 1)})
    assert seen == rest and len(rest) == 2
    key = lambda r: (r["width"], r["seed"])
    for r in rest:
        (same,) = [f for f in full if key(f) == key(r)]
        assert r == same


@pytest.mark.parametrize(
    "cfg, needle",
    [
        (C.Config(nd=((1, 5),)), "(n, d) = (1, 5)"),
        (C.Config(widths=(15,)), "width 15: must be >= 2 and even"),
        (C.Config(seeds=0), "seeds = 0"),
        (C.Config(alpha=2.0), "alpha = 2.0"),
    ],
)
def test_bad_config_names_the_value(cfg, needle):
    with pytest.raises(ValueError, match=None) as e:
        C.run(cfg)
    assert needle in str(e.value)


def test_rows_read_back_typed(tmp_path, tiny_rows):
    from jaxbof import store

    rows = tiny_rows
    with store.ResultsWriter(tmp_path, {"experiment": "t"}, columns=C.SCHEMA) as w:
        w.write(rows)
    assert store.load_results(tmp_path) == rows
