"""Benchmark of the analysis layer and of the TimeCorrelationReporter's overhead.

1. RDF and MSD of a 10^4-bead, 10^3-frame trajectory (synthetic liquid-density random walk).
2. Step time of a CG run (Lennard-Jones fluid, openmm.NonbondedForce, CPU platform) with and without
   the TimeCorrelationReporter at a report interval of 100 steps (goal: overhead <= 10%), measured side
   by side, medians of several repeats.

Usage: python benchmarks/bench_analysis.py [--rdf-frames 100] [--beads 10000] [--frames 1000]
Writes benchmarks/results/bench_analysis.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_rdf_msd(n_beads: int, n_frames: int, rdf_frames: int) -> dict:
    from openmm_cgml.analysis import compute_msd, compute_rdf, diffusion_coefficient

    rng = np.random.default_rng(0)
    box = float(np.cbrt(n_beads / 10.0))  # 10 beads / nm^3
    x = rng.uniform(0, box, (1, n_beads, 3)) + np.cumsum(rng.normal(scale=0.03, size=(n_frames, n_beads, 3)), axis=0)
    times = np.arange(n_frames) * 1.0
    types = np.array(["A", "B"])[rng.integers(0, 2, n_beads)]
    wrapped = x % box
    t0 = time.perf_counter()
    compute_rdf(wrapped[:rdf_frames], [box] * 3, types, r_max=1.5, n_bins=150)
    t_rdf = time.perf_counter() - t0
    t0 = time.perf_counter()
    msd = compute_msd(wrapped, times, box=[box] * 3)
    fit = diffusion_coefficient(msd)
    t_msd = time.perf_counter() - t0
    out = {
        "n_beads": n_beads, "n_frames": n_frames, "box_nm": box,
        "rdf_frames_timed": rdf_frames, "rdf_type_pairs": 3,
        "rdf_seconds": t_rdf, "rdf_seconds_per_frame": t_rdf / rdf_frames,
        "rdf_seconds_extrapolated_to_all_frames": t_rdf / rdf_frames * n_frames,
        "msd_seconds_all_origins_unwrap_com_fit": t_msd,
        "msd_D_nm2_per_ps": fit.D, "msd_D_err": fit.D_err, "msd_D_true": 0.03**2 / 2.0,
    }
    print(f"RDF (3 type pairs, r_max 1.5 nm, {n_beads} beads): {t_rdf / rdf_frames * 1e3:.1f} ms/frame "
          f"-> {t_rdf / rdf_frames * n_frames:.1f} s for {n_frames} frames")
    print(f"MSD (all origins, unwrap, COM removal, fit) {n_beads} x {n_frames}: {t_msd:.2f} s; "
          f"D = {fit.D:.5f} +- {fit.D_err:.5f} (true {0.03**2 / 2:.5f}) nm^2/ps")
    return out


def _lj_simulation(n_beads: int, threads: int):
    import openmm
    from openmm import app, unit

    side = int(round(n_beads ** (1 / 3)))
    n = side**3
    spacing = 0.4
    L = side * spacing
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * L))
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(1.0)
    for _ in range(n):
        system.addParticle(40.0)
        nb.addParticle(0.0, 0.34, 0.99)
    system.addForce(nb)
    top = app.Topology()
    chain = top.addChain()
    for _ in range(n):
        top.addAtom("B", None, top.addResidue("B", chain))
    grid = np.array(np.meshgrid(*[np.arange(side)] * 3, indexing="ij")).reshape(3, -1).T * spacing
    integrator = openmm.LangevinMiddleIntegrator(120 * unit.kelvin, 5 / unit.picosecond, 5 * unit.femtosecond)
    platform = openmm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(top, system, integrator, platform, {"Threads": str(threads)})
    sim.context.setPositions(grid)
    sim.minimizeEnergy(maxIterations=200)
    sim.context.setVelocitiesToTemperature(120 * unit.kelvin, 1)
    return sim, n


def bench_reporter(n_beads: int, steps: int, repeats: int, threads: int) -> dict:
    from openmm_cgml.dynamics import TimeCorrelationReporter

    sim, n = _lj_simulation(n_beads, threads)
    sim.step(500)
    plain, with_reporter = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):  # interleaved, so drifts of a shared machine hit both alike
            sim.reporters.clear()
            t0 = time.perf_counter()
            sim.step(steps)
            plain.append((time.perf_counter() - t0) / steps)
            # a fresh reporter per repeat: one reporter must see evenly spaced reports
            reporter = TimeCorrelationReporter(Path(tmp) / f"tc{r}.json", 100, alpha=5.0, writeInterval=None)
            sim.reporters.append(reporter)
            t0 = time.perf_counter()
            sim.step(steps)
            reporter.close()  # includes the final D fits and the JSON write
            with_reporter.append((time.perf_counter() - t0) / steps)
        data = json.loads((Path(tmp) / "tc0.json").read_text())
    m0, m1 = statistics.median(plain), statistics.median(with_reporter)
    overhead = m1 / m0 - 1.0
    print(f"LJ fluid, {n} beads, CPU platform ({threads} threads): {m0 * 1e3:.3f} ms/step without, "
          f"{m1 * 1e3:.3f} ms/step with the reporter at interval 100 -> overhead {100 * overhead:.1f}% (goal <= 10%)")
    return {"n_beads": n, "platform": "CPU", "threads": threads, "steps_per_repeat": steps, "repeats": repeats,
            "report_interval": 100, "median_step_s_without": m0, "median_step_s_with": m1,
            "all_step_s_without": plain, "all_step_s_with": with_reporter, "overhead_fraction": overhead,
            "goal_overhead_fraction": 0.10, "goal_met": overhead <= 0.10, "n_reports": data["n_reports"],
            "correlator_lags": len(data["lag_reports"])}


def main() -> None:
    from openmm_cgml._io import atomic_write_text, machine_info, package_versions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beads", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--rdf-frames", type=int, default=100, help="frames timed for the RDF (extrapolated)")
    parser.add_argument("--cg-beads", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {
        "benchmark": "bench_analysis",
        "analysis": bench_rdf_msd(args.beads, args.frames, args.rdf_frames),
        "reporter": bench_reporter(args.cg_beads, args.steps, args.repeats, args.threads),
        "machine": machine_info(),
        "package_versions": package_versions(),
        "arguments": vars(args),
    }
    out = Path(__file__).parent / "results" / "bench_analysis.json"
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
