"""Run an ionic-liquid temperature study from Python and print its goals and activation energies.

    python examples/ionic_liquid/run_study.py bmim_bf4.yaml          # or bmim_pf6.yaml, or a path to your own
    python examples/ionic_liquid/run_study.py bmim_bf4.yaml --output runs/my_bf4

The same study as ``cgml temperature examples/ionic_liquid/bmim_bf4.yaml``: AA references with PME at every
temperature, the CG auto-encoder mapping (4 beads per ion pair), IBI per temperature, temperature-conditioned
neural models left one temperature out, and D(T) per ion with Arrhenius fits and alpha(T).  It resumes where it
stopped.  Afterwards alpha/<model>_<ion>.json holds alpha(T) for openmm_cgml.dynamics.TimeCorrelationReporter.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from openmm_cgml.config import load_config
from openmm_cgml.sweep import TemperatureStudyConfig, run_temperature_study

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a study YAML (a name in this folder, or a path)")
    parser.add_argument("--output", help="the output folder (default: the configuration's)")
    args = parser.parse_args()
    path = Path(args.config)
    if not path.exists() and (HERE / path).exists():
        path = HERE / path
    config = load_config(path, TemperatureStudyConfig)
    if args.output:
        config = config.model_copy(update={"output": Path(args.output)})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run_temperature_study(config, progress=True)
    print(f"\n{summary['system']}: temperatures {summary['temperatures_K']} K")
    for goal in summary["goals"]:
        status = {True: "met", False: "NOT met", None: "not measured"}[goal["met"]]
        print(f"  [{status}] {goal['goal']}")
    for ion, fits in summary["arrhenius"]["activation_energy"].items():
        for model, fit in fits.items():
            print(f"  Ea({ion}, {model}) = {fit['Ea']:.2f} +/- {fit['Ea_err']:.2f} kJ/mol")
    print(f"Arrhenius plot: {summary['arrhenius_plot']}; alpha(T) models: {sorted(summary['alpha_models'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
