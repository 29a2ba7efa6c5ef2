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
