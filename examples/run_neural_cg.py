"""Run the demo's trained neural CG model from an ordinary OpenMM script.

Everything below is plain OpenMM (``app.Simulation``, ``StateDataReporter``, ``DCDReporter``) except three
lines: ``CGPotential(bundle).createSystem(cg_topology)`` returns an ``openmm.System`` whose neural term is a
``TorchForce`` (in the style of openmm-ml's ``MLPotential``), the CG topology coming from the demo's mapped
dataset; and ``TimeCorrelationReporter`` accumulates the MSD and VACF on the fly and rescales CG time to AA
time with the acceleration factor alpha measured by the demo.

Usage (after ``bash devtools/run-demo.sh``, which writes ``demo-output/``)::

    python examples/run_neural_cg.py --demo-dir demo-output --steps 4000 -o runs/neural_cg

It runs at the largest timestep the demo found stable for this model (``neural_timestep_scan.json``) and
writes ``state.csv``, ``trajectory.dcd``, ``system.xml`` (reload with ``openmm_cgml.forces.xml.load_system``),
``dynamics.json`` and ``dynamics.png`` to the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import openmm
from openmm import app, unit

from openmm_cgml import CGPotential, CGTopology
from openmm_cgml.dataset import open_dataset
from openmm_cgml.dynamics.reporter import TimeCorrelationReporter
from openmm_cgml.forces.xml import save_system
from openmm_cgml.thermostat import TRANSPORT_DEFAULT, make_integrator


def demo_alpha(demo: Path) -> tuple[float, float]:
    """alpha = D_CG / D_AA of the neural model, and its error, from the demo's comparison (1, 0 if absent, or if
    the comparison refused it: the row's note says why, e.g. runs under different thermostats)."""
    table = demo / "neural_compare" / "comparison.json"
    if table.exists():
        for row in json.loads(table.read_text())["rows"]:
            if row["quantity"] == "alpha":
                if row.get("model") is None:
                    print(f"alpha not available: {row.get('note', '')}; using 1")
                    return 1.0, 0.0
                return float(row["model"]), float(row["model_err"] or 0.0)
    return 1.0, 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("demo-output"), help="output folder of cgml demo")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (CPU, CUDA, ...)")
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/neural_cg"))
    args = parser.parse_args(argv)
    demo, out = args.demo_dir, args.output
    for needed in ("cg_reference.h5", "neural/model.cgml"):
        if not (demo / needed).exists():
            parser.error(f"{demo / needed} is missing: run `bash devtools/run-demo.sh` (or cgml demo -o {demo}) first")
    out.mkdir(parents=True, exist_ok=True)

    # --- openmm_cgml: the CG System (TorchForce) of the trained model bundle, for the demo's CG topology
    reference = open_dataset(demo / "cg_reference.h5")  # the mapped AA run: its CG topology, a frame and its box
    cg_topology = CGTopology.from_dataset(reference)    # bead types, masses, bonds, the last frame's box
    box, positions = reference.box[-1], reference.positions[-1]
    system = CGPotential(demo / "neural" / "model.cgml").createSystem(cg_topology)
    topology = cg_topology.to_openmm()
    save_system(system, out / "system.xml")
    scan = demo / "neural_timestep_scan.json"
    timestep_fs = json.loads(scan.read_text())["largest_stable_fs"] if scan.exists() else 10.0
    alpha, alpha_err = demo_alpha(demo)

    # --- plain OpenMM from here on
    # Bussi's stochastic velocity rescaling (tau 1 ps), the thermostat the demo measured alpha under: a global
    # thermostat leaves diffusion as in NVE, where a Langevin thermostat at 1 /ps slows the CG liquid
    integrator = make_integrator(TRANSPORT_DEFAULT, 298.15, timestep_fs * 1e-3, seed=1, system=system)
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName(args.platform))
    simulation.context.setPeriodicBoxVectors(*box)
    simulation.context.setPositions(positions)
    simulation.context.setVelocitiesToTemperature(298.15 * unit.kelvin)
    interval = max(1, args.steps // 40)
    correlations = TimeCorrelationReporter(out / "dynamics.json", 10, alpha=alpha, alphaError=alpha_err,
                                           plotFile=out / "dynamics.png")
    simulation.reporters += [
        app.StateDataReporter(str(out / "state.csv"), interval, step=True, time=True, potentialEnergy=True,
                              temperature=True, speed=True),
        app.StateDataReporter(sys.stdout, interval * 10, step=True, temperature=True, speed=True),
        app.DCDReporter(str(out / "trajectory.dcd"), interval),
        correlations,
    ]
    simulation.step(args.steps)
    correlations.close()

    result = json.loads((out / "dynamics.json").read_text())
    msd = result["diffusion"].get("msd")
    print(f"{args.steps} steps at {timestep_fs:g} fs; alpha = {alpha:.2f} +- {alpha_err:.2f}")
    if msd:
        print(f"D on the CG clock {msd['D_cg_time']:.3g} nm^2/ps; AA-equivalent {msd['D_aa_time']:.3g} "
              f"+- {msd['D_aa_time_err']:.2g} nm^2/ps (a short run: see the fit range in dynamics.json)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
