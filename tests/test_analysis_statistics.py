"""Statistical inefficiency, equilibration, block and bootstrap errors, and Arrhenius fits."""

import numpy as np
import pytest

from openmm_cgml.analysis import (
    GAS_CONSTANT,
    block_average,
    bootstrap,
    detect_equilibration,
    fit_arrhenius,
    mean_with_error,
    statistical_inefficiency,
)
from openmm_cgml.exceptions import TrajectoryError


def _ar1(n, phi, seed):
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.8, 0.95])
def test_ar1_statistical_inefficiency(phi):
    g_true = (1 + phi) / (1 - phi)
    g = statistical_inefficiency(_ar1(200_000, phi, seed=int(phi * 100)))
    assert g == pytest.approx(g_true, rel=0.1)


def test_error_of_correlated_mean_matches_replica_spread():
    phi = 0.9
    replicas = [_ar1(4000, phi, seed=s) for s in range(60)]
    estimates = [mean_with_error(r) for r in replicas]
    spread = np.std([e.value for e in estimates], ddof=1)
    reported = np.mean([e.error for e in estimates])
    assert reported == pytest.approx(spread, rel=0.3)
    naive = np.mean([r.std() / np.sqrt(r.size) for r in replicas])
    assert naive < 0.4 * spread  # the uncorrelated error would be far too small
    block = block_average(replicas[0], n_blocks=20)
    assert block.error == pytest.approx(reported, rel=0.5)


def test_equilibration_detection_discards_transient():
    x = _ar1(5000, 0.5, seed=4)
    x[:500] += 10 * np.exp(-np.arange(500) / 100)
    eq = detect_equilibration(x)
    assert 150 < eq.t0 < 1200
    est = mean_with_error(x, equilibrate=True)
    assert abs(est.value) < 4 * est.error


def test_bootstrap_of_mean_matches_standard_error():
    data = np.random.default_rng(7).normal(2.0, 1.0, size=400)
    est = bootstrap(np.mean, data, n_bootstrap=400)
    assert est.value == pytest.approx(data.mean())
    assert est.error == pytest.approx(data.std(ddof=1) / np.sqrt(data.size), rel=0.15)


def test_arrhenius_recovers_known_activation_energy():
    ea, ln_a = 19.95, np.log(2.0)
    temps = np.array([280.0, 300.0, 320.0, 340.0, 360.0])
    d = np.exp(ln_a - ea / (GAS_CONSTANT * temps))
    exact = fit_arrhenius(temps, d)
    assert exact.activation_energy == pytest.approx(ea, rel=1e-9)
    assert exact.prefactor == pytest.approx(2.0, rel=1e-9)
    rng = np.random.default_rng(0)
    rel_err = 0.03
    fits = [fit_arrhenius(temps, d * (1 + rel_err * rng.normal(size=5)), d * rel_err) for _ in range(300)]
    eas = np.array([f.activation_energy for f in fits])
    reported = np.mean([f.activation_energy_err for f in fits])
    assert np.std(eas) == pytest.approx(reported, rel=0.15)  # the error bars are honest
    assert abs(eas.mean() - ea) < 3 * reported / np.sqrt(len(fits)) + 0.05
    one = fits[0]
    assert abs(one.activation_energy - ea) < 4 * one.activation_energy_err
    pred, pred_err = one.predict(310.0)
    assert pred == pytest.approx(np.exp(ln_a - ea / (GAS_CONSTANT * 310)), rel=4 * rel_err)
    assert 0 < pred_err < pred


def test_statistics_bad_input():
    with pytest.raises(TrajectoryError, match="at least 2"):
        statistical_inefficiency([1.0])
    with pytest.raises(TrajectoryError, match="NaN"):
        mean_with_error([1.0, np.nan, 2.0])
    with pytest.raises(TrajectoryError, match="2 distinct temperatures"):
        fit_arrhenius([300.0, 300.0], [1.0, 2.0], [0.1, 0.1])
    with pytest.raises(TrajectoryError, match="positive"):
        fit_arrhenius([300.0, 310.0], [1.0, -2.0], [0.1, 0.1])
    with pytest.raises(TrajectoryError, match="at least 3 temperatures"):
        fit_arrhenius([300.0, 310.0], [1.0, 2.0])


def test_pymbar_import_banners_are_dropped_but_later_warnings_are_not():
    """pymbar logs a JAX advertisement and a generic caution when it is imported; the package imports it
    quietly (a plain import shows them: the check can fail), and pymbar's later warnings still reach the log."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(); {}; "
            "logging.getLogger('pymbar.timeseries').warning('a later pymbar warning')")
    ours = subprocess.run([sys.executable, "-c", code.format(
        "import numpy; from openmm_cgml.analysis import statistical_inefficiency; "
        "statistical_inefficiency(numpy.arange(50.0) % 7)")], capture_output=True, text=True, check=True)
    plain = subprocess.run([sys.executable, "-c", code.format("import pymbar.timeseries")], capture_output=True,
                           text=True, check=True)
    for banner in ("JAX NOT FOUND", "Warning on use of the timeseries module"):
        assert banner in plain.stderr and banner not in ours.stderr
    assert "a later pymbar warning" in ours.stderr
