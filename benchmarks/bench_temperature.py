"""Cost of a temperature study and the CG over AA speed-up per simulated ns at each temperature (issue
"Temperature-transferable CG models").

On a finished ``cgml temperature`` directory (``--study-output``):

* ``study_cost_h``: the wall and CPU hours of every kind of step the study ran (AA references, mapping, IBI,
  training, CG runs), from its ``costs.json``;
* the study's findings as it reported them (``summary.json``): its goals with their figures, the activation energies
  per species and model, the leave-one-out predictions of D_AA, and the intermolecular RDF error of every model at
  every temperature;
* ``speedup_per_ns[T][model]``: at each temperature the AA liquid (its System XML and last frame) and every CG model
  (``<model>_system.xml`` at the timestep its run used) are timed round-robin in one process (the CPU platform unless
  ``--platform``; several rounds, medians, spread and the machine's load recorded), each arm a block of steps under
  the same Langevin integrator, and the speed-up is (AA wall seconds per simulated ns) / (CG wall seconds per ns).

Results go to ``benchmarks/results/bench_temperature_<name>.json`` (``--name``, default the folder's name
without a leading ``temperature_``).

Usage::

    cgml temperature examples/ionic_liquid/bmim_bf4.yaml
    python benchmarks/bench_temperature.py --study-output runs/temperature_bmim_bf4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, load_average, write_result  # noqa: E402
from bench_polymer import _stepper  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study-output", type=Path, required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--aa-steps", type=int, default=100)
    parser.add_argument("--cg-steps", type=int, default=1000)
    args = parser.parse_args(argv)

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system

    out = args.study_output.resolve()
    summary = json.loads((out / "summary.json").read_text())
    figures = {"study_cost_h": summary["costs"]["totals"], "goals": summary["goals"],
               "activation_energy": summary["arrhenius"]["activation_energy"],
               "leave_one_out": {name: {"held_out_K": rec["held_out_K"], "predictions": rec["predictions"]}
                                 for name, rec in summary["leave_one_out"].items()},
               "rdf_error": {t: {m: r["rdf_error"] for m, r in runs.items()} for t, runs in summary["runs"].items()},
               "flags": summary["arrhenius"]["flags"],
               "diffusion": {model: {species: {k: e[k] for k in ("temperatures_K", "D_nm2_per_ps", "D_err_nm2_per_ps",
                                                                  "converged")}
                                     for species, e in per.items()}
                             for model, per in summary["arrhenius"]["results"].items()},
               "finite_size": summary.get("finite_size", "not corrected: D of the simulated boxes"),
               "viscosity_mPa_s": {t: {"AA": summary.get("aa_viscosity", {}).get(t),
                                       **{m: r.get("viscosity") for m, r in runs.items()}}
                                   for t, runs in summary["runs"].items()},
               "speedup_per_ns": {}, "seconds_per_ns": {}, "seconds_per_ns_spread": {}, "timestep_fs": {}, "load": {}}
    for t in summary["temperatures_K"]:
        folder = out / f"T{t:g}"
        aa = open_dataset(folder / "aa.h5")
        aa_dt = float(aa.metadata.get("timestep_ps", 0.002))
        arms = {"AA": (_stepper(load_system(folder / "aa.system.xml"), aa.positions[-1], aa.box[-1], aa_dt, t,
                                args.platform, args.aa_steps), args.aa_steps * aa_dt)}
        dts = {"AA": aa_dt}
        for model in summary["runs"][f"{t:g}"]:
            xml, run = folder / f"{model}_system.xml", folder / f"{model}_run.h5"
            if not xml.exists() or not run.exists():  # ibi_mid at the middle temperature is that temperature's ibi
                continue
            ds = open_dataset(run)
            dts[model] = float(ds.metadata["timestep_ps"])
            arms[model] = (_stepper(load_system(xml), ds.positions[-1], ds.box[-1], dts[model], t, args.platform,
                                    args.cg_steps), args.cg_steps * dts[model])
        before = load_average()
        timed = interleaved({k: (fn, ps) for k, (fn, ps) in arms.items()}, args.rounds, spread=True)
        key = f"{t:g}"
        figures["load"][key] = {"before": before, "after": load_average()}
        figures["seconds_per_ns"][key] = {k: v["median"] * 1000 for k, v in timed.items()}
        figures["seconds_per_ns_spread"][key] = {k: [v["min"] * 1000, v["max"] * 1000] for k, v in timed.items()}
        figures["timestep_fs"][key] = {k: v * 1000 for k, v in dts.items()}
        figures["speedup_per_ns"][key] = {k: timed["AA"]["median"] / v["median"] for k, v in timed.items()
                                          if k != "AA"}
    write_result(f"bench_temperature_{args.name or out.name.removeprefix('temperature_')}", figures,
                 {"study_output": str(out), "system": summary["system"], "platform": args.platform,
                  "rounds": args.rounds, "aa_steps": args.aa_steps, "cg_steps": args.cg_steps,
                  "integrator": "LangevinMiddle, 1 /ps, at each run's timestep"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
