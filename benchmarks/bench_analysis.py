"""Benchmark of the analysis layer and of the TimeCorrelationReporter's overhead.

1. RDF and MSD of a 10^4-bead, 10^3-frame trajectory (synthetic liquid-density random walk).  The RDF of one
   10^4-bead frame is timed round-robin (``_common.interleaved``) against freud's ``freud.density.RDF`` on one
   thread, on the same work (every pair of one type: ours without types vs freud's), and ours with 3 type pairs
   (two bead types) beside them: medians and spread over ``--rdf-rounds`` rounds, with the machine's load average.
   This is done on a frame of the trajectory and on a denser frame (``--rdf-density``, beads / nm^3).  freud is a
   benchmark-only peer (``pip install freud-analysis``); without it ours is timed alone.
2. Step time of a CG run (Lennard-Jones fluid, openmm.NonbondedForce, CPU platform) with and without
   the TimeCorrelationReporter at a report interval of 100 steps (goal: overhead <= 10%), measured side
   by side, medians of several repeats.

Usage: python benchmarks/bench_analysis.py [--rdf-rounds 7] [--rdf-density 100] [--beads 10000] [--frames 1000]
Writes benchmarks/results/bench_analysis.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, load_average  # noqa: E402

RDF_R_MAX, RDF_BINS = 1.5, 150


def bench_rdf(frame: np.ndarray, box: float, types: np.ndarray, rounds: int) -> dict:
    """Seconds per frame of our RDF (one type; 3 type pairs) and of freud's (one thread), timed round-robin."""
    from openmm_cgml.analysis import compute_rdf

    x = frame[None]
    lengths = [box] * 3
    calls = {
        "ours_1_type": (lambda: compute_rdf(x, lengths, r_max=RDF_R_MAX, n_bins=RDF_BINS), 1),
        "ours_3_type_pairs": (lambda: compute_rdf(x, lengths, types, r_max=RDF_R_MAX, n_bins=RDF_BINS), 1),
    }
    try:
        import freud
    except ImportError:
        freud = None
        print("freud is not installed (pip install freud-analysis): timing ours alone")
    if freud is not None:
        freud.parallel.set_num_threads(1)
        fbox = freud.box.Box.cube(box)
        points = fbox.wrap(frame.astype(np.float32))
        # finite_size: normalised by N (N - 1) pairs, as ours is
        freud_rdf = freud.density.RDF(bins=RDF_BINS, r_max=RDF_R_MAX, normalization_mode="finite_size")
        calls["freud_1_thread"] = (lambda: freud_rdf.compute((fbox, points), reset=True), 1)
    load_before = load_average()
    timings = interleaved(calls, rounds, spread=True)
    out = {
        "n_beads": int(frame.shape[0]), "box_nm": box, "density_per_nm3": frame.shape[0] / box**3,
        "r_max_nm": RDF_R_MAX, "n_bins": RDF_BINS, "rounds": rounds,
        "timing": "arms timed round-robin (_common.interleaved), one frame per call: seconds per frame, median "
                  "and [min, max]",
        "seconds_per_frame": {k: {"median": v["median"], "min": v["min"], "max": v["max"]} for k, v in timings.items()},
        "samples": {k: v["samples"] for k, v in timings.items()},
        "load_average_before": load_before, "load_average_after": load_average(),
        "freud": None if freud is None else {"version": freud.__version__, "threads": 1},
    }
    if freud is not None:
        ours = compute_rdf(x, lengths, r_max=RDF_R_MAX, n_bins=RDF_BINS)[(0, 0)].g
        out["max_abs_g_difference_vs_freud"] = float(np.max(np.abs(ours - freud_rdf.rdf)))  # float32 in freud
        out["freud_over_ours_1_type"] = timings["freud_1_thread"]["median"] / timings["ours_1_type"]["median"]
    med = {k: v["median"] * 1e3 for k, v in timings.items()}
    spread = {k: f"[{v['min'] * 1e3:.1f}, {v['max'] * 1e3:.1f}]" for k, v in timings.items()}
    print(f"RDF of one {frame.shape[0]}-bead frame at {out['density_per_nm3']:.0f} beads/nm^3 (r_max {RDF_R_MAX} nm, "
          f"{RDF_BINS} bins), ms per frame, median [min, max] of {rounds} round-robin rounds, load "
          f"{load_before} -> {out['load_average_after']}:")
    for k in med:
        print(f"  {k:18s} {med[k]:8.1f} {spread[k]}")
    if freud is not None:
        print(f"  freud / ours (one type): {out['freud_over_ours_1_type']:.2f}; "
              f"max |g_ours - g_freud| = {out['max_abs_g_difference_vs_freud']:.2g}")
    return out


def bench_rdf_msd(n_beads: int, n_frames: int, rdf_rounds: int, rdf_density: float) -> dict:
    from openmm_cgml.analysis import compute_msd, diffusion_coefficient

    rng = np.random.default_rng(0)
    box = float(np.cbrt(n_beads / 10.0))  # 10 beads / nm^3
    x = rng.uniform(0, box, (1, n_beads, 3)) + np.cumsum(rng.normal(scale=0.03, size=(n_frames, n_beads, 3)), axis=0)
    times = np.arange(n_frames) * 1.0
    types = np.array(["A", "B"])[rng.integers(0, 2, n_beads)]
    wrapped = x % box
    t0 = time.perf_counter()  # the MSD first, in a process that has run nothing else yet
    msd = compute_msd(wrapped, times, box=[box] * 3)
    fit = diffusion_coefficient(msd)
    t_msd = time.perf_counter() - t0
    rdf = bench_rdf(wrapped[0], box, types, rdf_rounds)
    dense_box = float(np.cbrt(n_beads / rdf_density))
    dense = None
    if dense_box >= 2 * RDF_R_MAX:
        dense = bench_rdf(np.random.default_rng(1).uniform(0, dense_box, (n_beads, 3)), dense_box, types, rdf_rounds)
    else:
        print(f"dense RDF frame skipped: its box ({dense_box:.2f} nm) is narrower than 2 r_max")
    t_rdf = rdf["seconds_per_frame"]["ours_3_type_pairs"]["median"]
    out = {
        "n_beads": n_beads, "n_frames": n_frames, "box_nm": box,
        "rdf_frames_timed": rdf_rounds, "rdf_type_pairs": 3,
        "rdf_seconds_per_frame": t_rdf,
        "rdf_seconds_extrapolated_to_all_frames": t_rdf * n_frames,
        "rdf_vs_freud": rdf, "rdf_vs_freud_dense": dense,
        "msd_seconds_all_origins_unwrap_com_fit": t_msd,
        "msd_D_nm2_per_ps": fit.D, "msd_D_err": fit.D_err, "msd_D_true": 0.03**2 / 2.0,
    }
    print(f"RDF (3 type pairs, r_max {RDF_R_MAX} nm, {n_beads} beads): {t_rdf * 1e3:.1f} ms/frame "
          f"-> {t_rdf * n_frames:.1f} s for {n_frames} frames")
    print(f"MSD (all origins, unwrap, COM removal, fit) {n_beads} x {n_frames}: {t_msd:.2f} s; "
          f"D = {fit.D:.5f} +- {fit.D_err:.5f} (true {0.03**2 / 2:.5f}) nm^2/ps")
    return out


def _lj_simulation(n_beads: int, threads: int):
    import openmm
    from openmm import app, unit

    from openmm_cgml.testing import lj_fluid

    side = int(round(n_beads ** (1 / 3)))
    n = side**3
    fluid = lj_fluid(n, side * 0.4, sigma=0.34, epsilon=0.99, mass=40.0, cutoff=1.0)
    integrator = openmm.LangevinMiddleIntegrator(120 * unit.kelvin, 5 / unit.picosecond, 5 * unit.femtosecond)
    platform = openmm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(fluid.topology, fluid.system, integrator, platform, {"Threads": str(threads)})
    sim.context.setPositions(fluid.positions)
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
    parser.add_argument("--rdf-rounds", type=int, default=7, help="round-robin rounds of the RDF timing (a frame each)")
    parser.add_argument("--rdf-density", type=float, default=100.0, help="beads / nm^3 of the dense RDF frame")
    parser.add_argument("--cg-beads", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-reporter", action="store_true", help="only the analysis part (nothing is written)")
    args = parser.parse_args()
    if args.skip_reporter:
        bench_rdf_msd(args.beads, args.frames, args.rdf_rounds, args.rdf_density)
        return
    results = {
        "benchmark": "bench_analysis",
        "analysis": bench_rdf_msd(args.beads, args.frames, args.rdf_rounds, args.rdf_density),
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
