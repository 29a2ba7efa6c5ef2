"""``cgml polymer``'s bad input is refused before any work: a repeat unit that does not tile the chain (of the
oligomer or of a transfer target), and settings out of range."""

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
