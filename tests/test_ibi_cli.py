"""`cgml map` and `cgml ibi` end to end on a tiny argon liquid, with checkpoint/resume."""

import json

import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_cgml.cli import main
from openmm_cgml.dataset import TrajectoryWriter, open_dataset
from openmm_cgml.testing import lj_fluid

N, BOX, T = 64, 1.75, 120.0


def argon_dataset(path, n_frames=20):
    fluid = lj_fluid(N, BOX, sigma=0.34, epsilon=0.996, mass=39.948, cutoff=0.8, shift=0.5 * BOX / 4, name="AR",
                     element="Ar")
    top, system = fluid.topology, fluid.system
    integ = openmm.LangevinMiddleIntegrator(T, 5.0, 0.005)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(fluid.positions)
    openmm.LocalEnergyMinimizer.minimize(ctx)
    ctx.setVelocitiesToTemperature(T, 3)
    integ.step(200)
    with TrajectoryWriter(path, top, [39.948] * N, {"constraints": "HBonds", "temperature_K": T}) as w:
        for k in range(n_frames):
            integ.step(20)
            st = ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)
            w.append(positions=st.getPositions(asNumpy=True)._value, velocities=st.getVelocities(asNumpy=True)._value,
                     forces=st.getForces(asNumpy=True)._value, box=np.eye(3) * BOX, step=k * 20, time=k * 0.1,
                     potential_energy=st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def test_map_and_ibi_commands(tmp_path, capsys, caplog):
    aa = tmp_path / "aa.h5"
    argon_dataset(aa)
    (tmp_path / "map.yaml").write_text(
        f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\nmapping_out: {tmp_path / 'm.json'}\n"
        "mapping:\n  method: automatic\n  n_beads: 1\n"
    )
    assert main(["map", str(tmp_path / "map.yaml")]) == 0
    cg = open_dataset(tmp_path / "cg.h5")
    assert cg.kind == "coarse-grained" and cg.n_particles == N
    np.testing.assert_allclose(cg.positions, open_dataset(aa).positions, atol=1e-5)
    cfg = (f"cg_dataset: {tmp_path / 'cg.h5'}\noutput_dir: {tmp_path / 'ibi'}\ntemperature: {T} K\ncutoff: 0.8 nm\n"
           "timestep: 5 fs\nmax_iterations: 2\nequilibration_steps: 20\nproduction_steps: 100\n"
           "sample_interval: 20\nplatform: Reference\ntolerance: 0.0001\n")
    (tmp_path / "ibi.yaml").write_text(cfg)
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 0
    out = tmp_path / "ibi"
    for name in ("pair_tables.json", "table_AR_A_AR_A.xvg", "pair_tables.lammps", "convergence.json",
                 "convergence.csv", "convergence.png", "ibi_checkpoint.chk", "config.yaml"):
        assert (out / name).exists(), name
    log = json.loads((out / "convergence.json").read_text())
    assert [h["iteration"] for h in log["history"]] == [0, 1]
    # resume: two more iterations continue from the checkpoint (iterations 2 and 3), not from scratch
    (tmp_path / "ibi.yaml").write_text(cfg.replace("max_iterations: 2", "max_iterations: 4"))
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 0
    log = json.loads((out / "convergence.json").read_text())
    assert [h["iteration"] for h in log["history"]] == [0, 1, 2, 3]
    # `cgml build` turns the IBI output into an OpenMM System: the same energy as the best tables built directly
    from openmm_cgml import CGPotential, CGTopology
    from openmm_cgml.forces.xml import load_system
    from openmm_cgml.ibi import read_openmm_tables

    build = f"ibi: {out}\ndataset: {tmp_path / 'cg.h5'}\nsystem: {tmp_path / 'cg.xml'}\npdb: {tmp_path / 'cg.pdb'}\n"
    (tmp_path / "build.yaml").write_text(build)
    assert main(["build", str(tmp_path / "build.yaml")]) == 0
    cg_data = open_dataset(tmp_path / "cg.h5")
    x = cg_data.positions[-1]
    topology = CGTopology.from_dataset(cg_data)
    direct = CGPotential([read_openmm_tables(out / "pair_tables.json")]).createSystem(topology)
    # the same System from Python and from the command line: the IBI directory through the facade
    from_python = CGPotential(out).createSystem(topology)
    assert openmm.XmlSerializer.serialize(from_python) == openmm.XmlSerializer.serialize(load_system(tmp_path / "cg.xml"))

    def energy(system):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(x)
        return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    built = load_system(tmp_path / "cg.xml")
    assert built.getNumParticles() == N and energy(built) == pytest.approx(energy(direct), rel=1e-10)
    assert len(app.PDBFile(str(tmp_path / "cg.pdb")).positions) == N
    # exactly one model source; an IBI directory needs its pair tables
    capsys.readouterr()
    (tmp_path / "build.yaml").write_text(build + f"bundle: {tmp_path / 'm.cgml'}\n")
    assert main(["build", str(tmp_path / "build.yaml")]) == 1
    assert "exactly one of 'bundle'" in capsys.readouterr().err
    (tmp_path / "build.yaml").write_text(build.replace(f"ibi: {out}", f"ibi: {tmp_path}"))
    assert main(["build", str(tmp_path / "build.yaml")]) == 1
    assert "holds no pair_tables.json" in capsys.readouterr().err
    # a checkpoint from other settings is refused with a clear error (exit code 1)
    (tmp_path / "ibi.yaml").write_text(cfg.replace("cutoff: 0.8 nm", "cutoff: 0.7 nm"))
    capsys.readouterr()
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'ibi_checkpoint.chk'} belongs to a different IBI run" in err
    assert "these settings differ: settings.cutoff" in err and "--overwrite" in err
    # inverse Monte Carlo through the same command (too few frames for its bins here: it says so, and runs)
    # (and its noisy update heats the second iteration far off the target: the guard stops that by default)
    imc = cfg.replace(str(out), str(tmp_path / "imc")) + "method: imc\ndamping: 0.5\n"
    (tmp_path / "imc.yaml").write_text(imc)
    assert main(["ibi", str(tmp_path / "imc.yaml")]) == 1
    assert "temperature_guard" in capsys.readouterr().err
    (tmp_path / "imc.yaml").write_text(imc + "temperature_guard: null\n")
    assert main(["ibi", str(tmp_path / "imc.yaml")]) == 0
    log = json.loads((tmp_path / "imc" / "convergence.json").read_text())
    assert log["settings"]["method"] == "imc" and len(log["history"]) == 2
    assert "twice as many frames as bins" in caplog.text
    # OpenMM's own NaN check during an IBI run becomes a SimulationError that names the blow-up
    from types import SimpleNamespace

    from openmm_cgml.exceptions import SimulationError
    from openmm_cgml.ibi import IterativeBoltzmannInversion

    class Exploding:
        def step(self, n):
            raise openmm.OpenMMException("Particle coordinate is NaN")

    with pytest.raises(SimulationError, match="blew up during IBI's equilibration.*smaller timestep"):
        IterativeBoltzmannInversion._sample(SimpleNamespace(settings=SimpleNamespace(equilibration_steps=10)), None,
                                            Exploding(), None, None, production_steps=10)


def test_config_needs_units(tmp_path):
    (tmp_path / "ibi.yaml").write_text("cg_dataset: x.h5\noutput_dir: o\ntemperature: 300\ncutoff: 1 nm\n")
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 1


def test_ibi_config_kde_bandwidth_scale():
    from openmm_cgml.exceptions import ConfigurationError
    from openmm_cgml.workflows import IBIConfig

    base = {"cg_dataset": "x.h5", "output_dir": "o", "temperature": "300 K", "cutoff": "1 nm"}
    assert IBIConfig.from_data(base).kde_bandwidth_scale == 1.0
    assert IBIConfig.from_data({**base, "kde_bandwidth_scale": 0.5}).kde_bandwidth_scale == 0.5
    with pytest.raises(ConfigurationError, match="kde_bandwidth_scale"):
        IBIConfig.from_data({**base, "kde_bandwidth_scale": 0})
    assert IBIConfig.from_data({**base, "method": "imc"}).method == "imc"
    with pytest.raises(ConfigurationError, match="method"):
        IBIConfig.from_data({**base, "method": "newton"})


def test_refine_bonded_needs_bonded_terms(tmp_path, capsys):
    aa = tmp_path / "aa.h5"
    argon_dataset(aa, n_frames=2)
    (tmp_path / "map.yaml").write_text(f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\n"
                                       "mapping:\n  method: automatic\n  n_beads: 1\n")
    assert main(["map", str(tmp_path / "map.yaml")]) == 0
    (tmp_path / "ibi.yaml").write_text(f"cg_dataset: {tmp_path / 'cg.h5'}\noutput_dir: {tmp_path / 'ibi'}\n"
                                       f"temperature: {T} K\ncutoff: 0.8 nm\nrefine_bonded: true\n")
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 1
    assert "refine_bonded: true needs bonded terms to refine" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["mapping:\n  method: groups\n", "mapping:\n  method: nonsense\n"])
def test_map_config_errors(tmp_path, bad):
    aa = tmp_path / "aa.h5"
    argon_dataset(aa, n_frames=1)
    (tmp_path / "map.yaml").write_text(f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\n" + bad)
    assert main(["map", str(tmp_path / "map.yaml")]) == 1


def test_target_pressure_decides_best_and_convergence(tmp_path):
    """With a target pressure, an iteration counts (as converged, and as the best) only within
    pressure_tolerance of it: the argon liquid's RDF error is below a loose tolerance at once, yet a run whose
    pressure is off keeps iterating and picks the iteration closest in pressure; without a target the same run
    stops at iteration 0."""
    from openmm_cgml.ibi import IBISettings

    s = IBISettings(temperature=f"{T} K", cutoff="0.8 nm", target_pressure="1 bar", pressure_tolerance="50 bar")
    near, far, farther = ({"error": e, "pressure_bar": p} for e, p in ((0.05, 30.0), (0.01, 400.0), (0.001, 900.0)))
    assert s.rank(near) < s.rank(far) < s.rank(farther)  # within tolerance first, then by pressure deviation
    assert sorted([far, near], key=s.rank)[0] is near
    free = IBISettings(temperature=f"{T} K", cutoff="0.8 nm")
    assert free.rank(farther) < free.rank(far) < free.rank(near)  # no target: RDF error alone
    assert free.converged({"error": 0.001, "pressure_bar": 900.0}) and not s.converged(farther)
    with pytest.raises(Exception, match="pressure_tolerance must be positive"):
        IBISettings(temperature=f"{T} K", cutoff="0.8 nm", pressure_tolerance="0 bar")
    # an iteration that did not hold its temperature (RDFs of another temperature) is never converged and ranks
    # after every other one, whatever its RDF error; entries without the flag (older checkpoints) count as held
    hot = {"error": 1e-4, "pressure_bar": 1.0, "temperature_held": False}
    for settings in (s, free):
        assert not settings.converged(hot)
        assert settings.rank(farther) < settings.rank(hot) and settings.rank(near) < settings.rank(hot)
        assert settings.rank({**hot, "temperature_held": True}) < settings.rank(near)

    aa = tmp_path / "aa.h5"
    argon_dataset(aa)
    (tmp_path / "map.yaml").write_text(f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\n"
                                       "mapping:\n  method: automatic\n  n_beads: 1\n")
    assert main(["map", str(tmp_path / "map.yaml")]) == 0
    base = (f"cg_dataset: {tmp_path / 'cg.h5'}\ntemperature: {T} K\ncutoff: 0.8 nm\ntimestep: 5 fs\n"
            "max_iterations: 3\nequilibration_steps: 20\nproduction_steps: 100\nsample_interval: 20\n"
            "platform: Reference\ntolerance: 1.0\n")
    logs = {}
    for name, extra in (("free", ""), ("pressure", "target_pressure: 1 bar\npressure_tolerance: 0.001 bar\n")):
        (tmp_path / f"{name}.yaml").write_text(base + f"output_dir: {tmp_path / name}\n" + extra)
        assert main(["ibi", str(tmp_path / f"{name}.yaml")]) == 0
        logs[name] = json.loads((tmp_path / name / "convergence.json").read_text())
    assert logs["free"]["converged"] and len(logs["free"]["history"]) == 1
    history = logs["pressure"]["history"]
    assert not logs["pressure"]["converged"] and len(history) == 3
    deviation = [abs(h["pressure_bar"] - 1.0) for h in history]
    assert logs["pressure"]["best_iteration"] == int(np.argmin(deviation))


def _refinement_settings(tmp_path, *, seed: int, epochs: int, **extra) -> tuple:
    """A small known fluid, a tiny network trained on it (harmonic bond and repulsion priors), and the settings of
    a short refinement of that network (``cgml ibi`` with ``base_model``): (dataset path, settings)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _cg_fluid import simulate_known_fluid

    from openmm_cgml.training import train_force_matching

    data = simulate_known_fluid(tmp_path / "fluid.h5", n_frames=60, seed=seed)
    model = {"name": "schnet", "args": {"hidden": 8, "n_rbf": 8, "n_interactions": 1, "intra_cutoff": 0.5,
                                        "inter_cutoff": 0.8,
                                        "priors": [{"name": "harmonic_bond",
                                                    "args": {"parameters": {"A-B": {"r0": 0.3, "k": 4000.0}}}},
                                                   {"name": "repulsion",
                                                    "args": {"sigma": 0.3, "exponent": 12, "cutoff": 0.5}}]}}
    result = train_force_matching(data, model, {"epochs": epochs, "batch_size": 8, "progress": False},
                                  output_dir=tmp_path / "nn")
    settings = {"cg_dataset": str(data), "output_dir": str(tmp_path / "refined"), "temperature": "300 K",
                "cutoff": "1.0 nm", "timestep": "4 fs", "max_iterations": 2, "equilibration_steps": 50,
                "production_steps": 300, "sample_interval": 20, "noise_factor": None, "platform": "CPU",
                "base_model": str(result.bundle_path), "initial": "zero", **extra}
    return data, settings


@pytest.mark.slow
def test_ibi_refines_a_neural_model_for_structure(tmp_path):
    """``base_model``: a trained network (with its priors) stays fixed and IBI grows pair tables on top from zero;
    the output directory holds the tables and a copy of the bundle (no bonded terms), and CGPotential of it is the
    network plus the correction."""
    from openmm_cgml.exceptions import ConfigurationError
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows.ibi import BASE_MODEL, IBIConfig, run_ibi

    data, settings = _refinement_settings(tmp_path, seed=2, epochs=2, bonded="none")
    run = run_ibi(IBIConfig.from_data(settings))
    out = tmp_path / "refined"
    assert len(run.result.history) == 2 and (out / "pair_tables.json").exists() and (out / BASE_MODEL).exists()
    assert not (out / "bonded_terms.json").exists()
    potential = CGPotential(out)
    assert sorted(t.kind for t in potential.terms) == sorted(["neural", run.result.term.kind])
    system = potential.createSystem(CGTopology.from_dataset(open_dataset(data)))
    assert system.getNumForces() >= 2
    for bad in ({"bonded": "harmonic"}, {"initial": "pmf"}):
        with pytest.raises(ConfigurationError, match="base_model"):
            run_ibi(IBIConfig.from_data({**settings, **bad, "output_dir": str(tmp_path / "bad")}))


@pytest.mark.slow
def test_ibi_refines_a_neural_models_bonded_distributions_with_correction_tables(tmp_path):
    """``base_model`` with ``bonded: table`` and ``refine_bonded: true``: bonded correction tables start at zero on
    the Boltzmann-inverted tables' grids and are grown by bonded IBI beside the pair tables; the output holds them
    (named as corrections) with the bundle, and CGPotential of it is network + pair tables + bonded corrections."""
    from openmm_cgml._checkpoint import read_checkpoint
    from openmm_cgml.exceptions import ConfigurationError
    from openmm_cgml.forces.bonded import TabulatedBonds
    from openmm_cgml.potential import CGPotential, read_terms
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows.ibi import BASE_MODEL, IBIConfig, run_ibi

    data, settings = _refinement_settings(tmp_path, seed=3, epochs=1, bonded="table", refine_bonded=True,
                                          max_iterations=3)
    with pytest.raises(ConfigurationError, match="refine_bonded: true"):
        run_ibi(IBIConfig.from_data({**settings, "refine_bonded": False, "output_dir": str(tmp_path / "bad")}))
    run = run_ibi(IBIConfig.from_data(settings))
    out = tmp_path / "refined"
    assert (out / "pair_tables.json").exists() and (out / BASE_MODEL).exists()
    assert all("bond A-B" in h["bonded_overlap"] for h in run.result.history)
    corrections = read_terms(out / "bonded_terms.json")
    assert [t.name for t in corrections] == ["bonds_correction"] and isinstance(corrections[0], TabulatedBonds)
    x, u = corrections[0].tables[("A", "B")]
    assert np.all(np.isfinite(u)) and u.min() == 0.0 and x[0] < 0.3 < x[-1]  # around the bond the data samples
    assert [h["iteration"] for h in run.result.history] == [0, 1, 2]
    # the refiner moved the tables from zero (each iteration that held its temperature updates them)
    latest = read_checkpoint(out / "ibi_checkpoint.chk")[0]["meta"]["bonded"]
    if any(h["temperature_held"] for h in run.result.history):
        assert any(np.ptp(t["tables"]["A-B"]["u_kJ_per_mol"]) > 0
                   for t in latest if t["name"] == "bonds_correction")
    potential = CGPotential(out)
    assert sorted(t.kind for t in potential.terms) == sorted(["neural", run.result.term.kind, "tabulated_bonds"])
    system = potential.createSystem(CGTopology.from_dataset(open_dataset(data)))
    assert system.getNumForces() >= 3
