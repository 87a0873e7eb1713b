"""The kernel-to-activation map of Haas et al. (2023), jaxbof.experiments.haas_spikes.activations,
against independent references: the Gaussian kernel's closed form, 2-D Gauss-Hermite quadrature
of E[phi(u) phi(v)] (and of the NTK) with phi from NumPy's own Hermite module, mpmath at high
precision for the extreme coefficients and the activation, nested adaptive quadrature for the
published sin/cos activation; and the `jaxbof activation` command's files and errors."""

from __future__ import annotations

import argparse
import ast
import csv
import math
import subprocess
import sys
import warnings
from pathlib import Path

import mpmath
import numpy as np
import pytest
from numpy.polynomial import hermite_e, polynomial
from scipy import integrate, special

from jaxbof.experiments.haas_spikes import activation_command
from jaxbof.experiments.haas_spikes import activations as act


def gaussian(t, gamma):
    return np.exp(-(2.0 - 2.0 * np.asarray(t)) / gamma)


T = np.array([-1.0, -0.7, -0.25, 0.0, 0.1, 0.5, 0.9, 1.0])


@pytest.mark.parametrize("gamma", [0.02, 0.5, 2.0])
def test_gaussian_series_sums_to_the_closed_form(gamma):
    """sum_k a_k t^k = exp(-(2 - 2t) / gamma), by Horner (NumPy) and by `nngp` / `ntk`. For t < 0
    the terms alternate, so the error is measured against the sum of |terms|, k(|t|)."""
    log_a = act.log_power_series("gaussian", gamma, 400)
    scale = gaussian(np.abs(T), gamma)
    with np.errstate(under="ignore"):
        horner = polynomial.polyval(T, np.exp(log_a))
    assert np.all(np.abs(horner - gaussian(T, gamma)) <= 1e-13 * scale)
    for ntk in (False, True):
        log_c = act.hermite_coefficients("gaussian", gamma, 400, ntk=ntk)
        kernel = act.ntk(T, log_c) if ntk else act.nngp(T, log_c)
        assert np.all(np.abs(kernel - gaussian(T, gamma)) <= 1e-13 * scale)
    assert np.allclose(
        np.exp(act.log_power_series("gaussian", gamma, 400)).sum(), 1.0, rtol=1e-14
    )  # the Poisson(2/gamma) probabilities


def _numpy_phi(log_c, signs):
    """phi = sum_k s_k |c_k| He_k / sqrt(k!) as NumPy HermiteE coefficients (moderate k only)."""
    k = np.arange(log_c.size)
    return signs * np.exp(log_c - 0.5 * special.gammaln(k + 1.0))


def test_evaluate_agrees_with_numpys_hermite_series_and_its_derivative():
    log_c = act.hermite_coefficients("gaussian", 0.5, 60)
    signs = act.random_signs(60, 3)
    x = np.linspace(-4.0, 4.0, 81)
    he = _numpy_phi(log_c, signs)
    assert np.allclose(
        act.evaluate(x, log_c, signs), hermite_e.hermeval(x, he), rtol=1e-12, atol=1e-13
    )
    assert np.allclose(
        act.evaluate(x, log_c, signs, derivative=True),
        hermite_e.hermeval(x, hermite_e.hermeder(he)),
        rtol=1e-12,
        atol=1e-13,
    )


def _gauss_pairs(t, n=64):
    """Nodes (u, v) and weights of E over standard normals of correlation t: u = z1,
    v = t z1 + sqrt(1 - t^2) z2, tensor Gauss-Hermite (exact for degree <= 2n - 1 in each z)."""
    z, w = hermite_e.hermegauss(n)
    w = w / np.sqrt(2.0 * np.pi)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    return z1, t * z1 + np.sqrt(1.0 - t * t) * z2, np.outer(w, w)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_the_activation_has_the_kernel_by_two_dimensional_quadrature(gamma):
    """E[phi(u) phi(v)] = k(t) for the NNGP map, and E[phi phi] + t E[phi' phi'] = k(t) for the
    NTK map, with random signs; phi' from NumPy's hermeder (independent of `evaluate`). k_max = 40
    leaves a tail below 1e-25 for gamma >= 0.5, and the quadrature is exact for degree 40."""
    signs = act.random_signs(40, 11)
    nngp_c = act.hermite_coefficients("gaussian", gamma, 40)
    ntk_c = act.hermite_coefficients("gaussian", gamma, 40, ntk=True)
    d_he = hermite_e.hermeder(_numpy_phi(ntk_c, signs))
    for t in T:
        u, v, w = _gauss_pairs(t)
        nngp = np.sum(w * act.evaluate(u, nngp_c, signs) * act.evaluate(v, nngp_c, signs))
        assert nngp == pytest.approx(gaussian(t, gamma), rel=1e-11, abs=1e-13)
        theta = np.sum(
            w * act.evaluate(u, ntk_c, signs) * act.evaluate(v, ntk_c, signs)
        ) + t * np.sum(w * hermite_e.hermeval(u, d_he) * hermite_e.hermeval(v, d_he))
        assert theta == pytest.approx(gaussian(t, gamma), rel=1e-11, abs=1e-13)


def _ulps(gamma, k):
    """A few eps times the largest term of log a_k = k log(2/gamma) - 2/gamma - log k!: the
    float64 rounding of that sum (a relative error of a_k, or of |c_k| when halved)."""
    return 4 * np.finfo(float).eps * (k * abs(math.log(2 / gamma)) + 2 / gamma + math.lgamma(k + 1))


def _mp_log_c(gamma, k, ntk):
    g = mpmath.mpf(gamma)  # the float gamma exactly
    log_a = -2 / g + k * mpmath.log(2 / g) - mpmath.loggamma(k + 1)
    return (log_a - (mpmath.log(k + 1) if ntk else 0)) / 2


def test_extreme_coefficients_are_finite_without_warnings_and_match_mpmath():
    """k_max = 1000, gamma = 0.01 (a_1000 ~ e^-814 underflows float64): finite log |c_k|, no
    floating-point warning, and log |c_k| within a few ulps of its largest term (about 1e-12)
    of mpmath's, i.e. that relative error of |c_k|."""
    mpmath.mp.dps = 50
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for ntk in (False, True):
            log_c = act.hermite_coefficients("gaussian", 0.01, 1000, ntk=ntk)
            assert log_c.shape == (1001,) and np.all(np.isfinite(log_c))
            for k in (0, 1, 57, 199, 200, 333, 600, 999, 1000):
                assert abs(log_c[k] - float(_mp_log_c(0.01, k, ntk))) <= _ulps(0.01, k) / 2
            # the NNGP / NTK at t = 1 is k(1) = 1; no warning from the underflowing terms
            kernel = act.ntk(1.0, log_c) if ntk else act.nngp(1.0, log_c)
            assert kernel == pytest.approx(1.0, rel=1e-13)
        signs = act.random_signs(1000, 0)
        x = np.array([-3.0, -0.4, 1.7, 3.0])
        phi = act.evaluate(x, log_c, signs)
    # phi itself against an mpmath sum of the same series (same recurrence, 40 digits)
    mpmath.mp.dps = 40
    for x_i, phi_i in zip(x, phi):
        xm, h_prev, h, total = mpmath.mpf(x_i), mpmath.mpf(0), mpmath.mpf(1), mpmath.mpf(0)
        for k in range(1001):
            total += int(signs[k]) * mpmath.exp(_mp_log_c(0.01, k, True)) * h
            h_prev, h = h, (xm * h - mpmath.sqrt(k) * h_prev) / mpmath.sqrt(k + 1)
        assert abs(phi_i - float(total)) < 1e-12


def test_spiky_smooth_is_the_sum_of_the_two_series():
    """a_k = a_k^smooth + rho a_k^spike coefficient-wise, and the kernel it gives is
    exp(-(2-2t)/gamma) + rho exp(-(2-2t)/gamma_2) (NNGP and NTK maps)."""
    smooth = act.log_power_series("gaussian", 1.0, 300)
    spike = act.log_power_series("gaussian", 0.05, 300)
    log_a = act.spiky_smooth(smooth, spike, 0.1)
    with np.errstate(under="ignore"):
        assert np.allclose(
            np.exp(log_a), np.exp(smooth) + 0.1 * np.exp(spike), rtol=1e-14, atol=0.0
        )
    target = gaussian(T, 1.0) + 0.1 * gaussian(T, 0.05)
    scale = gaussian(np.abs(T), 1.0) + 0.1 * gaussian(np.abs(T), 0.05)
    assert np.all(np.abs(act.nngp(T, act.hermite_magnitudes(log_a)) - target) <= 1e-13 * scale)
    assert np.all(
        np.abs(act.ntk(T, act.hermite_magnitudes(log_a, ntk=True)) - target) <= 1e-13 * scale
    )
    # where both parts underflow float64 (k = 1000, gamma_2 = 0.01), log space keeps it exact
    big = act.spiky_smooth(
        act.log_power_series("gaussian", 1.0, 1000),
        act.log_power_series("gaussian", 0.01, 1000),
        0.1,
    )
    mpmath.mp.dps = 50
    exact = mpmath.log(
        mpmath.exp(-2 - mpmath.loggamma(1001)) * 2**1000
        + mpmath.mpf("0.1") * mpmath.exp(2 * _mp_log_c(0.01, 1000, False))
    )
    assert np.isfinite(big).all() and abs(big[1000] - float(exact)) <= _ulps(0.01, 1000)


def test_bad_values_are_named():
    for gamma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="gamma"):
            act.log_power_series("gaussian", gamma, 10)
    for k_max in (-1, 2.5, True):
        with pytest.raises(ValueError, match="k_max"):
            act.log_power_series("gaussian", 1.0, k_max)
    with pytest.raises(ValueError, match="'laplace'.*gaussian"):
        act.log_power_series("laplace", 1.0, 10)
    with pytest.raises(ValueError, match="a_1"):
        act.log_power_series([1.0, -0.5])
    with pytest.raises(ValueError, match="rho"):
        act.spiky_smooth(np.zeros(3), np.zeros(3), 0.0)
    # an explicit series: k_max pads with zeros (log 0 = -inf), and c_k = 0 there
    log_c = act.hermite_coefficients([1.0, 0.0, 0.25], k_max=4)
    assert np.array_equal(np.exp(log_c), [1.0, 0.0, 0.5, 0.0, 0.0])


def test_published_activation_nngp_against_nested_quadrature():
    """E[phi(u) phi(v)] for phi = relu + (sin(w .) + cos(w .)) / w by adaptive quadrature
    (u, then v = t u + s z, each split at the ReLU kink), against the closed form; at w = 100
    it is the arc-cosine kernel plus the Gaussian spike w^-2 exp(-w^2 (1 - t)), up to the cross
    term's documented bound."""
    w = 4.0

    def phi(x):
        return max(x, 0.0) + (math.sin(w * x) + math.cos(w * x)) / w

    def expect(t):
        s = math.sqrt(1.0 - t * t)
        dens = 1.0 / math.sqrt(2.0 * math.pi)

        def inner(u):
            kink = -t * u / s  # where t u + s z = 0

            def f(z):
                return phi(t * u + s * z) * dens * math.exp(-z * z / 2)

            return (
                integrate.quad(f, -12.0, kink, epsabs=1e-13, limit=200)[0]
                + integrate.quad(f, kink, 12.0, epsabs=1e-13, limit=200)[0]
            )

        def g(u):
            return phi(u) * inner(u) * dens * math.exp(-u * u / 2)

        return (
            integrate.quad(g, -10.0, 0.0, epsabs=1e-12, limit=200)[0]
            + integrate.quad(g, 0.0, 10.0, epsabs=1e-12, limit=200)[0]
        )

    for t in (-0.6, 0.35, 0.85):
        assert act.published_nngp(t, w) == pytest.approx(expect(t), abs=1e-9)
    t = np.linspace(-1.0, 1.0, 2001)
    arccos = (np.sqrt(1 - t * t) + t * (np.pi - np.arccos(t))) / (2 * np.pi)
    cross = act.published_nngp(t, 100.0) - arccos - np.exp(-1e4 * (1 - t)) / 1e4
    assert np.max(np.abs(cross)) <= 1.01 * 2 / (np.sqrt(2 * np.pi) * 100.0**3)


def _args(tmp_path, **kw):
    parser = argparse.ArgumentParser()
    activation_command.add_arguments(parser)
    flags = {"--gamma": "0.5", "--k-max": "30", "--out": str(tmp_path / "out"), **kw}
    return parser.parse_args(
        [a for k, v in flags.items() if v is not None for a in ((k,) if v is True else (k, v))]
    )


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_command_writes_the_coefficients_and_the_picture(tmp_path, capsys):
    args = _args(
        tmp_path, **{"--ntk": True, "--spike-gamma": "0.05", "--rho": "0.1", "--seed": "4"}
    )
    assert activation_command.run(args) == 0
    out = tmp_path / "out"
    rows = _rows(out / "coefficients.csv")
    assert rows[0] == ["k", "coefficient", "log_coefficient"] and len(rows) == 32
    expected = act.hermite_magnitudes(
        act.spiky_smooth(
            act.log_power_series("gaussian", 0.5, 30),
            act.log_power_series("gaussian", 0.05, 30),
            0.1,
        ),
        ntk=True,
    )
    assert [int(r[0]) for r in rows[1:]] == list(range(31))
    assert np.array_equal([float(r[2]) for r in rows[1:]], expected)
    assert np.allclose([float(r[1]) for r in rows[1:]], np.exp(expected), rtol=1e-15)
    with open(out / "activation.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().err.splitlines() == [
        f"wrote {out / 'coefficients.csv'}",
        f"wrote {out / 'activation.png'}",
    ]
    # |c_0| = e^-1000 underflows in the coefficient column, not in log_coefficient
    activation_command.run(_args(tmp_path, **{"--gamma": "0.001", "--k-max": "3"}))
    first = _rows(out / "coefficients.csv")[1]
    assert float(first[1]) == 0.0 and float(first[2]) == pytest.approx(-1000.0, rel=1e-15)


@pytest.mark.parametrize(
    "flags, named",
    [
        ({"--gamma": "0"}, "--gamma"),
        ({"--gamma": "-1"}, "--gamma"),
        ({"--gamma": "nan"}, "--gamma"),
        ({"--k-max": "-1"}, "--k-max"),
        ({"--rho": "0.1"}, "--rho"),
        ({"--spike-gamma": "0.1"}, "--spike-gamma"),
        ({"--spike-gamma": "0", "--rho": "1"}, "--spike-gamma"),
        ({"--spike-gamma": "0.1", "--rho": "inf"}, "--rho"),
    ],
)
def test_command_names_the_bad_flag(tmp_path, flags, named):
    args = _args(tmp_path, **flags)
    with pytest.raises(ValueError, match=f"^{named}: ") as e:
        activation_command.run(args)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_command_reports_an_unwritable_out_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    args = _args(tmp_path, **{"--out": str(tmp_path / "file" / "out")})
    with pytest.raises(ValueError, match="^--out: cannot write") as e:
        activation_command.run(args)
    assert "\n" not in str(e.value)


def test_modules_import_no_jax_and_no_matplotlib():
    """activations.py alone (loaded by path, outside jaxbof) pulls in neither JAX nor
    matplotlib; the command imports matplotlib only inside run."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('a', {act.__file__!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jax', 'jaxlib', 'jaxbof', 'matplotlib')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    tree = ast.parse(Path(activation_command.__file__).read_text())
    top = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    top += [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert not [m for m in top if m.split(".")[0] in ("jax", "jaxlib", "matplotlib", "jaxbof")]
