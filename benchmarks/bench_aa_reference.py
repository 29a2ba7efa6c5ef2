"""AA baseline: ns/day and equilibrated density of liquid 2,3,4-trimethylpentane.

64 molecules (1,664 atoms), OpenFF Sage 2.2.0, AM1-BCC, PME 0.9 nm, H-bond constraints,
2 fs, 298.15 K, 1 bar (Monte Carlo barostat).  Every CG speed-up is measured against
this baseline.  Usage::

    python benchmarks/bench_aa_reference.py [--npt-ps 100] [--repeats 3] [--steps 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, write_result  # noqa: E402

EXPERIMENTAL_DENSITY = 0.715  # g/cm^3 at 298 K


def aa_simulation(system_xml: Path, positions, box, platform: str = "CPU"):
    """An OpenMM Simulation of the AA box, ready to time."""
    import openmm
    from openmm import app, unit

    system = openmm.XmlSerializer.deserialize(Path(system_xml).read_text())
    integrator = openmm.LangevinMiddleIntegrator(298.15 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
    pdb = Path(system_xml).with_suffix("").with_suffix(".pdb")  # written beside the System by run_reference
    sim = app.Simulation(app.PDBFile(str(pdb)).topology, system, integrator,
                         openmm.Platform.getPlatformByName(platform))
    sim.context.setPeriodicBoxVectors(*box)
    sim.context.setPositions(positions)
    sim.context.setVelocitiesToTemperature(298.15 * unit.kelvin, 1)
    return sim


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--molecules", type=int, default=64)
    parser.add_argument("--npt-ps", type=float, default=100.0, help="NPT equilibration length")
    parser.add_argument("--steps", type=int, default=1000, help="steps per timing repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.reference import run_reference

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-aa-"))
    config = dict(
        components=[dict(smiles="CC(C)C(C)C(C)C", count=args.molecules, name="TMP")],
        density="0.70 g/cm**3", temperature="298.15 K", pressure="1 bar", timestep="2 fs",
        nvt="10 ps", npt=f"{args.npt_ps} ps", production="2 ps", report_interval="1 ps",
        checkpoint_interval="2 ps", platform=args.platform,
    )
    result = run_reference(config, workdir / "tmp_aa.h5", progress=True)
    ds = open_dataset(result.dataset)
    sim = aa_simulation(result.system_xml, ds.positions[-1].astype(float), ds.box[-1], args.platform)
    sim.step(100)  # warm-up
    t, samples = median_time(lambda: sim.step(args.steps), args.repeats)
    ns_day = args.steps * 0.002e-3 / t * 86400
    figures = {
        "aa_ns_per_day_median": ns_day,
        "aa_steps_per_s_samples": [args.steps / s for s in samples],
        "n_atoms": ds.n_particles,
        "density_g_cm3_mean_second_half_npt": result.npt_density,
        "density_g_cm3_std": result.npt_density_std,
        "experimental_density_g_cm3": EXPERIMENTAL_DENSITY,
        "density_relative_error": (result.npt_density - EXPERIMENTAL_DENSITY) / EXPERIMENTAL_DENSITY
        if result.npt_density else None,
    }
    write_result("aa_reference", figures, {**config, "timing_steps": args.steps, "repeats": args.repeats,
                                           "density_series": np.asarray(ds.metadata["npt_density_series_g_cm3"]).tolist()})


if __name__ == "__main__":
    main()
