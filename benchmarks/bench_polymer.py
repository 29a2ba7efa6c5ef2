"""CG over AA speed for a polymer melt, per simulated ns and per chain relaxation (issue "Polymer melts").

On a finished ``cgml polymer`` directory (``--polymer-output``), the AA melt (its own System XML and last frame)
and each CG model (``cg_system.xml``, ``neural_system.xml``, at the timestep its run used) are timed round-robin in
one process (the CPU platform unless ``--platform``; several rounds, medians, spread and the machine's load
recorded), each arm a block of steps under the same Langevin integrator.  Figures:

* ``speedup_per_ns``: (AA wall seconds per simulated ns) / (CG wall seconds per simulated ns);
* ``speedup_relaxation``: the same times tau_ee(AA) / tau_ee(CG), the end-to-end relaxation times of the runs
  (``chains.json``): the wall-clock cost of relaxing a chain, CG against AA.  Given only where both runs' end-to-end
  autocorrelations decayed (otherwise null, with the reason);
* ``study``: what the run measured (its ``summary.json`` without the Markdown tables, and the comparison rows
  against AA of the short chains and of every transfer target with an AA reference), for the results page.

Results go to ``benchmarks/results/bench_polymer_<name>.json`` (``--name``, default the folder's name without
``polymer_``: ``runs/polymer_pe_cpu`` -> ``bench_polymer_pe_cpu.json``), and the run's chain-scaling plot beside it
(``bench_polymer_<name>_scaling.png``).

Usage::

    cgml polymer examples/polymer/pe.yaml
    python benchmarks/bench_polymer.py --polymer-output runs/polymer_pe
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, interleaved, load_average, write_result  # noqa: E402

from openmm_cgml._io import atomic_path  # noqa: E402


def _stepper(system, positions, box, dt_ps: float, temperature: float, platform: str, steps: int):
    """A function running ``steps`` Langevin steps of ``system`` from ``positions`` (nm) in ``box``."""
    import openmm

    integ = openmm.LangevinMiddleIntegrator(temperature, 1.0, dt_ps)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName(platform))
    ctx.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.asarray(box)))
    ctx.setPositions(np.asarray(positions))
    ctx.setVelocitiesToTemperature(temperature, 1)
    integ.step(10)

    def run():
        integ.step(steps)
        ctx.getState(getEnergy=True)  # wait for the platform to finish

    run.context = ctx  # kept alive with the function
    return run


#: The columns of a comparison row kept for the results page.
_ROW_KEYS = ("quantity", "unit", "metric", "value", "value_err", "reference", "reference_err", "model", "model_err",
             "note")


def _trim(rows: list[dict]) -> list[dict]:
    """Comparison rows (of ``comparison.json``) with the columns the results page shows."""
    return [{k: r.get(k) for k in _ROW_KEYS} for r in rows]


def study_figures(out: Path, summary: dict) -> dict:
    """What the polymer run measured, for the results page: the AA melt, every run's chain record, alpha, the NPT
    densities, the comparison rows against AA and the transfer runs (``summary.json`` without its Markdown)."""
    study = {k: v for k, v in summary.items() if not k.endswith("_table") and k not in ("scaling_plot",)}
    study["comparison"] = {label: _trim(json.loads((out / folder / "comparison.json").read_text())["rows"])
                           for label, folder in (("IBI", "compare"), ("neural", "neural_compare"))
                           if (out / folder / "comparison.json").exists()}
    for rec in study.get("transfer", {}).values():  # the summary holds their rows: one table format for all
        rec["comparison"] = {label: _trim(rec["models"][model].pop("comparison"))
                             for label, model in (("IBI", "ibi"), ("neural", "neural"))
                             if "comparison" in rec["models"].get(model, {})}
    return study


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polymer-output", type=Path, required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--aa-steps", type=int, default=200)
    parser.add_argument("--cg-steps", type=int, default=1000)
    args = parser.parse_args(argv)

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system

    out = args.polymer_output.resolve()
    summary = json.loads((out / "summary.json").read_text())
    chains = json.loads((out / "chains.json").read_text())
    aa = open_dataset(out / "aa.h5")
    temperature = float(aa.metadata.get("temperature_K") or summary["system"].split(" at ")[1].split()[0])
    aa_dt = float(aa.metadata.get("timestep_ps", 0.002))
    arms = {"AA": (_stepper(load_system(out / "aa.system.xml"), aa.positions[-1], aa.box[-1], aa_dt, temperature,
                            args.platform, args.aa_steps), args.aa_steps * aa_dt)}
    models = {"IBI": ("cg_system.xml", "cg_run.h5"), "neural": ("neural_system.xml", "neural_run.h5")}
    dts = {"AA": aa_dt}
    for label, (xml, run) in models.items():
        if not (out / xml).exists() or not (out / run).exists():
            continue
        ds = open_dataset(out / run)
        dts[label] = float(ds.metadata["timestep_ps"])
        arms[label] = (_stepper(load_system(out / xml), ds.positions[-1], ds.box[-1], dts[label], temperature,
                                args.platform, args.cg_steps), args.cg_steps * dts[label])
    load_before = load_average()
    # seconds per simulated ps of each arm, timed round-robin (units: ps per block)
    timed = interleaved({k: (fn, ps) for k, (fn, ps) in arms.items()}, args.rounds, spread=True)
    load_after = load_average()
    aa_s_per_ns = timed["AA"]["median"] * 1000
    figures = {"seconds_per_ns": {k: v["median"] * 1000 for k, v in timed.items()},
               "seconds_per_ns_spread": {k: [v["min"] * 1000, v["max"] * 1000] for k, v in timed.items()},
               "timestep_fs": {k: v * 1000 for k, v in dts.items()}, "load_before": load_before,
               "load_after": load_after, "speedup_per_ns": {}, "speedup_relaxation": {}}
    tau_aa = chains.get("AA", {}).get("end_to_end", {})
    for label in arms:
        if label == "AA":
            continue
        per_ns = aa_s_per_ns / (timed[label]["median"] * 1000)
        figures["speedup_per_ns"][label] = per_ns
        tau_cg = chains.get(label, {}).get("end_to_end", {})
        if tau_aa.get("decayed") and tau_cg.get("decayed"):
            figures["speedup_relaxation"][label] = {"value": per_ns * tau_aa["tau_ps"] / tau_cg["tau_ps"],
                                                    "tau_ee_ps": {"AA": tau_aa["tau_ps"], label: tau_cg["tau_ps"]}}
        else:
            figures["speedup_relaxation"][label] = {
                "value": None, "reason": "; ".join(f"{n}: {t.get('message') or 'no end-to-end record'}"
                                                   for n, t in (("AA", tau_aa), (label, tau_cg))
                                                   if not t.get("decayed"))}
    figures["study"] = study_figures(out, summary)
    name = f"bench_polymer_{args.name or out.name.removeprefix('polymer_')}"
    if (out / "chain_scaling.png").exists():  # the run's <Rg^2>/N, <Ree^2>/N against N, beside the figures
        with atomic_path(RESULTS / f"{name}_scaling.png") as tmp:
            tmp.write_bytes((out / "chain_scaling.png").read_bytes())
    write_result(name, figures,
                 {"polymer_output": str(out), "system": summary["system"], "platform": args.platform,
                  "rounds": args.rounds, "aa_steps": args.aa_steps, "cg_steps": args.cg_steps,
                  "integrator": "LangevinMiddle, 1 /ps, at each run's timestep"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
