"""CG speed over AA for 2,3,4-trimethylpentane (64 molecules), single-bead and three-bead mappings.

Measured in one process on this machine (CPU platform), every arm timed round-robin (``--rounds`` rounds, one
block of each arm per round, medians and spread, machine load recorded):
  * AA: OpenFF Sage 2.2.0 + AM1-BCC, PME 0.9 nm, HBonds, 2 fs (the reference module's liquid);
  * CG: the same molecule count, pair tables from Boltzmann inversion of the mapped AA RDFs (the IBI
    starting point; the speed does not depend on the refinement), harmonic bonded priors from Boltzmann
    inversion for the three-bead model, largest stable timestep from a scan; the tabulated pair force
    and an analytic inverse-power fit of the same table are both timed; the tables in the layout
    ``TabulatedPairPotential`` chooses by default (recorded: the compiled force where it is built).
Ratio = (AA wall seconds per simulated ns) / (CG wall seconds per simulated ns): faster CG dynamics
(the acceleration factor) are NOT counted.

Usage: python benchmarks/bench_cg_speed.py [--production-ps 20] [--rounds 5] [--workdir /tmp/cg_bench]
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
from _common import interleaved, load_average  # noqa: E402
from _trimethylpentane import N_MOL, TEMPERATURE, aa_block, aa_reference, cg_block, map_reference, steps_per_second  # noqa: E402

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
    return out, getattr(analytic, "fit_rms", {}), table.resolved_layout(info)


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


#: The CG timestep scan, largest first.
TIMESTEPS = (0.025, 0.02, 0.015, 0.01, 0.005)


class _BlewUp(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def time_round_robin(result, arms: dict, models: dict, args):
    """Every arm (AA and ``arms``: ``key: (system, positions, timesteps left to try)``) timed round-robin.  An arm that
    blows up during the timing (the scan's runs were shorter) drops to its next timestep, recorded in ``models``, and
    the timing starts again.  Returns (interleaved's figures, thermometers, load average before)."""
    import openmm

    while True:
        keep, calls, thermometers = [], {}, {}
        aa_ctx, aa_fn = aa_block(result, args.aa_steps)
        keep.append(aa_ctx)
        calls["aa"] = (aa_fn, args.aa_steps * 0.002e-3)  # seconds per simulated ns
        for key, (system, pos, dts) in arms.items():
            ctx, fn, thermometer = cg_block(system, pos, dts[0], args.cg_steps)
            keep.append(ctx)

            def guarded(fn=fn, key=key):
                try:
                    return fn()
                except openmm.OpenMMException as exc:
                    raise _BlewUp(key) from exc

            calls[key] = (guarded, args.cg_steps * dts[0] * 1e-3)
            thermometers[key] = thermometer
        load_before = load_average()
        try:
            return interleaved(calls, args.rounds, spread=True), thermometers, load_before
        except _BlewUp as exc:
            system, pos, dts = arms[exc.key]
            model, variant = exc.key.split("/")
            entry = models[model][variant]
            entry.setdefault("blew_up_in_timing_fs", []).append(dts[0] * 1000)
            if len(dts) == 1:
                entry["error"] = "blew up in the timed run at every timestep"
                del arms[exc.key]
            else:
                arms[exc.key] = (system, pos, dts[1:])
                entry["timestep_fs"] = dts[1] * 1000
            print(f"{exc.key} blew up in the timed run at {dts[0] * 1000:g} fs; timing again", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production-ps", type=float, default=20.0)
    parser.add_argument("--workdir", default="/tmp/cg_bench")
    parser.add_argument("--aa-steps", type=int, default=300, help="AA steps per timed block")
    parser.add_argument("--cg-steps", type=int, default=3000, help="CG steps per timed block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cutoff-nm", type=float, default=1.2, help="CG pair cutoff (capped at half the box)")
    parser.add_argument("--beads", type=int, nargs="+", default=[1, 3], help="beads per molecule to benchmark")
    parser.add_argument("--reuse-aa", action="store_true",
                        help="reuse a finished AA reference in --workdir (the AA speed is still measured here)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result, aa_wall, _ = aa_reference(work, args.production_ps, reuse=args.reuse_aa)
    # 1. each CG model's largest stable timestep (a scan), 2. every arm timed round-robin
    models, arms = {}, {}
    for n_beads in args.beads:
        mapping, cg_path = map_reference(result, work, n_beads)
        box = float(np.diag(open_dataset(cg_path).box[-1]).min())
        cutoff = min(args.cutoff_nm, 0.5 * box - 0.01)
        systems, fit_rms, layout = cg_model(cg_path, mapping, cutoff)
        entry = {"n_beads_per_molecule": n_beads, "n_beads": mapping.n_beads, "cutoff_nm": cutoff,
                 "bead_types": list(mapping.type_names), "analytic_fit_rms_kJ_per_mol": {
                     "-".join(k): v for k, v in fit_rms.items()}, "table_layout": layout}
        for variant, (system, pos) in systems.items():
            best_dt = None
            scan = {}
            for dt in TIMESTEPS:
                _, stable, temps = steps_per_second(system, pos, dt, 2000, repeats=2)
                scan[f"{dt * 1000:g} fs"] = {"stable": stable, "temperatures_K": temps}
                if stable:
                    best_dt = dt
                    break
            if best_dt is None:
                entry[variant] = {"timestep_scan": scan, "error": "no stable timestep"}
                continue
            key = f"{n_beads}_bead/{variant}"
            arms[key] = (system, pos, [dt for dt in TIMESTEPS if dt <= best_dt])
            entry[variant] = {"timestep_fs": best_dt * 1000, "timestep_scan": scan}
        entry["mapping_speed_1e5_atoms"] = mapping_speed(mapping)
        models[f"{n_beads}_bead"] = entry
    timed, thermometers, load_before = time_round_robin(result, arms, models, args)
    aa = timed["aa"]
    for key, t in timed.items():
        if key == "aa":
            continue
        model, variant = key.split("/")
        dt_ps = models[model][variant]["timestep_fs"] * 1e-3
        ratios = [a / c for a, c in zip(aa["samples"], t["samples"])]  # per round: both arms under the same load
        temperature = thermometers[key]()
        models[model][variant].update({
            "s_per_ns": t["median"], "s_per_ns_spread": [t["min"], t["max"]],
            "median_steps_per_s": 1 / (t["median"] * dt_ps * 1e-3),
            "speedup_over_aa": aa["median"] / t["median"], "speedup_per_round": [min(ratios), max(ratios)],
            "temperature_after_timing_K": temperature, "stable": abs(temperature / TEMPERATURE - 1) < 0.15})
        print(f"CG {key}: dt {dt_ps * 1000:g} fs, {t['median']:.1f} s per ns -> {aa['median'] / t['median']:.0f}x AA "
              f"(per round {min(ratios):.0f}-{max(ratios):.0f}x)")
    report = {
        "benchmark": "bench_cg_speed", "molecule": "2,3,4-trimethylpentane", "n_molecules": N_MOL,
        "temperature_K": TEMPERATURE,
        "timing": {"method": "round-robin in one process", "rounds": args.rounds, "aa_steps_per_block": args.aa_steps,
                   "cg_steps_per_block": args.cg_steps, "load_average": [load_before, load_average()]},
        "aa": {"n_atoms": int(open_dataset(result.dataset).n_particles), "reused_reference_run": args.reuse_aa,
               "timestep_fs": 2.0, "s_per_ns": aa["median"], "s_per_ns_spread": [aa["min"], aa["max"]],
               "median_steps_per_s": 1 / (aa["median"] * 0.002e-3),
               "reference_run_wall_s": aa_wall, "settings": "OpenFF Sage 2.2.0, AM1-BCC, PME 0.9 nm, HBonds, 2 fs, CPU"},
        "cg": models,
        "notes": "ratios of wall seconds per simulated ns (CG dynamics acceleration not counted); medians of "
                 f"{args.rounds} round-robin rounds; CG pair tables = Boltzmann-inverted AA RDFs (PMF).",
        "machine": machine_info(), "package_versions": package_versions(),
    }
    suffix = "" if (args.beads == [1, 3] and args.cutoff_nm == 1.2) else f"_{'_'.join(map(str, args.beads))}bead_rc{args.cutoff_nm:g}"
    out = Path(__file__).parent / "results" / f"bench_cg_speed{suffix}.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
