"""Build, equilibrate and record an all-atom reference: the ``cgml reference`` workflow.

:func:`run_reference` is :func:`openmm_cgml.reference.run_reference` with

* the diffusion check that ``max_production`` needs (:func:`openmm_cgml.analysis.diffusion_check`: the molecular
  centre-of-mass MSD has reached the diffusive regime), so a production extends itself until D can be trusted, or
  until the budget;
* before anything is built, a check that no molecule's chain is as long as the box
  (:func:`check_chain_box_length`: its fully extended heavy-atom backbone against the box length that the
  configured density, masses and counts imply), a warning by default;
* after the production, the relaxation of chain molecules (:func:`chain_relaxation`: the end-to-end vector
  autocorrelation of each molecule type whose longest heavy-atom path has at least :data:`MIN_BACKBONE_ATOMS`
  atoms, :func:`openmm_cgml.analysis.chains.end_to_end_autocorrelation`), recorded in the dataset's metadata as
  ``chain_relaxation: {molecule: {tau_ps, decayed, message, ...}}`` and logged as a warning for every molecule
  type that has not relaxed within the production.

Both chain checks read only what is there (the configuration; the recorded frames): no extra simulation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..mapping._molecules import longest_path
from ..reference.run import ReferenceConfig, ReferenceResult
from ..reference.run import run_reference as _run_reference

__all__ = ["ReferenceConfig", "ReferenceResult", "run_reference", "check_chain_box_length", "chain_relaxation",
           "MIN_BACKBONE_ATOMS", "BACKBONE_BOND_NM"]

logger = logging.getLogger(__name__)

#: Heavy atoms along the longest path of a molecule from which it counts as a chain whose relaxation is checked.
MIN_BACKBONE_ATOMS = 8
#: nm per backbone bond of a fully extended chain (a C-C bond, as :func:`openmm_cgml.mapping.check_chain_box`).
BACKBONE_BOND_NM = 0.154
#: Frames read at a time when the backbone positions are gathered from the dataset.
_READ_FRAMES = 256


def run_reference(config, output, *, chain_box: str = "warn", **kwargs) -> ReferenceResult:
    """:func:`openmm_cgml.reference.run_reference` (same arguments), with ``diffusion_check`` defaulting to
    :func:`openmm_cgml.analysis.diffusion_check`, and the chain checks of the module docstring.  After the
    production the dataset's metadata gets ``chain_relaxation`` (:func:`chain_relaxation`) when the system has
    chain molecules.

    Parameters
    ----------
    chain_box : {"warn", "raise", "ignore"}
        What :func:`check_chain_box_length` does, before anything is built, about a molecule whose fully extended
        heavy-atom backbone is at least as long as the box: log a warning (the default: a coiled chain may fit),
        refuse (:class:`~openmm_cgml.exceptions.InvalidSystemError`), or nothing.
    """
    from ..analysis.compare import diffusion_check

    config = config if isinstance(config, ReferenceConfig) else ReferenceConfig.from_data(dict(config))
    check_chain_box_length(config, on_problem=chain_box)
    kwargs.setdefault("diffusion_check", diffusion_check)
    result = _run_reference(config, output, **kwargs)
    if Path(result.dataset).exists():
        chain_relaxation(result.dataset, record=True)
    return result


# --------------------------------------------------------------------------------------
# Before the run: chains against the box the density implies
# --------------------------------------------------------------------------------------
def _molecule_names(config: ReferenceConfig) -> list[str]:
    """The residue names :func:`openmm_cgml.reference.liquid.build_liquid` gives the components."""
    many = len(config.components) > 1
    return [c.name or (f"M{i}" if many else "MOL") for i, c in enumerate(config.components)]


def check_chain_box_length(config, *, on_problem: str = "warn",
                           bond_length: float = BACKBONE_BOND_NM) -> list[dict[str, Any]]:
    """Whether every component's chain is shorter than the box the configuration implies, before anything is built.

    The box length is the configuration's ``box_length``, or the edge of the cube that holds the components'
    masses (counts x molecular masses, from their SMILES) at its ``density`` -- the box that
    :func:`~openmm_cgml.reference.liquid.build_liquid` will pack.  A molecule's contour length is the number of
    bonds along the longest path through its heavy atoms times ``bond_length`` (a fully extended chain, as
    :func:`openmm_cgml.mapping.check_chain_box` without positions); a chain at least that long can meet its own
    periodic image.

    Parameters
    ----------
    config : ReferenceConfig or dict
    on_problem : {"warn", "raise", "ignore"}
        For a chain at or over the box length: log a warning with the numbers, raise
        :class:`~openmm_cgml.exceptions.InvalidSystemError`, or only report it.
    bond_length : float
        nm per backbone bond.

    Returns
    -------
    list of dict
        Per component: ``molecule`` (its residue name), ``smiles``, ``backbone_bonds``, ``contour_nm``,
        ``box_length_nm``, ``too_long``.  Empty when RDKit is not installed or a SMILES does not parse (the
        build reports those).
    """
    from ..exceptions import InvalidSystemError

    if on_problem not in ("warn", "raise", "ignore"):
        raise InvalidSystemError(f"on_problem must be 'warn', 'raise' or 'ignore', got {on_problem!r}")
    config = config if isinstance(config, ReferenceConfig) else ReferenceConfig.from_data(dict(config))
    try:
        from rdkit import Chem
    except ImportError:
        logger.debug("RDKit is not installed: the chain lengths are not checked against the box")
        return []
    from ..reference.liquid import AVOGADRO

    found = []
    for name, comp in zip(_molecule_names(config), config.components):
        mol = Chem.MolFromSmiles(comp.smiles)
        if mol is None:
            return []  # build_liquid says what is wrong with it
        mass = sum(a.GetMass() for a in Chem.AddHs(mol).GetAtoms())
        heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
        keep = set(heavy)
        edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()
                 if b.GetBeginAtomIdx() in keep and b.GetEndAtomIdx() in keep]
        n_bonds = max(len(longest_path(heavy, edges)) - 1, 0)
        found.append({"molecule": name, "smiles": comp.smiles, "count": int(comp.count), "mass_da": float(mass),
                      "backbone_bonds": n_bonds, "contour_nm": n_bonds * float(bond_length)})
    total_mass = sum(f["mass_da"] * f["count"] for f in found)
    if config.density is not None:
        length = (total_mass / AVOGADRO * 1e21 / config.density) ** (1 / 3)
        content = " + ".join(f"{f['count']} x {f['mass_da']:.4g} Da" for f in found)
        how = f"the box length that {content} at {config.density:g} g/cm^3 imply"
    else:
        length = float(config.box_length)
        how = "the configured box length"
    for f in found:
        f["box_length_nm"] = float(length)
        f["too_long"] = bool(f["contour_nm"] >= length)
    bad = [f for f in found if f["too_long"]]
    if bad and on_problem != "ignore":
        worst = max(bad, key=lambda f: f["contour_nm"])
        message = (
            f"{worst['molecule']} ({worst['smiles']}) is too long for its box: fully extended, its heavy-atom "
            f"backbone spans {worst['backbone_bonds']} bonds x {bond_length:g} nm = {worst['contour_nm']:.3g} nm, at "
            f"or over {how}, {length:.3g} nm, so a chain can meet its own periodic image (and its end-to-end "
            "vector and size are those of a chain wrapped around the box)")
        if config.density is not None:
            factor = (worst["contour_nm"] / length) ** 3
            counts = ", ".join(f"{f['molecule']}: {int(np.ceil(f['count'] * factor))}" for f in found)
            message += (f"; a box longer than {worst['contour_nm']:.3g} nm at this density needs more than "
                        f"{factor:.3g} times as many molecules ({counts}), or use shorter chains")
        else:
            message += f"; use a box longer than {worst['contour_nm']:.3g} nm or shorter chains"
        if len(bad) > 1:
            message += f" ({len(bad)} of {len(found)} components are too long: {', '.join(f['molecule'] for f in bad)})"
        if on_problem == "raise":
            raise InvalidSystemError(message)
        logger.warning("%s", message)
    return found


# --------------------------------------------------------------------------------------
# After the run: relaxation of the chains
# --------------------------------------------------------------------------------------
def _backbones(topology_data: dict, min_atoms: int) -> dict[str, list[list[int]]]:
    """``{residue name: [atom indices of each molecule's backbone]}``: the longest heavy-atom path of every molecule
    (residue) whose path has at least ``min_atoms`` atoms, in order from one end to the other."""
    residues, start = [], 0
    for chain in topology_data["chains"]:
        for res in chain["residues"]:
            n = len(res["atoms"])
            residues.append((str(res.get("name", "")), start, [a.get("element") for a in res["atoms"]]))
            start += n
    owner = np.repeat(np.arange(len(residues)), [len(r[2]) for r in residues])
    local: list[list[tuple[int, int]]] = [[] for _ in residues]
    for i, j in topology_data.get("bonds", []):
        if owner[i] == owner[j]:
            s = residues[owner[i]][1]
            local[owner[i]].append((int(i) - s, int(j) - s))
    cache: dict[tuple, list[int]] = {}
    out: dict[str, list[list[int]]] = {}
    for (name, s, elements), bonds in zip(residues, local):
        key = (name, tuple(elements), tuple(sorted(bonds)))
        if key not in cache:
            heavy = [k for k, e in enumerate(elements) if e and e != "H"]
            keep = set(heavy)
            cache[key] = longest_path(heavy, [(a, b) for a, b in bonds if a in keep and b in keep])
        path = cache[key]
        if len(path) >= min_atoms:
            out.setdefault(name, []).append([s + k for k in path])
    return out


def chain_relaxation(dataset, *, min_atoms: int = MIN_BACKBONE_ATOMS, record: bool = False) -> dict[str, dict]:
    """End-to-end relaxation of the chain molecules of an all-atom dataset (a reference's production).

    For every molecule type (residue name) whose longest heavy-atom path has at least ``min_atoms`` atoms, the
    end-to-end vector from one end of that path to the other (through the chain: each backbone bond its minimum
    image), over the recorded frames, all time origins (:func:`openmm_cgml.analysis.chains.end_to_end_autocorrelation`,
    lags up to half the run): a molecule type whose autocorrelation has not fallen below 1/e is not relaxed, and
    its sizes (Rg, Ree) and every structure that depends on them are not equilibrium values.  The positions are
    read a block of frames at a time and only the end-to-end vectors kept.

    Parameters
    ----------
    dataset : path-like
        An openmm_cgml dataset file.
    min_atoms : int
        Heavy atoms along the longest path from which a molecule counts as a chain.
    record : bool
        Write the result into the dataset's metadata as ``chain_relaxation`` (when there are chains; a record for
        the same frames is reused) and log a warning for every molecule type not relaxed.

    Returns
    -------
    dict
        ``{molecule: {"tau_ps", "decayed", "message", "decay_time_ps", "t_max_ps", "n_chains", "backbone_atoms",
        "frames"}}``; ``tau_ps`` is the integral of the autocorrelation to its first zero (a lower bound when not
        ``decayed``), None when there are too few frames.  Empty when no molecule is a chain.
    """
    from ..analysis.chains import end_to_end_autocorrelation
    from ..dataset import TrajectoryWriter, open_h5, read_array, read_header, stored_fields
    from ..exceptions import TrajectoryError
    from ..geometry import minimum_image

    path = Path(dataset)
    with open_h5(path) as f:
        _, meta, topology_data, n_frames = read_header(f)
        chains = _backbones(topology_data, int(min_atoms))
        if not chains:
            return {}
        previous = meta.get("chain_relaxation")
        if (isinstance(previous, dict) and set(previous) == set(chains)
                and all(isinstance(v, dict) and v.get("frames") == n_frames for v in previous.values())):
            return previous
        box = read_array(f, "box", 0, n_frames)
        times = read_array(f, "time", 0, n_frames)
        groups = {name: [(np.flatnonzero([len(r) == n for r in rows]), np.asarray([r for r in rows if len(r) == n]))
                         for n in sorted({len(r) for r in rows})] for name, rows in chains.items()}
        ree = {name: np.empty((n_frames, len(rows), 3)) for name, rows in chains.items()}
        for s in range(0, n_frames, _READ_FRAMES):
            e = min(s + _READ_FRAMES, n_frames)
            x = read_array(f, "positions", s, e)
            for name, parts in groups.items():
                for ids, idx in parts:
                    bonds = minimum_image(np.diff(x[:, idx].astype(np.float64), axis=2), box[s:e])
                    ree[name][s:e, ids] = bonds.sum(axis=2)
        fields, masses = stored_fields(f), (read_array(f, "masses") if record else None)
    result: dict[str, dict] = {}
    for name, rows in chains.items():
        vectors = ree[name]
        n = vectors.shape[1]
        two_beads = np.zeros((n_frames, 2 * n, 3))  # chains of two beads, 0 and R: their end-to-end vector is R
        two_beads[:, 1::2] = vectors
        entry: dict[str, Any] = {"n_chains": n, "backbone_atoms": max(len(r) for r in rows), "frames": int(n_frames)}
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # the KWW fit of a flat C(t) divides by zero
                c = end_to_end_autocorrelation(two_beads, np.arange(2 * n).reshape(n, 2), times)
        except TrajectoryError as exc:
            entry.update(tau_ps=None, decayed=False, decay_time_ps=None, t_max_ps=None,
                         message=f"end-to-end autocorrelation not computed: {exc}; the relaxation is unknown")
        else:
            entry.update(tau_ps=float(c.tau_integral), decayed=bool(c.decayed), decay_time_ps=c.decay_time,
                         t_max_ps=float(c.lag_times[-1]), message=c.message)
        result[name] = entry
        if record and not entry["decayed"]:
            logger.warning("%s: %s (%d chains, backbone of %d heavy atoms): %s", path, name, entry["n_chains"],
                           entry["backbone_atoms"], entry["message"])
    if record:
        with TrajectoryWriter(path, topology_data, masses, fields=fields, mode="a") as writer:
            writer.update_metadata(chain_relaxation=result)
    return result
