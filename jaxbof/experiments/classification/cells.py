"""The classification experiment's schema, JAX-free: what a row holds and which columns name
its cell (store, plots and the registry read these without importing JAX)."""

KIND = "classification"
COORDINATES = ("n", "d", "d_over_n", "gamma", "alpha", "noise_rate", "width", "seed")
_INT = ("n", "d", "width", "seed", "steps", "n_corrupt")
_BOOL = ("converged", "diverged")
_STR = ("param",)
_COLUMN_NAMES = COORDINATES + (
    "param",
    "steps",
    "converged",
    "diverged",
    "train_error",
    "train_error_clean",
    "hinge_loss",
    "min_margin",
    "n_corrupt",
    "corrupt_fit",
    "test_error",
    "w_norm",
    "A_1",
    "A_m1",
    "A_min",
    "z_norm",
    "snr",
    "A_lin",
    "zlin_norm",
    "snr_lin",
    "wstar_norm",
    "linear_test_error",
    "margin_factor",
    "thm31_norm_C",
    "thm31_steps_C",
    "lemB3_C",
    "snr_normalized",
)
COLUMNS = {
    c: ("int" if c in _INT else "bool" if c in _BOOL else "str" if c in _STR else "float")
    for c in _COLUMN_NAMES
}
# grid axes a figure's mean may pool over (its title says so)
POOLABLE = ("n", "d_over_n", "gamma", "alpha", "noise_rate", "width")
