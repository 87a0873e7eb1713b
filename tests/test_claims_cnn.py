"""The CNN experiment's claims C1-C4 (Kou et al. 2023) on synthetic rows in the kou-cnn schema:
each holds where the rows follow the theorem and fails where they are tampered with (errors at
||mu|| = 0 far from 1/2, test error far above p, a boundary exponent of 1/2, training error not
zero); C4's resampled statistic agrees with the boundary fit the figures and table use. No
training: every test runs in well under a second or two."""

import ast
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from jaxbof import stats
from jaxbof.experiments.cnn import boundary, cells
from jaxbof.experiments.cnn import claims as K
from jaxbof.verify import verdict_of

SIGNALS = tuple(round(0.25 * i, 12) for i in range(40))  # 0, 0.25, ..., 9.75
DS = (100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900, 1000)


def _rows(
    p=0.1,
    beta=0.25,
    seeds=10,
    ds=DS,
    signals=SIGNALS,
    zero=None,
    top_excess=0.0,
    unfit=0.0,
    n=20,
    seed=0,
):
    """Rows of the kou-cnn schema: the mean test error falls from 1/2 at ||mu|| = 0 to p,
    through (p + 1/2) / 2 at ||mu||_c = 1.5 (d / 100)^beta (jittered per (n, d, seed) draw),
    with Monte Carlo noise. zero: the error at ||mu|| = 0 instead; top_excess: added at the
    largest ||mu||; unfit: the fraction of runs that miss one training label of n."""
    rng = np.random.default_rng(seed)
    s_k = np.asarray(signals, np.float64)
    rows = []
    for d in ds:
        for k in range(seeds):
            crossing = 1.5 * (d / 100) ** beta * math.exp(0.05 * rng.standard_normal())
            err_k = p + (0.5 - p) * 2.0 ** -((s_k / crossing) ** 2)
            if zero is not None:
                err_k[s_k == 0] = zero
            err_k[s_k == s_k.max()] += top_excess
            err_k = np.clip(err_k + 0.01 * rng.standard_normal(len(s_k)), 0, 1)
            miss_k = rng.random(len(s_k)) < unfit
            for s, err, miss in zip(signals, err_k.tolist(), miss_k.tolist()):
                rows.append(
                    {
                        "n": n,
                        "d": d,
                        "signal": s,
                        "seed": k,
                        "snr": cells.snr(s, d, 1.0),
                        "steps": 100,
                        "diverged": False,
                        "final": s == max(signals),
                        "train_loss": 0.3 if miss else 0.01,
                        "train_error": 1 / n if miss else 0.0,
                        "test_error": err,
                        "clean_test_error": max(0.0, err - p),
                        "signal_learning": s,
                        "noise_memorization": 2.0,
                    }
                )
    return rows


def _config(p=0.1, signals=SIGNALS, **protocol):
    """config.json as kou-cnn writes it (its protocol, its flags)."""
    proto = dataclasses.asdict(cells.Protocol(signals=signals, noise_rate=p, **protocol))
    return {
        "experiment": {"kind": "cnn", "name": "kou-cnn", "protocol": proto},
        "flags": {"diverged": True},
    }


def _verdict(claim_id, rows, config):
    claim = {c.id: c for c in K.CLAIMS}[claim_id]
    got = claim.estimate(rows, config, 0.95)
    got = got if isinstance(got, list) else [got]
    return verdict_of(claim.criterion, got), got


def test_the_plugin_declares_c1_to_c4_and_claims_import_no_jax():
    from jaxbof import experiments

    plugin = experiments.plugin("cnn")
    assert [c.id for c in plugin.claims] == ["C1", "C2", "C3", "C4"]
    assert {c.reads for c in plugin.claims} == {"kou-cnn"}
    assert all(c.expected in ("holds", "fails") and c.statement and c.source for c in plugin.claims)
    tree = ast.parse(Path(K.__file__).read_text())
    imported = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert set(imported) <= {
        "__future__",
        "math",
        "typing",
        "numpy",
        "jaxbof",
        "jaxbof.contract",
    }, imported


def test_c1_holds_when_every_run_fits_and_fails_when_some_do_not():
    config = _config()
    verdict, (e,) = _verdict("C1", _rows(), config)
    assert verdict == "holds" and e.value == 1.0 and "Clopper-Pearson" in e.method
    verdict, (e,) = _verdict("C1", _rows(unfit=0.05), config)
    assert verdict == "fails" and e.high < 0.99
    # a diverged run counts against the fraction, never dropped
    rows = _rows()
    for r in rows[:100]:
        r["diverged"] = True
    verdict, (e,) = _verdict("C1", rows, config)
    assert verdict == "fails" and e.value == pytest.approx(1 - 100 / len(rows))


def test_c2_holds_at_chance_and_fails_far_from_one_half():
    config = _config()
    verdict, got = _verdict("C2", _rows(), config)
    assert verdict == "holds" and [e.cell for e in got] == [f"d={d}" for d in DS]
    assert all(e.level == pytest.approx(stats.bonferroni(0.95, len(DS))) for e in got)
    assert all("bootstrap" in e.method for e in got)
    verdict, got = _verdict("C2", _rows(zero=0.35), config)
    assert verdict == "fails" and all(e.high < 0.45 for e in got)
    verdict, _ = _verdict("C2", _rows(zero=0.65), config)
    assert verdict == "fails"
    # quick scale: 3 draws per d give a t-interval per d
    _, got = _verdict("C2", _rows(seeds=3), config)
    assert all(e.method.startswith("t-interval over 3 units") for e in got)


def test_c3_reads_p_from_the_protocol_and_fails_above_the_bayes_error():
    verdict, got = _verdict("C3", _rows(p=0.1), _config(p=0.1))
    assert verdict == "holds" and all(abs(e.value) < 0.01 for e in got)
    verdict, got = _verdict("C3", _rows(p=0.1, top_excess=0.15), _config(p=0.1))
    assert verdict == "fails" and all(e.low > 0.05 for e in got)
    # the same rows (Bayes error 0.2) hold under p = 0.2 and fail when the protocol says 0.05
    rows = _rows(p=0.2)
    assert _verdict("C3", rows, _config(p=0.2))[0] == "holds"
    assert _verdict("C3", rows, _config(p=0.05))[0] == "fails"


def test_c4_holds_at_exponent_one_quarter_and_fails_at_one_half():
    config = _config()
    verdict, (e,) = _verdict("C4", _rows(beta=0.25), config)
    assert verdict == "holds" and e.value == pytest.approx(0.25, abs=0.02)
    assert "bootstrap, 2000 resamples of 120 units" in e.method
    verdict, (e,) = _verdict("C4", _rows(beta=0.5), config)
    assert verdict == "fails" and e.low > 0.30 and e.value == pytest.approx(0.5, abs=0.03)
    verdict, (e,) = _verdict("C4", _rows(beta=0.1), config)
    assert verdict == "fails" and e.high < 0.20


def test_c4_statistic_agrees_with_the_boundary_fit_of_the_table_and_figures():
    """On every unit, C4's vectorised crossings and slope equal boundary.crossings and
    boundary.fit_boundary (the table's and figures' code), also with missing and flagged runs
    (the per-curve path)."""
    config = _config()
    rows = _rows(beta=0.3, seeds=4)
    rows = [r for r in rows if not (r["d"] == 200 and r["signal"] == 1.5)]  # a missing point
    rows[5]["diverged"] = True
    valid = K._valid(rows, config)
    proto = config["experiment"]["protocol"]
    want = boundary.fit_boundary(valid, 0.3, proto)
    _, (e,) = _verdict("C4", rows, config)
    assert e.value == pytest.approx(want.exponent, rel=1e-12)
    grid = K._grid(valid)
    with np.errstate(invalid="ignore"):  # the missing point: 0 / 0
        means = grid.sums.reshape(len(DS), 4, -1).sum(1) / grid.counts.reshape(len(DS), 4, -1).sum(
            1
        )
    mine = K.crossings(grid.signals, means, 0.3)
    theirs = {c.d: c.signal for c in boundary.crossings(valid, 0.3, proto)}
    assert dict(zip(DS, mine)) == pytest.approx(theirs, rel=1e-12)


def test_claims_say_why_they_cannot_estimate():
    """What verify reports as inconclusive with a note: ValueError naming the missing input."""
    rows, config = _rows(seeds=2, ds=(100, 200)), _config()
    with pytest.raises(ValueError, match=r"\|\|mu\|\| = 0"):
        K.harmful_without_signal([r for r in rows if r["signal"] > 0], config, 0.95)
    with pytest.raises(ValueError, match="noise_rate"):
        K.benign_with_signal(rows, {"experiment": {"protocol": {}}}, 0.95)
    with pytest.raises(ValueError, match="one n"):
        K.boundary_exponent(rows + _rows(seeds=2, ds=(100, 200), n=40), config, 0.95)
    with pytest.raises(ValueError, match="q = 1"):
        K.boundary_exponent(rows, _config(q=3.0), 0.95)
