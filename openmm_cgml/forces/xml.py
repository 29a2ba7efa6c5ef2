"""XML round trips of Systems that contain a ``TorchForce``.

``openmm.XmlSerializer.serialize`` writes a ``TorchForce`` correctly (the TorchScript
module is embedded as ``encodedFileContents``), but in some openmm-torch builds
(``acellera-openmmtorch-cpu`` 1.10 with OpenMM 8.6.1 from PyPI) the deserializer crashes
the process: ``TorchForceProxy::deserialize`` reads string properties through a C++ ABI
that does not match OpenMM's, and segfaults.  The TorchForce proxy also does not write
the force's name.

:func:`serialize_system` writes standard OpenMM XML (plus every force's ``name``), which
any OpenMM reads; :func:`deserialize_system` reads it back, rebuilding each
``TorchForce`` in Python from its embedded module and deserializing everything else
with OpenMM's own serializer, so no broken proxy is ever called.  Force order, names,
groups, periodicity, forces output, global parameters, parameter derivatives and
properties are kept.

**Loading is safe by default.**  OpenMM's own deserializer unpickles the ``function`` of a
``PythonForce``, so a crafted System XML runs arbitrary code the moment it is read.  A CG System XML
is exactly what people share, so :func:`deserialize_system` and :func:`load_system` check every
``<Force>`` element of the document (nested ones too: a ``CustomCVForce`` or ``ATMForce`` holds
forces) against :data:`SAFE_FORCE_TYPES`, OpenMM's standard forces, whose XML holds only numbers
and algebraic expressions, and refuse anything else (``PythonForce``, or a force type of a plug-in
this package does not know) before any of it reaches OpenMM, unless the caller passes
``trusted=True``.  A ``TorchForce`` is rebuilt from its embedded TorchScript module, which
TorchScript compiles without Python (no imports, no file access); one that names a local ``file``
instead of embedding its module is refused too unless ``trusted=True``, so a shared file cannot make
the loader read paths on the receiving machine.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .._io import atomic_write_text
from .._safety import SAFE_FORCE_TYPES, parse_openmm_xml, read_xml_text
from ..exceptions import ConfigurationError, CorruptFileError, MissingDependencyError

__all__ = ["serialize_system", "deserialize_system", "clone_system", "remove_barostats", "save_system", "load_system",
           "SAFE_FORCE_TYPES"]

_TORCH_TYPE = "TorchForce"


def serialize_system(system) -> str:
    """OpenMM XML of ``system``, with each force's name recorded (``TorchForce`` drops it)."""
    import openmm

    root = ET.fromstring(openmm.XmlSerializer.serialize(system))
    forces = root.find("Forces")
    for i, element in enumerate(forces if forces is not None else []):
        element.set("name", system.getForce(i).getName())
    return ET.tostring(root, encoding="unicode")


def deserialize_system(xml: str, *, trusted: bool = False, source: str = "the System XML"):
    """Rebuild a System from :func:`serialize_system` (or plain OpenMM) XML; safe with TorchForces.

    Parameters
    ----------
    xml : str
        The XML text.
    trusted : bool
        Load force types that carry executable content (``PythonForce``: a pickled function that runs
        on load) or that this package does not know, and TorchForces that name a local file.  Only
        for a file you wrote yourself or whose author you trust.
    source : str
        How error messages name the document (for example its path).

    Raises
    ------
    UntrustedContentError
        If the document holds such a force and ``trusted`` is false (nothing was deserialized).
    CorruptFileError
        If the text is not System XML.
    MissingDependencyError
        If it holds a TorchForce and openmm-torch is not installed.
    """
    import openmm

    root = parse_openmm_xml(xml, "System", source, trusted=trusted)
    forces = root.find("Forces")
    elements = list(forces) if forces is not None else []
    if any(el.get("type") in ("CGPairTableForce", "CGSchNetForce") for el in root.iter("Force")):
        from . import compiled

        try:
            compiled.load()  # registers the forces' deserializers
        except ConfigurationError as exc:
            raise MissingDependencyError(f"{source} holds an openmm_cgml compiled force; {exc}") from exc
    if not any(el.get("type") == _TORCH_TYPE for el in elements):
        return openmm.XmlSerializer.deserialize(xml)

    for el in elements:  # everything but the TorchForces goes through OpenMM's serializer
        if el.get("type") == _TORCH_TYPE:
            forces.remove(el)
    others = openmm.XmlSerializer.deserialize(ET.tostring(root, encoding="unicode"))
    system = openmm.XmlSerializer.clone(others)
    while system.getNumForces():
        system.removeForce(system.getNumForces() - 1)
    k = 0
    for el in elements:
        if el.get("type") == _TORCH_TYPE:
            system.addForce(_torch_force_from_element(el, trusted=trusted))
        else:
            system.addForce(openmm.XmlSerializer.clone(others.getForce(k)))
            k += 1
    return system


def _torch_force_from_element(el, *, trusted: bool = False):
    from ._openmmtorch import import_openmmtorch

    openmmtorch = import_openmmtorch("this System holds a TorchForce: install openmm-torch (conda-forge "
                                     "`openmm-torch`, or pip `acellera-openmmtorch-cpu`)")
    import torch
    encoded = el.get("encodedFileContents")
    if encoded:
        data = bytes.fromhex(encoded)
    elif el.get("file") and trusted:
        data = Path(el.get("file")).read_bytes()
    else:
        raise CorruptFileError("a TorchForce element has neither encodedFileContents nor a file")
    fd, tmp = tempfile.mkstemp(suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        module = torch.jit.load(tmp)
    except RuntimeError as exc:
        raise CorruptFileError(f"the TorchForce's embedded module cannot be loaded: {exc}") from exc
    finally:
        os.unlink(tmp)
    force = openmmtorch.TorchForce(module)
    force.setOutputsForces(el.get("outputsForces", "0") == "1")
    force.setUsesPeriodicBoundaryConditions(el.get("usesPeriodic", "0") == "1")
    force.setForceGroup(int(el.get("forceGroup", "0")))
    force.setName(el.get("name") or _TORCH_TYPE)
    for p in el.findall("GlobalParameters/Parameter"):
        force.addGlobalParameter(p.get("name"), float(p.get("default")))
    for p in el.findall("ParameterDerivatives/Parameter"):
        force.addEnergyParameterDerivative(p.get("name"))
    for p in el.findall("Properties/Property"):
        force.setProperty(p.get("name"), p.get("value"))
    return force


def clone_system(system):
    """A deep copy of ``system`` that is safe with TorchForces (``openmm.XmlSerializer.clone`` is not: it
    goes through openmm-torch's deserializer, which crashes the pip build)."""
    return deserialize_system(serialize_system(system), trusted=True)  # the caller's own object


def remove_barostats(system) -> int:
    """Remove every barostat (OpenMM's Monte Carlo barostats) from ``system`` in place, for a run at constant volume
    or one that adds its own; returns how many there were."""
    found = [i for i in range(system.getNumForces()) if "Barostat" in type(system.getForce(i)).__name__]
    for i in reversed(found):
        system.removeForce(i)
    return len(found)


def save_system(system, path) -> Path:
    """Write ``system`` as XML to ``path`` atomically (see :func:`serialize_system`)."""
    atomic_write_text(path, serialize_system(system))
    return Path(path)


def load_system(path, *, trusted: bool = False):
    """Read a System written by :func:`save_system` or OpenMM (TorchForces are rebuilt safely).

    Refuses a file holding a ``PythonForce``, an unknown force type or a TorchForce that names a local
    file, unless ``trusted=True`` (see :func:`deserialize_system`).
    """
    return deserialize_system(read_xml_text(path, "System"), trusted=trusted, source=f"System XML {path}")
