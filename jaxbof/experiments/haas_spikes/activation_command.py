"""`jaxbof activation`: the Hermite coefficients of the activation whose NNGP kernel (or, with
--ntk, two-layer bias-free NTK) is a Gaussian or spiky-smooth Gaussian kernel on the sphere
(jaxbof.experiments.haas_spikes.activations), written as a CSV and a picture.

    jaxbof activation --kernel gaussian --gamma 1 --k-max 400 [--ntk]
                      [--spike-gamma 0.02 --rho 0.1] [--seed 0] --out DIR

DIR/coefficients.csv: k, coefficient = |c_k| (may underflow to 0.0), log_coefficient = log |c_k|.
DIR/activation.png: phi on [-3, 3] with the random signs of --seed, and log10 |c_k| against k.
No JAX; matplotlib is imported only when the picture is drawn.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np

# a JAX-free sibling module (relative, so no jaxbof import that could load device code)
from . import activations

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `jaxbof activation`."""
    parser.add_argument(
        "--kernel",
        choices=activations.KERNELS,
        default="gaussian",
        help="the (smooth) kernel: gaussian = exp(-||x - x'||^2 / gamma)",
    )
    parser.add_argument(
        "--gamma", type=float, required=True, help="bandwidth of the (smooth) kernel, > 0"
    )
    parser.add_argument(
        "--k-max",
        type=int,
        required=True,
        help="highest Hermite degree k (coefficients k = 0..k_max), >= 0",
    )
    parser.add_argument(
        "--ntk",
        action="store_true",
        help="match the two-layer bias-free NTK (|c_k| = sqrt(a_k / (k + 1))) "
        "instead of the NNGP kernel (|c_k| = sqrt(a_k))",
    )
    parser.add_argument(
        "--spike-gamma",
        type=float,
        default=None,
        help="bandwidth of a Gaussian spike kernel added with weight --rho",
    )
    parser.add_argument(
        "--rho",
        type=float,
        default=None,
        help="weight of the spike kernel (with --spike-gamma), > 0",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random signs of the plotted activation"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")


def _positive(flag: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{flag}: {value!r} is not allowed: it must be > 0 and finite")
    return value


def _log_coefficients(args) -> np.ndarray:
    """log |c_k| for the flags, each bad value reported by its flag."""
    gamma = _positive("--gamma", args.gamma)
    if args.k_max < 0:
        raise ValueError(f"--k-max: {args.k_max} is not allowed: it must be an integer >= 0")
    if (args.spike_gamma is None) != (args.rho is None):
        given, missing = (
            ("--spike-gamma", "--rho") if args.rho is None else ("--rho", "--spike-gamma")
        )
        raise ValueError(f"{given}: needs {missing} too (give both or neither)")
    log_a = activations.log_power_series(args.kernel, gamma, args.k_max)
    if args.rho is not None:
        spike = activations.log_power_series(
            "gaussian", _positive("--spike-gamma", args.spike_gamma), args.k_max
        )
        log_a = activations.spiky_smooth(log_a, spike, _positive("--rho", args.rho))
    return activations.hermite_magnitudes(log_a, ntk=args.ntk)


def _title(args) -> str:
    kernel = f"{args.kernel}, gamma={args.gamma:g}"
    if args.rho is not None:
        kernel += f" + {args.rho:g} x gaussian, gamma={args.spike_gamma:g}"
    return f"{'NTK' if args.ntk else 'NNGP'} of {kernel}; k <= {args.k_max}"


def _draw(path: Path, k: np.ndarray, log_c: np.ndarray, args) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    x = np.linspace(-3.0, 3.0, 1201)
    phi = activations.evaluate(x, log_c, activations.random_signs(args.k_max, args.seed))
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(x, phi, lw=0.8)
    left.set(xlabel="x", ylabel="phi(x)", title=f"activation, random signs (seed {args.seed})")
    # log10 |c_k| on a linear axis: |c_k| itself may underflow float64
    right.plot(k, log_c / np.log(10.0), ".", ms=2)
    right.set(xlabel="k", ylabel="log10 |c_k|", title="Hermite coefficient magnitudes")
    fig.suptitle(_title(args), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args) -> int:
    """Write DIR/coefficients.csv and DIR/activation.png for the parsed flags; 0 on success.
    A bad flag value, or an --out that cannot be written, raises a one-line ValueError."""
    log_c = _log_coefficients(args)
    out = Path(args.out)
    k = np.arange(log_c.size)
    csv_path, png_path = out / "coefficients.csv", out / "activation.png"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["k", "coefficient", "log_coefficient"])
            for k_i, lc in zip(k, log_c):
                w.writerow([int(k_i), repr(float(np.exp(lc))), repr(float(lc))])
        print(f"wrote {csv_path}", file=sys.stderr)
        _draw(png_path, k, log_c, args)
        print(f"wrote {png_path}", file=sys.stderr)
    except OSError as e:
        raise ValueError(f"--out: cannot write {out}: {e.strerror or e}") from None
    return 0
