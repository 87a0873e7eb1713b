"""Predicted against measured learning curves of kernel ridge regression on the sphere
(`jaxbof.eigenlearning`), in float64 on the host: the regression experiment's setting (x uniform
on S^2, the first-layer NTK in closed form, f* = sqrt(1/2) (Y_1 + Y_2 + Y_4) along random
directions, uniform noise on [-0.5, 0.5]), n from 25 to 1600, ridgeless and with ridge / n =
1e-4, 40 training sets per point, excess risk on 2000 fresh points. Prints the README's table:
the gap between prediction and measurement in standard errors and relative.

    python benchmarks/learning_curves.py [--draws 40] [--k-max 8000] [--seed 3]
"""

import argparse
import math

import numpy as np
from scipy.special import eval_legendre

from jaxbof import eigenlearning as E
from jaxbof import spectra


def sphere(rng, m, d=3):
    x = rng.normal(size=(m, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--k-max", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--n", default="25,50,100,200,400,800,1600")
    ap.add_argument("--ridge-over-n", default="0,1e-4")
    args = ap.parse_args()
    k_fn = spectra.kernel_fn("ntk-first-layer")
    levels = E.sphere_levels("ntk-first-layer", 3, args.k_max)
    energy, noise = [0, 0.5, 0.5, 0, 0.5], 0.5 ** 2 / 3
    rng = np.random.default_rng(args.seed)
    print("| n | ridge | measured excess risk | predicted | gap (s.e.) | gap (relative) |")
    print("|---|---|---|---|---|---|")
    for n in map(int, args.n.split(",")):
        for rel in map(float, args.ridge_over_n.split(",")):
            ridge, risks = rel * n, []
            for _ in range(args.draws):
                xis = {k: sphere(rng, 1)[0] for k in (1, 2, 4)}

                def target(x):
                    return sum(math.sqrt(0.5 * (2 * k + 1)) * eval_legendre(k, x @ xi)
                               for k, xi in xis.items())
                X, Xt = sphere(rng, n), sphere(rng, 2000)
                y = target(X) + rng.uniform(-0.5, 0.5, n)
                a = np.linalg.solve(k_fn(np.clip(X @ X.T, -1, 1)) + ridge * np.eye(n), y)
                risks.append(np.mean((k_fn(np.clip(Xt @ X.T, -1, 1)) @ a - target(Xt)) ** 2))
            m, se = np.mean(risks), np.std(risks, ddof=1) / math.sqrt(len(risks))
            p = E.predict(n, levels, energy, noise, ridge)
            print(f"| {n} | {ridge:g} | {m:.4f} ± {se:.4f} | {p.excess_risk:.4f} | "
                  f"{(p.excess_risk - m) / se:+.1f} | {(p.excess_risk - m) / m:+.1%} |")


if __name__ == "__main__":
    main()
