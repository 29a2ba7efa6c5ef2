"""``cgml export``: the CG model as LAMMPS and GROMACS simulations, checked by running the engines.

The model: tetramers A-B-B-A with tabulated (Lennard-Jones-like) pair tables, and either harmonic or
tabulated bonds, angles and dihedrals.  The engines (Debian's ``lammps`` and ``gromacs``, installed when missing
and root) evaluate the exported model on frames of an OpenMM run: energies per frame within 1e-5 relative,
forces within a small fraction of their RMS.  Short runs in each engine give the same RDFs as OpenMM within the
spread between two OpenMM runs."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.export import KCAL, export_gromacs, export_lammps, write_frames, write_gro
from openmm_cgml.forces.bonded import (
    HarmonicAngles,
    HarmonicBonds,
    TabulatedAngles,
    TabulatedBonds,
    TabulatedDihedrals,
)
from openmm_cgml.forces.tabulated import TabulatedPairPotential
from openmm_cgml.potential import CGPotential
from openmm_cgml.topology import CGTopology

N_MOL, BOX = 30, 2.6


def _topology(box=BOX, n_mol=N_MOL):
    types = ["A", "B", "B", "A"] * n_mol
    return CGTopology(bead_types=tuple(types), molecule_index=np.repeat(np.arange(n_mol), 4),
                      bonds=np.array([[4 * m + i, 4 * m + i + 1] for m in range(n_mol) for i in range(3)]),
                      masses=np.where(np.array(types) == "A", 43.0, 29.0), box_vectors=np.eye(3) * box)


def _pair(exclusions="molecule"):
    r = np.linspace(0.05, 1.0, 200)

    def lj(s, e=1.5):
        u = 4 * e * ((s / r) ** 12 - (s / r) ** 6)
        return np.minimum(u - u[-1], 400.0)

    return TabulatedPairPotential({"A-A": (r, lj(0.36)), "A-B": (r, lj(0.38)), "B-B": (r, lj(0.40))}, cutoff=1.0,
                                  exclusions=exclusions)


def _model(tabulated: bool, exclusions="molecule") -> CGPotential:
    if not tabulated:
        return CGPotential([_pair(exclusions), HarmonicBonds({"A-B": {"r0": 0.3, "k": 3000.0},
                                                             "B-B": {"r0": 0.32, "k": 2500.0}}),
                            HarmonicAngles({"A-B-B": {"theta0": 2.2, "k": 40.0}})])
    x = np.linspace(0.2, 0.4, 50)
    th = np.linspace(1.2, 3.1, 60)
    ph = np.linspace(-np.pi, np.pi, 73)
    return CGPotential([_pair(exclusions),
                        TabulatedBonds({"A-B": (x, 1500 * (x - 0.3) ** 2 + 5 * np.sin(20 * x)),
                                        "B-B": (x, 1250 * (x - 0.32) ** 2)}),
                        TabulatedAngles({"A-B-B": (th, 20 * (th - 2.2) ** 2 + np.cos(3 * th))}),
                        TabulatedDihedrals({"A-B-B-A": (ph, 3 * np.cos(ph) + 1.5 * np.cos(2 * ph + 0.3))})])


def _start(topology):
    g = int(np.ceil(N_MOL ** (1 / 3)))
    sp = BOX / g
    pos = []
    for k in range(N_MOL):
        c = (np.array([k % g, (k // g) % g, k // g**2]) + 0.5) * sp
        pos += [c + [-0.25, 0, 0], c, c + [0.2, 0.15, 0.0], c + [0.3, 0.3, 0.2]]
    return np.array(pos)


def _openmm_frames(potential, topology, n_frames=4, interval=500, seed=7):
    """Frames of a short Langevin run, with OpenMM's energies (kJ/mol) and forces (kJ/mol/nm)."""
    import openmm
    from openmm import unit

    system = potential.createSystem(topology)
    integ = openmm.LangevinMiddleIntegrator(300, 5, 0.002)
    integ.setRandomNumberSeed(seed)  # not 0: OpenMM picks a random seed for 0
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(_start(topology))
    openmm.LocalEnergyMinimizer.minimize(ctx, 10, 200)
    frames, energies, forces = [], [], []
    for _ in range(n_frames):
        integ.step(interval)
        st = ctx.getState(getPositions=True, getForces=True, getEnergy=True, enforcePeriodicBox=True)
        frames.append(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        energies.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.array(frames), np.array(energies), np.array(forces)


def _run(cmd, cwd, stdin=None, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, input=stdin, timeout=timeout, shell=True)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _xvg(path):
    return np.loadtxt([line for line in open(path) if not line.startswith(("#", "@"))])


# --------------------------------------------------------------------------------------------- no engine needed
def test_the_files_hold_what_openmm_evaluates(tmp_path):
    topology = _topology()
    potential = _model(tabulated=False)
    lmp = export_lammps(potential, topology, _start(topology), tmp_path / "lmp", table_points=5000)
    text = (tmp_path / "lmp" / "pair.table").read_text()
    section = text.split("\nA-B\n")[1].split("\n\n")[1].splitlines()
    rows = np.array([[float(v) for v in line.split()] for line in section[:5000]])
    r_nm = rows[:, 1] / 10
    assert rows[0, 1] == pytest.approx(10 * 1.0 / 5000) and rows[-1, 1] == pytest.approx(10.0)  # to the cutoff
    pair = potential.terms[0]
    u = pair.energy("A", "B", r_nm)
    np.testing.assert_allclose(rows[:, 2] * KCAL, u, rtol=1e-10, atol=1e-9)
    # the force column is OpenMM's: a two-bead System at a few distances
    import openmm

    two = CGTopology(bead_types=("A", "B"), molecule_index=np.array([0, 1]), masses=np.ones(2))
    ctx = openmm.Context(CGPotential([pair]).createSystem(two), openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    for i in (300, 1700, 2500, 4000):
        ctx.setPositions([[0, 0, 0], [r_nm[i], 0, 0]])
        f = ctx.getState(getForces=True).getForces(asNumpy=True)._value[1, 0]
        assert rows[i, 3] * 10 * KCAL == pytest.approx(f, rel=1e-6, abs=1e-6)
    data = (tmp_path / "lmp" / "cg.data").read_text()
    assert f"{topology.n_beads} atoms" in data and "90 bonds" in data and "60 angles" in data
    script = (tmp_path / "lmp" / "in.cg").read_text()
    assert "neigh_modify exclude molecule/intra all" in script and "fix integrate all nvt temp" in script
    assert "bond_coeff 1 " + f"{3000.0 / 2 / KCAL / 100:.12g}" in script  # LAMMPS K = k/2, kcal/mol/A^2
    assert lmp.atom_types == {"A": 1, "B": 2}
    # GROMACS: every intermolecular pair is a tabulated bond; the tables reach half the box diagonal
    gmx = export_gromacs(potential, topology, _start(topology), tmp_path / "gmx")
    n = topology.n_beads
    assert gmx.n_pair_bonds == n * (n - 1) // 2 - N_MOL * 6  # the molecule's 6 intramolecular pairs excluded
    assert gmx.table_length_nm >= 0.5 * np.sqrt(3) * BOX
    table = np.loadtxt(tmp_path / "gmx" / "table_b1.xvg")
    assert table[-1, 0] >= 0.5 * np.sqrt(3) * BOX and np.all(table[table[:, 0] > 1.0, 1:] == 0)


def test_exclusion_modes_and_refusals(tmp_path):
    topology = _topology()
    bonded = export_gromacs(_model(False, "bonded"), topology, _start(topology), tmp_path / "b")
    n = topology.n_beads
    assert bonded.n_pair_bonds == n * (n - 1) // 2 - N_MOL * 5  # 1-2 and 1-3 pairs excluded; 1-4 kept
    lmp = export_lammps(_model(False, "bonded"), topology, _start(topology), tmp_path / "bl", table_points=200)
    assert "special_bonds lj 0 0 1" in (lmp.directory / "in.cg").read_text()
    from openmm_cgml.forces.neural import NeuralForceTerm

    class Fake(NeuralForceTerm):
        def __init__(self):
            self.name = "nn"

    with pytest.raises(ConfigurationError, match="cannot be exported to LAMMPS.*neural network has none"):
        export_lammps(CGPotential([_pair(), Fake()]), topology, _start(topology), tmp_path / "x")
    with pytest.raises(ConfigurationError, match="periodic"):
        export_lammps(_model(False), topology.replace(box_vectors=None), _start(topology), tmp_path / "y")


# --------------------------------------------------------------------------------------------- the engines
@pytest.fixture(scope="module")
def lammps():
    from _debian import require_program

    return require_program(("lmp", "lmp_serial", "lmp_stable"), "lammps")


@pytest.fixture(scope="module")
def gromacs():
    from _debian import require_program

    return require_program(("gmx",), "gromacs")


@pytest.mark.slow
@pytest.mark.parametrize("tabulated", [False, True], ids=["harmonic", "tabulated"])
def test_engines_reproduce_openmm_energies_and_forces(tmp_path, lammps, gromacs, tabulated):
    topology = _topology()
    potential = _model(tabulated)
    frames, energies, forces = _openmm_frames(potential, topology)
    boxes = [topology.box_vectors] * len(frames)
    lmp = export_lammps(potential, topology, frames[0], tmp_path / "lmp", timestep_fs=5, steps=1000)
    write_frames(lmp.directory / "frames.lammpstrj", frames, boxes, [lmp.atom_types[t] for t in topology.bead_types],
                 topology.molecule_index)
    _run(f"{lammps} -in in.rerun -log rerun.log -screen none", lmp.directory)
    log = (lmp.directory / "rerun.log").read_text()
    pe = np.array([float(m.group(2)) for m in re.finditer(r"^\s*(\d+)\s+(-?[\d.eE+-]+)\s*$", log, re.M)]) * KCAL
    np.testing.assert_allclose(pe, energies, rtol=1e-5)
    blocks = (lmp.directory / "forces.lammpstrj").read_text().split("ITEM: TIMESTEP")[1:]
    for block, ref in zip(blocks, forces, strict=True):
        f = np.array(block.split("ITEM: ATOMS id fx fy fz")[1].split(), float).reshape(-1, 4)[:, 1:] * 10 * KCAL
        # linear interpolation of a 20000-point table: worst at the steepest close contacts
        assert np.sqrt(((f - ref) ** 2).mean()) < 1e-3 * np.sqrt((ref**2).mean())
        assert np.abs(f - ref).max() < 2e-3 * np.abs(ref).max()
    gmx = export_gromacs(potential, topology, frames[0], tmp_path / "gmx", timestep_fs=5, steps=1000)
    write_gro(gmx.directory / "frames.gro", frames, boxes, topology)
    _run(f"{gromacs} grompp -f rerun.mdp -c conf.gro -p topol.top -o rerun.tpr", gmx.directory)
    _run(f"{gromacs} mdrun -s rerun.tpr -rerun frames.gro -deffnm rerun -ntmpi 1 -nt 1 -tableb "
         f"{' '.join(gmx.tables)}", gmx.directory)
    _run(f"{gromacs} energy -f rerun.edr -o pe.xvg", gmx.directory, stdin="Potential\n")
    np.testing.assert_allclose(_xvg(gmx.directory / "pe.xvg")[:, 1], energies, rtol=1e-5)  # mixed precision
    _run(f"{gromacs} traj -f rerun.trr -s rerun.tpr -of f.xvg", gmx.directory, stdin="0\n")
    f = _xvg(gmx.directory / "f.xvg")[:, 1:].reshape(len(frames), -1, 3)
    for got, ref in zip(f, forces, strict=True):
        assert np.sqrt(((got - ref) ** 2).mean()) < 1e-3 * np.sqrt((ref**2).mean())  # mixed precision
        assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max()


def _rdf(positions, topology):
    from openmm_cgml.analysis.rdf import compute_rdf

    return compute_rdf(positions, topology.box_vectors, topology.bead_types, molecule_index=topology.molecule_index,
                       pairs=[("A", "B")], r_max=1.2, n_bins=60, kind="inter")[("A", "B")]


@pytest.mark.slow
def test_short_runs_in_the_engines_give_openmms_rdf(tmp_path, lammps, gromacs):
    """The same model and start at 300 K, 5 fs, 100 ps, in OpenMM twice (Bussi; two seeds), LAMMPS (Nose-Hoover
    chains) and GROMACS (v-rescale): each engine's inter A-B RDF differs from OpenMM's by no more than about two
    OpenMM runs differ."""
    import openmm
    from openmm import unit

    from openmm_cgml.analysis.rdf import rdf_difference
    from openmm_cgml.thermostat import make_integrator

    topology = _topology()
    potential = _model(False)
    start = _openmm_frames(potential, topology, n_frames=1)[0][0]
    steps, every = 20000, 100

    def openmm_run(seed, model=potential):
        system = model.createSystem(topology)
        integ = make_integrator({"kind": "bussi", "tau": "1 ps"}, temperature=300.0, timestep=0.005, seed=seed,
                                system=system)
        ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
        ctx.setPositions(start)
        ctx.setVelocitiesToTemperature(300.0, seed)
        integ.step(2000)
        out = []
        for _ in range(steps // every):
            integ.step(every)
            out.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        return np.array(out)

    ref, ref2 = _rdf(openmm_run(1), topology), _rdf(openmm_run(2), topology)
    noise = rdf_difference(ref, ref2)
    lmp = export_lammps(potential, topology, start, tmp_path / "lmp", temperature=300.0, timestep_fs=5,
                        steps=steps + 2000, dump_every=every)  # the first 2000 steps are equilibration
    _run(f"{lammps} -in in.cg -log run.log -screen none", lmp.directory)
    blocks = (lmp.directory / "traj.lammpstrj").read_text().split("ITEM: TIMESTEP")[1:]
    pos = np.array([np.array(b.split("ITEM: ATOMS id mol type x y z")[1].split(), float).reshape(-1, 6)[:, 3:] / 10
                    for b in blocks[21:]])
    lammps_error = rdf_difference(ref, _rdf(pos, topology))
    gmx = export_gromacs(potential, topology, start, tmp_path / "gmx", temperature=300.0, timestep_fs=5,
                         steps=steps + 2000)
    _run("bash run_gromacs.sh", gmx.directory, timeout=900)
    _run(f"{gromacs} trjconv -f run.xtc -s run.tpr -o run.gro -b 10", gmx.directory, stdin="0\n")
    text = (gmx.directory / "run.gro").read_text().splitlines()
    n = topology.n_beads
    frames = [np.array([[float(line[20 + 8 * k:28 + 8 * k]) for k in range(3)] for line in text[i + 2:i + 2 + n]])
              for i in range(0, len(text), n + 3)]
    gromacs_error = rdf_difference(ref, _rdf(np.array(frames), topology))
    print(f"RDF rms difference from OpenMM: LAMMPS {lammps_error:.4f}, GROMACS {gromacs_error:.4f}; two OpenMM runs "
          f"{noise:.4f}")
    assert noise > 0
    # and the check can fail: the pair tables in kcal/mol read as kJ/mol (a units slip) move the RDF further
    pair = potential.terms[0]
    slip = CGPotential([pair.with_tables({k: (r, u / KCAL) for k, (r, u) in pair.tables.items()}),
                        *potential.terms[1:]])
    assert rdf_difference(ref, _rdf(openmm_run(3, slip), topology)) > 2.5 * noise + 0.01
    assert lammps_error < 2.5 * noise + 0.01, (lammps_error, noise)
    assert gromacs_error < 2.5 * noise + 0.01, (gromacs_error, noise)
