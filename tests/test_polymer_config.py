"""``cgml polymer``'s bad input is refused before any work: a repeat unit that does not tile the chain (of the
oligomer or of a transfer target), and settings out of range."""

import numpy as np
import pytest

from openmm_cgml.exceptions import CGMLError
from openmm_cgml.testing import requires_openff
from openmm_cgml.workflows.polymer import PolymerConfig, run_polymer

BASE = {"smiles": "C" * 12, "repeat_smarts": "[CH2][CH2]", "count": 8}


@requires_openff
@pytest.mark.parametrize("change, message", [
    ({"repeat_smarts": "[NH2]"}, "matches no"),
    ({"transfer": [{"smiles": "CCCCCCOCCCCCC", "count": 4}]}, "left over|between units"),
])
def test_a_repeat_unit_that_does_not_tile_is_refused_before_the_aa_run(tmp_path, change, message):
    config = PolymerConfig.from_data({**BASE, **change, "output": str(tmp_path / "out")})
    with pytest.raises(CGMLError, match=message):
        run_polymer(config)
    assert not (tmp_path / "out" / "aa.h5").exists()


@pytest.mark.parametrize("change", [{"count": 1}, {"units_per_bead": 0}, {"density": "0.8"},
                                    {"temperature": "-5 K"}, {"transfer": [{"smiles": "CCCC", "count": 1}]},
                                    {"scan_steps": 10}])
def test_bad_settings_are_refused(change):
    with pytest.raises(CGMLError):
        PolymerConfig.from_data({**BASE, **change})


def test_the_neural_refinement_example_is_a_valid_ibi_configuration():
    """examples/polymer/refine_neural.yaml refines the polymer workflow's network as that workflow's IBI treats
    chains (pair corrections beyond 1-3 along the chain) with moment-matching bonded corrections from zero, at the
    network's timestep, on the pe_cpu example's outputs."""
    from pathlib import Path

    import yaml

    from openmm_cgml.workflows.ibi import IBIConfig

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "examples/polymer/refine_neural.yaml").read_text())
    config = IBIConfig.from_data(data)
    assert config.exclusions == "bonded" and config.initial == "zero" and config.refine_bonded
    assert config.bonded_update == "moments" and config.bonded_moments == {"bond": 2, "angle": 4}
    output = yaml.safe_load((root / "examples/polymer/pe_cpu.yaml").read_text())["output"]
    assert all(str(data[k]).startswith(output + "/") for k in ("cg_dataset", "output_dir", "base_model"))


def test_ibi_is_pressure_corrected_towards_the_aa_pressure_unless_told_otherwise(tmp_path):
    """By default the melt's IBI targets the AA reference's barostat pressure (1 bar) with 30 iterations; switched
    off it is the plain 10-iteration fit; an ``ibi:`` override of the target wins."""
    from openmm_cgml.workflows.ibi import IBIConfig
    from openmm_cgml.workflows.polymer import ibi_settings

    default = IBIConfig.from_data(ibi_settings(PolymerConfig.from_data(BASE), tmp_path, 1.5))
    assert default.target_pressure == pytest.approx(1.0) and default.max_iterations == 30
    assert default.pressure_tolerance == pytest.approx(100.0) and default.exclusions == "bonded"
    assert default.cutoff == pytest.approx(1.2) and default.cg_dataset == str(tmp_path / "cg_reference.h5")
    plain = IBIConfig.from_data(ibi_settings(PolymerConfig.from_data({**BASE, "ibi_pressure_correction": False}),
                                             tmp_path, 1.0))
    assert plain.target_pressure is None and plain.max_iterations == 10 and plain.cutoff == pytest.approx(0.99)
    other = PolymerConfig.from_data({**BASE, "reference": {"pressure": "200 bar"}, "ibi": {"max_iterations": 5}})
    assert IBIConfig.from_data(ibi_settings(other, tmp_path, 1.5)).target_pressure == pytest.approx(200.0)
    assert IBIConfig.from_data(ibi_settings(other, tmp_path, 1.5)).max_iterations == 5
    told = PolymerConfig.from_data({**BASE, "ibi": {"target_pressure": "50 bar"}})
    assert IBIConfig.from_data(ibi_settings(told, tmp_path, 1.5)).target_pressure == pytest.approx(50.0)


@pytest.mark.parametrize("change, message", [
    ({"neural": False, "transfer": [{"smiles": "C" * 24, "count": 4, "name": "C24", "models": ["neural"]}]},
     "C24.*neural is false"),
    ({"transfer": [{"smiles": "C" * 24, "count": 4, "models": ["lammps"]}]}, "models"),
    ({"transfer": [{"smiles": "C" * 24, "count": 4, "models": []}]}, "models"),
])
def test_a_transfer_target_may_only_name_models_the_workflow_makes(change, message):
    with pytest.raises(CGMLError, match=message):
        PolymerConfig.from_data({**BASE, **change})


@requires_openff
@pytest.mark.parametrize("name", ["pe.yaml", "pe_cpu.yaml", "pe_cpu_ibi.yaml", "pe_cpu_ibi_gpu_c32.yaml", "peo.yaml"])
def test_the_polymer_examples_are_valid_and_tile_every_chain(name):
    """Every polymer example loads, its repeat unit tiles the oligomer and every transfer target (the check the
    workflow makes before its AA run), and the two-core examples transfer IBI to chains 2x and 4x longer."""
    from pathlib import Path

    import yaml

    from openmm_cgml.workflows.polymer import check_mappings

    root = Path(__file__).resolve().parents[1]
    config = PolymerConfig.from_data(yaml.safe_load((root / "examples/polymer" / name).read_text()))
    check_mappings(config)
    assert config.ibi_pressure_correction
    if name == "pe_cpu_ibi_gpu_c32.yaml":  # pe_cpu_ibi.yaml's C16 melt (its output), C32 against a given AA melt
        ibi = PolymerConfig.from_data(yaml.safe_load((root / "examples/polymer/pe_cpu_ibi.yaml").read_text()))
        assert config.model_dump(exclude={"transfer"}) == ibi.model_dump(exclude={"transfer"})
        (target,) = config.transfer
        assert target.smiles == "C" * 32 and target.count == 48 and target.aa_dataset is not None
        assert not target.aa_reference and target.models == ["ibi"]
    elif name.startswith("pe_cpu"):
        lengths = {t.name: t.smiles.count("C") // config.smiles.count("C") for t in config.transfer}
        assert {"C32": 2, "C64": 4}.items() <= lengths.items()
        assert all(t.models in (None, ["ibi"]) for t in config.transfer)
    # every longer chain's AA melt is checked against its box before it is built (the reference's own check), and
    # its settings are valid; pe_cpu_ibi.yaml's C32 melt shares the CG transfer's 48-chain box, which the fully
    # extended chain does not fit (warned), and repartitions hydrogen masses for a 4 fs step
    from openmm_cgml.reference import ReferenceConfig
    from openmm_cgml.workflows.polymer import transfer_reference_settings
    from openmm_cgml.workflows.reference import check_chain_box_length

    for target in (t for t in config.transfer if t.aa_reference):
        settings = transfer_reference_settings(config, target)
        ReferenceConfig.from_data(settings)
        found = check_chain_box_length(settings, on_problem="ignore")
        assert found and found[0]["box_length_nm"] > 0, (target.name, found)
        if name == "pe_cpu_ibi.yaml":
            assert target.name == "C32" and target.count == 48 and found[0]["too_long"]
            assert settings["hydrogen_mass"] == "3 Da" and settings["timestep"] == "4 fs"
            assert settings["start_conformations"] == "unperturbed" and settings["production"] == "1 ns"


@requires_openff
def test_a_longer_chains_reference_takes_its_own_overrides_and_bad_ones_are_refused_before_any_work(tmp_path):
    """A transfer target's ``reference:`` overrides the melt's reference settings for its own AA melt (a longer chain
    relaxes more slowly); a bad override is refused before the short chains' AA run, and overrides without
    ``aa_reference`` are refused when the configuration loads."""
    from openmm_cgml.reference import ReferenceConfig
    from openmm_cgml.workflows.polymer import transfer_reference_settings

    target = {"smiles": "C" * 24, "count": 4, "name": "C24", "aa_reference": True}
    config = PolymerConfig.from_data({**BASE, "reference": {"production": "300 ps"},
                                      "transfer": [{**target, "reference": {"production": "1 ns"}}]})
    settings = ReferenceConfig.from_data(transfer_reference_settings(config, config.transfer[0]))
    assert settings.production == pytest.approx(1000.0) and settings.components[0].smiles == "C" * 24
    bad = PolymerConfig.from_data({**BASE, "output": str(tmp_path / "out"),
                                   "transfer": [{**target, "reference": {"production": "-1 ns"}}]})
    with pytest.raises(CGMLError, match="production"):
        run_polymer(bad)
    assert not (tmp_path / "out" / "aa.h5").exists()
    with pytest.raises(CGMLError, match="C24.*no aa_reference"):
        PolymerConfig.from_data({**BASE, "transfer": [{**target, "aa_reference": False,
                                                       "reference": {"production": "1 ns"}}]})


def test_a_kept_npt_record_is_redone_when_its_length_or_timestep_changed(tmp_path, monkeypatch):
    """``npt_ibi.json`` is reused on a rerun only if it was run for the steps and timestep now asked for."""
    import json
    from types import SimpleNamespace

    import numpy as np

    from openmm_cgml import simulation
    from openmm_cgml.workflows.polymer import _npt_record

    calls = []

    def fake_npt_density(system, positions, *, steps, timestep, **kwargs):
        calls.append((steps, timestep))
        return SimpleNamespace(to_data=lambda: {"steps": steps, "timestep_fs": 5.0, "density_g_cm3": 0.7})

    monkeypatch.setattr(simulation, "npt_density", fake_npt_density)
    run = SimpleNamespace(metadata={"timestep_ps": 0.005}, positions=np.zeros((1, 2, 3)), box=np.eye(3)[None] * 3)
    path = tmp_path / "npt_ibi.json"
    config = PolymerConfig.from_data({**BASE, "npt_duration_ps": 100})
    assert _npt_record(config, path, None, run, 0.7)["steps"] == 20000 and len(calls) == 1
    assert _npt_record(config, path, None, run, 0.7)["steps"] == 20000 and len(calls) == 1  # kept
    longer = PolymerConfig.from_data({**BASE, "npt_duration_ps": 500})
    assert _npt_record(longer, path, None, run, 0.7)["steps"] == 100000 and len(calls) == 2  # redone
    assert json.loads(path.read_text())["steps"] == 100000


def test_kept_transfer_runs_in_another_box_are_redone_and_drift_is_paired_over_chains(tmp_path):
    """A finished transfer run kept from an older folder is reused only in the box the target now asks for (its AA
    melt's) and from the start it now takes (the AA melt's mapped last frame); ``ree2_drift`` is the paired change
    between a run's halves, stationary within 2 standard errors."""
    from openmm_cgml.dataset import TrajectoryWriter
    from openmm_cgml.workflows.polymer import _drift, _kept_run_fits

    topology = {"chains": [{"id": "A", "residues": [{"name": "X", "id": "1", "atoms": [{"name": "B"}]}]}],
                "bonds": []}
    path = tmp_path / "ibi_run.h5"
    grown, mapped = "grown random walks", "its AA melt's last frame, mapped"
    assert _kept_run_fits(path, np.eye(3) * 3.0, mapped)  # nothing kept
    with TrajectoryWriter(path, topology, np.ones(1), fields=("positions",), kind="coarse-grained") as w:
        w.append(positions=np.zeros((1, 3)), box=np.eye(3) * 3.0, step=0, time=0.0)
    assert _kept_run_fits(path, np.eye(3) * 2.9, mapped)  # unfinished: the run itself resumes or restarts it
    with TrajectoryWriter(path, topology, np.ones(1), fields=("positions",), kind="coarse-grained", mode="a") as w:
        w.update_metadata(completed=True)
    assert _kept_run_fits(path, np.eye(3) * 3.0, grown) and not _kept_run_fits(path, np.eye(3) * 2.9, grown)
    assert not _kept_run_fits(path, np.eye(3) * 3.0, mapped)  # a run from before cg_start: grown random walks
    with TrajectoryWriter(path, topology, np.ones(1), fields=("positions",), kind="coarse-grained", mode="a") as w:
        w.update_metadata(cg_start=mapped)
    assert _kept_run_fits(path, np.eye(3) * 3.0, mapped) and not _kept_run_fits(path, np.eye(3) * 3.0, grown)

    rng = np.random.default_rng(0)
    steady = rng.normal(4.0, 0.3, (100, 48))
    record = _drift(steady)
    assert record["stationary"] and record["change_nm2"][0] == pytest.approx(
        record["second_half_nm2"][0] - record["first_half_nm2"][0])
    falling = steady - np.linspace(0.0, 1.0, 100)[:, None]  # every chain shrinks by 1 nm^2 over the run
    record = _drift(falling)
    assert not record["stationary"] and record["change_nm2"][0] == pytest.approx(-0.5, abs=0.05)


@requires_openff
def test_a_transfer_targets_given_aa_dataset_is_checked_before_any_work(tmp_path):
    """``aa_dataset`` (an AA melt of the target recorded elsewhere, mapped): exclusive with aa_reference, and refused
    before any work when it is missing, not coarse-grained, of another bead count or mapped another way."""
    from openmm_cgml.dataset import TrajectoryWriter
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows.polymer import _map_melt, check_references

    def config(**target):
        return PolymerConfig.from_data({**BASE, "output": str(tmp_path / "out"), "transfer": [
            {"smiles": "C" * 16, "count": 3, "name": "C16", **target}]})

    with pytest.raises(CGMLError, match="both aa_reference: true and aa_dataset"):
        config(aa_reference=True, aa_dataset=str(tmp_path / "x.h5"))
    with pytest.raises(CGMLError, match="does not exist"):
        check_references(config(aa_dataset=str(tmp_path / "missing.h5")))
    base = config()
    _, mapping = _map_melt(base, "C" * 16, 3)
    top = CGTopology.from_mapping_data(mapping.to_data(), np.eye(3) * 3.0)

    def write(path, topology, kind="coarse-grained", frames=3):
        with TrajectoryWriter(path, topology.to_openmm(), topology.masses, {"cg_topology": topology.to_data()},
                              fields=("positions",), kind=kind) as w:
            for i in range(frames):
                w.append(positions=np.random.default_rng(i).random((topology.n_beads, 3)), box=np.eye(3) * 3.0,
                         step=i, time=float(i))
        return path

    good = write(tmp_path / "good.h5", top)
    check_references(config(aa_dataset=str(good)))  # positions alone are enough
    with pytest.raises(CGMLError, match="all-atom dataset .* expected a coarse-grained one .* of 21 beads"):
        check_references(config(aa_dataset=str(write(tmp_path / "aa.h5", top, kind="all-atom"))))
    with pytest.raises(CGMLError, match="21 particles; expected .* of 28 beads \\(4 chains\\)"):
        check_references(config(aa_dataset=str(good), count=4))
    other = CGTopology.from_data({**top.to_data(), "bead_types": ["X"] * top.n_beads})
    with pytest.raises(CGMLError, match="mapped differently"):
        check_references(config(aa_dataset=str(write(tmp_path / "other.h5", other))))
