"""The spiky-net experiment's cells, protocol, recorded epochs and rows (JAX-free: the registry,
the claims and the figures read these without JAX)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "CIRCLE_POINTS",
    "KEYS",
    "PUBLISHED",
    "QUICK",
    "SCHEMA",
    "Cell",
    "Protocol",
    "record_epochs",
]

ACTIVATIONS = ("relu", "spiky-smooth")
CIRCLE_POINTS = 1024  # the predictions on the circle drawn from the last row of seed 0


class Cell(NamedTuple):
    """One network: a seed (its data, initialisation and SGD order, shared by both
    activations) and an activation."""

    seed: int
    activation: str


class Protocol(NamedTuple):
    """What every network of a sweep runs under (the published values by default).

    n: training points on the circle; width: neurons of each of the two copies (2 * width in
    all); lr: SGD step on (y - f)^2; epochs: passes over the data (n steps each); frequency: w
    of the spiky-smooth activation relu(z) + (sin(w z) + cos(w z)) / w; noise_var: label noise
    variance; n_test: test points at the last epoch; n_curve: test points at the other recorded
    epochs; records: recorded epochs (log-spaced from 1, plus epoch 0; at most this many);
    seed: the sweep's base seed.
    """

    n: int = 15
    width: int = 10_000
    lr: float = 0.04
    epochs: int = 2500
    frequency: float = 100.0
    noise_var: float = 0.25
    n_test: int = 10_000
    n_curve: int = 256
    records: int = 40
    circle_seeds: int = 1
    seed: int = 0

    def check(self) -> Protocol:
        """ValueError naming a bad value and what is allowed."""
        for name, low in (
            ("n", 1),
            ("width", 1),
            ("epochs", 1),
            ("n_test", 1),
            ("n_curve", 1),
            ("records", 2),
            ("circle_seeds", 0),
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and v >= low):
                raise ValueError(f"{name.replace('_', '-')}: {v!r} must be an integer >= {low}")
        for name in ("lr", "frequency"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: {v!r} must be a finite number > 0")
        if not (math.isfinite(self.noise_var) and self.noise_var >= 0):
            raise ValueError(f"noise-var: {self.noise_var!r} must be a finite number >= 0")
        return self


PUBLISHED = Protocol()
# quick (CI's verify, with 8 seeds): the published networks and training, fewer test points and
# records. A narrower or shorter run does not interpolate with the spikes by its last epoch
# (spiky-smooth train RMSE 0.071 at width 2000 and 1000 epochs, 0.031 at width 10,000 and 300
# epochs, 8 seeds each), so it would test another regime.
QUICK = Protocol(n_test=2000, records=20)


def record_epochs(epochs: int, records: int) -> tuple[int, ...]:
    """Epoch 0, then about records - 1 epochs log-spaced from 1 to `epochs` (rounded, distinct),
    ending at `epochs`."""
    log = np.geomspace(1, epochs, max(records - 1, 1))
    return tuple(sorted({0, *(round(e) for e in log), int(epochs)}))


SCHEMA = {
    "seed": "int",
    "activation": "str",
    "epoch": "int",
    "train_rmse": "float",
    "test_rmse": "float",
    "test_points": "int",
    "signal_test_rmse": "float",
    "final": "bool",
    "diverged": "bool",
    "circle": "str",
    "signal_circle": "str",
    "train_angle": "str",
    "train_y": "str",
}
KEYS = ("seed", "activation", "epoch")
