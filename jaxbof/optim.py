"""Update rules for both experiments, as optax GradientTransformations.

The theorems are about plain gradient descent (classification, Karhadkar et al.) and gradient
flow (regression, Park et al.); these rules let a sweep ask whether what they predict survives
the optimizers people train with. An `Optimizer` is a factory `make(step) ->
optax.GradientTransformation`, called inside the traced step with the run's own step size
(`step`: the published 1/(M n) x lr_scale in classification, the cell's eta in regression), so
one compiled sweep holds cells of different step sizes, as before.

Learning-rate conventions of the specifications (`parse`):

* `sgd`, `momentum:BETA`, `nesterov:BETA` take the experiment's step as their learning rate:
  `sgd` is exactly the published GD (full batch, no sampling, despite the optax name), and
  heavy-ball momentum with the same step moves about 1/(1 - BETA) times as far per step.
* `adam:LR[:B1[:B2[:EPS]]]`, `adamw:LR[:WD[:B1[:B2[:EPS]]]]`, `rmsprop:LR[:DECAY[:EPS]]`,
  `adagrad:LR[:EPS]` and `sign:LR` take an absolute learning rate LR: their steps are about LR
  per coordinate whatever the gradient's scale, so the 1/(M n) of the published step (which
  normalises the summed loss's gradient) does not carry over.

Gram fast path: `linear` says that a rule's update is a linear combination of past gradients
with scalar coefficients that depend on the step count only (sgd, momentum, Nesterov). Then
W_t - W_0 stays in the span of the rows of X, and applying the rule to the pseudo-gradient in C
space (W = W_0 + C X) gives the same trajectory; classification uses it where d > n/2. Any other
rule runs in the direct parameterization (a user's own transformation too, unless declared
linear). Weight decay is not linear in this sense (W_0 decays too) and runs direct.

Rotation invariance: `rotation_invariant` says that the rule commutes with every orthogonal map
of the parameters, update(g Q) = update(g) Q, so that training on X Q from W_0 Q gives W_t Q and
the same outputs. A rule linear in past gradients with scalar coefficients is (sgd, momentum,
Nesterov); a per-coordinate rule is not (Adam, AdamW, RMSProp, Adagrad and sign descent rescale
or take signs of each coordinate, so the basis matters: a signal on the axis e_1 is not a signal
on a random direction for them). tests/test_optim.py trains both ways. A user's own rule is
rotation-invariant only if declared so (or declared linear, which implies it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["GD", "Optimizer", "RULES", "as_optimizer", "custom", "init", "parse", "update"]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An update rule: spec (canonical text, recorded in config.json), make(step) -> optax
    GradientTransformation (step: the run's published step size, a traced scalar), linear
    (Gram-exact, module docstring), uses_step (its learning rate is `step`) and
    rotation_invariant (update(g Q) = update(g) Q for orthogonal Q, module docstring)."""

    spec: str
    make: Callable[[jax.Array], optax.GradientTransformation] = dataclasses.field(repr=False)
    linear: bool = False
    uses_step: bool = False
    rotation_invariant: bool = False

    def jsonable(self) -> str:
        """What config.json records (jaxbof.store.jsonable)."""
        return self.spec

    @property
    def name(self) -> str:
        return self.spec.split(":")[0]


class _Rule(NamedTuple):
    params: tuple[str, ...]  # hyper-parameter names, in spec order
    required: int  # leading parameters that must be given
    defaults: tuple[float, ...]  # of the optional ones
    build: Callable  # (step, *values) -> GradientTransformation
    linear: bool
    uses_step: bool
    rotation_invariant: bool


def _beta(v):
    return 0.0 <= v < 1.0


def _pos(v):
    return v > 0.0


def _nonneg(v):
    return v >= 0.0


_CHECKS = {
    "beta": (_beta, "in [0, 1)"),
    "b1": (_beta, "in [0, 1)"),
    "b2": (_beta, "in [0, 1)"),
    "decay": (_beta, "in [0, 1)"),
    "lr": (_pos, "> 0"),
    "eps": (_pos, "> 0"),
    "wd": (_nonneg, ">= 0"),
}

RULES: dict[str, _Rule] = {
    # name: params, required, defaults, build, linear, uses_step, rotation_invariant
    "sgd": _Rule((), 0, (), lambda s: optax.sgd(s), True, True, True),
    "momentum": _Rule(("beta",), 1, (), lambda s, b: optax.sgd(s, momentum=b), True, True, True),
    "nesterov": _Rule(
        ("beta",), 1, (), lambda s, b: optax.sgd(s, momentum=b, nesterov=True), True, True, True
    ),
    "adam": _Rule(
        ("lr", "b1", "b2", "eps"),
        1,
        (0.9, 0.999, 1e-8),
        lambda s, lr, b1, b2, eps: optax.adam(lr, b1, b2, eps),
        False,
        False,
        False,
    ),
    "adamw": _Rule(
        ("lr", "wd", "b1", "b2", "eps"),
        1,
        (1e-4, 0.9, 0.999, 1e-8),
        lambda s, lr, wd, b1, b2, eps: optax.adamw(lr, b1, b2, eps, weight_decay=wd),
        False,
        False,
        False,
    ),
    "rmsprop": _Rule(
        ("lr", "decay", "eps"),
        1,
        (0.9, 1e-8),
        lambda s, lr, decay, eps: optax.rmsprop(lr, decay, eps),
        False,
        False,
        False,
    ),
    "adagrad": _Rule(
        ("lr", "eps"),
        1,
        (1e-7,),
        lambda s, lr, eps: optax.adagrad(lr, eps=eps),
        False,
        False,
        False,
    ),
    "sign": _Rule(("lr",), 1, (), lambda s, lr: optax.sign_sgd(lr), False, False, False),
}


def _form(name: str, rule: _Rule) -> str:
    req = "".join(f":{p.upper()}" for p in rule.params[: rule.required])
    opt = "".join(f"[:{p.upper()}" for p in rule.params[rule.required :])
    return f"{name}{req}{opt}{']' * (len(rule.params) - rule.required)}"


FORMS = ", ".join(_form(k, r) for k, r in RULES.items())


def parse(spec: str) -> Optimizer:
    """The Optimizer of a specification such as 'sgd', 'momentum:0.9', 'adam:1e-3',
    'adamw:1e-3:1e-2' (forms: `FORMS`; conventions: module docstring). Equal specifications
    give the same object. ValueError naming the bad piece and the allowed forms otherwise."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"optimizer {spec!r} is empty; allowed: {FORMS}")
    name, *texts = spec.strip().split(":")
    rule = RULES.get(name.lower())
    if rule is None:
        raise ValueError(f"optimizer {spec!r}: unknown rule {name!r}; allowed: {FORMS}")
    if not rule.required <= len(texts) <= len(rule.params):
        raise ValueError(
            f"optimizer {spec!r}: {name} takes {_form(name.lower(), rule)} "
            f"({len(texts)} value(s) given)"
        )
    values = []
    for pname, text in zip(rule.params, texts):
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"optimizer {spec!r}: {pname} {text!r} is not a number") from None
        ok, allowed = _CHECKS[pname]
        if not (math.isfinite(v) and ok(v)):
            raise ValueError(f"optimizer {spec!r}: {pname}={text} must be {allowed}")
        values.append(v)
    full = values + list(rule.defaults[len(values) - rule.required :])
    while (
        len(values) > rule.required and values[-1] == rule.defaults[len(values) - 1 - rule.required]
    ):
        values.pop()  # trailing defaults: 'adam:0.001:0.9' is 'adam:0.001'
    canonical = ":".join([name.lower()] + [repr(v) for v in values])
    return _build(canonical, tuple(full))


@functools.cache
def _build(canonical: str, values: tuple) -> Optimizer:
    rule = RULES[canonical.split(":")[0]]
    return Optimizer(
        canonical,
        lambda step: rule.build(step, *values),
        rule.linear,
        rule.uses_step,
        rule.rotation_invariant,
    )


GD = parse("sgd")


def custom(
    transformation,
    *,
    name: str = "custom",
    linear: bool = False,
    rotation_invariant: bool | None = None,
) -> Optimizer:
    """An Optimizer from a user's optax GradientTransformation (used as is, the experiment's
    step ignored) or from a callable step -> GradientTransformation. linear=True declares the
    Gram fast path exact for it (module docstring); only do so for rules whose updates are
    linear in past gradients with coefficients independent of gradients and parameters.
    rotation_invariant=True declares update(g Q) = update(g) Q for orthogonal Q (module
    docstring); None (default): as declared by `linear`, which implies it."""
    if isinstance(transformation, optax.GradientTransformation):
        tx = transformation
        make, uses_step = (lambda step: tx), False
    elif callable(transformation):
        make, uses_step = transformation, True
    else:
        raise ValueError(
            f"optimizer {transformation!r}: expected an optax "
            "GradientTransformation or a callable step -> transformation"
        )
    invariant = linear if rotation_invariant is None else rotation_invariant
    if linear and not invariant:
        raise ValueError(
            f"optimizer custom:{name}: a rule linear in past gradients with scalar "
            "coefficients is rotation-invariant; rotation_invariant=False "
            "contradicts linear=True"
        )
    return Optimizer(f"custom:{name}", make, bool(linear), uses_step, bool(invariant))


def as_optimizer(x) -> Optimizer:
    """Optimizer | specification string | optax GradientTransformation | None (GD)."""
    if x is None:
        return GD
    if isinstance(x, Optimizer):
        return x
    if isinstance(x, str):
        return parse(x)
    if isinstance(x, optax.GradientTransformation):
        return custom(x)
    raise ValueError(
        f"optimizer {x!r}: expected a specification ({FORMS}), an Optimizer or "
        "an optax GradientTransformation"
    )


def init(optimizer: Optimizer, step, params):
    """The rule's state at the start of a run (one run; params a pytree, None leaves allowed)."""
    return optimizer.make(step).init(params)


def update(optimizer: Optimizer, step, grads, state, params, halt):
    """(params, state) after one update from `grads`, or both unchanged where `halt` (a traced
    bool: a stopped run never moves, nor does its optimizer state)."""
    updates, new_state = optimizer.make(step).update(grads, state, params)
    new_params = optax.apply_updates(params, updates)

    def keep(new, old):
        return jnp.where(halt, old, new)

    return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_state, state)
