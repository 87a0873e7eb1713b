"""Predicted against measured learning curves of kernel ridge regression on the sphere
(`jaxbof.eigenlearning`), in float64 on the host: the learning-curves plug-in's measurement
(`jaxbof.experiments.learning_curves.krr`: x uniform on S^2, the first-layer NTK in closed form,
f* = (Y_1 + Y_2 + Y_4) / 2 along random directions (the regression experiment's default),
uniform noise on [-0.5, 0.5]) at
n from 25 to 1600, ridgeless and with ridge / n = 1e-4, 40 training sets per point, excess risk
on 2000 fresh points. Prints the table of docs/learning-curves.md: the gap between prediction
and measurement in standard errors and relative.

    python benchmarks/learning_curves.py [--draws 40] [--k-max 8000] [--seed 3]
"""

import argparse

from jaxbof import stats
from jaxbof.experiments.learning_curves import krr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--k-max", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--n", default="25,50,100,200,400,800,1600")
    ap.add_argument("--ridge-over-n", default="0,1e-4")
    args = ap.parse_args()
    config = krr.Config(
        ns=tuple(map(int, args.n.split(","))),
        ridges_over_n=tuple(map(float, args.ridge_over_n.split(","))),
        seeds=args.draws,
        k_max=args.k_max,
        seed=args.seed,
    )
    rows: list = []
    krr.run(config, on_rows=rows.extend)
    predicted = {(r["n"], r["ridge_over_n"]): r["predicted_excess_risk"] for r in rows}
    agg = stats.aggregate(rows, by=("n", "ridge_over_n"), value="excess_risk", flags={})
    print("| n | ridge | measured excess risk | predicted | gap (s.e.) | gap (relative) |")
    print("|---|---|---|---|---|---|")
    for (n, r), s in agg.items():
        p = predicted[(n, r)]
        print(
            f"| {n} | {r * n:g} | {s.mean:.4f} ± {s.sem:.4f} | {p:.4f} | "
            f"{(p - s.mean) / s.sem:+.1f} | {(p - s.mean) / s.mean:+.1%} |"
        )


if __name__ == "__main__":
    main()
