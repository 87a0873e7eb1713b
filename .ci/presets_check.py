"""CI: the quick runs of the presets no test or claim reads, with their rows checked.

    python .ci/presets_check.py DIR

cao-cnn --quick: every run fits its (noise-free) training set, and the mean test error over
(n, seed) falls with ||mu|| (its least-squares slope is negative, and the error at the largest
||mu|| is below the error at the smallest). optimizers --quick: every part pairs with the GD
baseline, that is, for every rule and signal direction the runs' cells are exactly the
baseline's on the same direction (the study's comparisons are paired run by run), and every
regression rule has a final row for every cell GD has. Exits 1 naming what does not hold.
(karhadkar-fig2 is checked through claim K4 by `jaxbof verify --quick`.)
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

from jaxbof import stats, store
from jaxbof.experiments.optimizers import figures as opt
from jaxbof.experiments.regression.schema import COORDINATES as REGRESSION_KEYS


def run(*args) -> None:
    subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", *args, "--no-progress", "--no-plots"], check=True
    )


def cao(out: Path) -> list[str]:
    run("reproduce", "cao-cnn", "--quick", "--out", str(out))
    rows = store.load_results(out)
    bad = [f"cao-cnn: {len(rows)} rows"] if not rows else []
    unfit = [r for r in rows if r["train_error"] != 0]
    if unfit:
        bad.append(f"cao-cnn: {len(unfit)} of {len(rows)} runs do not fit their training set")
    by = stats.aggregate(rows, "signal", "test_error")
    signal = np.array(list(by), float)
    error = np.array([s.mean for s in by.values()])
    if not (stats.slope(signal, error) < 0 and error[-1] < error[0]):
        bad.append(f"cao-cnn: the test error does not fall with ||mu|| ({error.round(3)})")
    print(
        f"cao-cnn: {len(rows)} rows, {len(unfit)} not fitted, test error {error[0]:.3f} at "
        f"||mu|| = {signal[0]:g} to {error[-1]:.3f} at {signal[-1]:g}"
    )
    return bad


def optimizers(out: Path) -> list[str]:
    run("reproduce", "optimizers", "--quick", "--out", str(out))
    sp = opt.study_parts(out)
    bad = []

    def cells(rows, keys):
        return {tuple(r[k] for k in keys) for r in rows}

    for (spec, sig), rows in sp.classification.items():
        base = sp.classification.get((sp.baseline, sig), [])
        if not rows or cells(rows, opt.CLASSIFICATION_KEYS) != cells(base, opt.CLASSIFICATION_KEYS):
            bad.append(
                f"optimizers: classification {spec} on {sig} does not pair with {sp.baseline}"
            )
    keys = REGRESSION_KEYS
    base = [r for r in sp.regression.get(sp.baseline, []) if r["final"]]
    for spec, rows in sp.regression.items():
        mine = [r for r in rows if r["final"]]
        if not mine or cells(mine, keys) != cells(base, keys):
            bad.append(f"optimizers: regression {spec} does not pair with {sp.baseline}")
    print(
        f"optimizers: {len(sp.classification)} classification and {len(sp.regression)} "
        "regression parts checked against the baseline"
    )
    return bad


if __name__ == "__main__":
    root = Path(sys.argv[1])
    problems = cao(root / "cao-cnn-quick") + optimizers(root / "optimizers-quick")
    for p in problems:
        print(f"presets_check: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
