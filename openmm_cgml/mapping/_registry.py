"""The registry of mapping methods (``cgml map``'s ``mapping.method``).

Contract of a mapping method: a callable ``method(topology, options, masses=None) -> CGMapping``
registered through the entry-point group ``openmm_cgml.mapping`` (the built-ins are registered
that way too, in ``pyproject.toml``).  ``options`` is a plain dict of the method's settings
(``n_beads``, ``groups``, ...; ``cgml map`` adds ``dataset``, the path of its all-atom input, for
methods that learn from data, and ``progress``).  A method may carry an ``example_options``
attribute, a callable ``(dataset_path) -> dict`` giving options that work on the contract test's
small all-atom system (a liquid of propane-like three-carbon molecules, with a dataset); the
contract test (``tests/test_contracts.py``) runs every registered method with them.
An unknown name lists the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError
from ..registry import Registry
from ._mapping import CGMapping

__all__ = ["MAPPINGS", "create_mapping", "automatic_method", "groups_method", "smarts_method", "learned_method",
           "file_method", "repeat_unit_method", "learned_repeat_unit_method"]

#: Registry of mapping methods (entry-point group ``openmm_cgml.mapping``).
MAPPINGS = Registry("mapping")


def _need(options: Mapping[str, Any], key: str, method: str):
    if options.get(key) is None:
        raise ConfigurationError(f"mapping method {method!r} needs the option {key!r}")
    return options[key]


def _common(options: Mapping[str, Any]) -> dict[str, Any]:
    return {"weights": options.get("weights", "com"), "molecules": options.get("molecules", "bonds")}


def automatic_method(topology, options, masses=None) -> CGMapping:
    """``n_beads`` connected beads of balanced mass per molecule type (:func:`~openmm_cgml.mapping.automatic`)."""
    from ._schemes import automatic

    return automatic(topology, _need(options, "n_beads", "automatic"), masses=masses, **_common(options))


automatic_method.example_options = lambda dataset: {"n_beads": 2}


def groups_method(topology, options, masses=None) -> CGMapping:
    """Explicit atom groups per molecule type (:func:`~openmm_cgml.mapping.from_groups`)."""
    from ._schemes import from_groups

    return from_groups(topology, _need(options, "groups", "groups"), masses=masses,
                       bead_types=options.get("bead_types"), **_common(options))


groups_method.example_options = lambda dataset: {"groups": [[0, 3, 4, 5], [1, 6, 7], [2, 8, 9, 10]]}


def smarts_method(topology, options, masses=None) -> CGMapping:
    """SMARTS patterns per bead, matched on molecules given as SMILES (:func:`~openmm_cgml.mapping.from_smarts`)."""
    from ..exceptions import MissingDependencyError

    try:
        from openff.toolkit import Molecule
    except ImportError as exc:
        raise MissingDependencyError("mapping method 'smarts' needs the OpenFF toolkit (conda install -c "
                                     "conda-forge openff-toolkit, or pip install acellera-openff-toolkit)") from exc
    from ._schemes import from_smarts

    patterns = _need(options, "smarts", "smarts")
    smiles = _need(options, "smiles", "smarts")
    molecules = [Molecule.from_smiles(s, allow_undefined_stereo=True) for s in smiles]
    return from_smarts(topology, patterns, molecules, masses=masses, bead_types=options.get("bead_types"),
                       **_common(options))


smarts_method.example_options = lambda dataset: {"smarts": {"END": "[CH3]", "MID": "[CH2]"}, "smiles": ["CCC"]}


def _learning_data(topology, options: Mapping[str, Any], method: str):
    """The all-atom dataset ``options["dataset"]`` of a learned method, checked, the frames to learn from
    (``max_frames``, default 200, spread over the run) and the force weight."""
    from ..dataset import open_dataset

    ds = open_dataset(_need(options, "dataset", method))
    if ds.kind != "all-atom":
        raise ConfigurationError(f"mapping method {method!r} needs an all-atom dataset; {ds.path} holds {ds.kind!r} "
                                 "data")
    if ds.n_particles != topology.getNumAtoms():
        raise ConfigurationError(f"{ds.path} has {ds.n_particles} atoms, the topology {topology.getNumAtoms()}")
    force_weight = float(options.get("force_weight", 0.0))
    if force_weight > 0 and ds.forces is None:
        raise ConfigurationError(f"force_weight > 0 needs forces, and {ds.path} was recorded without them")
    frames = slice(None, None, max(1, ds.n_frames // int(options.get("max_frames", 200))))
    return ds, frames, force_weight


def learned_method(topology, options, masses=None) -> CGMapping:
    """The coarse-graining auto-encoder (:func:`~openmm_cgml.mapping.learn_mapping`) on the AA dataset
    ``options["dataset"]`` (``cgml map`` passes its input); options: n_beads, force_weight, epochs, restarts,
    max_frames (default 200, spread over the run), seed, progress."""
    import logging

    from ._learned import learn_mapping

    ds, frames, force_weight = _learning_data(topology, options, "learned")
    result = learn_mapping(topology, ds.positions[frames], _need(options, "n_beads", "learned"),
                           forces=ds.forces[frames] if force_weight > 0 else None, box=ds.box[frames], masses=masses,
                           force_weight=force_weight, epochs=int(options.get("epochs", 400)),
                           restarts=int(options.get("restarts", 3)), seed=int(options.get("seed", 0)),
                           progress=bool(options.get("progress", False)), **_common(options))
    logging.getLogger(__name__).info("learned mapping: reconstruction RMSD %s nm", result.rmsd_nm)
    return result.mapping


learned_method.example_options = lambda dataset: {"n_beads": 2, "dataset": str(dataset), "epochs": 30,
                                                  "restarts": 1}


def file_method(topology, options, masses=None) -> CGMapping:
    """A mapping written earlier (:meth:`CGMapping.to_json`), checked against the topology."""
    path = _need(options, "file", "file")
    mapping = CGMapping.from_json(path)
    if mapping.n_atoms != topology.getNumAtoms():
        raise ConfigurationError(f"the mapping in {path} is for {mapping.n_atoms} atoms, the topology has "
                                 f"{topology.getNumAtoms()}")
    return mapping


def _file_example(dataset) -> dict:
    from pathlib import Path

    from ..dataset import open_dataset
    from ._schemes import automatic

    path = Path(dataset).with_suffix(".mapping.json")
    automatic(open_dataset(dataset).topology, 3).to_json(path)
    return {"file": str(path)}


file_method.example_options = _file_example


def repeat_unit_method(topology, options, masses=None) -> CGMapping:
    """Polymer chains by repeat unit (:func:`~openmm_cgml.mapping.from_repeat_unit`): ``repeat_smarts`` (SMARTS of
    one repeat unit, or {residue name: SMARTS}), ``smiles`` (one per molecule type); optional ``units_per_bead`` (1),
    ``end_groups`` (merge | bead | error), ``end_types`` (auto | true | false), ``remainder`` (error | join)."""
    from ._polymer import from_repeat_unit

    return from_repeat_unit(topology, _need(options, "smiles", "repeat_unit"),
                            _need(options, "repeat_smarts", "repeat_unit"),
                            units_per_bead=options.get("units_per_bead", 1),
                            end_groups=options.get("end_groups", "merge"), end_types=options.get("end_types", "auto"),
                            remainder=options.get("remainder", "error"), masses=masses, **_common(options))


repeat_unit_method.example_options = lambda dataset: {"repeat_smarts": "[CH2]", "smiles": ["CCC"],
                                                      "end_groups": "bead"}


def learned_repeat_unit_method(topology, options, masses=None) -> CGMapping:
    """Polymer chains by repeat unit with one learned split of the unit shared by all units
    (:func:`~openmm_cgml.mapping.learn_repeat_unit_mapping`), learned on the AA dataset ``options["dataset"]``
    (``cgml map`` passes its input): ``repeat_smarts``, ``smiles`` (as for ``repeat_unit``); optional
    ``beads_per_unit`` (1), ``end_groups`` (merge | bead | error), ``end_types``, force_weight, epochs, restarts,
    max_frames (default 200, spread over the run), seed."""
    import logging

    from ._learned import reconstruction_rmsd
    from ._learned_polymer import learn_repeat_unit_mapping

    ds, frames, force_weight = _learning_data(topology, options, "learned_repeat_unit")
    positions, box = ds.positions[frames], ds.box[frames]
    mapping = learn_repeat_unit_mapping(
        topology, _need(options, "smiles", "learned_repeat_unit"), _need(options, "repeat_smarts", "learned_repeat_unit"),
        positions, beads_per_unit=options.get("beads_per_unit", 1), box=box, masses=masses,
        forces=ds.forces[frames] if force_weight > 0 else None, force_weight=force_weight,
        end_groups=options.get("end_groups", "merge"), end_types=options.get("end_types", "auto"),
        epochs=int(options.get("epochs", 400)), restarts=int(options.get("restarts", 3)),
        seed=int(options.get("seed", 0)), **_common(options))
    log = logging.getLogger(__name__)
    if log.isEnabledFor(logging.INFO):
        log.info("learned repeat-unit mapping: reconstruction RMSD %s nm", reconstruction_rmsd(mapping, positions, box))
    return mapping


learned_repeat_unit_method.example_options = lambda dataset: {
    "repeat_smarts": "[CH3][CH2]", "smiles": ["CCC"], "beads_per_unit": 2, "dataset": str(dataset), "epochs": 30,
    "restarts": 1}


def create_mapping(method: str, topology, options: Mapping[str, Any] | None = None, masses=None) -> CGMapping:
    """Build a :class:`CGMapping` with the registered ``method`` (see :data:`MAPPINGS`)."""
    mapping = MAPPINGS.get(method)(topology, dict(options or {}), masses=masses)
    if not isinstance(mapping, CGMapping):
        raise ConfigurationError(f"mapping method {method!r} returned {type(mapping).__name__}, not a CGMapping")
    return mapping
