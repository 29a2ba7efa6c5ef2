"""Start from what a VOTCA user has: ``cgml import settings.xml --gro conf.gro --top topol.top -o DIR``.

VOTCA's IBI/IMC setup for GROMACS is a CG structure (``conf.gro``), its topology (``topol.top``), the
``settings.xml`` of ``csg_inverse`` and the target distributions (``A-B.dist.tgt`` for pairs, ``bond.dist.tgt``,
``angle.dist.tgt`` ... for bonded interactions).  :func:`import_votca` reads them and writes, into ``DIR``:

- ``cg.h5``: a coarse-grained dataset of the structure (one frame) with its topology (bead types and masses from
  ``[ atomtypes ]`` / ``[ atoms ]``, molecules, bonds, the box);
- ``ibi.yaml``: the ``cgml ibi`` configuration that carries the settings over (``cgml ibi DIR/ibi.yaml`` runs it);
- ``import.md``: every setting of ``settings.xml`` (and of ``grompp.mdp`` when given) with what it became here,
  or why it has no equivalent.

Pairs keep their own cutoffs (VOTCA's per-interaction ``max`` becomes ``pair_cutoffs``) and their targets.
Bonded interactions are linked as VOTCA links them to GROMACS: a ``<bonded>`` entry whose ``<gromacs><table>`` is
``table_b1.xvg`` is every bond of ``topol.top`` that uses tabulated function 8 with table 1 (``table_a<n>``:
angles, ``table_d<n>``: dihedrals); its ``<target>`` becomes the bonded target of each bead-type key among them,
so the bonded terms start from its Boltzmann inversion and are refined towards it (bonded IBI).

Only the text formats are read (``.gro``, ``.top`` without ``#include``, ``settings.xml``, ``.mdp``); a ``.tpr``
is binary and not read.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exceptions import ConfigurationError
from ..forcespec import ARITY

__all__ = ["read_gro", "read_top", "GromacsTopology", "read_votca_settings", "VotcaSettings", "import_votca",
           "ImportResult", "BOLTZMANN_KJ"]

#: Boltzmann's constant in kJ/mol/K, as GROMACS and VOTCA use it (kBT = 2.49435 at 300 K)
BOLTZMANN_KJ = 0.0083144626


# ------------------------------------------------------------------------------------------------ GROMACS text
def read_gro(path) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """(atom names, residue numbers, positions (n, 3) nm, box (3, 3) nm) of the first frame of a ``.gro`` file.

    The coordinate fields' width is read from the first atom line (GROMACS writes 8 characters, 3 decimals, by
    default; more precise files widen them)."""
    lines = Path(path).read_text().splitlines()
    try:
        n = int(lines[1].split()[0])
        atoms = lines[2:2 + n]
        first = atoms[0]
        dots = [m.start() for m in re.finditer(r"\.", first[20:])]
        width = dots[1] - dots[0] if len(dots) >= 2 else 8
        names, resnums, pos = [], [], []
        for line in atoms:
            resnums.append(int(line[0:5]))
            names.append(line[10:15].strip())
            pos.append([float(line[20 + k * width:20 + (k + 1) * width]) for k in range(3)])
        values = [float(v) for v in lines[2 + n].split()]
    except (IndexError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not a readable .gro file ({exc}); expected a title, the atom count, "
                                 "fixed-width atom lines and the box line") from exc
    box = np.zeros((3, 3))
    box[0, 0], box[1, 1], box[2, 2] = values[:3]
    if len(values) == 9:  # v1(y) v1(z) v2(x) v2(z) v3(x) v3(y)
        box[0, 1], box[0, 2], box[1, 0], box[1, 2], box[2, 0], box[2, 1] = values[3:]
    return names, resnums, np.array(pos), box


@dataclass
class GromacsTopology:
    """What :func:`read_top` found: atom types' masses, molecule types (atoms and bonded items) and the
    ``[ molecules ]`` counts."""

    atomtypes: dict[str, float] = field(default_factory=dict)
    moleculetypes: dict[str, dict] = field(default_factory=dict)
    molecules: list[tuple[str, int]] = field(default_factory=list)


def read_top(path) -> GromacsTopology:
    """Parse a self-contained GROMACS ``.top`` (sections ``atomtypes``, ``moleculetype``, ``atoms``, ``bonds``,
    ``angles``, ``dihedrals``, ``molecules``; ``#include`` and ``#ifdef`` are refused)."""
    top = GromacsTopology()
    section, current = None, None
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split(";")[0].strip()
        if not line:
            continue
        if line.startswith("#"):
            raise ConfigurationError(f"{path}:{number}: preprocessor lines ({line.split()[0]}) are not supported; "
                                     "give a self-contained topology (gmx grompp -pp writes one)")
        match = re.fullmatch(r"\[\s*(\w+)\s*\]", line)
        if match:
            section = match.group(1).lower()
            continue
        fields = line.split()
        try:
            if section == "atomtypes":
                # name [bonded type] [atomic number] mass charge ptype c6 c12: the mass is fifth from the end
                top.atomtypes[fields[0]] = float(fields[-5])
            elif section == "moleculetype":
                current = {"atoms": [], "bond": [], "angle": [], "dihedral": []}
                top.moleculetypes[fields[0]] = current
            elif section == "atoms":
                mass = float(fields[7]) if len(fields) > 7 else None
                current["atoms"].append({"type": fields[1], "name": fields[4], "mass": mass})
            elif section in ("bonds", "angles", "dihedrals"):
                kind = section[:-1]
                n = ARITY[kind]
                current[kind].append({"atoms": tuple(int(v) - 1 for v in fields[:n]), "funct": int(fields[n]),
                                      "params": fields[n + 1:]})
            elif section == "molecules":
                top.molecules.append((fields[0], int(fields[1])))
        except (IndexError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"{path}:{number}: cannot read this [ {section} ] line ({raw.strip()!r})") from exc
    if not top.molecules:
        raise ConfigurationError(f"{path}: no [ molecules ] section")
    unknown = [name for name, _ in top.molecules if name not in top.moleculetypes]
    if unknown:
        raise ConfigurationError(f"{path}: [ molecules ] names undefined molecule types {unknown}")
    return top


def topology_from_gromacs(gro, top):
    """The :class:`~openmm_cgml.topology.CGTopology` and positions (nm) of a CG ``.gro`` + ``.top`` pair, and per
    bonded kind the ``(tuple, funct, params)`` of every item (for linking VOTCA's bonded tables)."""
    from ..topology import CGTopology

    names, _, positions, box = read_gro(gro)
    t = read_top(top)
    types, masses, mol_index, bead_names, items = [], [], [], [], {"bond": [], "angle": [], "dihedral": []}
    offset = 0
    for m, name in enumerate(n for n, c in t.molecules for _ in range(c)):
        mt = t.moleculetypes[name]
        for atom in mt["atoms"]:
            if atom["type"] not in t.atomtypes and atom["mass"] is None:
                raise ConfigurationError(f"{top}: atom type {atom['type']!r} has no [ atomtypes ] entry and its atom "
                                         "no mass")
            types.append(atom["type"])
            masses.append(atom["mass"] if atom["mass"] is not None else t.atomtypes[atom["type"]])
            mol_index.append(m)
            bead_names.append(atom["name"])
        for kind in items:
            for item in mt[kind]:
                items[kind].append((tuple(offset + i for i in item["atoms"]), item["funct"], item["params"]))
        offset += len(mt["atoms"])
    if offset != len(positions):
        raise ConfigurationError(f"{top} describes {offset} beads but {gro} holds {len(positions)}")
    bonds = np.array([tup for tup, _, _ in items["bond"]], dtype=np.int64).reshape(-1, 2)
    topology = CGTopology(bead_types=tuple(types), molecule_index=np.array(mol_index), bonds=bonds,
                          masses=np.array(masses, dtype=float), box_vectors=box, bead_names=tuple(bead_names))
    return topology, positions, items


# ------------------------------------------------------------------------------------------------ settings.xml
@dataclass
class VotcaSettings:
    """The parts of a VOTCA ``settings.xml`` that matter here: pair and bonded interactions (name, types, grid,
    target, update schedule, post-processing, GROMACS table) and the ``<inverse>`` options (flattened paths)."""

    non_bonded: list[dict] = field(default_factory=list)
    bonded: list[dict] = field(default_factory=list)
    inverse: dict[str, str] = field(default_factory=dict)


def _flatten(element, prefix="") -> dict[str, str]:
    out = {}
    for child in element:
        key = f"{prefix}{child.tag}"
        if len(child):
            out.update(_flatten(child, key + "."))
        else:
            out[key] = (child.text or "").strip()
    return out


def read_votca_settings(path) -> VotcaSettings:
    """Parse a VOTCA ``settings.xml``."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ConfigurationError(f"{path}: not a readable settings.xml ({exc})") from exc
    if root.tag != "cg":
        raise ConfigurationError(f"{path}: the root element is <{root.tag}>, expected VOTCA's <cg>")
    settings = VotcaSettings()
    for tag, target in (("non-bonded", settings.non_bonded), ("bonded", settings.bonded)):
        for element in root.findall(tag):
            entry = _flatten(element)
            if "name" not in entry:
                raise ConfigurationError(f"{path}: a <{tag}> entry has no <name>")
            target.append(entry)
    inverse = root.find("inverse")
    settings.inverse = _flatten(inverse) if inverse is not None else {}
    return settings


# ------------------------------------------------------------------------------------------------ the import
@dataclass(frozen=True)
class ImportResult:
    """The files :func:`import_votca` wrote and the settings table (setting, value, what it became)."""

    dataset: Path
    config: Path
    report: Path
    settings: tuple[tuple[str, str, str], ...]


#: ``<inverse>`` options carried over, and how (the others are listed as having no equivalent)
_DIRECT = {
    "kBT": "temperature = kBT / k_B",
    "method": "method (ibi | imc)",
    "iterations_max": "max_iterations",
    "gromacs.equi_time": "equilibration_steps = equi_time / timestep",
}
#: ``<inverse>`` options that configure VOTCA's own machinery (files, scripts, restart): nothing to carry over
_MACHINERY = ("program", "filelist", "log_file", "restart_file", "map", "gromacs.table_bins", "gromacs.pot_max",
              "gromacs.table_end", "gromacs.grompp.opts", "gromacs.mdrun.opts", "gromacs.topol", "gromacs.conf",
              "gromacs.traj", "cleanlist", "scriptpath", "simulation.background", "initial_configuration")


def _mdp(path) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.split(";")[0]
        if "=" in line:
            key, value = (v.strip() for v in line.split("=", 1))
            out[key.replace("_", "-").lower()] = value
    return out


def import_votca(settings_xml, gro, top, output, *, mdp=None, production_steps: int = 10000) -> ImportResult:
    """Read a VOTCA/GROMACS IBI setup and write the CG dataset, ``ibi.yaml`` and ``import.md`` into ``output``."""
    import yaml

    from .._io import atomic_write_text
    from ..dataset import TrajectoryWriter
    from ..topology import key_to_str, type_key

    settings_xml, output = Path(settings_xml), Path(output)
    base = settings_xml.parent
    votca = read_votca_settings(settings_xml)
    topology, positions, items = topology_from_gromacs(gro, top)
    table: list[tuple[str, str, str]] = []
    if not votca.non_bonded:
        raise ConfigurationError(f"{settings_xml}: no <non-bonded> interaction to iterate")

    def target_path(entry, what) -> Path:
        name = entry.get("inverse.target")
        if not name:
            raise ConfigurationError(f"{settings_xml}: {what} {entry['name']!r} has no <inverse><target>")
        path = (base / name).resolve()
        if not path.is_file():
            raise ConfigurationError(f"{settings_xml}: the target {name!r} of {what} {entry['name']!r} is not in "
                                     f"{base}")
        return path

    # pairs: targets, per-pair cutoffs, one grid
    types = set(topology.type_names)
    targets, cutoffs, steps = {}, {}, set()
    for entry in votca.non_bonded:
        pair = (entry.get("type1"), entry.get("type2"))
        if None in pair or not set(pair) <= types:
            raise ConfigurationError(f"{settings_xml}: non-bonded {entry['name']!r} has types {pair}; the topology's "
                                     f"bead types are {sorted(types)}")
        key = key_to_str(type_key(pair))
        targets[key] = str(target_path(entry, "non-bonded"))
        cutoffs[key] = float(entry.get("max", "nan"))
        steps.add(float(entry.get("step", "0.01")))
        table.append((f"non-bonded {entry['name']}: min, max, step", f"{entry.get('min')}, {entry.get('max')}, "
                      f"{entry.get('step')} nm", f"pair {key}: cutoff {cutoffs[key]:g} nm, bin width"))
        for opt in ("do_potential", "post_update", "post_add"):
            value = entry.get(f"inverse.{opt}", "")
            if value and not (opt == "do_potential" and set(value.split()) == {"1"}) and value != "convergence":
                table.append((f"non-bonded {entry['name']}: {opt}", value,
                               "not carried over: every pair is updated every iteration here" if opt == "do_potential"
                               else "not carried over: no equivalent post-processing script here (damping and "
                                    "smoothing are IBI settings; a pressure correction is target_pressure)"))
    missing = [key_to_str(p) for p in topology.type_pairs() if key_to_str(p) not in targets]
    if missing:
        raise ConfigurationError(f"{settings_xml}: no <non-bonded> target for the bead-type pairs {missing}")
    cutoff = max(cutoffs.values())
    half = 0.5 * float(min(np.diag(topology.box_vectors)))
    if cutoff > half:
        raise ConfigurationError(f"the largest pair cutoff ({cutoff:g} nm) exceeds half the box ({half:g} nm)")
    bin_width = min(steps)
    if len(steps) > 1:
        table.append(("non-bonded step (several)", ", ".join(f"{s:g}" for s in sorted(steps)),
                      f"one grid here: bin_width {bin_width:g} nm (the finest)"))

    # bonded: VOTCA's table number links an interaction to the topology's tabulated items
    bonded_targets = {}
    kinds = {"b": "bond", "a": "angle", "d": "dihedral"}
    for entry in votca.bonded:
        tab = entry.get("inverse.gromacs.table", "")
        match = re.fullmatch(r"table_([bad])(\d+)\.xvg", Path(tab).name)
        if not match:
            raise ConfigurationError(f"{settings_xml}: bonded {entry['name']!r} names no GROMACS table "
                                     "(<inverse><gromacs><table>table_b1.xvg</table>) to find its items by")
        kind, number = kinds[match.group(1)], match.group(2)
        chosen = [tup for tup, funct, params in items[kind] if funct == 8 and params and params[0] == number]
        if not chosen:
            raise ConfigurationError(f"{settings_xml}: bonded {entry['name']!r} uses {tab}, but {top} has no {kind} "
                                     f"with function 8 and table {number}")
        keys = sorted({key_to_str(type_key(topology.bead_types[i] for i in tup)) for tup in chosen})
        path = str(target_path(entry, "bonded"))
        for key in keys:
            bonded_targets[key] = path
        table.append((f"bonded {entry['name']} ({tab})", entry.get("inverse.target", ""),
                      f"target of the {kind} key(s) {', '.join(keys)} ({len(chosen)} {kind}s): initial terms by "
                      "Boltzmann inversion, refined each iteration"))
    other = [kind for kind in ("bond", "angle", "dihedral")
             for tup, funct, _ in items[kind] if funct != 8]
    if other:
        table.append(("bonded items with analytic functions", f"{len(other)}", "not carried over: their potentials "
                      "are not in settings.xml's targets; give them as a force field (cgml build) instead"))

    # <inverse> options
    inv = votca.inverse
    if "kBT" not in inv:
        raise ConfigurationError(f"{settings_xml}: <inverse><kBT> is missing (the temperature)")
    temperature = float(inv["kBT"]) / BOLTZMANN_KJ
    method = inv.get("method", "ibi").lower()
    if method not in ("ibi", "imc"):
        raise ConfigurationError(f"{settings_xml}: method {method!r} has no equivalent here (ibi or imc)")
    md = _mdp(mdp) if mdp is not None else {}
    timestep_ps = float(md.get("dt", 0.005))
    config = {
        "cg_dataset": str((output / "cg.h5").resolve()), "output_dir": str((output / "ibi").resolve()),
        "temperature": f"{temperature:.6g} K", "cutoff": f"{cutoff:g} nm",
        "pair_cutoffs": {k: f"{v:g} nm" for k, v in cutoffs.items() if v < cutoff - 1e-12},
        "bin_width": f"{bin_width:g} nm", "method": method, "targets": targets,
        "timestep": f"{timestep_ps * 1000:g} fs", "production_steps": production_steps,
        "sample_interval": 100,
        "bonded": "table" if bonded_targets else "none", "refine_bonded": bool(bonded_targets),
        "bonded_targets": bonded_targets,
    }
    if "iterations_max" in inv:
        config["max_iterations"] = int(inv["iterations_max"])
    if "gromacs.equi_time" in inv:
        config["equilibration_steps"] = max(0, int(round(float(inv["gromacs.equi_time"]) / timestep_ps)))
    for key, value in inv.items():
        if key in _DIRECT:
            table.append((f"inverse.{key}", value, _DIRECT[key]))
        elif key in _MACHINERY or key.startswith(("gromacs.", "simulation.")):
            table.append((f"inverse.{key}", value, "VOTCA's own machinery: nothing to carry over"))
        elif key.startswith("convergence_check"):
            table.append((f"inverse.{key}", value, "no equivalent metric: IBI stops at tolerance (RMS of g - "
                          "g_target, 0.02) or at its noise floor"))
        else:
            table.append((f"inverse.{key}", value, "not carried over (no equivalent here)"))
    if md:
        table.append(("grompp.mdp dt", md.get("dt", ""), f"timestep {timestep_ps * 1000:g} fs"))
        for key in ("integrator", "tcoupl", "ref-t", "tau-t"):
            if key in md:
                table.append((f"grompp.mdp {key}", md[key], "IBI samples with OpenMM's Langevin middle integrator at "
                              "the temperature from kBT (friction: the IBI setting)"))

    # write: the dataset (one frame), the configuration, the report
    output.mkdir(parents=True, exist_ok=True)
    top_data = topology.to_openmm()
    with TrajectoryWriter(output / "cg.h5", top_data, topology.masses,
                          {"source": f"imported from {settings_xml}, {gro}, {top}", "temperature_K": temperature,
                           "bead_types": list(topology.bead_types)},
                          fields=("positions",), kind="coarse-grained", precision="double") as writer:
        writer.append(positions=positions, box=topology.box_vectors, step=0, time=0.0)
    config_path = output / "ibi.yaml"
    atomic_write_text(config_path, "# written by cgml import from a VOTCA setup (import.md says what each setting "
                      "became)\n" + yaml.safe_dump(config, sort_keys=False))
    lines = [f"# Imported from VOTCA: {settings_xml}", "",
             f"{topology.n_beads} beads in {topology.n_molecules} molecules, bead types "
             f"{', '.join(topology.type_names)}, box {np.round(np.diag(topology.box_vectors), 4).tolist()} nm.",
             f"Run it: `cgml ibi {config_path}`.", "", "| setting | value | here |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table]
    report = output / "import.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return ImportResult(output / "cg.h5", config_path, report, tuple(table))
