"""Benchmarks of the neural CG force field (CPU): ratios measured side by side in one run.

1. Neighbour search: ``neighbor_pairs`` (all pairs up to 1000 beads, cell list above) vs the
   all-pairs search at 300, 1k, 4k beads (goal: never slower, >= 5x faster at 4k).
2. Force-bridge overhead: OpenMM step time (TorchForce / PythonForce, CPU platform) over the
   bare scripted model's energy+force time (goal <= 1.25x).
3. Training throughput: batched frames/s over a naive per-frame loop (goal >= 10x).
4. Neural CG vs all-atom 2,3,4-trimethylpentane, 64 molecules (three beads each, 192 beads):
   wall-clock per simulated ns (goal >= 5x), with and without the faster CG dynamics counted.
5. A profile of one CG force evaluation (torch.profiler: where the time goes).

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

from openmm_cgml._io import atomic_write_text, machine_info, package_versions  # noqa: E402
from openmm_cgml.forces.base import CGSystemInfo  # noqa: E402
from openmm_cgml.models import CGSchNet, brute_force_pairs, neighbor_pairs, save_bundle  # noqa: E402

logger = logging.getLogger("bench_neural")
RESULTS = Path(__file__).resolve().parent / "results" / "bench_neural.json"

#: Production architecture used for timing (same as the `cgml train` defaults).
ARCH = dict(hidden=32, n_rbf=16, n_interactions=2, intra_cutoff=0.6, inter_cutoff=1.0, dtype="float32", skin=0.1)
PRIORS = [
    {"name": "repulsion", "args": {"sigma": 0.35, "exponent": 6, "cutoff": 0.8}},
    {"name": "harmonic_bond", "args": {"parameters": {"A-B": {"r0": 0.26, "k": 2000.0}}}},
    {"name": "harmonic_angle", "args": {"parameters": {"A-B-A": {"theta0": 2.0, "k": 40.0}}}},
]
#: Literature acceleration factor of CG over AA dynamics for 2,3,4-trimethylpentane (science.md:
#: single-bead IBI model vs OPLS-AA, D_CG / D_AA = 6.3).  An untrained model cannot measure its own.
ALPHA_LITERATURE = 6.3


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


def tmp_system(n_mol: int = 64, density_g_cm3: float = 0.715, seed: int = 0):
    """64 three-bead 2,3,4-trimethylpentane molecules (A-B-A) in a cubic box of the liquid density."""
    mass = 114.23  # g/mol
    volume_nm3 = n_mol * mass / 6.02214076e23 / density_g_cm3 * 1e21
    box = volume_nm3 ** (1 / 3)
    types = ("A", "B", "A") * n_mol
    mol = np.repeat(np.arange(n_mol), 3)
    bonds = np.array([[3 * m + k, 3 * m + k + 1] for m in range(n_mol) for k in range(2)])
    angles = np.array([[3 * m, 3 * m + 1, 3 * m + 2] for m in range(n_mol)])
    masses = np.array([43.09, 28.05, 43.09] * n_mol)
    info = CGSystemInfo(types, mol, bonds, masses, np.eye(3) * box, angles=angles)
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
    import openmm

    from openmm_cgml.forces.neural import NeuralForceTerm, _script

    model = make_model(info)
    bundle = save_bundle(tmpdir / "bench.cgml", model, info)
    box_t = torch.tensor(info.box_vectors, dtype=torch.float64)
    pos_t = torch.tensor(pos, dtype=torch.float64)
    out = {}
    steps = 20 if quick else 100
    reps = 3 if quick else 5
    for priors in ("openmm", "network"):
        bare_model = NeuralForceTerm(bundle, priors=priors).build_model(info)
        scripted = _script(bare_model, True, True)
        # what TorchForce does per step: float64 positions in, energy + forces out
        t_bare = timeit(lambda s=scripted: s(pos_t, box_t), reps, steps)
        row = {"bare_model_ms": t_bare * 1e3}
        for backend in ("torch", "python"):
            term = NeuralForceTerm(bundle, backend=backend, priors=priors)
            system = openmm.System()
            for m in info.masses:
                system.addParticle(float(m))
            system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in info.box_vectors))
            for g, f in enumerate(term.create_forces(info)):
                f.setForceGroup(g)
                system.addForce(f)
            integ = openmm.LangevinMiddleIntegrator(300, 1.0, 0.005)
            ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
            ctx.setPositions(pos)
            openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 50)
            ctx.setVelocitiesToTemperature(300, 1)
            t_step = timeit(lambda integ=integ: integ.step(steps), reps) / steps
            row[f"{backend}_step_ms"] = t_step * 1e3
            row[f"{backend}_overhead"] = t_step / t_bare
        out[f"priors_{priors}"] = row
        logger.info("bridge (priors %s): %s", priors, row)
    _ = box_t
    return out


def bench_training(quick: bool) -> dict:
    from openmm_cgml.training.force_matching import _predict

    info, pos, box = tmp_system()
    model = make_model(info)
    n_frames = 16
    gen = torch.Generator().manual_seed(0)
    frames = torch.tensor(pos, dtype=torch.float32).expand(n_frames, -1, -1) + 0.02 * torch.randn(
        n_frames, len(pos), 3, generator=gen)
    boxes = torch.tensor(info.box_vectors, dtype=torch.float32).expand(n_frames, 3, 3).contiguous()
    ref = torch.randn(n_frames, len(pos), 3, generator=gen) * 50
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def batched():
        opt.zero_grad()
        _, f = _predict(model, frames, boxes, None, True)
        ((f - ref) ** 2).mean().backward()
        opt.step()

    def naive():
        opt.zero_grad()
        for k in range(n_frames):
            p = frames[k].detach().clone().requires_grad_(True)
            model.skin = 0.0  # a per-frame loop without a usable cache: search every frame
            e = model(p, boxes[k])
            (g,) = torch.autograd.grad(e, p, create_graph=True)
            (((-g - ref[k]) ** 2).mean() / n_frames).backward()
        opt.step()

    reps = 3 if quick else 5
    t_batched = timeit(batched, reps)
    t_naive = timeit(naive, reps)
    model.skin = ARCH["skin"]
    out = {"frames_per_batch": n_frames, "batched_frames_per_s": n_frames / t_batched,
           "naive_frames_per_s": n_frames / t_naive, "speedup": t_naive / t_batched}
    logger.info("training: %s", out)
    return out


def bench_aa_vs_cg(info, pos, bridge: dict, quick: bool) -> dict:
    import openmm
    from openmm import unit

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
    steps = 50 if quick else 200
    t_aa = timeit(lambda: integ.step(steps), 3) / steps
    aa_ns_per_day = 0.002 * 1e-3 / t_aa * 86400
    best = min(((k, v) for k, v in bridge.items()), key=lambda kv: kv[1]["torch_step_ms"])
    cg_step = best[1]["torch_step_ms"] * 1e-3
    out = {"aa_atoms": system.getNumParticles(), "aa_constraints": n_constraints, "aa_timestep_fs": 2.0,
           "aa_step_ms": t_aa * 1e3, "aa_ns_per_day": aa_ns_per_day, "aa_build_s": build_s,
           "cg_beads": len(info.bead_types), "cg_configuration": best[0], "cg_step_ms": cg_step * 1e3}
    for dt_fs in (5.0, 10.0):
        cg_ns_day = dt_fs * 1e-6 / cg_step * 86400
        out[f"cg_{int(dt_fs)}fs_ns_per_day"] = cg_ns_day
        out[f"speedup_per_simulated_ns_{int(dt_fs)}fs"] = cg_ns_day / aa_ns_per_day
        out[f"speedup_with_dynamics_{int(dt_fs)}fs"] = cg_ns_day / aa_ns_per_day * ALPHA_LITERATURE
    out["alpha_used"] = ALPHA_LITERATURE
    out["alpha_note"] = "literature D_CG/D_AA for 2,3,4-trimethylpentane (science.md); not measured here"
    logger.info("AA vs CG: %s", out)
    return out


def profile_cg(info, pos) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    from openmm_cgml.models import forces_and_energy

    model = make_model(info)
    model.prior_modules = torch.nn.ModuleList()  # as run with priors in OpenMM
    p = torch.tensor(pos, dtype=torch.float32)
    b = torch.tensor(info.box_vectors, dtype=torch.float32)
    for _ in range(5):
        forces_and_energy(model, p, b)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            forces_and_energy(model, p, b)
    rows = []
    for evt in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]:
        rows.append({"op": evt.key, "self_cpu_ms_per_eval": evt.self_cpu_time_total / 1e3 / 20, "calls": evt.count // 20})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--skip-aa", action="store_true", help="skip the all-atom comparison (needs OpenFF)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    import tempfile

    info, pos, box = tmp_system()
    results = {"benchmark": "bench_neural", "machine": machine_info(), "versions": package_versions(),
               "threads": 1, "architecture": ARCH, "quick": args.quick}
    results["neighbors"] = bench_neighbors(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        results["bridge"] = bench_bridge(info, pos, Path(tmp), args.quick)
    results["training"] = bench_training(args.quick)
    results["profile_cg_force_eval"] = profile_cg(info, pos)
    if not args.skip_aa:
        results["aa_vs_cg"] = bench_aa_vs_cg(info, pos, results["bridge"], args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(results, indent=1, default=float))
    print(json.dumps({k: results[k] for k in ("neighbors", "bridge", "training", "aa_vs_cg") if k in results},
                     indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
