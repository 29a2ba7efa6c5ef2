"""The plug-in contracts, checked for every registered model, prior, mapping scheme, alpha model and force term.

Built-ins are registered through ``pyproject.toml``'s entry points exactly as a third-party package's are, so
an installed plug-in is checked here too.  Each contract is written down in its base class's module:
:mod:`openmm_cgml.models.base` (models), :mod:`openmm_cgml.models.priors` (priors),
:mod:`openmm_cgml.mapping._registry` (mapping schemes), :mod:`openmm_cgml.dynamics.alpha` (alpha models),
:mod:`openmm_cgml.forces.base` (force terms).
"""

from __future__ import annotations

import json

import numpy as np
import openmm
import pytest
import torch
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture: one torch thread)
from openmm import app, unit

from openmm_cgml import CGPotential, CGTopology, energy_components
from openmm_cgml.dataset import TrajectoryWriter
from openmm_cgml.dynamics import ALPHA_MODELS, load_alpha_model, save_alpha_model
from openmm_cgml.exceptions import UntrustedContentError
from openmm_cgml.forces.base import TERMS, term_from_data
from openmm_cgml.forces.neural import compiled_prior_force
from openmm_cgml.forces.spec import build_force
from openmm_cgml.forces.xml import load_system, save_system
from openmm_cgml.mapping import MAPPINGS, CGMapping, create_mapping
from openmm_cgml.models import MODELS, PRIORS, PriorOnlyModel, build_model, load_bundle, save_bundle
from openmm_cgml.models.bundle import bundle_from_model
from openmm_cgml.testing import has_openff

BOX = 2.6
N_MOL = 6


# ----------------------------------------------------------------------------- a small CG system
def tetramers(box: float | None = BOX) -> CGTopology:
    """``N_MOL`` A-B-B-A chains: every bonded kind (bonds A-B and B-B, angles A-B-B, dihedrals A-B-B-A)."""
    types = ("A", "B", "B", "A") * N_MOL
    mol = np.repeat(np.arange(N_MOL), 4)
    bonds = [(4 * m + b, 4 * m + b + 1) for m in range(N_MOL) for b in range(3)]
    return CGTopology(types, mol, np.array(bonds), np.tile([30.0, 45.0, 45.0, 30.0], N_MOL),
                      None if box is None else np.eye(3) * box)


def tetramer_positions(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = [(i, j, k) for i in range(2) for j in range(2) for k in range(2)][:N_MOL]
    out = []
    for c in grid:
        origin = (np.array(c) + 0.25) * BOX / 2
        zig = [[0, 0, 0], [0.33, 0.12, 0.0], [0.62, -0.05, 0.12], [0.95, 0.08, 0.10]]
        out += list(origin + np.array(zig))
    return np.array(out) + rng.normal(0, 0.01, (4 * N_MOL, 3))


def context(system, positions, platform="Reference"):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(positions)
    return ctx


def energy_forces(ctx):
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def check_finite_difference(ctx, x, *, h=1e-5, rel=1e-4, abs_=1e-3, seed=0):
    """OpenMM's forces are minus the gradient of its energy (directional central differences)."""
    _, f = energy_forces(ctx)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        d = rng.normal(size=x.shape)
        d /= np.linalg.norm(d)
        ctx.setPositions(x + h * d)
        ep = energy_forces(ctx)[0]
        ctx.setPositions(x - h * d)
        em = energy_forces(ctx)[0]
        assert -(ep - em) / (2 * h) == pytest.approx(float(np.sum(f * d)), rel=rel, abs=abs_)
    ctx.setPositions(x)


def check_every_force_named_and_grouped(system, ctx):
    """Every force of the System has a name and a group of its own; energy_components shows each, summing to the
    total."""
    forces = [system.getForce(i) for i in range(system.getNumForces())]
    names = [f.getName() for f in forces]
    groups = [f.getForceGroup() for f in forces]
    assert all(names) and len(set(names)) == len(names), names
    assert len(set(groups)) == len(groups), groups
    parts = energy_components(ctx)
    assert set(parts) == set(names)
    assert sum(parts.values()) == pytest.approx(energy_forces(ctx)[0], rel=1e-9, abs=1e-8)
    return parts


# ----------------------------------------------------------------------------- models
def _model(name, topology, priors=()):
    cls = MODELS.get(name)
    torch.manual_seed(1)
    return cls(list(topology.type_names), priors=list(priors), **cls.example_args(topology.type_names)).bind(topology)


def _example_priors(topology):
    return [{"name": p, "args": PRIORS.get(p).example_args(topology)} for p in PRIORS.names()]


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name, tmp_path):
    top = tetramers()
    x = tetramer_positions()
    model = _model(name, top, _example_priors(top)).double()
    # units and shapes: energies (F,) in kJ/mol of frames (F, N, 3) in nm with boxes (F, 3, 3); one frame = forward
    pos = torch.as_tensor(np.stack([x, x + 0.01]), dtype=torch.float64)
    boxes = torch.tensor(np.stack([top.box_vectors] * 2))
    energies = model.energy_batch(pos, boxes).detach()
    assert energies.shape == (2,) and torch.all(torch.isfinite(energies))
    assert float(model(pos[0], boxes[0]).detach()) == pytest.approx(float(energies[0].detach()), rel=1e-10)
    # translation invariance (periodic: a shift of every bead)
    assert float(model(pos[0] + 0.37, boxes[0]).detach()) == pytest.approx(float(energies[0]), rel=1e-8, abs=1e-8)
    # forces from autograd agree with finite differences (float64 gradcheck)
    assert torch.autograd.gradcheck(lambda p: model.energy_batch(p, boxes[:1]), (pos[:1].clone().requires_grad_(),),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)
    # rebuilt from plain init args (JSON), and through a bundle file: the same energies
    again = build_model(json.loads(json.dumps({"name": name, "args": model.get_init_args()})), top).double()
    again.load_state_dict(model.state_dict())
    assert float(again(pos[0], boxes[0]).detach()) == pytest.approx(float(energies[0]), rel=1e-12)
    path = save_bundle(tmp_path / "model.cgml", model, top)
    loaded = load_bundle(path).build_model(top, dtype="float64")
    assert float(loaded(pos[0], boxes[0]).detach()) == pytest.approx(float(energies[0]), rel=1e-12)
    # in OpenMM (positions in nm, energies in kJ/mol): the same energy; network and each prior its own force;
    # forces are minus the gradient; the System XML round trip keeps the energy
    potential = CGPotential(path, backend="python", dtype="float64")
    system = potential.createSystem(top)
    ctx = context(system, x)
    parts = check_every_force_named_and_grouped(system, ctx)
    assert {"neural:network"} | {f"neural:{p}" for p in PRIORS.names()} <= set(parts)
    assert energy_forces(ctx)[0] == pytest.approx(float(energies[0]), rel=1e-9)
    check_finite_difference(ctx, x)
    scripted = CGPotential(path, backend="torch", dtype="float64").createSystem(top)
    save_system(scripted, tmp_path / "system.xml")
    assert energy_forces(context(load_system(tmp_path / "system.xml"), x))[0] == pytest.approx(
        float(energies[0]), rel=1e-9)


def test_model_section_of_cgml_train_is_validated_by_the_models_own_schema():
    from openmm_cgml.exceptions import ConfigurationError
    from openmm_cgml.workflows.train import model_arguments

    name, args = model_arguments({"name": "schnet", "hidden": 8, "inter_cutoff": "9 angstrom"})
    assert name == "schnet" and args["hidden"] == 8 and args["inter_cutoff"] == pytest.approx(0.9)
    with pytest.raises(ConfigurationError, match="hiden"):
        model_arguments({"name": "schnet", "hiden": 8})
    with pytest.raises(ConfigurationError, match="has no unit"):
        model_arguments({"name": "schnet", "inter_cutoff": 0.9})
    assert model_arguments({"name": "priors"})[0] == "priors"


# ----------------------------------------------------------------------------- priors
def _bare_system(top, forces):
    """A System of ``top``'s particles and box with ``forces`` only."""
    system = openmm.System()
    for m in top.masses:
        system.addParticle(float(m))
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*r) for r in top.box_vectors))
    for force in forces:
        system.addForce(force)
    return system


@pytest.mark.parametrize("name", PRIORS.names())
def test_prior_contract(name, tmp_path):
    top = tetramers()
    x = tetramer_positions()
    cls = PRIORS.get(name)
    config = {"name": name, "args": cls.example_args(top)}
    model = PriorOnlyModel(list(top.type_names), [config], dtype="float64").bind(top)
    pos = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)
    box = torch.tensor(np.array(top.box_vectors))
    energy = model(pos, box)
    (grad,) = torch.autograd.grad(energy, pos)
    energy = energy.detach()
    assert float(energy) != 0.0
    # the OpenMM twin, from the same parameter table: same energy and forces
    specs = model.prior_modules[0].openmm_twin(top)
    system = _bare_system(top, [build_force(spec) for spec in specs])
    ctx = context(system, x)
    e_mm, f_mm = energy_forces(ctx)
    assert e_mm == pytest.approx(float(energy.detach()), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(f_mm, -grad.numpy(), rtol=1e-6, atol=1e-6)
    check_finite_difference(ctx, x)
    # XML round trip of the twin
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    assert energy_forces(context(copy, x))[0] == pytest.approx(e_mm, rel=1e-12)
    # the compiled twin, where the prior has one: the same energy and forces to its table's accuracy
    compiled_twin = compiled_prior_force(model.prior_modules[0], top)
    if compiled_twin is not None:
        system_c = _bare_system(top, [compiled_twin])
        ctx_c = context(system_c, x)
        e_c, f_c = energy_forces(ctx_c)
        assert e_c == pytest.approx(float(energy), rel=1e-7)
        np.testing.assert_allclose(f_c, -grad.numpy(), rtol=1e-5, atol=1e-5 * float(np.abs(grad.numpy()).max()))
        check_finite_difference(ctx_c, x)
        copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system_c))
        assert energy_forces(context(copy, x))[0] == pytest.approx(e_c, rel=1e-12)
    # plain-data round trip of the parameter table
    rebuilt = PRIORS.create(name, type_names=list(top.type_names),
                            **json.loads(json.dumps(model.prior_modules[0].get_init_args())))
    again = PriorOnlyModel(list(top.type_names), [{"name": name, "args": rebuilt.get_init_args()}],
                           dtype="float64").bind(top)
    assert float(again(pos.detach(), box).detach()) == pytest.approx(float(energy), rel=1e-12)
    # through the façade (a bundle of the priors-only model): the prior is a named force of its own
    system = CGPotential(bundle_from_model(model, top), backend="python").createSystem(top)
    parts = check_every_force_named_and_grouped(system, context(system, x))
    assert f"neural:{name}" in parts and parts[f"neural:{name}"] == pytest.approx(float(energy), rel=1e-9)


# ----------------------------------------------------------------------------- mapping schemes
def _propane_liquid(path, n_mol=8, n_frames=6, box=2.0):
    """Propane-like molecules (C3H8) in a box, as an all-atom dataset with forces (a harmonic toy force field)."""
    top = app.Topology()
    chain = top.addChain()
    c, h = app.element.carbon, app.element.hydrogen
    rng = np.random.default_rng(0)
    system = openmm.System()
    bonds = openmm.HarmonicBondForce()
    positions = []
    for m in range(n_mol):
        res = top.addResidue("PRP", chain)
        carbons = [top.addAtom(f"C{i}", c, res) for i in range(3)]
        origin = (np.array([m % 2, (m // 2) % 2, m // 4]) + 0.3) * box / 2
        local = [origin + [0.15 * i, 0.05 * (i % 2), 0] for i in range(3)]
        atoms = list(carbons)
        for i, ci in enumerate(carbons):
            for k in range(3 if i != 1 else 2):
                hh = top.addAtom(f"H{i}{k}", h, res)
                top.addBond(ci, hh)
                atoms.append(hh)
                local.append(local[i] + 0.11 * rng.normal(size=3) / np.sqrt(3))
        top.addBond(carbons[0], carbons[1])
        top.addBond(carbons[1], carbons[2])
        positions += local
    for atom in top.atoms():
        system.addParticle(atom.element.mass)
    for b in top.bonds():
        bonds.addBond(b[0].index, b[1].index, 0.15 if b[1].element is c else 0.11, 1e4)
    system.addForce(bonds)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*r) for r in np.eye(3) * box))
    top.setPeriodicBoxVectors(np.eye(3) * box * unit.nanometer)
    integ = openmm.LangevinMiddleIntegrator(300, 5.0, 0.0005)
    integ.setRandomNumberSeed(1)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(np.array(positions))
    masses = [a.element.mass.value_in_unit(unit.dalton) for a in top.atoms()]
    with TrajectoryWriter(path, top, masses, {"temperature_K": 300.0}) as w:
        for k in range(n_frames):
            integ.step(10)
            st = ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)
            w.append(positions=st.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                     velocities=st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                     forces=st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                     box=np.eye(3) * box, step=10 * k, time=0.005 * k,
                     potential_energy=st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    return top, np.array(masses)


@pytest.mark.parametrize("name", MAPPINGS.names())
def test_mapping_scheme_contract(name, tmp_path):
    from openmm_cgml.dataset import open_dataset

    if name == "smarts" and not has_openff():
        pytest.skip("the smarts scheme needs the OpenFF toolkit")
    method = MAPPINGS.get(name)
    assert hasattr(method, "example_options"), f"mapping method {name!r} gives no example_options"
    top, masses = _propane_liquid(tmp_path / "aa.h5")
    mapping = create_mapping(name, top, method.example_options(tmp_path / "aa.h5"), masses=masses)
    assert isinstance(mapping, CGMapping) and mapping.n_atoms == top.getNumAtoms()
    # masses in dalton: the beads carry all the mass
    assert mapping.bead_masses.sum() == pytest.approx(masses.sum(), rel=1e-12)
    # units: positions given in angstrom map to the same beads (nm)
    x = open_dataset(tmp_path / "aa.h5").positions[0].astype(float)
    np.testing.assert_allclose(mapping.map_positions(x * 10 * unit.angstrom), mapping.map_positions(x), atol=1e-9)
    # covariance: translating the atoms translates the beads; forces sum to the total force
    np.testing.assert_allclose(mapping.map_positions(x + 0.3), mapping.map_positions(x) + 0.3, atol=1e-9)
    f = open_dataset(tmp_path / "aa.h5").forces[0].astype(float)
    np.testing.assert_allclose(mapping.map_forces(f).sum(0), f.sum(0), atol=1e-6)
    # JSON round trip; the CG topology it describes
    assert CGMapping.from_json(mapping.to_json()) == mapping
    cg = mapping.cg_topology(np.eye(3) * 2.0)
    assert cg.n_beads == mapping.n_beads and cg.n_molecules == 8 and cg.periodic


# ----------------------------------------------------------------------------- alpha models
@pytest.mark.parametrize("name", ALPHA_MODELS.names())
def test_alpha_model_contract(name, tmp_path):
    cls = ALPHA_MODELS.get(name)
    model = ALPHA_MODELS.create(name, **cls.example_args())
    assert model.name == name
    a = model.alpha(300.0)
    assert a > 0 and model.alpha_err(300.0) >= 0
    # temperatures in any unit: 300 K = "300 K" = 300 * kelvin = "26.85 degC"
    for t in ("300 K", 300.0 * unit.kelvin, "26.85 degC"):
        assert model.alpha(t) == pytest.approx(a, rel=1e-12)
        assert model.alpha_err(t) == pytest.approx(model.alpha_err(300.0), rel=1e-12)
    # plain-data round trip, and the JSON file
    again = ALPHA_MODELS.create(name, **json.loads(json.dumps(model.to_data())))
    assert again.alpha(320.0) == pytest.approx(model.alpha(320.0), rel=1e-12)
    loaded = load_alpha_model(save_alpha_model(tmp_path / "alpha.json", model))
    assert loaded.alpha(280.0) == pytest.approx(model.alpha(280.0), rel=1e-12)
    assert loaded.alpha_err(280.0) == pytest.approx(model.alpha_err(280.0), rel=1e-12)


# ----------------------------------------------------------------------------- force terms
@pytest.mark.parametrize("name", TERMS.names())
def test_force_term_contract(name, tmp_path):
    top = tetramers()
    x = tetramer_positions()
    term = TERMS.get(name).example(top)
    assert term.kind == name
    system = CGPotential([term]).createSystem(top)
    ctx = context(system, x)
    parts = check_every_force_named_and_grouped(system, ctx)
    e0 = energy_forces(ctx)[0]
    assert np.isfinite(e0) and any(abs(v) > 1e-9 for v in parts.values())
    check_finite_difference(ctx, x)
    # plain data (JSON) rebuilds the term: the same energy
    if name == "neural":  # a neural term's data names its bundle file
        path = save_bundle(tmp_path / "m.cgml", term.bundle.build_model(top), top)
        term = type(term)(path, backend="python", tabulate=False)
    rebuilt = term_from_data(json.loads(json.dumps(term.to_data())))
    assert type(rebuilt) is type(term)
    assert energy_forces(context(CGPotential([rebuilt]).createSystem(top), x))[0] == pytest.approx(e0, rel=1e-10)
    # the force field as a file, and the System XML round trip
    ff = CGPotential([term]).save(tmp_path / "ff.json")
    assert energy_forces(context(CGPotential(ff).createSystem(top), x))[0] == pytest.approx(e0, rel=1e-10)
    if name != "neural" or term.backend == "torch":  # a PythonForce's XML is a pickle (loaded only when trusted)
        save_system(system, tmp_path / "system.xml")
        assert energy_forces(context(load_system(tmp_path / "system.xml"), x))[0] == pytest.approx(e0, rel=1e-10)


def test_one_way_to_build_each_kind_of_model_python_and_cli_agree(tmp_path):
    """A bundle, an IBI output directory and a force-field file each give the same System (XML) from Python
    (``CGPotential(source).createSystem``) and from ``cgml build``."""
    from openmm_cgml.cli import main
    from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds
    from openmm_cgml.forces.tabulated import TabulatedPairPotential, write_openmm_tables

    top = tetramers()
    x = tetramer_positions()
    masses = top.masses
    with TrajectoryWriter(tmp_path / "cg.h5", top.to_openmm(), masses, {"cg_topology": top.to_data()},
                          kind="coarse-grained", fields=("positions",)) as w:
        w.append(positions=x, box=top.box_vectors, step=0, time=0.0)
    pair = TabulatedPairPotential.example(top)
    bonded = [HarmonicBonds.example(top), HarmonicAngles.example(top)]
    ibi = tmp_path / "ibi"
    ibi.mkdir()
    write_openmm_tables(ibi / "pair_tables.json", pair)
    CGPotential(bonded).save(ibi / "bonded_terms.json")
    ff = CGPotential([pair, *bonded]).save(tmp_path / "ff.json")
    model = _model("schnet", top, _example_priors(top))
    bundle = save_bundle(tmp_path / "model.cgml", model, top)
    for key, source, options in (("bundle", bundle, {"backend": "python"}), ("ibi", ibi, {}),
                                 ("force_field", ff, {})):
        extra = "".join(f"{k}: {v}\n" for k, v in options.items())
        (tmp_path / "build.yaml").write_text(f"{key}: {source}\ndataset: {tmp_path / 'cg.h5'}\n"
                                             f"system: {tmp_path / 'out.xml'}\npdb: {tmp_path / 'out.pdb'}\n{extra}")
        assert main(["build", str(tmp_path / "build.yaml")]) == 0
        python = CGPotential(source, **options).createSystem(CGTopology.from_dataset(tmp_path / "cg.h5"))
        if key == "bundle":  # a PythonForce's XML holds a pickle of the model: loaded only when trusted
            with pytest.raises(UntrustedContentError, match="PythonForce"):
                load_system(tmp_path / "out.xml")
        built = load_system(tmp_path / "out.xml", trusted=key == "bundle")  # we wrote it ourselves
        if key == "bundle":  # compare energies and forces
            e1, f1 = energy_forces(context(python, x))
            e2, f2 = energy_forces(context(built, x))
            assert e1 == pytest.approx(e2, rel=1e-10) and np.allclose(f1, f2, rtol=1e-8, atol=1e-8)
            assert [f.getName() for f in python.getForces()] == [f.getName() for f in built.getForces()]
        else:
            assert openmm.XmlSerializer.serialize(built) == openmm.XmlSerializer.serialize(python)
