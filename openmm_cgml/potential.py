"""The one System assembler: ``CGPotential(source).createSystem(cgTopology)``, in the style of openmm-ml.

A :class:`CGPotential` is a CG force field: a list of :class:`~openmm_cgml.forces.base.ForceTerm`
objects, given directly or read from

- a model bundle (``cgml train`` output, a file): one :class:`~openmm_cgml.forces.neural.NeuralForceTerm`
  (its priors as named OpenMM forces of their own);
- an IBI output directory (``cgml ibi``: ``pair_tables.json`` and ``bonded_terms.json``);
- a force-field JSON file written by :meth:`CGPotential.save` (any registered terms).

:meth:`CGPotential.createSystem` builds a new :class:`openmm.System` for a CG topology: one particle
per bead with the bead's mass, the periodic box, every force of every term with a name and a force
group of its own (``name`` for a term's only force, ``name:part`` when a term makes several), and
optionally a ``CMMotionRemover`` in group 31.  IBI's inner loop, ``cgml build``, the demo and the
examples all build their Systems here, so the same source gives the same System from Python and the
command line.  :func:`energy_components` splits a Context's energy by force.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._io import atomic_write_text, package_versions
from .exceptions import ConfigurationError, CorruptFileError, InvalidSystemError
from .forces.base import ForceTerm, term_from_data
from .topology import CGTopology

__all__ = ["CGPotential", "energy_components", "getEnergyComponents", "read_terms", "FORCE_FIELD_FORMAT", "MAX_FORCES"]

logger = logging.getLogger(__name__)

FORCE_FIELD_FORMAT = "openmm_cgml.force_field"
#: OpenMM has 32 force groups; the last is kept for forces without energy (CMMotionRemover).
MAX_FORCES = 31


class CGPotential:
    """A CG force field that builds OpenMM Systems.

    Parameters
    ----------
    source : path, ForceTerm, sequence of ForceTerm, or ModelBundle
        A model bundle file, an IBI output directory, a force-field JSON file (:meth:`save`), a
        loaded :class:`~openmm_cgml.models.ModelBundle`, or the terms themselves.
    **options
        For bundles: the options of :class:`~openmm_cgml.forces.neural.NeuralForceTerm` (``backend``,
        ``priors``, ``dtype``, ``tabulate``, ``neighbor_search``, ``strict_mapping``, ...).  Other
        sources take none.

    Examples
    --------
    >>> potential = CGPotential("neural/model.cgml")                       # doctest: +SKIP
    >>> system = potential.createSystem(cg_topology)                       # doctest: +SKIP
    >>> system = CGPotential("ibi/").createSystem(cg_topology)              # doctest: +SKIP
    """

    def __init__(self, source, **options):
        self.source = source
        self.requires_bonded = False
        terms = self._terms_from(source, options)
        for t in terms:
            if not isinstance(t, ForceTerm):
                raise ConfigurationError(f"every term must be a ForceTerm, got {type(t).__name__}")
        names = [t.name for t in terms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigurationError(f"force terms need distinct names; repeated: {dup}")
        if not terms:
            raise ConfigurationError("a CG potential needs at least one force term")
        self.terms: tuple[ForceTerm, ...] = tuple(terms)

    # ------------------------------------------------------------------ sources
    def _terms_from(self, source, options) -> list[ForceTerm]:
        from .models.bundle import ModelBundle

        if isinstance(source, ForceTerm):
            self._no_options(options, "a ForceTerm")
            return [source]
        if isinstance(source, ModelBundle):
            return [self._neural(source, options)]
        if isinstance(source, (str, Path)):
            path = Path(source)
            if path.is_dir():
                return self._ibi_terms(path, options)
            if not path.exists():
                raise ConfigurationError(f"{path} does not exist (expected a model bundle, an IBI output directory or "
                                         "a force-field JSON file)")
            if path.suffix == ".json":
                self._no_options(options, "a force-field file")
                return read_terms(path)
            return [self._neural(path, options)]
        if isinstance(source, Sequence):
            self._no_options(options, "a list of terms")
            return list(source)
        raise ConfigurationError(f"cannot build a CG potential from a {type(source).__name__}; expected a bundle path, "
                                 "an IBI output directory, a force-field JSON file, a ModelBundle or ForceTerms")

    @staticmethod
    def _no_options(options, what: str) -> None:
        if options:
            raise ConfigurationError(f"options {sorted(options)} apply to model bundles, not to {what}")

    @staticmethod
    def _neural(bundle, options):
        from .forces.neural import NeuralForceTerm

        return NeuralForceTerm(bundle, **options)

    @classmethod
    def _refined_base(cls, directory: Path, base: Path, options):
        """The base model of a refinement: the options go to it; a temperature-conditioned one is evaluated at the
        temperature given, else at the one its corrections were made for (the directory's ``config.yaml``)."""
        import yaml

        from .forces.neural import is_temperature_conditioned
        from .models.bundle import load_bundle
        from .units import to_md

        bundle = load_bundle(base)
        options = dict(options)
        record = directory / "config.yaml"
        if "temperature" not in options and is_temperature_conditioned(bundle) and record.exists():
            try:
                made_at = (yaml.safe_load(record.read_text()) or {}).get("temperature")
            except (OSError, yaml.YAMLError) as exc:
                raise CorruptFileError(f"cannot read {record}: {exc}") from exc
            if made_at is not None:
                options["temperature"] = to_md(made_at, "temperature", name=f"temperature of {record}")
                logger.info("%s: the temperature-conditioned base model at %g K, the temperature of its corrections",
                            directory, options["temperature"])
        return cls._neural(bundle, options)

    def _ibi_terms(self, directory: Path, options) -> list[ForceTerm]:
        from .forces.tabulated import read_openmm_tables

        base = directory / "base_model.cgml"  # a refined model (cgml ibi with base_model): the model + its correction
        if not base.exists():
            self._no_options(options, "an IBI output directory (without a base model)")
        tables = directory / "pair_tables.json"
        if not tables.exists():
            raise ConfigurationError(f"{directory} holds no pair_tables.json: is it the output_dir of a cgml ibi run?")
        terms: list[ForceTerm] = [read_openmm_tables(tables)]
        if base.exists():
            terms.append(self._refined_base(directory, base, options))
        bonded = directory / "bonded_terms.json"
        if bonded.exists():
            terms += read_terms(bonded)
        elif not base.exists():
            self.requires_bonded = True  # checked against the topology in createSystem
        return terms

    # ------------------------------------------------------------------ systems
    def createSystem(self, topology, *, mapping=None, boxVectors=None, removeCMMotion: bool = True, masses=None):
        """A new CG :class:`openmm.System`.

        Parameters
        ----------
        topology : CGTopology or openmm.app.Topology
            The topology of the System being built: a :class:`~openmm_cgml.topology.CGTopology`, or an OpenMM CG
            topology (beads with ``bead_type`` and ``mass`` attributes, as :meth:`CGTopology.to_openmm` makes;
            else atom names are the bead types and ``masses`` are needed).  With ``mapping`` it is the
            all-atom topology instead, and the CG topology is the mapping's.
        mapping : CGMapping, optional
            Build from the all-atom topology and this mapping (a convenience).
        boxVectors : optional
            The periodic box (3 vectors, nm or Quantity); default the topology's.
        removeCMMotion : bool
            Add a ``CMMotionRemover`` (force group 31).
        masses : array or openmm.System, optional
            Bead masses for an OpenMM topology whose beads carry none.
        """
        import openmm

        cg = self.cgTopology(topology, mapping=mapping, boxVectors=boxVectors, masses=masses)
        bead_masses = cg.require_masses("createSystem")
        if self.requires_bonded and len(cg.bonds):
            raise ConfigurationError(f"{self.source} holds no bonded_terms.json, but the CG topology has "
                                     f"{len(cg.bonds)} bonds: rerun cgml ibi (with bonded: harmonic or table) to "
                                     "write them")
        system = openmm.System()
        for m in bead_masses:
            system.addParticle(float(m))
        if cg.box_vectors is not None:
            system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in cg.box_vectors))
        named = []
        for term in self.terms:
            forces = term.create_forces(cg)
            if not forces:
                raise ConfigurationError(f"term {term.name!r} created no forces")
            if len(forces) == 1:
                named.append((term.name, forces[0]))
                continue
            parts = [f.getName() or str(k) for k, f in enumerate(forces)]
            for k, (part, force) in enumerate(zip(parts, forces)):
                label = part if parts.count(part) == 1 else f"{part}#{k}"
                named.append((f"{term.name}:{label}", force))
        if len(named) > MAX_FORCES:
            raise ConfigurationError(f"this force field makes {len(named)} OpenMM forces, but at most {MAX_FORCES} fit "
                                     f"OpenMM's force groups (one each): {[n for n, _ in named]}")
        for group, (name, force) in enumerate(named):
            force.setName(name)
            force.setForceGroup(group)
            system.addForce(force)
        if removeCMMotion:
            remover = openmm.CMMotionRemover()
            remover.setName("CMMotionRemover")
            remover.setForceGroup(31)
            system.addForce(remover)
        logger.debug("built a CG system of %d beads with forces %s", system.getNumParticles(), [n for n, _ in named])
        return system

    @staticmethod
    def cgTopology(topology, *, mapping=None, boxVectors=None, masses=None) -> CGTopology:
        """The :class:`~openmm_cgml.topology.CGTopology` :meth:`createSystem` builds for (same arguments)."""
        from .geometry import as_box

        box = None if boxVectors is None else as_box(boxVectors, name="boxVectors")
        if mapping is not None:
            if topology is not None and hasattr(topology, "getNumAtoms") and topology.getNumAtoms() != mapping.n_atoms:
                raise InvalidSystemError(f"the topology has {topology.getNumAtoms()} atoms, the mapping {mapping.n_atoms}")
            if box is None and topology is not None and hasattr(topology, "getPeriodicBoxVectors"):
                tbox = topology.getPeriodicBoxVectors()
                box = None if tbox is None else as_box(tbox, name="the topology's box")
            return mapping.cg_topology(box)
        if isinstance(topology, CGTopology):
            return topology if box is None else topology.with_box(box)
        if topology is not None and hasattr(topology, "atoms"):
            cg = CGTopology.from_openmm(topology, masses=masses)
            return cg if box is None else cg.with_box(box)
        raise ConfigurationError(f"createSystem takes a CGTopology or an OpenMM Topology, got {type(topology).__name__}")

    # ------------------------------------------------------------------ files
    def to_data(self) -> dict:
        """The force field as plain data: every term's :meth:`~ForceTerm.to_data`."""
        return {"format": FORCE_FIELD_FORMAT, "format_version": 1, "terms": [t.to_data() for t in self.terms],
                "package_versions": package_versions()}

    def save(self, path) -> Path:
        """Write the force field as JSON (atomically); ``CGPotential(path)`` reads it back."""
        atomic_write_text(path, json.dumps(self.to_data(), indent=1))
        return Path(path)

    def __repr__(self) -> str:
        return f"CGPotential({[f'{type(t).__name__}:{t.name}' for t in self.terms]})"


def read_terms(path) -> list[ForceTerm]:
    """The terms of a force-field JSON file (:meth:`CGPotential.save`) or of an IBI ``bonded_terms.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"cannot read force terms from {path}: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("terms"), list):
        raise CorruptFileError(f"{path} holds no list of force terms ('terms')")
    try:
        return [term_from_data(d) for d in data["terms"]]
    except ConfigurationError as exc:
        raise CorruptFileError(f"{path}: {exc}") from exc


def energy_components(context) -> dict[str, float]:
    """Potential energy (kJ/mol) of every force group of ``context``'s System, keyed by force name.

    Systems from :meth:`CGPotential.createSystem` have one force per group, so every force is reported
    under its own name; a group shared by several forces is reported under its first force's name.
    The values sum to the total potential energy.
    """
    from openmm import unit

    system = context.getSystem()
    names: dict[int, str] = {}
    for force in system.getForces():
        names.setdefault(force.getForceGroup(), force.getName())
    out = {}
    for g, name in sorted(names.items()):
        energy = context.getState(getEnergy=True, groups={g}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        out[name if name not in out else f"{name}[group {g}]"] = energy
    return out


#: OpenMM-style alias.
getEnergyComponents = energy_components
