"""Map an all-atom dataset file to a coarse-grained dataset file, frame chunk by frame chunk."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._io import atomic_path, package_versions
from ..dataset import TrajectoryWriter, open_h5, read_array, read_header, stored_fields, topology_to_data
from ..exceptions import DatasetError, InvalidMappingError
from ._mapping import CGMapping

__all__ = ["map_dataset", "constraint_pairs_from_metadata"]

logger = logging.getLogger(__name__)


def constraint_pairs_from_metadata(constraints, topology_data) -> np.ndarray | None:
    """Constrained atom pairs from a dataset's ``constraints`` metadata entry.

    Accepts a list of pairs, or an OpenMM keyword (``HBonds``, ``AllBonds``, ``HAngles``)
    resolved with the topology's bonds.  Returns None when nothing is known.
    """
    if constraints is None:
        return None
    if isinstance(constraints, (list, tuple)):
        if len(constraints) == 0:
            return np.zeros((0, 2), dtype=int)
        if isinstance(constraints[0], (list, tuple)):
            return np.asarray(constraints, dtype=int).reshape(-1, 2)
    if isinstance(constraints, dict):
        return constraint_pairs_from_metadata(constraints.get("pairs", constraints.get("type")), topology_data)
    key = str(constraints).lower().replace("_", "")
    if key in ("none", "null", ""):
        return np.zeros((0, 2), dtype=int)
    elements = [a.get("element") for c in topology_data["chains"] for r in c["residues"] for a in r["atoms"]]
    bonds = np.asarray(topology_data.get("bonds", []), dtype=int).reshape(-1, 2)
    is_h = np.array([e == "H" for e in elements])
    if key == "hbonds":
        return bonds[is_h[bonds[:, 0]] | is_h[bonds[:, 1]]]
    if key in ("allbonds", "hangles"):
        pairs = [tuple(b) for b in bonds]
        if key == "hangles":
            nbrs: dict[int, list[int]] = {}
            for i, j in bonds:
                nbrs.setdefault(int(i), []).append(int(j))
                nbrs.setdefault(int(j), []).append(int(i))
            for nb in nbrs.values():
                for a in range(len(nb)):
                    for b in range(a + 1, len(nb)):
                        if is_h[nb[a]] or is_h[nb[b]]:
                            pairs.append((nb[a], nb[b]))
        return np.asarray(pairs, dtype=int).reshape(-1, 2)
    logger.warning("unrecognised constraints metadata %r; constraint crossing is not checked", constraints)
    return None


def map_dataset(aa_path, mapping: CGMapping, cg_path, *, system=None, chunk_frames: int = 64,
                precision: str = "single", progress: bool = False) -> Path:
    """Write the coarse-grained image of an all-atom dataset in the same file format.

    Positions are mapped with periodic unwrapping inside beads, velocities with the
    position weights, forces with the consistent (sum) map.  Frames are read and
    written ``chunk_frames`` at a time, so files larger than memory are fine.  The
    output is written atomically and its metadata carries the mapping and the CG topology
    (``metadata["cg_topology"]``, read by :meth:`openmm_cgml.topology.CGTopology.from_dataset`).

    Parameters
    ----------
    aa_path, cg_path : path-like
    mapping : CGMapping
    system : openmm.System, optional
        Source of the AA constraints; otherwise they are taken from the dataset's
        ``constraints`` metadata when present.  Forces are refused (an error) when a
        constraint crosses beads or beads overlap.

    Returns
    -------
    Path of the CG dataset.
    """
    from tqdm.auto import tqdm

    aa_path = Path(aa_path)
    with open_h5(aa_path) as f:
        kind, meta, topology_data, n = read_header(f)
        if kind != "all-atom":
            raise DatasetError(f"{aa_path} holds {kind!r} data; map_dataset expects all-atom data")
        n_atoms = int(read_array(f, "masses").shape[0])
        if n_atoms != mapping.n_atoms:
            raise InvalidMappingError(f"the mapping is for {mapping.n_atoms} atoms, {aa_path} has {n_atoms}")
        fields = stored_fields(f)
        if "forces" in fields:
            constraints = system if system is not None else constraint_pairs_from_metadata(
                meta.get("constraints"), topology_data)
            if constraints is None:
                logger.warning("%s: constraints unknown; only overlap is checked before mapping forces", aa_path)
            mapping.check_force_mapping(constraints)
        box0 = np.asarray(read_array(f, "box", 0, 1)[0]) if n else None
        if box0 is not None and not np.any(box0):
            box0 = None
        cg_topology = mapping.cg_topology(box0)
        cg_top = cg_topology.to_openmm()
        cg_meta = dict(meta)
        cg_meta.update({
            "mapping": mapping.to_data(),
            "cg_topology": cg_topology.replace(box_vectors=None).to_data(),
            "source_dataset": str(aa_path.resolve()),
            "aa_constraints": meta.get("constraints"),
            "constraints": None,
            "mapping_package_versions": package_versions(),
        })
        with atomic_path(cg_path) as tmp:
            with TrajectoryWriter(tmp, topology_to_data(cg_top, mapping.bead_masses), mapping.bead_masses, cg_meta,
                                  fields=fields, kind="coarse-grained", precision=precision,
                                  chunk_frames=chunk_frames) as writer:
                starts = range(0, n, chunk_frames)
                for s in tqdm(starts, desc="map dataset", unit="chunk", disable=not progress):
                    e = min(s + chunk_frames, n)
                    # read_array: checksums verified and positions/velocities/forces/box checked finite, per chunk
                    box = np.asarray(read_array(f, "box", s, e))
                    mapped = {"positions": mapping.map_positions(read_array(f, "positions", s, e), box)}
                    if "velocities" in fields:
                        mapped["velocities"] = mapping.map_velocities(read_array(f, "velocities", s, e))
                    if "forces" in fields:
                        mapped["forces"] = mapping.map_forces(np.asarray(read_array(f, "forces", s, e), float))
                    scalars = {k: np.asarray(read_array(f, k, s, e))
                               for k in ("potential_energy", "kinetic_energy", "time", "step")}
                    for k in range(e - s):
                        writer.append(
                            positions=mapped["positions"][k], box=box[k], step=int(scalars["step"][k]),
                            time=float(scalars["time"][k]),
                            velocities=mapped["velocities"][k] if "velocities" in mapped else None,
                            forces=mapped["forces"][k] if "forces" in mapped else None,
                            potential_energy=float(scalars["potential_energy"][k]),
                            kinetic_energy=float(scalars["kinetic_energy"][k]),
                        )
    logger.info("mapped %d frames of %s to %s", n, aa_path, cg_path)
    return Path(cg_path)
