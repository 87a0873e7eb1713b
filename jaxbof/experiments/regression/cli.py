"""The regression experiment on the command line: its `jaxbof sweep regression` flags, the study
they ask for, the park-regression preset, and the terminal table."""

from __future__ import annotations

from jaxbof import stats
from jaxbof.experiments import Study
from jaxbof.flags import choice, number, parse_values, positive

DESCRIPTION = "Park et al. (2024): gradient flow in the NTK regime, excess risk decomposed"


def add_arguments(s) -> None:
    s.add_argument("--n", default="250,500", help="training points: values or ranges")
    s.add_argument("--d", default="5", help="input dimension (sphere S^{d-1})")
    s.add_argument("--width", default="256,4096")
    s.add_argument("--seeds", default="3", help="seeds per cell")
    s.add_argument("--seed", default="0", help="base seed of the whole sweep")
    s.add_argument("--n-test", default=None, help="Monte Carlo test points per model")
    s.add_argument(
        "--target", default="1:0.5,2:0.5,4:0.5", help="f* = sum c_k Y_k as degree:coefficient pairs"
    )
    s.add_argument("--noise", default="0.5", help="label noise level s")
    s.add_argument("--noise-kind", default="uniform", help="uniform (on [-s, s]) or rademacher")
    s.add_argument("--init", default="antisymmetric", help="antisymmetric or gaussian")
    s.add_argument("--bias", action="store_true", help="a bias b ~ N(0, 1), trained")
    s.add_argument("--train-outer", action="store_true", help="train the outer layer too")
    s.add_argument("--eta", default=None, help="GD step (default 0.05 / max_k mu_k)")
    s.add_argument("--t-max", default=None, help="last recorded time t = eta * steps")
    s.add_argument("--times", default=None, help="log-spaced recording times")


def from_args(args) -> Study:
    from jaxbof.experiments.regression import program as R

    try:
        target = R.canonical_target(R.parse_target(args.target))
    except ValueError as e:
        raise ValueError(f"--target: {e}") from None
    noise = number(args.noise, float, "noise")
    if noise < 0:
        raise ValueError(f"--noise: {args.noise} must be >= 0")
    axes = dict(
        n=parse_values(args.n, int, "n"),
        d=parse_values(args.d, int, "d"),
        width=parse_values(args.width, int, "width"),
        seeds=number(args.seeds, int, "seeds"),
        target=(target,),
        noise=(noise,),
        noise_kind=(choice(args.noise_kind, R.NOISE_KINDS, "noise-kind"),),
        init=(choice(args.init, R.INITS, "init"),),
        bias=(bool(args.bias),),
        train_outer=(bool(args.train_outer),),
    )
    kw = {}
    for name, kind in (("eta", float), ("t_max", float), ("times", int), ("n_test", int)):
        v = positive(getattr(args, name), kind, name.replace("_", "-"))
        if v is not None:
            kw[name] = v
    protocol = R.Protocol(seed=number(args.seed, int, "seed"), **kw)
    cells = R.cells(**axes)
    return Study(
        "regression", "regression-sweep", "custom regression sweep", axes, protocol, tuple(cells)
    )


def park_study(quick: bool) -> Study:
    from jaxbof.experiments.regression import program as R

    name = "park-regression" + ("-quick" if quick else "")
    return Study(
        "regression",
        name,
        DESCRIPTION,
        {"preset": name},
        R.preset_protocol(quick),
        tuple(R.presets(quick)),
    )


def table(rows, config=None) -> list[str]:
    """Final-time means over seeds, one line per (target, init, bias, outer, n, width)."""
    groups: dict = {}
    for r in rows:
        if r["final"]:
            key = (r["target"], r["init"], r["bias"], r["train_outer"], r["n"], r["width"])
            groups.setdefault(key, []).append(r)
    lines = [
        "target,init,bias,train_outer,n,width,t,train_risk,excess_risk,approx_error,"
        "estimation_error,kernel_gap,runs,diverged"
    ]
    for key in sorted(groups):
        g = groups[key]
        ok = [r for r in g if not r["diverged"]]
        mean = lambda c: stats.mean_sem([r[c] for r in ok])[0]
        target, init, bias, outer, n, width = key
        lines.append(
            f'"{target}",{init},{int(bias)},{int(outer)},{n},{width},{mean("t"):.4g},'
            f"{mean('train_risk'):.4g},{mean('excess_risk'):.4g},{mean('approx_error'):.4g},"
            f"{mean('estimation_error'):.4g},{mean('kernel_gap'):.4g},{len(ok)},"
            f"{len(g) - len(ok)}"
        )
    return lines


def experiment(protocol, cells):
    from jaxbof.experiments.regression.program import experiment as build

    return build(protocol, cells)


def engine():
    from jaxbof.experiments.regression.program import default_engine

    return default_engine()
