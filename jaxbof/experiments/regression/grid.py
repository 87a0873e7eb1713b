"""The regression experiment's sweep axes (host side): targets (`parse_target`), Cell,
Protocol, `cells` (the grid), recording times, eigenvalues of the trained layers' kernel, the
step size, PRNG coordinates and keys, the schema."""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import optim, spectra
from jaxbof.experiments.regression.schema import INITS, NOISE_KINDS
from jaxbof.numerics import float32_bits

_SENTINEL = np.iinfo(np.int32).max  # pads the recording steps: never reached


# ----------------------------------------------------------------------------- targets


def parse_target(text: str) -> tuple[tuple[int, float], ...]:
    """'1:0.5,2:0.5,4:0.5' -> ((1, 0.5), (2, 0.5), (4, 0.5)): f* = sum_k c_k Y_k, sorted by degree.

    Degrees are integers >= 0, each at most once; coefficients finite floats. ValueError naming
    the bad piece otherwise (and for an empty target).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"target {text!r} is empty; write it as 'k:c,k:c', e.g. '1:0.5,2:0.5'")
    pairs: dict[int, float] = {}
    for piece in text.split(","):
        parts = piece.strip().split(":")
        if len(parts) != 2:
            raise ValueError(f"target piece {piece!r} of {text!r}: expected 'degree:coefficient'")
        try:
            k_float = float(parts[0])
            k = int(parts[0])
        except ValueError:
            k_float = None
            k = None
        if k is None or k_float != k:
            raise ValueError(
                f"target piece {piece!r} of {text!r}: degree {parts[0]!r} is not an integer"
            )
        if k < 0:
            raise ValueError(
                f"target piece {piece!r} of {text!r}: degree {k} is negative "
                "(degrees are integers >= 0)"
            )
        try:
            c = float(parts[1])
        except ValueError:
            raise ValueError(
                f"target piece {piece!r} of {text!r}: coefficient {parts[1]!r} is not a number"
            ) from None
        if not math.isfinite(c):
            raise ValueError(f"target piece {piece!r} of {text!r}: coefficient {c!r} is not finite")
        if k in pairs:
            raise ValueError(f"target piece {piece!r} of {text!r}: degree {k} appears twice")
        pairs[k] = c
    return tuple(sorted(pairs.items()))


def canonical_target(pairs) -> str:
    """The canonical string of a target: degrees ascending, coefficients as repr(float)
    ('1:0.5,2:0.5,4:0.5'); `pairs` an iterable of (degree, coefficient) or a target string,
    validated by `parse_target` either way."""
    text = pairs if isinstance(pairs, str) else ",".join(f"{k}:{c}" for k, c in pairs)
    return ",".join(f"{k}:{c!r}" for k, c in parse_target(text))


# ----------------------------------------------------------------------------- cells, protocol


class Cell(NamedTuple):
    """One training run's coordinates (field order = CSV coordinate order)."""

    n: int  # training points
    d: int  # sphere S^{d-1}
    width: int  # M
    seed: int
    target: str  # canonical_target string
    noise: float  # level s
    noise_kind: str  # "uniform" (on [-s, s]) | "rademacher" (+-s)
    init: str  # "antisymmetric" | "gaussian"
    bias: bool  # b_j ~ N(0, 1), trained with W
    train_outer: bool  # a trained too


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What every cell of a sweep shares.

    eta: GD step (None: per cell, `default_eta`: 0.05 / max_k mu_k of the trained-layer kernel,
    so eta * lambda_max(K/n) ~ 0.05). Recording times t_r in {0} u geomspace(eta, t_max, times)
    rounded to steps (`record_steps`); n_test fresh noise-free test points; seed: base PRNG
    seed; ntk_drift at every drift_every-th record (index 0 included) and at the last one.
    """

    eta: float | None = None
    t_max: float = 2500.0
    times: int = 40
    n_test: int = 2000
    seed: int = 0
    drift_every: int = 8
    optimizer: optim.Optimizer | str = optim.GD

    def __post_init__(self):
        object.__setattr__(self, "optimizer", optim.as_optimizer(self.optimizer))
        if self.eta is not None and not (
            isinstance(self.eta, (int, float)) and math.isfinite(self.eta) and self.eta > 0
        ):
            raise ValueError(f"eta={self.eta!r} must be None or a finite float > 0")
        if not (
            isinstance(self.t_max, (int, float)) and math.isfinite(self.t_max) and self.t_max > 0
        ):
            raise ValueError(f"t_max={self.t_max!r} must be a finite float > 0")
        for name in ("times", "n_test", "drift_every"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be an integer >= 1")
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2^32)")
        if self.eta is not None and self.t_max < self.eta:
            raise ValueError(f"t_max={self.t_max!r} must be >= eta={self.eta!r}")


def _seq(x):
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        return (x,)
    return tuple(x)


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    return int(v)


def cells(
    n,
    d=3,
    width=1024,
    seeds=1,
    target="1:0.5,2:0.5,4:0.5",
    noise=0.5,
    noise_kind="uniform",
    init="antisymmetric",
    bias=False,
    train_outer=False,
) -> list[Cell]:
    """The cartesian product of the given values (scalars or sequences) as Cells, in Cell field
    order. seeds: a count (seeds 0..seeds-1) or a sequence of seeds. Validates n >= 1, d >= 2,
    width >= 1 (even for the antisymmetric init), seeds >= 1, noise >= 0, noise_kind and init
    names, targets (`parse_target`); ValueError naming the bad value."""
    ns = [_check_int("n", v, 1) for v in _seq(n)]
    ds = [_check_int("d", v, 2) for v in _seq(d)]
    ws = [_check_int("width", v, 1) for v in _seq(width)]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seed_list = list(range(_check_int("seeds", seeds, 1)))
    else:
        seed_list = [_check_int("seed", v, 0) for v in _seq(seeds)]
        if not seed_list:
            raise ValueError(f"seeds={seeds!r}: need at least one seed")
    if any(s >= 2**32 for s in seed_list):
        raise ValueError(f"seeds={seeds!r}: seeds must be < 2^32")
    targets = [canonical_target(t) for t in _seq(target)]
    noises = []
    for v in _seq(noise):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float, np.floating, np.integer))
            or not math.isfinite(v)
            or v < 0
        ):
            raise ValueError(f"noise={v!r} must be a finite float >= 0")
        noises.append(float(v))
    kinds = list(_seq(noise_kind))
    for v in kinds:
        if v not in NOISE_KINDS:
            raise ValueError(f"noise_kind={v!r}: choose from {', '.join(NOISE_KINDS)}")
    inits = list(_seq(init))
    for v in inits:
        if v not in INITS:
            raise ValueError(f"init={v!r}: choose from {', '.join(INITS)}")
    biases = [bool(v) for v in _seq(bias)]
    outers = [bool(v) for v in _seq(train_outer)]
    out = []
    for c in itertools.product(
        ns, ds, ws, seed_list, targets, noises, kinds, inits, biases, outers
    ):
        cell = Cell(*c)
        if cell.init == "antisymmetric" and cell.width % 2:
            raise ValueError(f"width={cell.width} must be even for the antisymmetric init")
        out.append(cell)
    return out


def record_steps(eta: float, t_max: float, times: int) -> np.ndarray:
    """Sorted unique GD steps round(t_r / eta) for t_r in {0} u geomspace(eta, t_max, times):
    the recorded times are eta * steps (step 0, the init, always first; at most times + 1)."""
    if not (math.isfinite(eta) and eta > 0):
        raise ValueError(f"eta={eta!r} must be a finite float > 0")
    if not (math.isfinite(t_max) and t_max >= eta):
        raise ValueError(f"t_max={t_max!r} must be finite and >= eta={eta!r}")
    if times < 1:
        raise ValueError(f"times={times!r} must be >= 1")
    t = np.concatenate([[0.0], np.geomspace(eta, t_max, times)])
    steps = np.unique(np.rint(t / eta).astype(np.int64))
    if steps[-1] >= _SENTINEL:
        raise ValueError(f"t_max / eta = {t_max / eta:.3g} steps exceeds int32")
    return steps


def _kernel(cell: Cell) -> spectra.Kernel:
    return spectra.Kernel.NTK_BOTH_LAYERS if cell.train_outer else spectra.Kernel.NTK_FIRST_LAYER


def eigenvalues_for(cell: Cell, k_max: int) -> np.ndarray:
    """mu_0..mu_{k_max} (float64) on S^{d-1} of the infinite-width NTK of the trained layers:
    u kappa0(u) (first layer), + kappa1(u) with train_outer, bias versions (b ~ N(0, 1) trained
    with W, rho = (1 + u)/2) when cell.bias (`spectra.eigenvalues`)."""
    return _eigenvalues(_kernel(cell), cell.d, int(k_max), bool(cell.bias))


_EIG_CACHE: dict = {}


def _eigenvalues(kernel, d, k_max, bias):
    key = (kernel, d, k_max, bias)
    if key not in _EIG_CACHE:
        mu = spectra.eigenvalues(kernel, d, k_max, bias=bias, train_bias=True).eigenvalue
        _EIG_CACHE[key] = np.asarray(mu, np.float64)
    return _EIG_CACHE[key]


def default_eta(cell: Cell) -> float:
    """0.05 / max_k mu_k (k <= 16) of the trained-layer kernel: eta lambda_max(K/n) ~ 0.05, where
    GD follows the gradient flow closely (first layer, d = 3: 0.05 / mu_1 = 0.6)."""
    return 0.05 / float(np.max(eigenvalues_for(cell, 16)))


def _eta(cell: Cell, protocol: Protocol) -> float:
    return float(protocol.eta) if protocol.eta is not None else default_eta(cell)


def _noise_var(cell: Cell) -> float:
    return cell.noise**2 / 3.0 if cell.noise_kind == "uniform" else cell.noise**2


def coords(cell: Cell) -> np.ndarray:
    """uint32[10] folded into the keys: d, seed, n, width, crc32(target), bits(noise),
    noise_kind, init, bias, train_outer."""
    return np.array(
        [
            cell.d,
            cell.seed,
            cell.n,
            cell.width,
            zlib.crc32(cell.target.encode()),
            float32_bits(cell.noise),
            NOISE_KINDS.index(cell.noise_kind),
            INITS.index(cell.init),
            int(cell.bias),
            int(cell.train_outer),
        ],
        np.uint32,
    )


def cell_keys(base_key, c):
    """(4, 2) keys of one cell from its coords: data (d, seed), noise (d, seed, noise,
    noise_kind), init (d, width, seed, init, bias), test (d, seed)."""
    data, noise, init, test = jax.random.split(base_key, 4)

    def fold(key, idx):
        for i in idx:
            key = jax.random.fold_in(key, c[i])
        return key

    return jnp.stack(
        [
            fold(data, (0, 1)),
            fold(noise, (0, 1, 5, 6)),
            fold(init, (0, 3, 1, 7, 8)),
            fold(test, (0, 1)),
        ]
    )


def cell_of(row: Mapping) -> Cell:
    """The Cell of a stored row, typed exactly like `cells` builds it (equality holds)."""
    return Cell(
        int(row["n"]),
        int(row["d"]),
        int(row["width"]),
        int(row["seed"]),
        str(row["target"]),
        float(row["noise"]),
        str(row["noise_kind"]),
        str(row["init"]),
        bool(row["bias"]),
        bool(row["train_outer"]),
    )


def degrees_of(cells_: Iterable[Cell]) -> tuple[int, ...]:
    """Sorted union of the cells' target degrees (the experiment's coef_K columns)."""
    return tuple(sorted({k for c in cells_ for k, _ in parse_target(c.target)}))


def columns(degrees: Sequence[int]) -> dict:
    """The result schema {column: type} in CSV order for an experiment with these degrees."""
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
        train_risk="float",
        excess_risk="float",
        approx_error="float",
        estimation_error="float",
        kernel_gap="float",
        weight_move="float",
        ntk_drift="float",
        target_norm2="float",
        noise_var="float",
    )
    for k in degrees:
        cols[f"coef_{k}"] = "float"
        cols[f"pop_coef_{k}"] = "float"
    return cols
