"""Bonded IBI: the bonded terms refined next to the pair tables recover a known bond from data it generated.

The truth is the known CG fluid of tests/_cg_fluid.py (A-B dimers, LJ pairs, harmonic bond k = 4000 kJ/mol/nm^2,
r0 = 0.30 nm).  IBI starts from a wrong bond (k halved, r0 0.03 nm long: the bond-length distributions overlap by about
0.57) and refines it with the pairs.  Stated tolerances: after 4 iterations the harmonic bond is within 15 % of
k and 0.003 nm of r0, and the CG bond distribution overlaps the truth's by >= 0.9 (the noise floor of these
samples is about 0.95); a table made from the wrong harmonic bond gets to an overlap >= 0.9 and, within 1.6
standard deviations of r0, to the true potential within 0.5 kT (it starts more than 1.3 kT off).
"""

import json

import numpy as np
import openmm
import pytest
from _cg_fluid import BOND_K, BOND_R0, known_system

from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.forces.bonded import HarmonicBonds, TabulatedBonds, bonded_term_from_data
from openmm_cgml.forces.tabulated import TabulatedPairPotential
from openmm_cgml.ibi import (
    IBISettings,
    IterativeBoltzmannInversion,
    PairRDFCounter,
    TargetRDF,
    bonded_samples,
)
from openmm_cgml.topology import CGTopology

T, RC = 300.0, 0.9


@pytest.fixture(scope="module")
def truth():
    system, types, mol, bonds, box = known_system(n_dimers=32, box=2.2)
    info = CGTopology(bead_types=tuple(types), molecule_index=mol, bonds=bonds, masses=np.full(len(types), 40.0),
                        box_vectors=box)
    rng = np.random.default_rng(0)
    centres = (np.array([[i, j, k] for i in range(4) for j in range(4) for k in range(2)]) + 0.5) * [0.55, 0.55, 1.1]
    d = rng.normal(size=(32, 3))
    d *= BOND_R0 / 2 / np.linalg.norm(d, axis=1, keepdims=True)
    x0 = np.stack([centres - d, centres + d], axis=1).reshape(-1, 3)
    integ = openmm.LangevinMiddleIntegrator(T, 5.0, 0.004)
    integ.setRandomNumberSeed(11)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(x0)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(T, 11)
    integ.step(1000)
    pairs = [("A", "A"), ("A", "B"), ("B", "B")]
    counter = PairRDFCounter(info.bead_types, info.molecule_index, pairs, RC, 0.01)
    frames = []
    for _ in range(300):
        integ.step(25)
        frames.append(ctx.getState(getPositions=True).getPositions(asNumpy=True)._value)
        counter.add(frames[-1], box)
    frames = np.array(frames)
    targets = {p: TargetRDF(counter.r, g) for p, g in counter.rdfs().items()}
    return info, frames, targets, bonded_samples(frames, info, box=box)


def _settings(**kw):
    return IBISettings(temperature=f"{T} K", cutoff=f"{RC} nm", max_iterations=4, damping=1.0, tolerance=1e-6,
                       timestep="4 fs", friction="5 /ps", equilibration_steps=250, production_steps=2500, sample_interval=25,
                       platform="CPU", threads=1, seed=5, refine_bonded=True, **kw)


def _last_bonded(out):
    from openmm_cgml._checkpoint import read_checkpoint

    header, _ = read_checkpoint(out / IterativeBoltzmannInversion.CHECKPOINT)
    return [bonded_term_from_data(d) for d in header["meta"]["bonded"]]


def _refine(truth, out, wrong, settings=None):
    """IBI with ``wrong`` refined; checks that the bond overlap starts below 0.7 and ends at >= 0.9."""
    info, frames, targets, target_bonded = truth
    ibi = IterativeBoltzmannInversion(info, frames[-1], targets, settings or _settings(), fixed_terms=[wrong],
                                      bonded_targets=target_bonded)
    result = ibi.run(out)
    overlaps = [h["bonded_overlap"]["bond A-B"] for h in result.history]
    assert overlaps[0] < 0.7 and overlaps[-1] >= 0.9, overlaps
    return result


def test_refined_harmonic_bond_recovers_the_known_bond(truth, tmp_path):
    info, frames, targets, target_bonded = truth
    wrong = HarmonicBonds({("A", "B"): (BOND_K / 2, BOND_R0 + 0.03)})
    result = _refine(truth, tmp_path, wrong)
    # the last update (after the last sampled iteration) is what the checkpoint carries on
    (bond,) = _last_bonded(tmp_path)
    k, r0 = bond.parameters["A-B"]["k"], bond.parameters["A-B"]["r0"]
    assert k == pytest.approx(BOND_K, rel=0.15) and r0 == pytest.approx(BOND_R0, abs=0.003), (k, r0)
    # outputs: the best iteration's terms, the overlaps in the CSV; the fixed input term is untouched
    saved = json.loads((tmp_path / "bonded_terms.json").read_text())
    assert saved["refined"] and saved["best_iteration"] == result.best_iteration
    assert bonded_term_from_data(saved["terms"][0]).parameters == result.bonded_terms[0].parameters
    assert "overlap_bond_A-B" in (tmp_path / "convergence.csv").read_text().splitlines()[0]
    assert wrong.parameters["A-B"] == {"k": BOND_K / 2, "r0": BOND_R0 + 0.03}
    # resume continues the refinement from the checkpoint's terms (a different input term is refused)
    more = IterativeBoltzmannInversion(info, frames[-1], targets, _settings().model_copy(update={"max_iterations": 5}),
                                       fixed_terms=[wrong], bonded_targets=target_bonded)
    again = more.run(tmp_path)
    assert [h["iteration"] for h in again.history] == [0, 1, 2, 3, 4]
    assert again.history[4]["bonded_overlap"]["bond A-B"] >= 0.9
    from openmm_cgml.exceptions import CheckpointError

    other = IterativeBoltzmannInversion(info, frames[-1], targets, _settings(), fixed_terms=[HarmonicBonds(
        {("A", "B"): (BOND_K, BOND_R0)})], bonded_targets=target_bonded)
    with pytest.raises(CheckpointError, match="different IBI run"):
        other.run(tmp_path)


def test_refined_bond_table_recovers_the_known_distribution(truth, tmp_path):
    x = np.linspace(0.22, 0.42, 81)
    wrong = TabulatedBonds({("A", "B"): (x, 0.5 * (BOND_K / 2) * (x - BOND_R0 - 0.03) ** 2)}, name="bonds")
    _refine(truth, tmp_path, wrong)
    (table,) = _last_bonded(tmp_path)
    tx, tu = table.tables[("A", "B")]
    well = np.abs(tx - BOND_R0) < 0.04  # 1.6 standard deviations of the bond length
    dev = tu[well] - 0.5 * BOND_K * (tx[well] - BOND_R0) ** 2
    kt = IBISettings(temperature=f"{T} K", cutoff=f"{RC} nm").kt
    assert np.abs(dev - dev.mean()).max() < 0.5 * kt
    start = 0.5 * (BOND_K / 2) * (tx[well] - BOND_R0 - 0.03) ** 2 - 0.5 * BOND_K * (tx[well] - BOND_R0) ** 2
    assert np.abs(start - start.mean()).max() > 1.3 * kt  # where it started


def test_refine_bonded_bad_input(truth):
    info, frames, targets, target_bonded = truth
    bond = HarmonicBonds({("A", "B"): (BOND_K, BOND_R0)})
    with pytest.raises(ConfigurationError, match="needs bonded_targets"):
        IterativeBoltzmannInversion(info, frames[-1], targets, _settings(), fixed_terms=[bond])
    with pytest.raises(ConfigurationError, match="needs bonded terms to refine"):
        IterativeBoltzmannInversion(info, frames[-1], targets, _settings(), bonded_targets=target_bonded)
    with pytest.raises(ConfigurationError, match="no target samples"):
        IterativeBoltzmannInversion(info, frames[-1], targets, _settings(), fixed_terms=[bond],
                                    bonded_targets={"bond": {}, "angle": {}, "dihedral": {}})
    pair = TabulatedPairPotential({("A", "A"): (np.linspace(0.3, RC, 10), np.zeros(10))}, cutoff=RC)
    with pytest.raises(ConfigurationError, match="cannot refine bonded terms of type"):
        from openmm_cgml.ibi._bonded_refine import BondedRefiner

        BondedRefiner([pair], target_bonded, 2.5)


def test_table_update_is_bounded_and_confined_to_the_well():
    """A hot CG run (bond distribution twice as broad as the target's) must not steepen the table's walls without
    bound: one update moves U by at most 1 kT anywhere (damping 1), and beyond the target's 4 kT well the
    correction is a constant (the walls keep their shape); inside the well it goes the right way (the table
    gets stiffer)."""
    from openmm_cgml.ibi._bonded_refine import BondedRefiner

    kt = IBISettings(temperature=f"{T} K", cutoff=f"{RC} nm").kt
    rng = np.random.default_rng(2)
    target = rng.normal(BOND_R0, 0.025, 20_000)
    hot = rng.normal(BOND_R0, 0.05, 20_000)
    x = np.linspace(0.15, 0.45, 121)
    table = TabulatedBonds({("A", "B"): (x, 0.5 * 1000.0 * (x - BOND_R0) ** 2)}, name="bonds")
    refiner = BondedRefiner([table], {"bond": {("A", "B"): target}}, kt, damping=1.0)
    (new,) = refiner.update([table], {"bond": {("A", "B"): hot}})
    du = new.tables[("A", "B")][1] - table.tables[("A", "B")][1]
    du -= du[np.argmin(np.abs(x - BOND_R0))]
    assert np.abs(du).max() <= 1.0 * kt + 1e-9
    outer = np.abs(x - BOND_R0) > 0.08  # beyond the 4 kT well of the target (2.8 standard deviations)
    assert np.ptp(du[x > BOND_R0 + 0.08]) < 1e-9 and np.ptp(du[x < BOND_R0 - 0.08]) < 1e-9 and outer.any()
    assert du[np.argmin(np.abs(x - BOND_R0 - 0.04))] > 0.5 * kt  # stiffer where the hot run spread too far


def _dihedral_case():
    """kT, a seeded generator, a dihedral key, its grid, a flat table, target samples of a well at +-pi and the
    broader samples of a CG run."""
    from openmm_cgml.forces.bonded import TabulatedDihedrals

    kt = IBISettings(temperature=f"{T} K", cutoff=f"{RC} nm").kt
    rng = np.random.default_rng(4)
    wrap = lambda v: np.angle(np.exp(1j * v))  # noqa: E731
    target, broad = wrap(np.pi + rng.normal(0, 0.4, 40_000)), wrap(np.pi + rng.normal(0, 0.7, 40_000))
    phi = np.linspace(-np.pi, np.pi, 72, endpoint=False) + np.pi / 72
    key = ("A", "B", "B", "A")
    return kt, rng, key, phi, TabulatedDihedrals({key: (phi, np.zeros_like(phi))}), target, broad


def test_dihedral_table_update_wraps_around_the_circle():
    """A dihedral well at +-pi: the update is periodic (no step across the seam), bounded by 1 kT, and deepens the
    well where the CG run is too broad; a harmonic angle is refined by its moments."""
    from openmm_cgml.forces.bonded import HarmonicAngles
    from openmm_cgml.ibi._bonded_refine import BondedRefiner

    kt, rng, key, phi, table, target, broad = _dihedral_case()
    angle = HarmonicAngles({("A", "B", "A"): (100.0, 2.0)})
    theta_t, theta_c = rng.normal(2.1, 0.1, 20_000), rng.normal(2.0, 0.2, 20_000)
    refiner = BondedRefiner([table, angle], {"dihedral": {key: target}, "angle": {("A", "B", "A"): theta_t}}, kt,
                            damping=1.0)
    new_table, new_angle = refiner.update([table, angle], {"dihedral": {key: broad}, "angle": {("A", "B", "A"): theta_c}})
    u = new_table.tables[key][1]
    assert abs(u[0] - u[-1]) < 0.05 * kt and np.ptp(u) <= 1.0 * kt + 1e-9
    assert u[np.argmin(np.abs(np.abs(phi) - np.pi))] < u[np.argmin(np.abs(np.abs(phi) - np.pi + 0.8))]
    k, t0 = new_angle.parameters["A-B-A"]["k"], new_angle.parameters["A-B-A"]["theta0"]
    assert t0 == pytest.approx(2.0 + (theta_t.mean() - theta_c.mean()))
    assert k == pytest.approx(100.0 * 2.0)  # variance ratio 4, clipped to 2 per iteration
    ov = refiner.overlaps([table, angle], {"dihedral": {key: target}, "angle": {("A", "B", "A"): theta_t}})
    assert min(ov.values()) > 0.99  # a distribution overlaps itself


def _sample(x_fine, u_fine, kt, n=20_000):
    """n quantiles of P(x) ~ exp(-U/kT) on ``x_fine`` (deterministic: no sampling noise)."""
    p = np.exp(-(u_fine - u_fine.min()) / kt)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.interp((np.arange(n) + 0.5) / n, cdf, x_fine)


def test_moment_update_recovers_a_known_smooth_correction():
    """``update="moments"``: the Newton steps of the relative entropy converge to the correction that generated the
    target (a skewed quartic, inside the span of 4 Legendre moments) from a table that is too soft and unskewed; the
    corrected table's distribution then matches the target's; the correction is smooth (bounded curvature) and
    continued linearly beyond the target's range, so no wall steepens; each step is bounded by ``max_step`` kT
    over the target's range.  Distributions are exact here (quantiles of exp(-U/kT)), so what is tested is the
    update, not sampling noise."""
    from openmm_cgml.ibi._bonded_refine import BondedRefiner, _overlap

    kt = IBISettings(temperature=f"{T} K", cutoff=f"{RC} nm").kt
    x = np.linspace(0.18, 0.42, 121)
    fine = np.linspace(x[0], x[-1], 8001)
    base = lambda r: 0.5 * 1000.0 * (r - BOND_R0) ** 2  # noqa: E731
    truth = lambda r: 0.5 * 2500.0 * (r - BOND_R0) ** 2 + 2e4 * (r - BOND_R0) ** 3 + 2e5 * (r - BOND_R0) ** 4  # noqa: E731
    target = _sample(fine, base(fine) + truth(fine), kt)
    table = TabulatedBonds({("A", "B"): (x, base(x))}, name="bonds")
    refiner = BondedRefiner([table], {"bond": {("A", "B"): target}}, kt, damping=1.0, update="moments", moments=4)
    first = None
    for _ in range(12):
        cg = _sample(fine, np.interp(fine, *table.tables[("A", "B")]), kt)
        new = refiner.update([table], {"bond": {("A", "B"): cg}})[0]
        du = new.tables[("A", "B")][1] - table.tables[("A", "B")][1]
        lo, hi = np.percentile(target, [0.1, 99.9])
        inside = (x >= lo) & (x <= hi)
        assert np.ptp(du[inside]) <= 1.0 * kt + 1e-9  # the step bound
        first = _overlap(target, cg, "bond") if first is None else first
        table = new
    cg = _sample(fine, np.interp(fine, *table.tables[("A", "B")]), kt)
    assert first < 0.85 and _overlap(target, cg, "bond") > 0.98, (first, _overlap(target, cg, "bond"))
    assert np.mean(cg) == pytest.approx(np.mean(target), abs=1e-4) and np.std(cg) == pytest.approx(np.std(target),
                                                                                                  rel=0.01)
    # the recovered correction is the truth inside the well (to 0.1 kT), linear beyond the target's range
    corr = table.tables[("A", "B")][1] - base(x)
    well = np.abs(x - np.mean(target)) < 2 * np.std(target)
    dev = corr[well] - truth(x[well])
    assert np.abs(dev - dev.mean()).max() < 0.1 * kt, np.abs(dev - dev.mean()).max() / kt
    beyond = x > hi + 0.005
    assert beyond.sum() > 5 and np.abs(np.diff(corr[beyond], 2)).max() < 1e-6 * np.ptp(corr)


def test_moment_update_of_a_dihedral_is_periodic_and_settings_choose_it():
    """Dihedrals take Fourier moments (periodic by construction); the update deepens a well the CG run spreads
    out of; the IBI settings name the update, refuse unknown ones, and only a non-default update enters the
    checkpoint's physics (older checkpoints keep their identity); moments may be given per kind."""
    from openmm_cgml.ibi._bonded_refine import BondedRefiner

    kt, rng, key, phi, table, target, broad = _dihedral_case()
    refiner = BondedRefiner([table], {"dihedral": {key: target}}, kt, damping=1.0, update="moments", moments=4)
    u = refiner.update([table], {"dihedral": {key: broad}})[0].tables[key][1]
    assert abs(u[0] - u[-1]) < 0.05 * kt and np.ptp(u) == pytest.approx(1.0 * kt)
    assert u[np.argmin(np.abs(np.abs(phi) - np.pi))] < u[np.argmin(np.abs(np.abs(phi) - np.pi + 0.8))]
    with pytest.raises(ConfigurationError, match="'boltzmann' or 'moments'"):
        BondedRefiner([table], {"dihedral": {key: target}}, kt, update="entropy")
    assert "bonded_update" not in _settings().physics() and "bonded_moments" not in _settings().physics()
    assert _settings(bonded_update="moments", bonded_moments=2).physics()["bonded_moments"] == 2
    with pytest.raises(ConfigurationError, match="bonded_moments must lie in"):
        _settings(bonded_update="moments", bonded_moments={"bond": 0})
    with pytest.raises(ConfigurationError, match="per kind"):
        BondedRefiner([table], {"dihedral": {key: target}}, kt, update="moments", moments={"torsion": 2})
    # per kind: two moments of a bond make a harmonic correction (constant curvature: no stiff edges)
    x = np.linspace(0.2, 0.4, 81)
    bond = TabulatedBonds({("A", "B"): (x, np.zeros_like(x))}, name="bonds")
    two = BondedRefiner([bond], {"bond": {("A", "B"): rng.normal(0.3, 0.01, 20_000)}}, kt, update="moments",
                        moments={"bond": 2, "angle": 4})
    assert two.moments == {"bond": 2, "angle": 4, "dihedral": 4}
    u = two.update([bond], {"bond": {("A", "B"): rng.normal(0.3, 0.02, 20_000)}})[0].tables[("A", "B")][1]
    inside = np.abs(x - 0.3) < 0.03
    curvature = np.diff(u[inside], 2)
    assert curvature.min() > 0 and np.ptp(curvature) < 1e-6 * curvature.max()
    with pytest.raises(ConfigurationError, match="bonded_update"):
        _settings(bonded_update="entropy")
