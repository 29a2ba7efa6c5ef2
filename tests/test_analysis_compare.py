"""``compare_runs`` bonded distributions: dihedrals along CG bonds, per bead-type class."""

import re

import numpy as np
import pytest
from openmm import app
from scipy.spatial.transform import Rotation

from openmm_cgml.analysis import compare_runs
from openmm_cgml.dataset import TrajectoryWriter, open_dataset

L, N_MOL, N_FRAMES, BOND, ANGLE = 3.0, 40, 30, 0.3, np.radians(110.0)


def _chain(phi: float) -> np.ndarray:
    """A-B-B-A with bonds BOND, angles ANGLE and dihedral +-phi (the sign does not matter below)."""
    c, s = np.cos(ANGLE), np.sin(ANGLE)
    return np.array([[BOND * c, BOND * s, 0.0], [0.0, 0.0, 0.0], [BOND, 0.0, 0.0],
                     [BOND - BOND * c, BOND * s * np.cos(phi), BOND * s * np.sin(phi)]])


def _write(path, phis: np.ndarray, seed: int, names: str = "ABBA", metadata=None, caged: bool = False):
    """Molecules placed at random every frame (an uncorrelated random walk of the centres), or ``caged``: each
    rattling around a fixed site (MSD with a plateau)."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, L, (N_MOL, 3))
    top = app.Topology()
    chain = top.addChain()
    for _ in range(N_MOL):
        res = top.addResidue("TET", chain)
        atoms = [top.addAtom(name, None, res) for name in names]
        for a, b in zip(atoms[:-1], atoms[1:]):
            top.addBond(a, b)
    with TrajectoryWriter(path, top, np.full(4 * N_MOL, 20.0), {"test": True, **(metadata or {})}, fields=("positions",),
                          kind="coarse-grained") as w:
        for k in range(N_FRAMES):
            rot = Rotation.random(N_MOL, random_state=rng)
            x = np.concatenate([rot[m].apply(_chain(phis[k, m])) + (sites[m] + rng.normal(scale=0.05, size=3) if caged
                                                                     else rng.uniform(0, L, 3)) for m in range(N_MOL)])
            w.append(positions=x % L, box=np.eye(3) * L, step=k, time=float(k))
    return open_dataset(path)


def test_dihedral_distributions_are_compared(tmp_path):
    rng = np.random.default_rng(0)
    gauche = lambda: rng.choice([-1.0, 1.0], (N_FRAMES, N_MOL)) * rng.normal(np.pi / 3, 0.2, (N_FRAMES, N_MOL))  # noqa: E731
    ref = _write(tmp_path / "ref.h5", gauche(), 1)
    same = _write(tmp_path / "same.h5", gauche(), 2)
    trans = _write(tmp_path / "trans.h5", rng.normal(np.pi, 0.2, (N_FRAMES, N_MOL)), 3)

    rows = {r.quantity: r for r in compare_runs(ref, same, r_max=1.2).rows}
    dihedral = rows["dihedral A-B-B-A"]
    assert dihedral.unit == "rad" and dihedral.value > 0.85
    assert abs(rows["angle A-B-B"].reference - ANGLE) < 1e-6
    assert abs(rows["bond A-B"].model - BOND) < 1e-6 and abs(rows["bond B-B"].model - BOND) < 1e-6

    comparison = compare_runs(ref, trans, r_max=1.2)
    rows = {r.quantity: r for r in comparison.rows}
    assert rows["dihedral A-B-B-A"].value < 0.05  # gauche vs trans: disjoint
    assert abs(rows["angle A-B-B"].model - ANGLE) < 1e-6  # identical angles
    p, q = comparison.distributions[("dihedral", "A", "B", "B", "A")]
    # mean |phi|: pi/3 for the gauche chains, pi for the trans ones, whatever the sign convention
    assert abs(np.sum(np.abs(q.centers) * q.density) / np.sum(q.density) - np.pi) < 0.25
    assert abs(np.sum(np.abs(p.centers) * p.density) / np.sum(p.density) - np.pi / 3) < 0.1


def test_runs_without_shared_types_say_what_is_left_out(tmp_path, caplog):
    """Beads named differently in the two runs (e.g. a CG run recorded without its mapping): the comparison
    falls back to molecular (COM) RDFs and says so, instead of silently dropping bead RDFs and bonded terms."""
    rng = np.random.default_rng(0)
    phis = rng.normal(np.pi, 0.2, (N_FRAMES, N_MOL))
    ref = _write(tmp_path / "ref.h5", phis, 1)
    other = _write(tmp_path / "other.h5", phis, 2, names="CDDC")
    with caplog.at_level("WARNING"):
        rows = {r.quantity for r in compare_runs(ref, other, r_max=1.2).rows}
    assert "share no particle type" in caplog.text and "no bonded distributions" in caplog.text
    assert "g(COM-COM)" in rows and not any(q.startswith(("g_", "bond", "angle", "dihedral")) for q in rows)


def test_model_run_temperature_is_reported_and_a_hot_run_is_flagged(tmp_path, caplog):
    """A model run recorded by run_simulation carries its kinetic-temperature check: the comparison reports
    model - thermostat, and warns when the run did not hold the thermostat's temperature."""
    rng = np.random.default_rng(0)
    phis = rng.normal(np.pi, 0.2, (N_FRAMES, N_MOL))
    ref = _write(tmp_path / "ref.h5", phis, 1)
    for name, mean, held in (("ok", 301.0, True), ("hot", 420.0, False)):
        check = {"held": held, "mean_temperature_K": mean, "temperature_sem_K": 2.0, "allowed_deviation_K": 36.0,
                 "statistical_inefficiency": 1.5, "samples": 50}
        model = _write(tmp_path / f"{name}.h5", phis, 2, metadata={"temperature_K": 300.0, "temperature_check": check})
        caplog.clear()
        with caplog.at_level("WARNING"):
            rows = {r.quantity: r for r in compare_runs(ref, model, r_max=1.2).rows}
        row = rows["kinetic temperature (model run)"]
        assert row.reference == 300.0 and row.model == mean and row.value == mean - 300.0 and row.model_err == 2.0
        assert ("did not hold its thermostat's 300.0 K" in caplog.text) is not held
    assert "kinetic temperature (model run)" not in {r.quantity for r in compare_runs(ref, ref, r_max=1.2).rows}


def test_unconverged_diffusion_is_marked_and_unknown_thermostats_refuse_alpha(tmp_path, caplog):
    """Caged molecules: the COM MSD is flat (local slope ~ 0), so D is marked not converged in every output; the
    datasets record no thermostat, so alpha is refused."""
    rng = np.random.default_rng(0)
    phis = rng.normal(np.pi, 0.2, (N_FRAMES, N_MOL))
    ref = _write(tmp_path / "ref.h5", phis, 1, caged=True)
    model = _write(tmp_path / "model.h5", phis, 2, caged=True)
    with caplog.at_level("WARNING"):
        comparison = compare_runs(ref, model, r_max=1.2)
    rows = {r.quantity: r for r in comparison.rows}
    d = rows["D (molecular COM, simulated box)"]
    assert "not converged: local slope" in d.reference_note and "unknown" in d.reference_note
    assert "not converged" in comparison.to_markdown() and "not converged" in comparison.to_csv()
    assert np.isnan(rows["alpha"].model) and "a thermostat is unknown" in rows["alpha"].note
    assert rows["density"].reference_err_kind == "fixed (NVT)" and np.isnan(rows["density"].reference_err)
    assert rows["bond A-B"].model_err_kind == "sd"
    assert "not from a diffusive regime" in caplog.text
    with pytest.raises(Exception, match="no temperature"):
        compare_runs(ref, model, r_max=1.2, viscosity={"reference": "0.5 mPa*s", "model": "0.5 mPa*s"})


def test_production_density_note_gives_the_npt_mean_and_its_standard_error():
    """An NVT production at the mean density of a preceding NPT run carries that mean's standard error (second
    half of the series, statistical inefficiency included) in the D notes; other runs get no note."""
    from types import SimpleNamespace

    from openmm_cgml.analysis.compare import production_density_note

    rng = np.random.default_rng(3)
    series = list(0.70 + 0.01 * rng.standard_normal(400))  # uncorrelated: s.e. = sd / sqrt(200)
    note = production_density_note(SimpleNamespace(metadata={"ensemble": "nvt", "npt_density_series_g_cm3": series}))
    mean, err = (float(x) for x in re.search(r"density (\S+) \+/- (\S+) g/cm", note).groups())
    assert mean == pytest.approx(np.mean(series[200:]), abs=1e-4)
    assert err == pytest.approx(np.std(series[200:], ddof=1) / np.sqrt(200), rel=0.35)
    assert production_density_note(SimpleNamespace(metadata={"ensemble": "npt", "npt_density_series_g_cm3": series})) \
        == ""
    assert production_density_note(SimpleNamespace(metadata={"ensemble": "nvt"})) == ""
