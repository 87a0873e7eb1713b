"""The regression experiment's schema constants, JAX-free (figures and the command line read
them without importing JAX)."""

KIND = "regression"
# the columns that name a run (cell); with "step" they name a row
COORDINATES = (
    "n",
    "d",
    "width",
    "seed",
    "target",
    "noise",
    "noise_kind",
    "init",
    "bias",
    "train_outer",
)
NOISE_KINDS = ("uniform", "rademacher")
INITS = ("antisymmetric", "gaussian")
