"""Files a user may have been sent never run code on load (System XML, checkpoints, bundles).

Each malicious payload, if it ran, would create a file; every test asserts the file does not exist
afterwards, and one test per payload shows it *does* run when the caller says it trusts the file, so
the payloads are live and the tests can fail.
"""

import io
import pickle
import xml.etree.ElementTree as ET

import openmm
import pytest
import torch

from openmm_cgml import CorruptFileError
from openmm_cgml._checkpoint import read_checkpoint, write_checkpoint
from openmm_cgml._safety import SAFE_FORCE_TYPES, load_tensor_payload
from openmm_cgml.exceptions import UntrustedContentError
from openmm_cgml.forces.xml import deserialize_system, load_system, save_system, serialize_system
from openmm_cgml.models.bundle import load_bundle
from openmm_cgml.testing import requires_openff


class _Payload:
    """Unpickling this calls ``open(path, "w")``: it creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _plain_system():
    system = openmm.System()
    for _ in range(2):
        system.addParticle(10.0)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, 0.3, 1000.0)
    system.addForce(bond)
    return system


def _python_force_element(target) -> ET.Element:
    return ET.Element("Force", {"type": "PythonForce", "name": "innocent", "forceGroup": "0", "usesPeriodic": "0",
                                "version": "2", "function": pickle.dumps(_Payload(target)).hex()})


def _malicious_xml(target, *, nested: bool = False) -> str:
    root = ET.fromstring(serialize_system(_plain_system()))
    evil = _python_force_element(target)
    if nested:  # a PythonForce hidden as the collective variable of a CustomCVForce
        cv = ET.fromstring(serialize_system(_with_cv()))
        holder = cv.find("Forces")[1]
        var = holder.find("CollectiveVariables/CollectiveVariable")
        var.remove(var[0])
        var.append(evil)
        evil = holder
    root.find("Forces").append(evil)
    return ET.tostring(root, encoding="unicode")


def _with_cv():
    system = _plain_system()
    cv = openmm.CustomCVForce("2*d")
    inner = openmm.CustomBondForce("r")
    inner.addBond(0, 1)
    cv.addCollectiveVariable("d", inner)
    system.addForce(cv)
    return system


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-CustomCVForce"])
def test_system_xml_with_python_force_is_refused(tmp_path, nested):
    target = tmp_path / "pwned"
    path = tmp_path / "shared.xml"
    path.write_text(_malicious_xml(target, nested=nested))
    with pytest.raises(UntrustedContentError, match=r"PythonForce \('innocent'\).*trusted=True"):
        load_system(path)
    with pytest.raises(UntrustedContentError, match="PythonForce"):
        deserialize_system(path.read_text())
    assert not target.exists()
    # the payload is live: a caller who says they trust the file gets it run (OpenMM then fails on it)
    with pytest.raises(Exception):  # noqa: B017 - whatever OpenMM makes of a file object as a function
        load_system(path, trusted=True)
    assert target.exists()


def test_unknown_force_type_is_refused_and_standard_forces_load(tmp_path):
    root = ET.fromstring(serialize_system(_with_cv()))
    again = deserialize_system(ET.tostring(root, encoding="unicode"))  # nested standard forces are fine
    assert again.getNumForces() == 2
    root.find("Forces").append(ET.Element("Force", {"type": "SomePluginForce", "name": "p"}))
    with pytest.raises(UntrustedContentError, match="'SomePluginForce'"):
        deserialize_system(ET.tostring(root, encoding="unicode"))
    # the allow-list names OpenMM force types that exist, and never PythonForce
    assert "PythonForce" not in SAFE_FORCE_TYPES
    known = {name for name in dir(openmm) if isinstance(getattr(openmm, name), type)
             and issubclass(getattr(openmm, name), openmm.Force)}
    missing = SAFE_FORCE_TYPES - known - {"TorchForce", "CGPairTableForce", "CGSchNetForce"}  # (ours: _plugin)
    assert not missing, missing


def test_torch_force_naming_a_local_file_is_refused(tmp_path):
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"not for you")
    root = ET.fromstring(serialize_system(_plain_system()))
    root.find("Forces").append(ET.Element("Force", {"type": "TorchForce", "name": "nn", "file": str(secret),
                                                    "forceGroup": "0", "outputsForces": "0", "usesPeriodic": "0"}))
    with pytest.raises(UntrustedContentError, match="local file"):
        deserialize_system(ET.tostring(root, encoding="unicode"))


def test_trusted_flag_is_not_needed_for_our_own_files(tmp_path):
    system = _with_cv()
    save_system(system, tmp_path / "s.xml")
    assert load_system(tmp_path / "s.xml").getNumForces() == 2


def test_bundle_with_pickled_objects_is_refused_without_torch_advice(tmp_path):
    target = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"format": "openmm_cgml.model_bundle", "model": _Payload(target)}, buf)
    path = tmp_path / "model.cgml"
    path.write_bytes(buf.getvalue())
    with pytest.raises(CorruptFileError) as info:
        load_bundle(path)
    message = str(info.value)
    assert "pickled Python objects" in message and "_io.open" in message
    assert "weights_only" not in message and "trusted source" not in message
    assert not target.exists()
    with pytest.raises(CorruptFileError, match="not readable"):
        load_tensor_payload(b"\x00garbage", "test payload")
    # the payload is live: a plain pickle load runs it
    torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert target.exists()


@requires_openff
def test_reference_resume_refuses_a_tampered_system_xml_or_state(tmp_path):
    from test_reference_run import ETHANE, _Crash, _CrashAfter

    from openmm_cgml.reference import run_reference

    with pytest.raises(_Crash):  # leaves <output>.system.xml and a checkpoint behind
        run_reference(ETHANE, tmp_path / "aa.h5", progress=False, reporters=[_CrashAfter(50, 6)])
    target = tmp_path / "pwned"
    xml = tmp_path / "aa.system.xml"
    assert xml.exists()
    good = xml.read_text()
    xml.write_text(_malicious_xml(target))
    with pytest.raises(UntrustedContentError, match="PythonForce"):
        run_reference(ETHANE, tmp_path / "aa.h5", progress=False)
    assert not target.exists()
    # a checkpoint whose State payload was swapped for a System with a PythonForce
    xml.write_text(good)
    ckpt = next(tmp_path.glob("aa.h5*.chk"))
    header, _ = read_checkpoint(ckpt)
    write_checkpoint(ckpt, dict(header, payload="state"), _malicious_xml(target).encode())
    with pytest.raises(CorruptFileError, match="expected an OpenMM <State>"):
        run_reference(ETHANE, tmp_path / "aa.h5", progress=False)
    assert not target.exists()
