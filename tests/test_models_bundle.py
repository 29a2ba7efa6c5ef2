"""Model bundles: round trip, corruption and mapping checks."""

import numpy as np
import pytest
import torch
from _neural_helpers import (
    _one_torch_thread,  # noqa: F401  (autouse fixture)
    make_model,
    trimer_info,
    trimer_positions,
)

from openmm_cgml.exceptions import CorruptFileError, DatasetError, InvalidMappingError
from openmm_cgml.models import load_bundle, save_bundle


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory):
    info = trimer_info(4, box=2.0)
    model = make_model(info, dtype="float32")
    path = tmp_path_factory.mktemp("bundle") / "model.cgml"
    save_bundle(path, model, info, training={"note": "test", "array": np.arange(3)})
    return path, info, model


def test_round_trip_without_training_code(bundle_file):
    path, info, model = bundle_file
    bundle = load_bundle(path)
    assert bundle.type_names == ["A", "B"]
    assert bundle.units["energy"] == "kJ/mol"
    assert bundle.training["array"] == [0, 1, 2]
    assert "torch" in bundle.versions
    assert bundle.cutoff == pytest.approx(0.9)
    rebuilt = bundle.build_model(info)
    pos = torch.tensor(trimer_positions(info), dtype=torch.float32)
    box = torch.eye(3) * 2.0
    assert float(rebuilt(pos, box).detach()) == pytest.approx(float(model(pos, box).detach()), rel=1e-6)
    as64 = bundle.build_model(info, dtype="float64")
    assert float(as64(pos.double(), box.double()).detach()) == pytest.approx(float(model(pos, box).detach()), rel=1e-4)
    # the file is plain data: it loads with weights_only=True (no classes are unpickled)
    raw = torch.load(path, weights_only=True)
    assert raw["model"]["name"] == "schnet"


def test_different_mapping_is_refused(bundle_file):
    path, _, _ = bundle_file
    bundle = load_bundle(path)
    with pytest.raises(InvalidMappingError, match="different mapping"):
        bundle.build_model(trimer_info(4, box=2.0, types=("A", "B", "B")))
    with pytest.raises(InvalidMappingError, match="unknown types"):
        bundle.build_model(trimer_info(4, box=2.0, types=("A", "C", "A")))
    # a different molecule count is the same mapping
    bundle.build_model(trimer_info(6, box=2.0))


def test_corrupt_bundles_give_clear_errors(bundle_file, tmp_path):
    path, _, _ = bundle_file
    data = path.read_bytes()
    truncated = tmp_path / "truncated.cgml"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        load_bundle(truncated)
    garbage = tmp_path / "garbage.cgml"
    garbage.write_bytes(b"not a bundle at all" * 10)
    with pytest.raises(CorruptFileError):
        load_bundle(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CorruptFileError, match="not an openmm_cgml model bundle"):
        load_bundle(other)
    payload = torch.load(path, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][key] = payload["state_dict"][key] + 1.0
    tampered = tmp_path / "tampered.cgml"
    torch.save(payload, tampered)
    with pytest.raises(CorruptFileError, match="checksum"):
        load_bundle(tampered)
    with pytest.raises(DatasetError, match="does not exist"):
        load_bundle(tmp_path / "missing.cgml")
