"""Loading files a user may have been sent, without running what they hold.

Two kinds of shared file can carry executable content:

- OpenMM XML: ``openmm.XmlSerializer.deserialize`` unpickles the ``function`` of a ``PythonForce``, so
  a crafted System XML runs arbitrary code the moment it is read (and a State payload can be swapped
  for a System).  :func:`check_system_element` checks every ``<Force>`` element (at any depth: a
  ``CustomCVForce`` or ``ATMForce`` nests forces) against :data:`SAFE_FORCE_TYPES` before anything
  reaches OpenMM; :func:`deserialize_openmm_xml` also checks the document's root element.
- torch files: :func:`load_tensor_payload` reads with ``weights_only=True`` (tensors and plain data)
  and, when that refuses a payload, says so in its own words: torch's message advises retrying with
  ``weights_only=False``, which would run whatever the file holds.

Callers who trust a file pass ``trusted=True`` to the public loaders
(:func:`openmm_cgml.forces.xml.load_system`).
"""

from __future__ import annotations

import io
import pickle
import re
import xml.etree.ElementTree as ET
import zipfile

from .exceptions import CorruptFileError, UntrustedContentError

__all__ = ["SAFE_FORCE_TYPES", "check_system_element", "deserialize_openmm_xml", "parse_openmm_xml", "load_openmm_xml", "read_xml_text",
           "load_tensor_payload"]

#: OpenMM force types whose XML holds only numbers, names and algebraic expressions: loaded without
#: ``trusted=True``.  ``PythonForce`` (a pickled Python function) is deliberately absent, and so is any
#: force type this list does not name (a plug-in's serializer could hold anything).
SAFE_FORCE_TYPES = frozenset({
    "AndersenThermostat", "ATMForce", "CMAPTorsionForce", "CMMotionRemover", "ConstantPotentialForce",
    "CustomAngleForce", "CustomBondForce", "CustomCentroidBondForce", "CustomCompoundBondForce",
    "CustomCVForce", "CustomExternalForce", "CustomGBForce", "CustomHbondForce", "CustomManyParticleForce",
    "CustomNonbondedForce", "CustomTorsionForce", "CustomVolumeForce", "GayBerneForce", "GBSAOBCForce",
    "HarmonicAngleForce", "HarmonicBondForce", "LCPOForce", "MonteCarloAnisotropicBarostat",
    "MonteCarloBarostat", "MonteCarloFlexibleBarostat", "MonteCarloMembraneBarostat", "NonbondedForce",
    "OrientationRestraintForce", "PeriodicTorsionForce", "RBTorsionForce", "RGForce", "RMSDForce",
    # openmm's plug-ins shipped with OpenMM itself (numbers only)
    "AmoebaGeneralizedKirkwoodForce", "AmoebaMultipoleForce", "AmoebaTorsionTorsionForce", "AmoebaVdwForce",
    "AmoebaWcaDispersionForce", "HippoNonbondedForce", "DrudeForce",
    "TorchForce",  # rebuilt here from its embedded TorchScript module, never by openmm-torch's proxy
    "CGPairTableForce",  # openmm_cgml's compiled pair tables (numbers only; openmm_cgml/_plugin)
    "CGSchNetForce",  # openmm_cgml's compiled SchNet network (its weights: numbers only; openmm_cgml/_plugin)
})


def check_system_element(root, source: str) -> None:
    """Raise before anything is deserialized if a ``<Force>`` (at any depth) is not known to be safe."""
    for el in root.iter("Force"):
        kind = el.get("type")
        name = el.get("name") or kind
        if kind == "PythonForce":
            raise UntrustedContentError(
                f"{source} holds a PythonForce ({name!r}) whose Python function is stored as a pickle, which "
                "runs arbitrary code when it is loaded; refusing to load it. If you wrote this file yourself "
                "or trust its author, load it with trusted=True")
        if kind not in SAFE_FORCE_TYPES:
            raise UntrustedContentError(
                f"{source} holds a force of type {kind!r} ({name!r}), which openmm_cgml does not know to be "
                "free of executable content (it loads OpenMM's standard forces and TorchForces); refusing to "
                "load it. If you trust the file's author, load it with trusted=True")
        if kind == "TorchForce" and not el.get("encodedFileContents") and el.get("file"):
            raise UntrustedContentError(
                f"{source} holds a TorchForce ({name!r}) that names the local file {el.get('file')!r} instead "
                "of embedding its module; a shared System XML must not make the loader read paths on this "
                "machine. Re-save the System with openmm_cgml.forces.xml.save_system (it embeds the module), "
                "or load it with trusted=True")


def parse_openmm_xml(text: str, expected: str, source: str, *, trusted: bool = False):
    """The parsed root element of ``text``, after checking that it is ``<expected>`` (for example ``State`` or
    ``System``) and, unless ``trusted``, that no force in it carries executable content."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise CorruptFileError(f"{source} is not valid XML: {exc}") from exc
    if root.tag != expected:
        raise CorruptFileError(f"{source}: expected an OpenMM <{expected}> XML document, got <{root.tag}>")
    if not trusted:
        check_system_element(root, source)
    return root


def deserialize_openmm_xml(text: str, expected: str, source: str, *, trusted: bool = False):
    """``openmm.XmlSerializer.deserialize`` of ``text`` after :func:`parse_openmm_xml`'s checks."""
    import openmm

    parse_openmm_xml(text, expected, source, trusted=trusted)
    return openmm.XmlSerializer.deserialize(text)


def read_xml_text(path, expected: str) -> str:
    """The text of the ``<expected>`` XML file ``path``; unreadable or binary files raise CorruptFileError."""
    from pathlib import Path

    path = Path(path)
    try:
        return path.read_text()
    except OSError as exc:
        raise CorruptFileError(f"cannot read {expected} XML {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{expected} XML {path} is not text: {exc}") from exc


def load_openmm_xml(path, expected: str, *, trusted: bool = False):
    """:func:`deserialize_openmm_xml` of the file ``path`` (named in every error)."""
    return deserialize_openmm_xml(read_xml_text(path, expected), expected, f"{expected} XML {path}",
                                  trusted=trusted)


_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\n\s*\n|$)", re.S)


def load_tensor_payload(raw: bytes, what: str, error=CorruptFileError):
    """``torch.load`` of ``raw`` with ``weights_only=True`` (tensors and plain data only; nothing runs).

    A payload that holds other pickled objects is refused with a message of our own: torch's message
    advises retrying with ``weights_only=False``, which would run whatever the file holds, so it is not
    passed on.  ``error`` is the exception class raised (named after ``what``).
    """
    try:
        import torch

        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            IndexError, AttributeError, TypeError) as exc:
        text = str(exc)
        found = _GLOBAL.search(text)
        if found:
            raise error(f"{what} holds pickled Python objects ({found.group(1)}) besides tensors and plain data; "
                        "openmm_cgml never writes such files and refuses to load them, because unpickling them "
                        "could run arbitrary code") from None
        inner = _UNPICKLER.search(text)  # torch's own reason, without its advice to load unsafely
        detail = (inner.group(1) if inner else text).strip().split("\n")[0][:200]
        if "weights_only" in detail:
            detail = "rejected by the safe (weights-only) loader"
        raise error(f"{what} is not readable (truncated or corrupt?): {detail}") from None
