"""CG speed over AA for 2,3,4-trimethylpentane (64 molecules), single-bead and three-bead mappings.

Measured side by side in one run on this machine (CPU platform):
  * AA: OpenFF Sage 2.2.0 + AM1-BCC, PME 0.9 nm, HBonds, 2 fs (the reference module's liquid);
  * CG: the same molecule count, pair tables from Boltzmann inversion of the mapped AA RDFs (the IBI
    starting point; the speed does not depend on the refinement), harmonic bonded priors from Boltzmann
    inversion for the three-bead model, largest stable timestep from a scan; the tabulated pair force
    and an analytic inverse-power fit of the same table are both timed.
Ratio = (AA wall seconds per simulated ns) / (CG wall seconds per simulated ns): faster CG dynamics
(the acceleration factor) are NOT counted.

Usage: python benchmarks/bench_cg_speed.py [--production-ps 20] [--workdir /tmp/cg_bench]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _trimethylpentane import N_MOL, TEMPERATURE, aa_reference, map_reference, steps_per_second, time_aa_steps  # noqa: E402

from openmm_cgml._io import atomic_write_text, machine_info, package_versions  # noqa: E402
from openmm_cgml.dataset import open_dataset  # noqa: E402


def cg_model(cg_path, mapping, cutoff):
    from openmm_cgml.builder import CGSystemBuilder
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.tabulated import AnalyticPairPotential
    from openmm_cgml.ibi import (
        KB,
        IBISettings,
        IterativeBoltzmannInversion,
        invert_bonded_terms,
        pmf_potential,
        targets_from_dataset,
    )

    ds = open_dataset(cg_path)
    info = mapping.cg_topology(ds.box[-1])
    targets = targets_from_dataset(ds, cutoff, 0.01)
    settings = IBISettings(temperature=f"{TEMPERATURE} K", cutoff=f"{cutoff} nm")
    ibi = IterativeBoltzmannInversion(info, ds.positions[-1], targets, settings)
    pots = {p: pmf_potential(ibi.r, ibi.targets[p], KB * TEMPERATURE, cutoff=cutoff) for p in ibi.pairs}
    table = ibi._term(pots)
    r_tab = table.grid[1:]
    analytic = AnalyticPairPotential.fit({p: (r_tab, table.energy(*p, r_tab)) for p in ibi.pairs}, cutoff=cutoff,
                                         u_max=10 * KB * TEMPERATURE)
    bonded = invert_bonded_terms(ds.positions, info, TEMPERATURE, box=ds.box) if len(info.bonds) else []
    out = {}
    for name, pair in (("tabulated", table), ("analytic", analytic)):
        builder = CGSystemBuilder(mapping, [pair, *bonded])
        out[name] = (builder.createSystem(boxVectors=ds.box[-1]), ds.positions[-1])
    return out, getattr(analytic, "fit_rms", {})


def mapping_speed(mapping, n_target: int = 100_000, repeats: int = 5) -> dict:
    """Seconds to map one ~10^5-atom frame (positions with periodic unwrapping, forces)."""
    import time

    from openmm_cgml.mapping import CGMapping

    mt = mapping.molecule_types[0]
    n_mol = n_target // mt.n_atoms
    big = CGMapping(molecule_types=(mt,), molecules=tuple((0, tuple(range(k * mt.n_atoms, (k + 1) * mt.n_atoms)))
                                                          for k in range(n_mol)), n_atoms=n_mol * mt.n_atoms)
    rng = np.random.default_rng(0)
    box = np.eye(3) * 10.0
    x = rng.uniform(0, 10, size=(big.n_atoms, 3))
    f = rng.normal(size=(big.n_atoms, 3))
    tp, tf = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        big.map_positions(x, box)
        tp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        big.map_forces(f)
        tf.append(time.perf_counter() - t0)
    return {"n_atoms": big.n_atoms, "n_beads": big.n_beads, "positions_s": tp, "forces_s": tf,
            "median_positions_ms": 1000 * statistics.median(tp), "median_forces_ms": 1000 * statistics.median(tf)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production-ps", type=float, default=20.0)
    parser.add_argument("--workdir", default="/tmp/cg_bench")
    parser.add_argument("--aa-steps", type=int, default=300)
    parser.add_argument("--cg-steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cutoff-nm", type=float, default=1.2, help="CG pair cutoff (capped at half the box)")
    parser.add_argument("--beads", type=int, nargs="+", default=[1, 3], help="beads per molecule to benchmark")
    parser.add_argument("--reuse-aa", action="store_true",
                        help="reuse a finished AA reference in --workdir (the AA speed is still measured here)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result, aa_wall, _ = aa_reference(work, args.production_ps, reuse=args.reuse_aa)
    aa_s_per_step = time_aa_steps(result, args.aa_steps, args.repeats)
    aa_s_per_ns = statistics.median(aa_s_per_step) * (1000 / 0.002)
    print(f"AA: {1 / statistics.median(aa_s_per_step):.1f} steps/s, {aa_s_per_ns:.0f} s per ns")
    models = {}
    for n_beads in args.beads:
        mapping, cg_path = map_reference(result, work, n_beads)
        box = float(np.diag(open_dataset(cg_path).box[-1]).min())
        cutoff = min(args.cutoff_nm, 0.5 * box - 0.01)
        systems, fit_rms = cg_model(cg_path, mapping, cutoff)
        entry = {"n_beads_per_molecule": n_beads, "n_beads": mapping.n_beads, "cutoff_nm": cutoff,
                 "bead_types": list(mapping.type_names), "analytic_fit_rms_kJ_per_mol": {
                     "-".join(k): v for k, v in fit_rms.items()}}
        for variant, (system, pos) in systems.items():
            best_dt = None
            scan = {}
            for dt in (0.025, 0.02, 0.015, 0.01, 0.005):
                _, stable, temps = steps_per_second(system, pos, dt, 2000, repeats=2)
                scan[f"{dt * 1000:g} fs"] = {"stable": stable, "temperatures_K": temps}
                if stable:
                    best_dt = dt
                    break
            if best_dt is None:
                entry[variant] = {"timestep_scan": scan, "error": "no stable timestep"}
                continue
            rates, stable, _ = steps_per_second(system, pos, best_dt, args.cg_steps, repeats=args.repeats)
            s_per_ns = (1000 / best_dt) / statistics.median(rates)
            entry[variant] = {"timestep_fs": best_dt * 1000, "timestep_scan": scan, "steps_per_s": rates,
                              "median_steps_per_s": statistics.median(rates), "s_per_ns": s_per_ns,
                              "speedup_over_aa": aa_s_per_ns / s_per_ns, "stable": stable}
            print(f"CG {n_beads}-bead {variant}: dt {best_dt * 1000:g} fs, {statistics.median(rates):.0f} steps/s, "
                  f"{s_per_ns:.1f} s per ns -> {aa_s_per_ns / s_per_ns:.0f}x AA")
        entry["mapping_speed_1e5_atoms"] = mapping_speed(mapping)
        print(f"mapping a {entry['mapping_speed_1e5_atoms']['n_atoms']}-atom frame: positions "
              f"{entry['mapping_speed_1e5_atoms']['median_positions_ms']:.1f} ms, forces "
              f"{entry['mapping_speed_1e5_atoms']['median_forces_ms']:.1f} ms")
        models[f"{n_beads}_bead"] = entry
    report = {
        "benchmark": "bench_cg_speed", "molecule": "2,3,4-trimethylpentane", "n_molecules": N_MOL,
        "temperature_K": TEMPERATURE,
        "aa": {"n_atoms": int(open_dataset(result.dataset).n_particles), "reused_reference_run": args.reuse_aa, "timestep_fs": 2.0, "s_per_step": aa_s_per_step,
            "median_steps_per_s": 1 / statistics.median(aa_s_per_step), "s_per_ns": aa_s_per_ns,
            "reference_run_wall_s": aa_wall, "settings": "OpenFF Sage 2.2.0, AM1-BCC, PME 0.9 nm, HBonds, 2 fs, CPU"},
        "cg": models,
        "notes": "ratios of wall seconds per simulated ns (CG dynamics acceleration not counted); medians of "
                 f"{args.repeats} repeats; CG pair tables = Boltzmann-inverted AA RDFs (PMF).",
        "machine": machine_info(), "package_versions": package_versions(),
    }
    suffix = "" if (args.beads == [1, 3] and args.cutoff_nm == 1.2) else f"_{'_'.join(map(str, args.beads))}bead_rc{args.cutoff_nm:g}"
    out = Path(__file__).parent / "results" / f"bench_cg_speed{suffix}.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
