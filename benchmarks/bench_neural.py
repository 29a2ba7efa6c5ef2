"""Benchmarks of the neural CG force field (CPU): ratios measured side by side in one run.

1. Neighbour search: ``neighbor_pairs`` (all pairs up to 1000 beads, cell list above) vs the
   all-pairs search at 300, 1k, 4k beads (goal: never slower, >= 5x faster at 4k).
2. Force-bridge overhead: OpenMM step time (TorchForce / PythonForce / the compiled C++ network, CPU
   platform; the compiled force has no separate bare model) over the bare model's energy+force time,
   the bare model being what the backend runs (TorchForce: the scripted module frozen as OpenMM-Torch
   freezes it; PythonForce: the eager inference model)
   replaying an OpenMM trajectory (goal <= 1.25x).  Exact and tabulated filters, priors in OpenMM
   or in the network.
3. Training throughput: batched frames/s over a naive per-frame loop (goal >= 10x), at 3, 24 and
   192 beads per frame.
4. Neural CG vs all-atom 2,3,4-trimethylpentane, 64 molecules (three beads each, 192 beads):
   wall-clock per simulated ns (goal >= 5x), with and without the faster CG dynamics counted;
   AA and CG contexts timed interleaved.
5. A profile of one CG force evaluation as TorchForce runs it (torch.profiler: where the time
   goes), exact filter networks (the default) vs tabulated filters.
6. A model briefly force-matched (with ``--position-noise``, 0.005 nm) on the mapped AA dataset (``--cg-dataset``; made with
   ``benchmarks/_trimethylpentane.py`` when absent), its timestep scan (5-25 fs: finite energies and a
   mean temperature within 10 % plus 3 standard errors over 2500 steps); the AA comparison (4) runs it at its largest
   stable timestep; plus the Verlet-list rebuild rate along that trajectory.
7. The compiled network's step, taken apart (``compiled_step``): its portable build against its AVX2 + FMA build
   (``CGML_SIMD``, the network alone), the repulsion prior as the compiled pair force against OpenMM's
   ``CustomNonbondedForce`` (whole steps), and whole steps without the network, without the repulsion and without
   any force (what the integrator costs); each comparison round-robin in one process.

Timings that are compared are measured round-robin (``interleaved``), medians of several rounds.
Every engine runs on ONE thread (torch and OpenMM), so the comparison is fair on a shared
machine.  Run: ``python benchmarks/bench_neural.py [--quick]``; writes
``benchmarks/results/bench_neural.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved, load_average  # noqa: E402

from openmm_cgml._io import atomic_write_text, machine_info, package_versions  # noqa: E402
from openmm_cgml.models import CGSchNet, brute_force_pairs, neighbor_pairs, save_bundle  # noqa: E402
from openmm_cgml.topology import CGTopology  # noqa: E402

logger = logging.getLogger("bench_neural")
RESULTS = Path(__file__).resolve().parent / "results" / "bench_neural.json"

#: Production architecture used for timing (same as the `cgml train` defaults).
ARCH = dict(hidden=32, n_rbf=16, n_interactions=2, intra_cutoff=0.6, inter_cutoff=1.0, dtype="float32", skin=0.1)
PRIORS = [
    {"name": "repulsion", "args": {"sigma": 0.35, "exponent": 6, "cutoff": 0.8}},
    {"name": "harmonic_bond", "args": {"parameters": {"A-B": {"r0": 0.26, "k": 2000.0}}}},
    {"name": "harmonic_angle", "args": {"parameters": {"A-B-A": {"theta0": 2.0, "k": 40.0}}}},
]
#: Literature acceleration factor of CG over AA dynamics for 2,3,4-trimethylpentane: a single-bead IBI model
#: against OPLS-AA, D_CG / D_AA = 6.3 (Müller-Plathe group data; the system of Bag, Meinel and Müller-Plathe,
#: J. Chem. Theory Comput. 2022, doi:10.1021/acs.jctc.2c00898).  An untrained model cannot measure its own.
ALPHA_LITERATURE = 6.3
TEMPERATURE = 298.15


def timeit(fn, repeats: int, number: int = 1) -> float:
    """Median seconds per call over ``repeats`` blocks of ``number`` calls (one warm-up block)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def tmp_system(n_mol: int = 64, density_g_cm3: float = 0.715, seed: int = 0, box_nm: float | None = None):
    """``n_mol`` three-bead 2,3,4-trimethylpentane molecules (A-B-A) in a cubic box of the liquid density
    (or of edge ``box_nm``)."""
    mass = 114.23  # g/mol
    volume_nm3 = n_mol * mass / 6.02214076e23 / density_g_cm3 * 1e21
    box = volume_nm3 ** (1 / 3) if box_nm is None else float(box_nm)
    types = ("A", "B", "A") * n_mol
    mol = np.repeat(np.arange(n_mol), 3)
    bonds = np.array([[3 * m + k, 3 * m + k + 1] for m in range(n_mol) for k in range(2)])
    angles = np.array([[3 * m, 3 * m + 1, 3 * m + 2] for m in range(n_mol)])
    masses = np.array([43.09, 28.05, 43.09] * n_mol)
    info = CGTopology(types, mol, bonds, masses, np.eye(3) * box, angles=angles)
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(n_mol ** (1 / 3)))
    spacing = box / grid
    pos = []
    for m in range(n_mol):
        c = (np.array([m % grid, (m // grid) % grid, m // grid**2]) + 0.5) * spacing
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        v = np.cross(u, rng.normal(size=3))
        v /= np.linalg.norm(v)
        pos += [c - 0.21 * u + 0.08 * v, c - 0.1 * v, c + 0.21 * u + 0.08 * v]
    return info, np.array(pos), box


def bench_neighbors(quick: bool) -> dict:
    out = {}
    density = 11.0  # beads / nm^3, the 3-bead trimethylpentane liquid
    for n in (300, 1000, 4000):
        box_len = (n / density) ** (1 / 3)
        cutoff = min(1.0, 0.49 * box_len)
        gen = torch.Generator().manual_seed(n)
        pos = torch.rand(n, 3, generator=gen) * box_len
        box = torch.eye(3) * box_len
        reps = 3 if quick else 7
        t_brute = timeit(lambda pos=pos, box=box, cutoff=cutoff: brute_force_pairs(pos, cutoff, box), reps)
        t_ours = timeit(lambda pos=pos, box=box, cutoff=cutoff: neighbor_pairs(pos, cutoff, box), reps)
        n_pairs = int(neighbor_pairs(pos, cutoff, box)[0].shape[1])
        out[str(n)] = {"cutoff_nm": cutoff, "pairs": n_pairs, "brute_force_ms": t_brute * 1e3,
                       "ours_ms": t_ours * 1e3, "speedup": t_brute / t_ours,
                       "method": "all pairs" if n <= 1000 else "cell list"}
        logger.info("neighbours n=%d: brute %.2f ms, ours %.2f ms (%.1fx)", n, t_brute * 1e3, t_ours * 1e3,
                    t_brute / t_ours)
    return out


def make_model(info):
    torch.manual_seed(0)
    return CGSchNet(["A", "B"], priors=PRIORS, **ARCH).bind(info)


def bench_bridge(info, pos, tmpdir: Path, quick: bool) -> dict:
    """OpenMM step time over the bare model's energy+force time, for both backends, both filter paths and both
    prior placements.  The bare reference is exactly what the backend runs: for TorchForce the scripted module
    frozen as OpenMM-Torch freezes it (``eval`` + ``torch.jit.freeze``), for PythonForce the eager inference
    model; both compute the full energy (network + priors) and its forces, replaying consecutive frames of an
    OpenMM trajectory so the Verlet list rebuilds as it does in the simulation."""
    from openmm import unit

    from openmm_cgml.forces.neural import NeuralForceTerm, _script

    bundle = save_bundle(tmpdir / "bench.cgml", make_model(info), info)
    box_t = torch.tensor(info.box_vectors, dtype=torch.float64)
    steps = 20 if quick else 50
    rounds = 3 if quick else 7
    contexts, calls = {}, {}
    for backend in ("torch", "python"):
        for tabulate in (False, True):
            for priors in ("openmm", "network"):
                term = NeuralForceTerm(bundle, backend=backend, priors=priors, tabulate=tabulate)
                ctx, integ = _context(info, term, pos, 0.005)
                integ.step(50)
                key = f"{backend}_{'tabulated' if tabulate else 'exact'}_priors_{priors}"
                contexts[key] = (ctx, integ)
                calls[f"step:{key}"] = (lambda integ=integ: integ.step(steps), steps)
    for tabulate in (False, True):  # the compiled network (C++; its priors always in OpenMM)
        ctx, integ = _context(info, NeuralForceTerm(bundle, backend="compiled", tabulate=tabulate), pos, 0.005)
        integ.step(50)
        key = f"compiled_{'tabulated' if tabulate else 'exact'}_priors_openmm"
        contexts[key] = (ctx, integ)
        calls[f"step:{key}"] = (lambda integ=integ: integ.step(steps), steps)
    ctx, integ = contexts["torch_exact_priors_openmm"]
    frames = []
    for _ in range(steps):
        integ.step(1)
        frames.append(torch.tensor(ctx.getState(getPositions=True).getPositions(asNumpy=True)
                                   .value_in_unit(unit.nanometer), dtype=torch.float64))
    for tabulate in (False, True):
        filters = "tabulated" if tabulate else "exact"
        full = NeuralForceTerm(bundle, priors="network", tabulate=tabulate).build_model(info)
        frozen = torch.jit.freeze(_script(full, True, True).eval())

        def run_frozen(frozen=frozen):
            for x in frames:
                frozen(x.clone().requires_grad_(True), box_t)

        eager = NeuralForceTerm(bundle, priors="network", tabulate=tabulate).build_model(info)
        box32 = box_t.to(eager.dtype)

        def run_eager(eager=eager, box32=box32):
            for x in frames:
                p = x.to(eager.dtype).requires_grad_(True)
                torch.autograd.grad(eager(p, box32), p)

        calls[f"bare:torch_{filters}"] = (run_frozen, len(frames))
        calls[f"bare:python_{filters}"] = (run_eager, len(frames))
    med = interleaved(calls, rounds)
    out = {"method": f"{rounds} interleaved rounds of {steps}-step blocks and {steps}-frame bare replays, medians",
           "bare_model_ms": {k.split(":")[1]: v * 1e3 for k, v in med.items() if k.startswith("bare:")}}
    for key in contexts:
        backend, filters = key.split("_")[:2]
        step = med[f"step:{key}"]
        if backend == "compiled":  # no PyTorch model to compare with: the force is the bare evaluation
            out[key] = {"step_ms": step * 1e3, "bare_model_ms": None, "overhead": None}
            logger.info("bridge %s: %s", key, out[key])
            continue
        bare = med[f"bare:{backend}_{filters}"]
        out[key] = {"step_ms": step * 1e3, "bare_model_ms": bare * 1e3, "overhead": step / bare}
        logger.info("bridge %s: %s", key, out[key])
    return out


def bench_compiled_step(info, pos, tmpdir: Path, quick: bool) -> dict:
    """Where the compiled network's step goes (192 beads, one thread), each comparison timed round-robin."""
    import os

    import openmm

    from openmm_cgml.forces import compiled
    from openmm_cgml.forces.neural import NeuralForceTerm
    from openmm_cgml.forces.spec import build_force

    rounds, steps = (3, 50) if quick else (7, 200)
    model = make_model(info)
    bundle = save_bundle(tmpdir / "bench.cgml", model, info)
    ctx, integ = _context(info, NeuralForceTerm(bundle, backend="compiled"), pos, 0.005)
    integ.step(300)
    state = ctx.getState(getPositions=True, getVelocities=True)
    xml = openmm.XmlSerializer.serialize(ctx.getSystem())
    repulsion = next(p for p in model.prior_modules if p.name == "repulsion")

    def variant(drop=(), custom_repulsion=False, simd_env=None):
        system = openmm.XmlSerializer.deserialize(xml)
        for i in reversed(range(system.getNumForces())):
            if system.getForce(i).getName() in drop or (custom_repulsion and "repulsion" in system.getForce(i).getName()):
                system.removeForce(i)
        if custom_repulsion:
            for spec in repulsion.openmm_twin(info):
                force = build_force(spec)
                force.setForceGroup(30)
                system.addForce(force)
        saved = os.environ.get("CGML_SIMD")
        if simd_env is not None:
            os.environ["CGML_SIMD"] = simd_env
        try:
            it = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.005)
            c = openmm.Context(system, it, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
        finally:  # CGML_SIMD is read when the Context is made
            if simd_env is not None and saved is None:
                del os.environ["CGML_SIMD"]
            elif simd_env is not None:
                os.environ["CGML_SIMD"] = saved
        c.setState(state)
        it.step(20)
        return c, it

    keep = []
    out = {"rounds": rounds, "beads": len(info.bead_types), "simd_here": compiled.simd(),
           "load_average": [load_average()]}
    # the network alone (its force group, 0), portable build against AVX2 + FMA build
    calls = {}
    for name in ("generic", "avx2") if compiled.simd() == "avx2" else ("generic",):
        c, _ = variant(simd_env=name)
        keep.append(c)
        calls[name] = (lambda c=c: [c.getState(getForces=True, groups={0}) for _ in range(steps)], steps)
    simd = interleaved(calls, rounds, spread=True)
    out["network_evaluation_ms"] = {k: v["median"] * 1e3 for k, v in simd.items()}
    out["network_evaluation_spread_ms"] = {k: [v["min"] * 1e3, v["max"] * 1e3] for k, v in simd.items()}
    # whole Langevin steps at 5 fs: the package's system, the repulsion as OpenMM's custom force, and without parts
    cases = {"full": {}, "repulsion_as_custom_nonbonded_force": {"custom_repulsion": True},
             "without_network": {"drop": ("neural:network",)}, "without_repulsion": {"drop": ("neural:repulsion",)},
             "without_forces": {"drop": ("neural:network", "neural:repulsion", "neural:harmonic_bond",
                                         "neural:harmonic_angle")}}
    calls = {}
    for name, kwargs in cases.items():
        c, it = variant(**kwargs)
        keep.append(c)
        calls[name] = (lambda it=it: it.step(steps), steps)
    whole = interleaved(calls, rounds, spread=True)
    out["step_ms"] = {k: v["median"] * 1e3 for k, v in whole.items()}
    out["step_spread_ms"] = {k: [v["min"] * 1e3, v["max"] * 1e3] for k, v in whole.items()}
    out["load_average"].append(load_average())
    out["method"] = ("network: force evaluations of its group in one Context per build (CGML_SIMD), round-robin; "
                     "steps: LangevinMiddleIntegrator at 5 fs, one CPU-platform thread, one Context per case, "
                     f"round-robin blocks of {steps} steps, medians of {rounds} rounds")
    del keep
    logger.info("compiled step: %s", out)
    return out


def _system(info, term):
    """The periodic CG System of ``info`` with the forces of ``term`` (the package's assembler), each in its own
    group, without a centre-of-mass remover (the benchmarks time the forces)."""
    from openmm_cgml.potential import CGPotential

    return CGPotential([term]).createSystem(info, removeCMMotion=False)


def _context(info, term, pos, dt_ps: float, temperature: float = 300.0):
    """A CPU-platform (one thread) Context of the CG system with ``term``, minimised, velocities set."""
    import openmm

    system = _system(info, term)
    integ = openmm.LangevinMiddleIntegrator(temperature, 1.0, dt_ps)
    integ.setRandomNumberSeed(1)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(temperature, 1)
    return ctx, integ


#: Training-throughput systems: (molecules, box edge in nm or None for the liquid density).  Small
#: frames show where batching pays (per-call overhead), 64 molecules is the benchmark liquid.
TRAINING_SIZES = ((1, 2.2), (8, 2.2), (64, None))


def bench_training(quick: bool) -> dict:
    """Frames/s of one optimiser step over a 16-frame batch: batched (one vectorised pass, cached pairs)
    vs a naive per-frame loop of the same maths, at several frame sizes."""
    from openmm_cgml.training import ForceData, PairCache, accumulate_force_loss, pass_chunks
    from openmm_cgml.training.config import PASS_PAIRS
    from openmm_cgml.training.losses import _predict

    out = {"frames_per_batch": 16, "sizes": {}}
    for n_mol, box_nm in TRAINING_SIZES:
        info, pos, box = tmp_system(n_mol, box_nm=box_nm)
        model = make_model(info)
        n_frames = 16
        gen = torch.Generator().manual_seed(0)
        frames = torch.tensor(pos, dtype=torch.float32).expand(n_frames, -1, -1) + 0.02 * torch.randn(
            n_frames, len(pos), 3, generator=gen)
        boxes = torch.tensor(info.box_vectors, dtype=torch.float32).expand(n_frames, 3, 3).contiguous()
        ref = torch.randn(n_frames, len(pos), 3, generator=gen) * 50
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        data = ForceData(frames, ref, boxes, info.replace(box_vectors=None))
        cache = PairCache(data, model.cutoff)  # searched once: dataset positions never change
        pairs = cache.batch(np.arange(n_frames))

        def batched(model=model, opt=opt, data=data, cache=cache, n_frames=n_frames):
            # what ForceMatchingTrainer does: vectorised passes of at most PASS_PAIRS pairs, gradients accumulated
            opt.zero_grad()
            accumulate_force_loss(model, data, np.arange(n_frames), pair_cache=cache)
            opt.step()

        def one_pass(model=model, opt=opt, frames=frames, boxes=boxes, ref=ref, pairs=pairs):
            opt.zero_grad()
            _, f = _predict(model, frames, boxes, None, True, pairs)
            ((f - ref) ** 2).mean().backward()
            opt.step()

        def batched_search(model=model, opt=opt, frames=frames, boxes=boxes, ref=ref):
            opt.zero_grad()
            _, f = _predict(model, frames, boxes, None, True)
            ((f - ref) ** 2).mean().backward()
            opt.step()

        def naive(model=model, opt=opt, frames=frames, boxes=boxes, ref=ref, n_frames=n_frames):
            opt.zero_grad()
            model.skin = 0.0  # a per-frame loop without a usable cache: search every frame
            for k in range(n_frames):
                p = frames[k].detach().clone().requires_grad_(True)
                e = model(p, boxes[k])
                (g,) = torch.autograd.grad(e, p, create_graph=True)
                (((-g - ref[k]) ** 2).mean() / n_frames).backward()
            opt.step()
            model.skin = ARCH["skin"]

        med = interleaved({"batched": (batched, n_frames), "one_pass": (one_pass, n_frames),
                           "batched_search": (batched_search, n_frames), "naive": (naive, n_frames)},
                          3 if quick else 7)
        row = {"beads_per_frame": len(pos), "box_nm": float(box), "pairs_per_frame": int(pairs[0].shape[1]) / n_frames,
               "passes": len(pass_chunks(np.arange(n_frames), cache, PASS_PAIRS)),
               "batched_frames_per_s": 1 / med["batched"], "one_pass_frames_per_s": 1 / med["one_pass"],
               "one_pass_with_search_frames_per_s": 1 / med["batched_search"],
               "naive_frames_per_s": 1 / med["naive"], "speedup": med["naive"] / med["batched"]}
        out["sizes"][str(len(pos))] = row
        logger.info("training, %d beads per frame: %s", len(pos), row)
    out["max_pairs_per_pass"] = PASS_PAIRS
    out["note"] = ("batched = the trainer's path: the 16 frames in vectorised passes of at most max_pairs_per_pass "
                   "pairs (pair lists cached across epochs, gradients accumulated); one_pass = all 16 frames in one "
                   "pass; naive = per-frame loop of the same maths (search every frame); one optimiser step per 16 "
                   "frames in all. "
                   "Batching removes per-call overhead, which dominates small frames; at 192 beads the filter-network "
                   "arithmetic (double backward over ~5e3 pairs per frame) dominates both paths.")
    return out


#: CG configurations timed against AA: (backend, tabulated filters; None = the backend's default).  The first
#: is the default term.
CG_VARIANTS = {"torchforce": ("torch", None), "torchforce_tabulated": ("torch", True),
               "pythonforce_tabulated": ("python", None), "compiled_tabulated": ("compiled", None)}


def bench_aa_vs_cg(info, bridge: dict, scan: dict | None, bundle: Path | None, cg_path: Path | None,
                   quick: bool) -> dict:
    """AA and CG step times measured interleaved in one process (one thread each), as ns/day ratios."""
    import openmm
    from openmm import unit

    from openmm_cgml.forces.neural import NeuralForceTerm
    from openmm_cgml.reference import Component, build_liquid

    t0 = time.perf_counter()
    liquid = build_liquid([Component(smiles="CC(C)C(C)C(C)C", count=64)], density="0.715 g/cm**3",
                          charge_method="am1bcc", seed=0)
    build_s = time.perf_counter() - t0
    system = liquid.system
    n_constraints = system.getNumConstraints()
    integ = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picosecond)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(liquid.positions)
    ctx.setPeriodicBoxVectors(*liquid.box_vectors)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    aa_steps, cg_steps = (50, 50) if quick else (200, 100)
    calls = {"aa": (lambda: integ.step(aa_steps), aa_steps)}
    keep = [ctx]
    best_dt = scan.get("largest_stable_fs") if scan else None
    if best_dt:
        from openmm_cgml.dataset import open_dataset

        ds = open_dataset(cg_path)
        cg_info = CGTopology.from_dataset(ds)
        for name, (backend, tabulate) in CG_VARIANTS.items():
            cg_ctx, cg_integ = _context(cg_info, NeuralForceTerm(bundle, backend=backend, tabulate=tabulate),
                                        ds.positions[-1], best_dt * 1e-3, TEMPERATURE)
            cg_integ.step(200)
            keep.append(cg_ctx)
            calls[f"trained_{name}"] = (lambda i=cg_integ: i.step(cg_steps), cg_steps)
        model_note = ("trained on the mapped AA dataset (see 'trained_model'), run at its largest stable timestep "
                      "with priors in OpenMM")

    load_before = load_average()
    spread = interleaved(calls, 3 if quick else 7, spread=True)
    med = {k: v["median"] for k, v in spread.items()}
    t_aa = med.pop("aa")
    aa_ns_per_day = 0.002 * 1e-3 / t_aa * 86400
    out = {"method": "AA and CG contexts timed interleaved in one process, medians", "aa_atoms": system.getNumParticles(),
           "aa_constraints": n_constraints, "aa_timestep_fs": 2.0, "aa_step_ms": t_aa * 1e3,
           "aa_ns_per_day": aa_ns_per_day, "aa_build_s": build_s, "cg_beads": len(info.bead_types),
           "rounds": 3 if quick else 7, "load_average": [load_before, load_average()],
           "step_ms_spread": {k: [v["min"] * 1e3, v["max"] * 1e3] for k, v in spread.items()}}
    if best_dt:
        cases = {k: v * 1e3 for k, v in med.items()}
        out["cg_model"] = model_note
    else:
        cases = {f"untrained_{k}": v["step_ms"] for k, v in bridge.items()
                 if k in ("torch_exact_priors_openmm", "torch_tabulated_priors_openmm")}
        out["cg_model"] = "untrained production architecture (no stable timestep measured; bridge step times)"
    out["cg_step_ms"] = cases
    for name, step_ms in cases.items():
        for dt_fs in sorted({5.0, 10.0} | ({best_dt} if best_dt else set())):
            cg_ns_day = dt_fs * 1e-6 / (step_ms * 1e-3) * 86400
            tag = f"{name}_{dt_fs:g}fs"
            out[f"cg_ns_per_day_{tag}"] = cg_ns_day
            out[f"speedup_per_simulated_ns_{tag}"] = cg_ns_day / aa_ns_per_day
            out[f"speedup_with_dynamics_{tag}"] = cg_ns_day / aa_ns_per_day * ALPHA_LITERATURE
    out["largest_stable_cg_timestep_fs"] = best_dt
    out["alpha_used"] = ALPHA_LITERATURE
    out["alpha_note"] = ("literature D_CG/D_AA for 2,3,4-trimethylpentane (single-bead IBI vs OPLS-AA, "
                         "Mueller-Plathe group data); not measured here")
    del keep
    logger.info("AA vs CG: %s", out)
    return out


def profile_cg(info, pos, tabulate: bool) -> list[dict]:
    """torch.profiler of the module as TorchForce runs it (priors in OpenMM, inference weights, frozen): top ops
    per force evaluation."""
    from torch.profiler import ProfilerActivity, profile

    from openmm_cgml.forces.neural import _script

    model = make_model(info)
    model.prior_modules = torch.nn.ModuleList()  # as run with priors in OpenMM
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if tabulate:
        model.tabulate_filters(0.001)
    scripted = torch.jit.freeze(_script(model, True, True).eval())
    p = torch.tensor(pos, dtype=torch.float64)
    b = torch.tensor(info.box_vectors, dtype=torch.float64)
    for _ in range(5):
        scripted(p, b)
    n = 20
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            scripted(p, b)
    rows = []
    for evt in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]:
        rows.append({"op": evt.key, "self_cpu_ms_per_eval": evt.self_cpu_time_total / 1e3 / n,
                     "calls": evt.count // n})
    total = sum(evt.self_cpu_time_total for evt in prof.key_averages()) / 1e3 / n
    return {"total_self_cpu_ms_per_eval": total, "top_ops": rows}


def trained_bundle(cg_path: Path, workdir: Path, epochs: int, position_noise: str = "0 nm") -> tuple[Path, dict]:
    """Force-match the production architecture on the mapped AA dataset ``cg_path`` (brief training, with
    ``position_noise`` smoothing: see ``TrainingConfig``)."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.training import boltzmann_priors, train_force_matching

    ds = open_dataset(cg_path)
    priors = boltzmann_priors(ds, TEMPERATURE)
    t0 = time.perf_counter()
    result = train_force_matching(
        cg_path, {"name": "schnet", "args": dict(ARCH, priors=priors)},
        {"epochs": epochs, "batch_size": 16, "learning_rate": 3e-3, "scheduler": "cosine", "progress": False,
         "early_stopping_patience": epochs, "position_noise": position_noise},
        output_dir=workdir / "train", prior_only_baseline=False, overwrite=True)
    from openmm_cgml.models import load_bundle

    training = load_bundle(result.bundle_path).training
    summary = {"dataset": str(cg_path), "frames": ds.n_frames, "epochs": len(result.history),
               "train_seconds": time.perf_counter() - t0, "position_noise": position_noise,
               "validation": training["validation"],
               "zero_force_mse": training["baselines"]["zero_force_mse"], "priors": priors}
    logger.info("trained model: %s", {k: v for k, v in summary.items() if k != "priors"})
    return result.bundle_path, summary


def timestep_scan(bundle: Path, cg_path: Path, quick: bool) -> dict:
    """Largest stable timestep of the trained model (finite energies, mean T within 10 % + 3 SEM), and its step time."""
    from openmm import unit

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.neural import NeuralForceTerm
    from openmm_cgml.simulation import largest_stable_timestep

    ds = open_dataset(cg_path)
    info = CGTopology.from_dataset(ds)
    steps = 1000 if quick else 2500
    result = largest_stable_timestep(_system(info, NeuralForceTerm(bundle)), ds.positions[-1],
                                     temperature=TEMPERATURE, steps=steps, box_vectors=ds.box[-1], platform="CPU")
    scan = {f"{dt:g} fs": row for dt, row in result.trials.items()}
    best = result.largest_stable_fs
    out = {"scan": scan, "largest_stable_fs": best, "temperature_K": TEMPERATURE, "steps_per_trial": steps,
           "method": "openmm_cgml.simulation.largest_stable_timestep: NVE energy drift after a Langevin settle, "
                     f"at most {result.max_drift:g} kT/ns per degree of freedom"}
    if best is None:
        return out
    out["cg_step_ms"] = scan[f"{best:g} fs"]["step_ms_median"]
    # Verlet-list behaviour along a trajectory at this timestep: replay 200 steps through the eager model.
    ctx, integ = _context(info, NeuralForceTerm(bundle), ds.positions[-1], best * 1e-3, TEMPERATURE)
    integ.step(200)
    frames = []
    for _ in range(200):
        integ.step(1)
        frames.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    model = NeuralForceTerm(bundle).build_model(info)
    box_t = torch.tensor(ds.box[-1], dtype=model.dtype)
    with torch.no_grad():
        for x in frames:
            model(torch.tensor(np.asarray(x), dtype=model.dtype), box_t)
    p0 = torch.tensor(np.asarray(frames[0]), dtype=torch.float32)
    t_search = timeit(lambda: neighbor_pairs(p0, model.cutoff + model.skin, box_t), 5, 10)
    out["verlet"] = {"skin_nm": model.skin, "rebuilds_per_200_steps": model.n_rebuilds,
                     "search_ms": t_search * 1e3, "search_ms_per_step": t_search * 1e3 * model.n_rebuilds / 200,
                     "pairs_in_list": int(model._nl_pairs.shape[1])}
    logger.info("Verlet list: %s", out["verlet"])
    return out


def _rerun_section(section: str, info, pos, args) -> int:
    """Rerun one section and replace it in the results file (machine and versions refreshed).  ``model``
    retrains the model, rescans its timestep and reruns the AA comparison (using the stored bridge section)."""
    import tempfile

    quick = args.quick
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmark": "bench_neural"}
    if section == "model":
        cg_path, workdir = Path(args.cg_dataset), Path(args.workdir)
        if not cg_path.exists():
            raise SystemExit(f"--only model needs the mapped dataset {cg_path} (a full run makes it)")
        bundle, results["trained_model"] = trained_bundle(cg_path, workdir, args.train_epochs, args.position_noise)
        scan = results["timestep_scan"] = timestep_scan(bundle, cg_path, quick)
        results["aa_vs_cg"] = bench_aa_vs_cg(info, results.get("bridge", {}), scan, bundle, cg_path, quick)
        section = "aa_vs_cg"
    elif section == "aa_vs_cg":   # the last trained model (--only model) and its stored timestep scan, timed again
        bundle = Path(args.workdir) / "train" / "model.cgml"
        if not bundle.exists() or "timestep_scan" not in results:
            raise SystemExit(f"--only aa_vs_cg needs the trained bundle {bundle} and a stored timestep scan "
                             "(run --only model first)")
        results["aa_vs_cg"] = bench_aa_vs_cg(info, results.get("bridge", {}), results["timestep_scan"], bundle,
                                             Path(args.cg_dataset), quick)
    elif section == "neighbors":
        results["neighbors"] = bench_neighbors(quick)
    elif section == "bridge":
        with tempfile.TemporaryDirectory() as tmp:
            results["bridge"] = bench_bridge(info, pos, Path(tmp), quick)
    elif section == "training":
        results["training"] = bench_training(quick)
    elif section == "compiled_step":
        with tempfile.TemporaryDirectory() as tmp:
            results["compiled_step"] = bench_compiled_step(info, pos, Path(tmp), quick)
    else:
        section = "profile_cg_force_eval"
        results[section] = {"exact_filters": profile_cg(info, pos, False),
                            "tabulated_filters": profile_cg(info, pos, True)}
    results.update(machine=machine_info(), versions=package_versions())
    results.setdefault("sections_rerun", []).append({"section": section, "quick": quick})
    atomic_write_text(RESULTS, json.dumps(results, indent=1, default=float))
    print(json.dumps(results[section], indent=1, default=float))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--skip-aa", action="store_true", help="skip the all-atom comparison (needs OpenFF)")
    parser.add_argument("--cg-dataset", default="/tmp/neural_bench/cg3.h5",
                        help="mapped 3-bead AA dataset to train on (made with benchmarks/_trimethylpentane.py if absent)")
    parser.add_argument("--workdir", default="/tmp/neural_bench", help="training output and AA reference run")
    parser.add_argument("--train-epochs", type=int, default=12, help="brief force-matching training")
    parser.add_argument("--position-noise", default="0.005 nm",
                        help="training position noise (smoothing for larger timesteps; see TrainingConfig)")
    parser.add_argument("--only", choices=("neighbors", "bridge", "training", "profile", "model", "aa_vs_cg",
                                             "compiled_step"),
                        help="rerun one section and update it in the existing results file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    import tempfile

    info, pos, box = tmp_system()
    if args.only:
        return _rerun_section(args.only, info, pos, args)
    results = {"benchmark": "bench_neural", "machine": machine_info(), "versions": package_versions(),
               "threads": 1, "architecture": ARCH, "quick": args.quick}
    if RESULTS.exists():  # keep the headline figures of the previous run for before/after
        prev = json.loads(RESULTS.read_text())
        results["previous_run"] = {k: prev.get(k) for k in ("quick", "bridge", "training", "aa_vs_cg")}
        results["previous_run"]["profile"] = prev.get("profile_cg_force_eval")
    results["neighbors"] = bench_neighbors(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        results["bridge"] = bench_bridge(info, pos, Path(tmp), args.quick)
    results["training"] = bench_training(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        results["compiled_step"] = bench_compiled_step(info, pos, Path(tmp), args.quick)
    results["profile_cg_force_eval"] = {"exact_filters": profile_cg(info, pos, False),
                                        "tabulated_filters": profile_cg(info, pos, True)}
    scan = bundle = None
    cg_path = Path(args.cg_dataset)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not cg_path.exists() and not args.skip_aa:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _trimethylpentane import aa_reference, map_reference

        result, _, _ = aa_reference(workdir, 40.0, reuse=True)
        _, cg_path = map_reference(result, workdir, 3)
    if cg_path.exists():
        bundle, results["trained_model"] = trained_bundle(cg_path, workdir, args.train_epochs, args.position_noise)
        scan = results["timestep_scan"] = timestep_scan(bundle, cg_path, args.quick)
    atomic_write_text(RESULTS, json.dumps(results, indent=1, default=float))  # keep what is done if AA fails
    if not args.skip_aa:
        results["aa_vs_cg"] = bench_aa_vs_cg(info, results["bridge"], scan, bundle, cg_path, args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(results, indent=1, default=float))
    print(json.dumps({k: results[k] for k in ("neighbors", "bridge", "training", "timestep_scan", "aa_vs_cg")
                      if k in results}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
