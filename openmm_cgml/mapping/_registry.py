"""The registry of mapping methods (``cgml map``'s ``mapping.method``).

A mapping method is a factory ``method(topology, options, masses=None) -> CGMapping`` where
``options`` is a plain dict of the method's settings (``n_beads``, ``groups``, ...).  Users
add their own with ``MAPPINGS.register("name")`` or through the entry-point group
``openmm_cgml.mapping``; an unknown name lists the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError
from ..registry import Registry
from ._mapping import CGMapping

__all__ = ["MAPPINGS", "create_mapping"]

MAPPINGS = Registry("mapping")


def _need(options: Mapping[str, Any], key: str, method: str):
    if options.get(key) is None:
        raise ConfigurationError(f"mapping method {method!r} needs the option {key!r}")
    return options[key]


def _common(options: Mapping[str, Any]) -> dict[str, Any]:
    return {"weights": options.get("weights", "com"), "molecules": options.get("molecules", "bonds")}


@MAPPINGS.register("automatic")
def _automatic(topology, options, masses=None) -> CGMapping:
    return CGMapping.automatic(topology, _need(options, "n_beads", "automatic"), masses=masses, **_common(options))


@MAPPINGS.register("groups")
def _groups(topology, options, masses=None) -> CGMapping:
    return CGMapping.from_groups(topology, _need(options, "groups", "groups"), masses=masses,
                                 bead_types=options.get("bead_types"), **_common(options))


@MAPPINGS.register("smarts")
def _smarts(topology, options, masses=None) -> CGMapping:
    from openff.toolkit import Molecule

    patterns = _need(options, "smarts", "smarts")
    smiles = _need(options, "smiles", "smarts")
    molecules = [Molecule.from_smiles(s, allow_undefined_stereo=True) for s in smiles]
    return CGMapping.from_smarts(topology, patterns, molecules, masses=masses, bead_types=options.get("bead_types"),
                                 **_common(options))


@MAPPINGS.register("learned")
def _learned(topology, options, masses=None) -> CGMapping:
    """The coarse-graining auto-encoder (:func:`learn_mapping`) on the AA dataset ``options["dataset"]`` (``cgml map``
    passes its input); options: n_beads, force_weight, epochs, restarts, max_frames (default 200, spread over the
    run), seed."""
    import logging

    from ..dataset import open_dataset
    from ._learned import learn_mapping

    ds = open_dataset(_need(options, "dataset", "learned"))
    if ds.kind != "all-atom":
        raise ConfigurationError(f"mapping method 'learned' needs an all-atom dataset; {ds.path} holds {ds.kind!r} data")
    if ds.n_particles != topology.getNumAtoms():
        raise ConfigurationError(f"{ds.path} has {ds.n_particles} atoms, the topology {topology.getNumAtoms()}")
    force_weight = float(options.get("force_weight", 0.0))
    if force_weight > 0 and ds.forces is None:
        raise ConfigurationError(f"force_weight > 0 needs forces, and {ds.path} was recorded without them")
    frames = slice(None, None, max(1, ds.n_frames // int(options.get("max_frames", 200))))
    result = learn_mapping(topology, ds.positions[frames], _need(options, "n_beads", "learned"),
                           forces=ds.forces[frames] if force_weight > 0 else None, box=ds.box[frames], masses=masses,
                           force_weight=force_weight, epochs=int(options.get("epochs", 400)),
                           restarts=int(options.get("restarts", 3)), seed=int(options.get("seed", 0)),
                           progress=True, **_common(options))
    logging.getLogger(__name__).info("learned mapping: reconstruction RMSD %s nm", result.rmsd_nm)
    return result.mapping


@MAPPINGS.register("file")
def _file(topology, options, masses=None) -> CGMapping:
    path = _need(options, "file", "file")
    mapping = CGMapping.from_json(path)
    if mapping.n_atoms != topology.getNumAtoms():
        raise ConfigurationError(f"the mapping in {path} is for {mapping.n_atoms} atoms, the topology has "
                                 f"{topology.getNumAtoms()}")
    return mapping


def create_mapping(method: str, topology, options: Mapping[str, Any] | None = None, masses=None) -> CGMapping:
    """Build a :class:`CGMapping` with the registered ``method`` (see :data:`MAPPINGS`)."""
    mapping = MAPPINGS.get(method)(topology, dict(options or {}), masses=masses)
    if not isinstance(mapping, CGMapping):
        raise ConfigurationError(f"mapping method {method!r} returned {type(mapping).__name__}, not a CGMapping")
    return mapping
