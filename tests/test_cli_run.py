"""``cgml build`` -> ``cgml run`` -> ``cgml compare`` with no Python between them, on a tiny CG fluid of known
potential whose bead names (E1, E2) are not its bead types (A, B): the types travel in the CG topology JSON
beside the PDB and in the run's dataset, so the comparison is per bead type without a mapping."""

import json

import numpy as np
import openmm
import pytest
import yaml
from _cg_fluid import BOND_K, BOND_R0, EPSILON, PAIR_CUTOFF, simulate_known_fluid

from openmm_cgml import CGPotential, CGTopology
from openmm_cgml.cli import main
from openmm_cgml.dataset import TrajectoryWriter, open_dataset
from openmm_cgml.forces.bonded import HarmonicBonds
from openmm_cgml.forces.tabulated import AnalyticPairPotential
from openmm_cgml.forces.xml import save_system

N_DIMERS = 32
SIGMA = {"A": 0.34, "B": 0.38}  # the known fluid's per-type sigma (combined by the arithmetic mean)


def _write(path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _relabelled(source, path):
    """The known fluid's dataset with bead names E1/E2 (types A/B kept in its CG topology), as `cgml map` writes
    mapped datasets."""
    ds = open_dataset(source)
    top = CGTopology.from_dataset(ds, frame=None)
    top = top.replace(bead_names=("E1", "E2") * N_DIMERS, residue_names=("DIM",) * N_DIMERS)
    meta = {"cg_topology": top.to_data(), "temperature_K": 300.0}
    with TrajectoryWriter(path, top.to_openmm(), ds.masses, meta, fields=("positions", "forces"),
                          kind="coarse-grained") as w:
        for k in range(ds.n_frames):
            w.append(positions=ds.positions[k], forces=ds.forces[k], box=ds.box[k], step=int(ds.step[k]),
                     time=float(ds.time[k]))
    return path


def _force_field(path):
    """The known fluid's potential as a force-field file: LJ pairs per type pair and harmonic bonds."""
    pairs = {}
    for a, b in (("A", "A"), ("A", "B"), ("B", "B")):
        s = 0.5 * (SIGMA[a] + SIGMA[b])
        pairs[(a, b)] = {12: 4 * EPSILON * s**12, 6: -4 * EPSILON * s**6}
    terms = [AnalyticPairPotential(pairs, cutoff=PAIR_CUTOFF, switch_distance=0.8),
             HarmonicBonds({"A-B": {"r0": BOND_R0, "k": BOND_K}})]
    return CGPotential(terms).save(path)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The three commands, each from its YAML file; returns the folder."""
    base = tmp_path_factory.mktemp("cli_run")
    reference = _relabelled(simulate_known_fluid(base / "known.h5", n_frames=60), base / "reference.h5")
    _force_field(base / "ff.json")
    build = _write(base / "build.yaml", {"force_field": str(base / "ff.json"), "dataset": str(reference),
                                         "system": str(base / "cg_system.xml"), "pdb": str(base / "cg.pdb")})
    assert main(["build", build]) == 0
    run = _write(base / "run.yaml", {
        "system": str(base / "cg_system.xml"), "pdb": str(base / "cg.pdb"), "output": str(base / "cg_run.h5"),
        "temperature": "300 K", "timestep": "4 fs", "friction": "5 /ps", "duration": "6 ps",
        "report_interval": 25, "equilibration_steps": 250, "seed": 3, "platform": "CPU"})
    assert main(["run", run, "--quiet"]) == 0
    compare = _write(base / "compare.yaml", {"reference": "reference.h5", "model": "cg_run.h5", "output": "compare",
                                             "r_max": "1.0 nm", "n_bins": 50})
    assert main(["compare", compare]) == 0
    return base


def test_build_writes_the_bead_types_beside_the_pdb(pipeline):
    from openmm import app

    pdb = app.PDBFile(str(pipeline / "cg.pdb"))
    assert [a.name for a in pdb.topology.atoms()][:2] == ["E1", "E2"]  # names, not types, in the PDB
    top = CGTopology.from_json(pipeline / "cg.topology.json")
    assert top.bead_types == ("A", "B") * N_DIMERS and top.bead_names == ("E1", "E2") * N_DIMERS
    assert len(top.bonds) == N_DIMERS and top.box_vectors is not None
    np.testing.assert_allclose(np.diag(top.box_vectors), 2.2, atol=1e-6)


def test_run_records_a_cg_dataset_with_forces_and_bead_types(pipeline):
    ds = open_dataset(pipeline / "cg_run.h5")
    assert ds.kind == "coarse-grained" and ds.n_particles == 2 * N_DIMERS
    assert ds.n_frames == 1500 // 25 + 1 and ds.forces is not None and ds.velocities is not None
    assert np.all(np.isfinite(ds.forces)) and np.abs(ds.forces).max() > 0
    meta = ds.metadata
    assert meta["cg_topology"]["bead_types"] == ["A", "B"] * N_DIMERS
    assert meta["run_configuration"]["duration"] == "6.0 ps" and meta["temperature_K"] == pytest.approx(300.0)
    assert meta["temperature_check"]["held"]
    assert CGTopology.from_dataset(ds).type_names == ("A", "B")


def test_compare_is_per_bead_type_without_a_mapping(pipeline):
    rows = {r["quantity"]: r for r in json.loads((pipeline / "compare" / "comparison.json").read_text())["rows"]}
    for pair in ("A-A", "A-B", "B-B"):
        # the same potential on both sides: small RDF differences (sampling noise of 64 beads)
        assert rows[f"g_inter({pair})"]["value"] < 0.35, rows[f"g_inter({pair})"]
    assert rows["bond A-B"]["value"] > 0.7
    assert rows["bond A-B"]["model"] == pytest.approx(BOND_R0, abs=0.01)
    assert "kinetic temperature (model run)" in rows


def test_run_from_a_dataset_frame(pipeline, tmp_path):
    cfg = _write(tmp_path / "run.yaml", {
        "system": str(pipeline / "cg_system.xml"), "dataset": str(pipeline / "reference.h5"), "frame": 0,
        "output": str(tmp_path / "run.h5"), "temperature": "300 K", "timestep": "4 fs", "steps": 20,
        "report_interval": 10, "platform": "CPU", "fields": ["positions", "forces"]})
    assert main(["run", cfg, "--quiet"]) == 0
    ds = open_dataset(tmp_path / "run.h5")
    assert ds.n_frames == 3 and ds.velocities is None
    assert ds.metadata["cg_topology"]["bead_types"] == ["A", "B"] * N_DIMERS
    np.testing.assert_allclose(ds.box[0], open_dataset(pipeline / "reference.h5").box[0], atol=1e-6)


def test_run_thermostat_key(pipeline, tmp_path):
    """`thermostat:` sets the recorded part's (after a Langevin equilibration at `friction`); without it the run is
    Langevin at `friction`, as before the key existed."""
    assert open_dataset(pipeline / "cg_run.h5").metadata["thermostat"] == {
        "kind": "langevin", "temperature_K": pytest.approx(300.0), "friction_per_ps": pytest.approx(5.0)}
    cfg = _write(tmp_path / "run.yaml", {
        "system": str(pipeline / "cg_system.xml"), "pdb": str(pipeline / "cg.pdb"), "output": str(tmp_path / "r.h5"),
        "temperature": "300 K", "timestep": "4 fs", "steps": 50, "report_interval": 25, "equilibration_steps": 50,
        "platform": "CPU", "thermostat": {"kind": "nose-hoover", "tau": "0.5 ps"}})
    assert main(["run", cfg, "--quiet"]) == 0
    meta = open_dataset(tmp_path / "r.h5").metadata
    assert meta["thermostat"]["kind"] == "nose-hoover" and meta["thermostat"]["tau_ps"] == pytest.approx(0.5)
    assert meta["equilibration_thermostat"]["kind"] == "langevin" and meta["integrator"] == "NoseHooverIntegrator"
    bad = _write(tmp_path / "bad.yaml", dict(yaml.safe_load(open(cfg).read()), thermostat={"kind": "bussi", "tau": 1}))
    assert main(["run", bad, "--quiet"]) != 0


def test_a_pdb_without_its_topology_file_types_beads_by_atom_name(pipeline, tmp_path, caplog):
    (tmp_path / "lone.pdb").write_text((pipeline / "cg.pdb").read_text())
    cfg = _write(tmp_path / "run.yaml", {
        "system": str(pipeline / "cg_system.xml"), "pdb": str(tmp_path / "lone.pdb"),
        "output": str(tmp_path / "run.h5"), "temperature": "300 K", "timestep": "4 fs", "steps": 10,
        "report_interval": 10, "platform": "CPU"})
    assert main(["run", cfg, "--quiet"]) == 0
    assert "no CG topology JSON" in caplog.text
    assert open_dataset(tmp_path / "run.h5").metadata["cg_topology"]["bead_types"] == ["E1", "E2"] * N_DIMERS


def _run_error(tmp_path, capsys, data, *argv) -> str:
    cfg = _write(tmp_path / "bad.yaml", data)
    assert main(["run", cfg, *argv]) == 1
    return capsys.readouterr().err


def test_run_refuses_bad_inputs_before_running(pipeline, tmp_path, capsys):
    good = {"system": str(pipeline / "cg_system.xml"), "pdb": str(pipeline / "cg.pdb"),
            "output": str(tmp_path / "out.h5"), "temperature": "300 K", "timestep": "4 fs", "steps": 100,
            "report_interval": 10, "platform": "CPU"}
    err = _run_error(tmp_path, capsys, {**good, "system": str(tmp_path / "missing.xml")})
    assert "system:" in err and "missing.xml does not exist" in err
    err = _run_error(tmp_path, capsys, {**good, "pdb": str(tmp_path / "missing.pdb")})
    assert "pdb:" in err and "missing.pdb does not exist" in err
    err = _run_error(tmp_path, capsys, {**good, "topology": str(tmp_path / "none.json")})
    assert "topology:" in err and "none.json does not exist" in err
    err = _run_error(tmp_path, capsys, {**good, "dataset": str(pipeline / "reference.h5")})
    assert "exactly one of 'pdb'" in err
    err = _run_error(tmp_path, capsys, {**good, "frame": 0})
    assert "'frame'" in err
    err = _run_error(tmp_path, capsys, {**good, "duration": "1 ps"})
    assert "exactly one of 'steps' and 'duration'" in err
    err = _run_error(tmp_path, capsys, {**good, "steps": 105})
    assert "not a multiple of report_interval" in err
    del good["steps"]
    err = _run_error(tmp_path, capsys, {**good, "duration": "0.41 ps", "timestep": "4 fs"})
    assert "not a whole" in err and "duration" in err
    err = _run_error(tmp_path, capsys, {**good, "steps": 100, "temperature": 300})
    assert "temperature" in err and "no unit" in err
    err = _run_error(tmp_path, capsys, {**good, "steps": 100, "timestep": "-4 fs"})
    assert "timestep: must be greater than 0" in err
    err = _run_error(tmp_path, capsys, {**good, "steps": 100, "platform": "NoSuchPlatform"})
    assert "NoSuchPlatform" in err
    err = _run_error(tmp_path, capsys, {**good, "steps": 100, "output": str(pipeline / "cg.pdb")})
    assert "output:" in err and "also an input" in err
    assert not (tmp_path / "out.h5").exists()


def test_run_refuses_a_system_of_other_particles(pipeline, tmp_path, capsys):
    small = openmm.System()
    for _ in range(10):
        small.addParticle(40.0)
    save_system(small, tmp_path / "small.xml")
    base = {"pdb": str(pipeline / "cg.pdb"), "output": str(tmp_path / "out.h5"), "temperature": "300 K",
            "timestep": "4 fs", "steps": 10, "report_interval": 10, "platform": "CPU"}
    err = _run_error(tmp_path, capsys, {**base, "system": str(tmp_path / "small.xml")})
    assert "system:" in err and "has 10 particles" in err and "cg.pdb 64" in err
    (tmp_path / "lone.pdb").write_text((pipeline / "cg.pdb").read_text())  # no CG topology JSON beside it
    err = _run_error(tmp_path, capsys, {**base, "system": str(tmp_path / "small.xml"),
                                        "pdb": str(tmp_path / "lone.pdb")})
    assert "has 10 particles" in err and "lone.pdb 64" in err
    other = CGTopology.from_json(pipeline / "cg.topology.json")
    other = CGTopology(other.bead_types[:10], other.molecule_index[:10], other.bonds[:5], other.masses[:10])
    other.to_json(tmp_path / "other.json")
    err = _run_error(tmp_path, capsys, {**base, "system": str(pipeline / "cg_system.xml"),
                                        "topology": str(tmp_path / "other.json")})
    assert "topology:" in err and "has 10 beads" in err
    # a cutoff longer than half the start structure's box
    system = openmm.XmlSerializer.deserialize((pipeline / "cg_system.xml").read_text())
    for force in system.getForces():
        if isinstance(force, openmm.CustomNonbondedForce):
            force.setCutoffDistance(1.5)
            force.setSwitchingDistance(1.4)
    save_system(system, tmp_path / "long.xml")
    err = _run_error(tmp_path, capsys, {**base, "system": str(tmp_path / "long.xml")})
    assert "system:" in err and "longer than half the smallest box width" in err
    assert not (tmp_path / "out.h5").exists()


def test_run_keeps_an_existing_output_unless_told(pipeline, tmp_path, capsys):
    out = tmp_path / "out.h5"
    out.write_text("precious")
    data = {"system": str(pipeline / "cg_system.xml"), "pdb": str(pipeline / "cg.pdb"), "output": str(out),
            "temperature": "300 K", "timestep": "4 fs", "steps": 10, "report_interval": 10, "platform": "CPU"}
    err = _run_error(tmp_path, capsys, data)
    assert "--overwrite" in err and out.read_text() == "precious"
    assert main(["run", str(tmp_path / "bad.yaml"), "--overwrite", "--quiet"]) == 0
    assert open_dataset(out).n_frames == 2


def test_ibi_build_run_compare(tmp_path):
    """The IBI branch of the pipeline: dataset -> cgml ibi -> cgml build (ibi:) -> cgml run -> cgml compare."""
    reference = _relabelled(simulate_known_fluid(tmp_path / "known.h5", n_frames=60), tmp_path / "reference.h5")
    ibi = _write(tmp_path / "ibi.yaml", {
        "cg_dataset": str(reference), "output_dir": str(tmp_path / "ibi"), "temperature": "300 K",
        "cutoff": "0.9 nm", "timestep": "4 fs", "max_iterations": 2, "equilibration_steps": 100,
        "production_steps": 500, "sample_interval": 25, "platform": "CPU"})
    assert main(["ibi", ibi]) == 0
    build = _write(tmp_path / "build.yaml", {"ibi": str(tmp_path / "ibi"), "dataset": str(reference),
                                             "system": str(tmp_path / "sys.xml"), "pdb": str(tmp_path / "cg.pdb")})
    assert main(["build", build]) == 0
    run = _write(tmp_path / "run.yaml", {
        "system": str(tmp_path / "sys.xml"), "pdb": str(tmp_path / "cg.pdb"), "output": str(tmp_path / "run.h5"),
        "temperature": "300 K", "timestep": "4 fs", "steps": 1000, "report_interval": 25, "platform": "CPU"})
    assert main(["run", run, "--quiet"]) == 0
    compare = _write(tmp_path / "compare.yaml", {"reference": "reference.h5", "model": "run.h5", "output": "cmp",
                                                 "r_max": "1.0 nm", "n_bins": 50})
    assert main(["compare", compare]) == 0
    rows = {r["quantity"] for r in json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"]}
    assert {"g_inter(A-A)", "g_inter(A-B)", "g_inter(B-B)", "bond A-B"} <= rows


def zero_energy(state):
    """A PythonForce callback (module level, so a pickle of it names this function)."""
    return 0.0, np.zeros((state.getPositions(asNumpy=True).shape[0], 3))


def test_run_loads_a_python_force_system_only_when_trusted(pipeline, tmp_path, capsys):
    """A System XML holding a PythonForce (its pickled callback runs on load) needs ``trust_system: true``."""
    from openmm_cgml.forces.xml import load_system

    system = load_system(pipeline / "cg_system.xml")
    system.addForce(openmm.PythonForce(zero_energy))
    save_system(system, tmp_path / "python.xml")
    cfg = {"system": str(tmp_path / "python.xml"), "pdb": str(pipeline / "cg.pdb"),
           "topology": str(pipeline / "cg.topology.json"), "output": str(tmp_path / "run.h5"),
           "temperature": "300 K", "timestep": "4 fs", "steps": 50, "report_interval": 25, "platform": "CPU"}
    assert main(["run", _write(tmp_path / "run.yaml", cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "PythonForce" in err and "trust_system: true" in err and not (tmp_path / "run.h5").exists()
    assert main(["run", _write(tmp_path / "run.yaml", cfg | {"trust_system": True}), "--quiet"]) == 0
    assert open_dataset(tmp_path / "run.h5").n_frames == 3
