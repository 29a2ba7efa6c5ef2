"""Export a tabulated CG model (IBI output or force-field file) as a complete, runnable LAMMPS simulation.

``export_lammps(source, topology, positions, output)`` writes, into ``output``:

- ``cg.data``: the beads (atom style ``molecular``, one molecule ID per CG molecule), their masses, the box
  (restricted triclinic when OpenMM's box is), bonds, angles and dihedrals with one LAMMPS type per bead-type key;
- ``pair.table`` (``pair_style table linear``), and ``bond.table`` / ``angle.table`` / ``dihedral.table`` for
  tabulated bonded terms: energies and forces evaluated by OpenMM itself on each grid point (a one-item
  System per point), written with 12 significant digits, from the first grid point to the cutoff;
- ``in.cg``: units ``real``, the styles and coefficients (harmonic terms natively: LAMMPS K = k/2 in kcal/mol),
  the exclusions as OpenMM applies them (``molecule``: ``neigh_modify exclude molecule/intra all``; ``bonded``:
  ``special_bonds lj 0 0 1``), velocities, a run under Nose-Hoover chains (``fix nvt``, core LAMMPS; Bussi's
  ``fix temp/csvr`` needs package EXTRA-FIX, and the script says how to switch) at the timestep given, a thermo
  log and a trajectory dump;
- ``in.rerun``: the same model evaluated once per frame of ``frames.lammpstrj`` (written by :func:`write_frames`)
  for checking energies and forces against OpenMM.

Units: OpenMM's kJ/mol, nm, ps become LAMMPS ``real`` kcal/mol, Å, fs (``KCAL = 4.184``; forces kcal/mol/Å =
kJ/mol/nm / 41.84).  Neural terms cannot be exported (LAMMPS has no equivalent); the error says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_write_text
from .exceptions import ConfigurationError
from .forcespec import ARITY, assign_bonded
from .topology import CGTopology, key_to_str

__all__ = ["export_lammps", "export_gromacs", "LammpsExport", "GromacsExport", "write_frames", "write_gro",
           "write_lammps_pair_tables", "KCAL"]

KCAL = 4.184  # kJ per kcal


@dataclass(frozen=True)
class LammpsExport:
    """What :func:`export_lammps` wrote: the directory, its files, and the LAMMPS type numbers used."""

    directory: Path
    files: tuple[str, ...]
    atom_types: dict[str, int]
    pair_cutoff_nm: float
    exclusions: str


def _g(x: float) -> str:
    return f"{x:.12g}"


# ------------------------------------------------------------------------------------------- OpenMM as the oracle
def _scan_bonded(term, key: tuple[str, ...], xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy (kJ/mol) and -dU/dx of one bonded table ``key`` of ``term`` at ``xs`` (nm or rad), by OpenMM.

    A System of one item (two, three or four beads) is evaluated at each point; the derivative is OpenMM's
    force projected on the coordinate."""
    import openmm

    from .potential import CGPotential

    kind = term.bonded
    single = type(term)({key_to_str(key): term.tables[key]}, **_table_options(term))
    n = ARITY[kind]
    topo = CGTopology(bead_types=tuple(key), molecule_index=np.zeros(n, dtype=int),
                      bonds=np.array([(i, i + 1) for i in range(n - 1)]), masses=np.ones(n))
    system = CGPotential([single]).createSystem(topo)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies, forces = np.empty(len(xs)), np.empty(len(xs))
    for i, x in enumerate(xs):
        pos, direction = _geometry(kind, float(x))
        context.setPositions(pos)
        state = context.getState(getEnergy=True, getForces=True)
        energies[i] = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
        f = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
        forces[i] = float(np.sum(f[-1] * direction))  # -dU/dx from the moving bead's force and its lever arm
    return energies, forces


def _bonded_curve(term, key: tuple[str, ...], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy (kJ/mol) and -dE/dx of a tabulated bond (``x`` in nm, -dE/dx per nm) or angle or dihedral (``x`` in
    degrees, -dE/dx per degree, the tables' unit in both engines), by OpenMM.  Bond lengths below 0.001 nm and
    angles within 1e-4 rad of 0 and pi are evaluated there (OpenMM's angle is undefined at the ends)."""
    if term.bonded == "bond":
        return _scan_bonded(term, key, np.maximum(x, 1e-3))
    rad = np.radians(x)
    if term.bonded == "angle":
        rad = np.clip(rad, 1e-4, np.pi - 1e-4)
    e, f = _scan_bonded(term, key, rad)
    return e, f * np.pi / 180


def _assigned(term, topology: CGTopology, kind: str) -> tuple[list, list[str]]:
    """The ``(beads, key)`` items of a bonded term on ``topology`` and its keys in use, sorted."""
    keys = term.parameters if hasattr(term, "parameters") else {key_to_str(k): v for k, v in term.tables.items()}
    assigned = assign_bonded(topology, kind, keys, f"term {term.name!r}")
    return assigned, sorted({k for _, k in assigned})


def _table_options(term) -> dict:
    return {k: getattr(term, k) for k in ("wall", "n_points") if hasattr(term, k)}


def _geometry(kind: str, x: float):
    """Positions realising coordinate ``x`` with only the last bead moving, and d(last bead)/dx."""
    if kind == "bond":
        return [[0, 0, 0], [x, 0, 0]], np.array([1.0, 0, 0])
    arm = 0.3
    if kind == "angle":  # beads 0 and 1 fixed, bead 2 on a circle of radius arm about bead 1
        pos = [[arm, 0, 0], [0, 0, 0], [arm * np.cos(x), arm * np.sin(x), 0]]
        return pos, arm * np.array([-np.sin(x), np.cos(x), 0.0])
    # dihedral: bead 3 rotates about the 1-2 axis (z); phi = x with OpenMM's sign convention
    pos = [[arm, 0, -arm], [0, 0, -arm / 2], [0, 0, arm / 2], [arm * np.cos(x), arm * np.sin(x), arm]]
    return pos, arm * np.array([-np.sin(x), np.cos(x), 0.0])


def _pair_values(term, a: str, b: str, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U_ab(r) and -dU/dr as OpenMM evaluates the pair term (its natural spline, or the analytic form)."""
    if hasattr(term, "spline"):  # tabulated: the spline OpenMM's Continuous1DFunction builds
        spline = term.spline(a, b)
        return spline(r), -spline(r, 1)
    h = 1e-6
    return term.energy(a, b, r), -(term.energy(a, b, r + h) - term.energy(a, b, r - h)) / (2 * h)


# ------------------------------------------------------------------------------------------- writers
def write_lammps_pair_tables(path, pair, types, table_points: int = 20000, *, atom_types=None) -> list[str]:
    """LAMMPS ``pair_style table linear <table_points>`` file of the pair term ``pair`` for every pair of
    ``types``, in ``units real``: sections ``A-B`` from the first grid point above zero to the cutoff, energies
    and forces as OpenMM evaluates them, 12 significant digits.  Returns the ``pair_coeff`` lines (``atom_types``:
    LAMMPS type numbers, default 1, 2, ... in the order of ``types``)."""
    atom_types = atom_types or {t: i + 1 for i, t in enumerate(types)}
    cutoff = float(pair.cutoff)
    r = np.linspace(cutoff / table_points, cutoff, table_points)
    lines = ["# openmm_cgml pair tables (LAMMPS units real: Angstrom, kcal/mol, kcal/mol/Angstrom), evaluated as "
             "OpenMM does", ""]
    coeffs = []
    for ia, a in enumerate(types):
        for b in types[ia:]:
            u, f = _pair_values(pair, a, b, r)
            name = f"{a}-{b}"
            lines += [name, f"N {table_points} R {_g(r[0] * 10)} {_g(cutoff * 10)}", ""]
            lines += [f"{i + 1} {_g(x * 10)} {_g(e / KCAL)} {_g(ff / (10 * KCAL))}"
                      for i, (x, e, ff) in enumerate(zip(r, u, f))]
            lines.append("")
            coeffs.append(f"pair_coeff {atom_types[a]} {atom_types[b]} {Path(path).name} {name} {_g(cutoff * 10)}")
    atomic_write_text(path, "\n".join(lines))
    return coeffs


def _split_terms(terms, engine: str = "LAMMPS"):
    from .forces.bonded import HarmonicAngles, HarmonicBonds, TabulatedAngles, TabulatedBonds, TabulatedDihedrals
    from .forces.tabulated import AnalyticPairPotential, TabulatedPairPotential

    pairs, bonded = [], {"bond": [], "angle": [], "dihedral": []}
    for term in terms:
        if isinstance(term, (TabulatedPairPotential, AnalyticPairPotential)):
            pairs.append(term)
        elif isinstance(term, (HarmonicBonds, TabulatedBonds)) and not isinstance(term, TabulatedAngles):
            bonded["bond"].append(term)
        elif isinstance(term, (HarmonicAngles, TabulatedAngles)):
            bonded["angle"].append(term)
        elif isinstance(term, TabulatedDihedrals):
            bonded["dihedral"].append(term)
        else:
            raise ConfigurationError(
                f"term {term.name!r} ({type(term).__name__}) cannot be exported to {engine}: only tabulated and "
                f"analytic pair potentials and harmonic or tabulated bonds, angles and dihedrals have {engine} "
                "equivalents (a neural network has none; export an IBI model, or its tabulated terms)")
    if len(pairs) != 1:
        raise ConfigurationError(f"the {engine} export needs exactly one pair term, got {len(pairs)}")
    for kind, items in bonded.items():
        if len(items) > 1:
            raise ConfigurationError(f"the {engine} export takes one {kind} term, got {[t.name for t in items]}")
    return pairs[0], {k: (v[0] if v else None) for k, v in bonded.items()}


def _prepare(source, topology: CGTopology, positions, engine: str):
    """(pair term, bonded terms by kind, positions) of an export, refusing what the engine cannot take before
    anything is written."""
    from .potential import CGPotential

    terms = source.terms if isinstance(source, CGPotential) else CGPotential(source).terms
    pair, bonded = _split_terms(terms, engine)
    if topology.box_vectors is None:
        raise ConfigurationError(f"the {engine} export needs a periodic CG topology (a box)")
    positions = np.asarray(positions, dtype=float)
    if positions.shape != (topology.n_beads, 3):
        raise ConfigurationError(f"positions must have shape ({topology.n_beads}, 3) nm, got {positions.shape}")
    topology.require_masses(f"the {engine} export")
    return pair, bonded, positions


def _box_lines(box: np.ndarray) -> list[str]:
    box = np.asarray(box, dtype=float) * 10.0
    if abs(box[0, 1]) > 1e-12 or abs(box[0, 2]) > 1e-12 or abs(box[1, 2]) > 1e-12:
        raise ConfigurationError("the box must be in OpenMM's reduced form (a along x, b in the xy plane)")
    lines = [f"0 {_g(box[0, 0])} xlo xhi", f"0 {_g(box[1, 1])} ylo yhi", f"0 {_g(box[2, 2])} zlo zhi"]
    tilt = (box[1, 0], box[2, 0], box[2, 1])
    if any(abs(t) > 1e-12 for t in tilt):
        lines.append(f"{_g(tilt[0])} {_g(tilt[1])} {_g(tilt[2])} xy xz yz")
    return lines


def write_frames(path, positions, boxes, type_ids, molecule_index, *, steps=None) -> None:
    """A LAMMPS text dump (``id mol type x y z``, Å) of frames (nm) for ``rerun``."""
    lines = []
    positions = np.asarray(positions, dtype=float)
    for f, (pos, box) in enumerate(zip(positions, boxes)):
        box = np.asarray(box, dtype=float) * 10.0
        xy, xz, yz = box[1, 0], box[2, 0], box[2, 1]
        step = f if steps is None else int(steps[f])
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(pos))]
        if abs(xy) + abs(xz) + abs(yz) > 1e-12:
            lo_x, hi_x = min(0.0, xy, xz, xy + xz), box[0, 0] + max(0.0, xy, xz, xy + xz)
            lo_y, hi_y = min(0.0, yz), box[1, 1] + max(0.0, yz)
            lines += ["ITEM: BOX BOUNDS xy xz yz pp pp pp", f"{_g(lo_x)} {_g(hi_x)} {_g(xy)}",
                      f"{_g(lo_y)} {_g(hi_y)} {_g(xz)}", f"0 {_g(box[2, 2])} {_g(yz)}"]
        else:
            lines += ["ITEM: BOX BOUNDS pp pp pp", f"0 {_g(box[0, 0])}", f"0 {_g(box[1, 1])}", f"0 {_g(box[2, 2])}"]
        lines.append("ITEM: ATOMS id mol type x y z")
        lines += [f"{i + 1} {int(molecule_index[i]) + 1} {type_ids[i]} {_g(x * 10)} {_g(y * 10)} {_g(z * 10)}"
                  for i, (x, y, z) in enumerate(pos)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def export_lammps(source, topology: CGTopology, positions, output, *, temperature: float = 298.15,
                  timestep_fs: float = 5.0, steps: int = 100000, table_points: int = 20000, seed: int = 1,
                  thermostat_tau_ps: float = 1.0, dump_every: int = 100) -> LammpsExport:
    """Write a runnable LAMMPS simulation of the CG model ``source`` (anything :class:`CGPotential` takes:
    an IBI output directory, a force-field file, or terms) on ``topology`` at ``positions`` (nm)."""
    pair, bonded, positions = _prepare(source, topology, positions, "LAMMPS")
    if table_points < 100:
        raise ConfigurationError(f"table_points must be at least 100, got {table_points}")
    masses = topology.require_masses("the LAMMPS export")
    types = list(topology.type_names)
    mixed = [t for t in types if np.ptp(masses[np.asarray(topology.bead_types) == t]) > 1e-9]
    if mixed:
        raise ConfigurationError(f"beads of type(s) {mixed} have different masses; LAMMPS masses are per atom type "
                                 "(give such beads their own bead types)")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    atom_type = {t: i + 1 for i, t in enumerate(types)}
    files = []

    cutoff = float(pair.cutoff)
    pair_coeffs = write_lammps_pair_tables(out / "pair.table", pair, types, table_points,
                                           atom_types=atom_type)
    files.append("pair.table")

    # bonded items, one LAMMPS type per bead-type key
    sections, styles, coeffs, counts, type_counts = {}, {}, [], {}, {}
    for kind, term in bonded.items():
        if term is None:  # the model has no such potential: nothing to write (the topology's tuples carry none)
            continue
        assigned, used = _assigned(term, topology, kind)
        type_id = {k: i + 1 for i, k in enumerate(used)}
        sections[kind] = [f"{n + 1} {type_id[k]} " + " ".join(str(i + 1) for i in atoms)
                          for n, (atoms, k) in enumerate(assigned)]
        counts[kind], type_counts[kind] = len(assigned), len(used)
        if hasattr(term, "parameters"):  # harmonic: native styles, K = k/2
            styles[kind] = "harmonic"
            for k in used:
                p = term.parameters[k]
                if kind == "bond":
                    coeffs.append(f"bond_coeff {type_id[k]} {_g(p['k'] / 2 / KCAL / 100)} {_g(p['r0'] * 10)}  # {k}")
                else:
                    coeffs.append(f"angle_coeff {type_id[k]} {_g(p['k'] / 2 / KCAL)} {_g(np.degrees(p['theta0']))}"
                                  f"  # {k}")
        else:
            styles[kind] = f"table linear {table_points}"
            lines = [f"# openmm_cgml {kind} tables (real units), evaluated by OpenMM", ""]
            for k in used:
                key = tuple(k.split("-"))
                if kind == "bond":  # beyond the table's own range OpenMM continues it with walls: so does the export
                    xs = np.linspace(0.01, 2.0 * float(term.tables[key][0][-1]), 4001)
                    e, f = _bonded_curve(term, key, xs)
                    lines += [k, f"N {len(xs)}", ""]
                    lines += [f"{i + 1} {_g(x * 10)} {_g(ei / KCAL)} {_g(fi / (10 * KCAL))}"
                              for i, (x, ei, fi) in enumerate(zip(xs, e, f))]
                else:  # angles 0..180 degrees; dihedrals -180..180 (the end left out: it is the start)
                    xs = np.linspace(0.0, 180.0, 1801) if kind == "angle" else np.linspace(-180.0, 180.0, 721)[:-1]
                    e, f = _bonded_curve(term, key, xs)  # force per degree, as LAMMPS' tables take it
                    lines += [k, f"N {len(xs)}" + ("" if kind == "angle" else " DEGREES"), ""]
                    lines += [f"{i + 1} {_g(x)} {_g(ei / KCAL)} {_g(fi / KCAL)}"
                              for i, (x, ei, fi) in enumerate(zip(xs, e, f))]
                lines.append("")
                coeffs.append(f"{kind}_coeff {type_id[k]} {kind}.table {k}")
            atomic_write_text(out / f"{kind}.table", "\n".join(lines))
            files.append(f"{kind}.table")

    # the data file
    data = [f"LAMMPS data file: openmm_cgml export ({topology.n_beads} beads, {topology.n_molecules} molecules)",
            "", f"{topology.n_beads} atoms"]
    data += [f"{counts[k]} {k}s" for k in ("bond", "angle", "dihedral") if k in counts]
    data.append(f"{len(types)} atom types")
    data += [f"{type_counts[k]} {k} types" for k in ("bond", "angle", "dihedral") if k in type_counts]
    data += [""] + _box_lines(topology.box_vectors) + ["", "Masses", ""]
    for t in types:
        data.append(f"{atom_type[t]} {_g(float(np.mean(masses[np.asarray(topology.bead_types) == t])))}  # {t}")
    data += ["", "Atoms # molecular", ""]
    data += [f"{i + 1} {int(topology.molecule_index[i]) + 1} {atom_type[topology.bead_types[i]]} "
             f"{_g(x * 10)} {_g(y * 10)} {_g(z * 10)}" for i, (x, y, z) in enumerate(positions)]
    for kind, title in (("bond", "Bonds"), ("angle", "Angles"), ("dihedral", "Dihedrals")):
        if kind in sections:
            data += ["", title, ""] + sections[kind]
    atomic_write_text(out / "cg.data", "\n".join(data) + "\n")
    files.append("cg.data")

    # the input scripts
    if pair.exclusions == "molecule":
        exclusion = ["special_bonds lj 1 1 1", "neigh_modify exclude molecule/intra all"]
    elif pair.exclusions == "bonded":
        exclusion = ["special_bonds lj 0 0 1"]
    else:
        exclusion = ["special_bonds lj 1 1 1"]
    model = ["units real", "atom_style molecular", "boundary p p p",
             f"pair_style table linear {table_points}"]
    model += [f"{k}_style {s}" for k, s in styles.items()]
    model += ["read_data cg.data"] + pair_coeffs + coeffs + exclusion
    model += ["neighbor 2.0 bin", "neigh_modify delay 0 every 1 check yes"]
    run = [f"# openmm_cgml export: {topology.n_beads} beads at {temperature} K, {timestep_fs} fs, Nose-Hoover chains",
           *model, f"velocity all create {_g(temperature)} {seed} mom yes rot no dist gaussian",
           f"timestep {_g(timestep_fs)}",
           "# Nose-Hoover chains (core LAMMPS): a global thermostat, so diffusion is not damped as by Langevin.",
           "# Bussi's, as in OpenMM and GROMACS, needs package EXTRA-FIX: replace the fix with",
           f"#   fix integrate all nve + fix thermostat all temp/csvr {_g(temperature)} {_g(temperature)} "
           f"{_g(thermostat_tau_ps * 1000)} {seed}",
           f"fix integrate all nvt temp {_g(temperature)} {_g(temperature)} {_g(thermostat_tau_ps * 1000)}",
           "thermo_style custom step temp pe ke etotal press", "thermo 1000",
           f"dump traj all custom {dump_every} traj.lammpstrj id mol type x y z", "dump_modify traj sort id",
           f"run {steps}"]
    atomic_write_text(out / "in.cg", "\n".join(run) + "\n")
    rerun = ["# openmm_cgml export: the model's energy and forces on every frame of frames.lammpstrj", *model,
             "compute pe all pe", "thermo_style custom step c_pe", "thermo_modify format float %.12g", "thermo 1",
             "dump forces all custom 1 forces.lammpstrj id fx fy fz", "dump_modify forces sort id format float %.12g",
             "rerun frames.lammpstrj dump x y z box yes"]
    atomic_write_text(out / "in.rerun", "\n".join(rerun) + "\n")
    files += ["in.cg", "in.rerun"]
    return LammpsExport(out, tuple(files), atom_type, cutoff, pair.exclusions)


# ------------------------------------------------------------------------------------------- GROMACS
@dataclass(frozen=True)
class GromacsExport:
    """What :func:`export_gromacs` wrote: the directory, its files, the bonded table files for ``mdrun
    -tableb``, and the number of tabulated pair "bonds"."""

    directory: Path
    files: tuple[str, ...]
    tables: tuple[str, ...]
    n_pair_bonds: int
    table_length_nm: float


def write_gro(path, positions, boxes, topology: CGTopology, *, title: str = "openmm_cgml") -> None:
    """A (multi-frame) ``.gro`` file of ``positions`` (nm) with ``boxes`` (3x3, nm; GROMACS' box line)."""
    names = topology.bead_names or topology.bead_types
    lines = []
    for f, (pos, box) in enumerate(zip(np.asarray(positions, dtype=float), boxes)):
        lines += [f"{title} t= {f}.00000", f"{len(pos):5d}"]
        for i, (x, y, z) in enumerate(pos):
            res = int(topology.molecule_index[i]) + 1
            lines.append(f"{res % 100000:5d}{'CG':<5s}{str(names[i])[:5]:>5s}{(i + 1) % 100000:5d}"
                         f"{x:13.8f}{y:13.8f}{z:13.8f}")  # GROMACS reads the precision from the widths
        b = np.asarray(box, dtype=float)
        lines.append(" ".join(f"{v:.5f}" for v in (b[0, 0], b[1, 1], b[2, 2], b[0, 1], b[0, 2], b[1, 0], b[1, 2],
                                                      b[2, 0], b[2, 1])))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _pair_list(topology: CGTopology, exclusions: str) -> list[tuple[int, int]]:
    """Every pair (i < j) the OpenMM pair term evaluates (its exclusions removed), as GROMACS must list them."""
    n = topology.n_beads
    i, j = np.triu_indices(n, 1)
    mol = np.asarray(topology.molecule_index)
    keep = np.ones(len(i), dtype=bool)
    if exclusions == "molecule":
        keep = mol[i] != mol[j]
    elif exclusions == "bonded":
        excluded = set()
        nbrs = [set() for _ in range(n)]
        for a, b in np.asarray(topology.bonds).reshape(-1, 2):
            nbrs[int(a)].add(int(b))
            nbrs[int(b)].add(int(a))
        for a in range(n):
            for b in nbrs[a]:
                excluded.add((min(a, b), max(a, b)))
                for c in nbrs[b]:
                    if c != a:
                        excluded.add((min(a, c), max(a, c)))
        keep = np.array([(int(x), int(y)) not in excluded for x, y in zip(i, j)], dtype=bool)
    return [(int(x), int(y)) for x, y in zip(i[keep], j[keep])]


def _xvg(path, x, v, f, header: str) -> None:
    lines = [f"# {header} (written by openmm_cgml; V and -dV/dx evaluated by OpenMM)"]
    lines += [f"{a:.10g} {b:.12g} {c:.12g}" for a, b, c in zip(x, v, f)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _mdp(temperature: float, timestep_fs: float, steps: int, tau_ps: float, seed: int, r_nb: float, *,
         rerun: bool = False) -> str:
    out = 1 if rerun else 100
    lines = ["; openmm_cgml export: the CG model as tabulated bonded interactions (see topol.top)",
             "integrator = md", f"dt = {timestep_fs / 1000:.6g}", f"nsteps = {0 if rerun else steps}",
             "cutoff-scheme = Verlet", "nstlist = 10", "pbc = xyz", "periodic-molecules = yes",
             "; no charges and zero Lennard-Jones: the nonbonded kernel adds nothing",
             "coulombtype = cut-off", f"rcoulomb = {r_nb:.4g}", "vdwtype = cut-off", f"rvdw = {r_nb:.4g}",
             "constraints = none", f"nstcalcenergy = {out}", f"nstenergy = {out}", "comm-mode = linear"]
    if rerun:
        lines += ["nstfout = 1", "tcoupl = no"]
    else:
        lines += ["tcoupl = v-rescale", "tc-grps = System", f"tau-t = {tau_ps:.6g}", f"ref-t = {temperature:.6g}",
                  "gen-vel = yes", f"gen-temp = {temperature:.6g}", f"gen-seed = {seed}", f"nstxout-compressed = {out}"]
    return "\n".join(lines) + "\n"


def export_gromacs(source, topology: CGTopology, positions, output, *, temperature: float = 298.15,
                   timestep_fs: float = 5.0, steps: int = 100000, seed: int = 1, thermostat_tau_ps: float = 1.0,
                   table_spacing: float = 0.0005) -> GromacsExport:
    """Write a GROMACS (2020 and later) simulation of the CG model ``source`` on ``topology`` at ``positions`` (nm).

    Current GROMACS (the Verlet scheme) takes no user tables for non-bonded pairs, so every pair the OpenMM
    model evaluates becomes a tabulated bond (type 9: no exclusions generated) of one system-wide molecule
    (``periodic-molecules = yes``), with its type pair's table ``table_b<n>.xvg`` running to half the box diagonal
    (zero beyond the cutoff).  This is exact but evaluates all N(N-1)/2 pairs every step without a neighbour list:
    fine for the few hundred beads of a test box, impractical beyond a few thousand.  Harmonic bonds and angles
    are GROMACS type 1 (the same k/2 convention as OpenMM); tabulated bonds, angles and dihedrals are type 8 with
    their own tables.  ``run_gromacs.sh`` holds the grompp and mdrun commands (one rank: bonded interactions
    span the box)."""
    pair, bonded, positions = _prepare(source, topology, positions, "GROMACS")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    masses = topology.require_masses("the GROMACS export")
    types = list(topology.type_names)
    box = np.asarray(topology.box_vectors, dtype=float)
    reach = 0.5 * float(np.linalg.norm(box.sum(axis=0))) + 0.1  # no minimum-image distance is longer
    tables = []

    # pair tables: one per type pair, 0 .. reach, zero beyond the cutoff
    x = np.arange(int(np.ceil(reach / table_spacing)) + 1) * table_spacing
    pair_table = {}
    for ia, a in enumerate(types):
        for b in types[ia:]:
            n = len(tables)
            v, f = _pair_values(pair, a, b, np.clip(x, 0, pair.cutoff))
            beyond = x > pair.cutoff
            v[beyond], f[beyond] = 0.0, 0.0
            _xvg(out / f"table_b{n}.xvg", x, v, f, f"pair {a}-{b}: r (nm), V (kJ/mol), -dV/dr (kJ/mol/nm)")
            tables.append(f"table_b{n}.xvg")
            pair_table[(a, b)] = pair_table[(b, a)] = n
    bead_types = list(topology.bead_types)
    pairs = _pair_list(topology, pair.exclusions)
    bond_lines = ["; tabulated pairs (type 9: table number, scale 1)"]
    bond_lines += [f"{i + 1:6d} {j + 1:6d} 9 {pair_table[(bead_types[i], bead_types[j])]} 1.0" for i, j in pairs]

    # bonded terms
    angle_lines, dihedral_lines, table_ids = [], [], {"bond": len(tables), "angle": 0, "dihedral": 0}
    for kind, term in bonded.items():
        if term is None:  # the model has no such potential: nothing to write (the topology's tuples carry none)
            continue
        assigned, used = _assigned(term, topology, kind)
        target = {"bond": bond_lines, "angle": angle_lines, "dihedral": dihedral_lines}[kind]
        target.append(f"; {term.name} ({type(term).__name__})")
        if hasattr(term, "parameters"):
            for atoms, k in assigned:
                p = term.parameters[k]
                ids = " ".join(f"{a + 1:6d}" for a in atoms)
                value = f"{p['r0']:.10g} {p['k']:.10g}" if kind == "bond" else \
                    f"{np.degrees(p['theta0']):.10g} {p['k']:.10g}"
                target.append(f"{ids} 1 {value}")
            continue
        letter = {"bond": "b", "angle": "a", "dihedral": "d"}[kind]
        numbers = {}
        for k in used:
            key = tuple(k.split("-"))
            n = table_ids[kind]
            table_ids[kind] += 1
            numbers[k] = n
            if kind == "bond":  # from 0, to twice the table's range (OpenMM's walls beyond it)
                xs = np.arange(int(np.ceil(float(term.tables[key][0][-1]) * 2.0 / table_spacing)) + 1) * table_spacing
                header = f"bond {k}: r (nm), V (kJ/mol), -dV/dr (kJ/mol/nm)"
            else:
                xs = np.linspace(0.0, 180.0, 1801) if kind == "angle" else np.linspace(-180.0, 180.0, 3601)
                header = f"{kind} {k}: angle (degree), V (kJ/mol), -dV/dx (kJ/mol/degree)"
            _xvg(out / f"table_{letter}{n}.xvg", xs, *_bonded_curve(term, key, xs), header)
            tables.append(f"table_{letter}{n}.xvg")
        for atoms, k in assigned:
            target.append(" ".join(f"{a + 1:6d}" for a in atoms) + f" 8 {numbers[k]} 1.0")

    names = topology.bead_names or topology.bead_types
    top = ["; openmm_cgml export: the CG model for GROMACS 2020 and later.",
           "; Every pair the OpenMM model evaluates is a tabulated bond (type 9) of one system-wide molecule:",
           "; exact, but N^2 pairs without a neighbour list (small systems only).",
           "[ defaults ]", "; nbfunc comb-rule gen-pairs", "1 1 no", "", "[ atomtypes ]",
           "; name mass charge ptype c6 c12"]
    for t in types:
        m = float(np.mean(masses[np.asarray(bead_types) == t]))
        top.append(f"{t} {m:.10g} 0.0 A 0.0 0.0")
    top += ["", "[ moleculetype ]", "; name nrexcl", "CGSYSTEM 0", "", "[ atoms ]",
            "; nr type resnr residue atom cgnr charge mass"]
    top += [f"{i + 1:6d} {bead_types[i]} {int(topology.molecule_index[i]) + 1} CG {str(names[i])[:5]} {i + 1} 0.0 "
            f"{float(masses[i]):.10g}" for i in range(topology.n_beads)]
    top += ["", "[ bonds ]"] + bond_lines
    if angle_lines:
        top += ["", "[ angles ]"] + angle_lines
    if dihedral_lines:
        top += ["", "[ dihedrals ]"] + dihedral_lines
    top += ["", "[ system ]", f"openmm_cgml CG system ({topology.n_molecules} molecules)", "", "[ molecules ]",
            "CGSYSTEM 1"]
    atomic_write_text(out / "topol.top", "\n".join(top) + "\n")
    write_gro(out / "conf.gro", [positions], [box], topology)
    r_nb = min(0.5, 0.49 * float(min(np.diag(box))))
    atomic_write_text(out / "run.mdp", _mdp(temperature, timestep_fs, steps, thermostat_tau_ps, seed, r_nb))
    atomic_write_text(out / "rerun.mdp", _mdp(temperature, timestep_fs, steps, thermostat_tau_ps, seed, r_nb,
                                              rerun=True))
    tab_args = f"-tableb {' '.join(tables)}"  # every bonded table: pairs and bonds (b), angles (a), dihedrals (d)
    script = ["#!/usr/bin/env bash", "# openmm_cgml export: run the CG model in GROMACS 2020 or later (one rank: the",
              "# tabulated pair bonds span the box, which domain decomposition cannot split)", "set -euo pipefail",
              'cd "$(dirname "$0")"', "gmx grompp -f run.mdp -c conf.gro -p topol.top -o run.tpr",
              f"gmx mdrun -deffnm run -ntmpi 1 {tab_args}"]
    atomic_write_text(out / "run_gromacs.sh", "\n".join(script) + "\n")
    files = ["topol.top", "conf.gro", "run.mdp", "rerun.mdp", "run_gromacs.sh", *tables]
    return GromacsExport(out, tuple(files), tuple(tables), len(pairs), reach)
