"""``cgml ibi CONFIG.yaml``: iterative Boltzmann inversion of the pair potentials of a mapped dataset.

Example configuration (quantities need units)::

    cg_dataset: cg.h5                 # a mapped AA dataset (cgml map): system, start frame, targets
    output_dir: ibi
    temperature: 300 K
    cutoff: 1.2 nm
    bin_width: 0.01 nm
    timestep: 10 fs
    friction: 1 /ps
    max_iterations: 30
    damping: 0.8
    method: ibi                       # ibi | imc (inverse Monte Carlo: sample at least twice as many frames
                                      # as bins, e.g. sample_interval 10; damping 0.5)
    imc_regularization: 0.1           # imc: lambda of (A + lambda diag A) dU = kT (<S> - S*)
    tolerance: 0.02                   # RMS of g - g_target (max over pairs)
    equilibration_steps: 1000
    production_steps: 10000
    sample_interval: 100
    bonded: harmonic                  # harmonic | table | none  (Boltzmann inversion of the dataset; a table
                                      # keeps a multi-modal bond's shape but is stiffer: measure the CG
                                      # timestep with openmm_cgml.simulation.largest_stable_timestep)
    kde_bandwidth_scale: 1.0          # tables: multiplies Silverman's kernel bandwidth (< 1 keeps narrow
                                      # modes that the rule smooths over; stiffer tables)
    refine_bonded: false              # true: also correct the bonded terms each iteration towards the
                                      # dataset's bonded distributions (harmonic: moments; table: BI)
    targets: {}                       # optional {"A-B": path/to/A-B.dist.tgt} (VOTCA) overriding the dataset
    target_pressure: 1 bar            # optional pressure correction
    pressure_tolerance: 100 bar       # with it: converged, and best, only within this of the target pressure
    pressure_scale: 3333 bar          # A = -sign(dP) 0.1 kT min(1, |dP| / pressure_scale)
    resume: true
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from ..config import Frequency, Length, Pressure, StrictModel, Temperature, Time, load_config
from ..exceptions import ConfigurationError

logger = logging.getLogger(__name__)


class IBIConfig(StrictModel):
    cg_dataset: str
    output_dir: str
    temperature: Temperature
    cutoff: Length
    bin_width: Length = "0.01 nm"
    timestep: Time = "5 fs"
    friction: Frequency = "1 /ps"
    max_iterations: int = 30
    damping: float = 0.8
    method: Literal["ibi", "imc"] = "ibi"
    imc_regularization: float = Field(0.1, ge=0)
    smoothing: int = 3
    g_min: float = 1e-3
    tolerance: float = 0.02
    tail_width: Length = "0.1 nm"
    equilibration_steps: int = 1000
    production_steps: int = 10000
    sample_interval: int = 100
    target_stride: int = 1
    target_start: int = 0
    bonded: Literal["harmonic", "table", "none"] = "harmonic"
    dihedrals: bool = False
    kde_bandwidth_scale: float = Field(1.0, gt=0)
    refine_bonded: bool = False
    targets: dict[str, str] = {}
    target_pressure: Pressure | None = None
    pressure_tolerance: Pressure = "100 bar"
    pressure_scale: Pressure = "3333 bar"
    pressure_start: int = 0
    pressure_ramp: int = 5
    seed: int = 1
    platform: str = "CPU"
    threads: int | None = None
    resume: bool = True


def run_ibi(c: IBIConfig, *, progress: bool = True):
    """Run the IBI described by ``c``; returns ``(result, fixed_terms, mapping, info, positions)``.

    ``fixed_terms`` are the Boltzmann-inverted bonded terms held fixed during IBI (with ``refine_bonded``: as
    refined, those of the best iteration); with ``result.term`` they make the whole CG force field (see
    :class:`~openmm_cgml.builder.CGSystemBuilder`).
    """
    from pathlib import Path

    import yaml

    from .._io import atomic_write_text
    from ..dataset import open_dataset
    from ..forces.tabulated import pair_key
    from ..ibi import (
        IBISettings,
        IterativeBoltzmannInversion,
        bonded_samples,
        cg_system_from_dataset,
        invert_bonded_terms,
        read_votca_distribution,
        targets_from_dataset,
    )

    ds = open_dataset(c.cg_dataset)
    mapping, info, positions = cg_system_from_dataset(ds)
    targets = targets_from_dataset(ds, c.cutoff, c.bin_width, stride=c.target_stride, start=c.target_start)
    for key, path in c.targets.items():
        a, b = key.split("-")
        targets[pair_key(a.strip(), b.strip())] = read_votca_distribution(path)
    fixed = []
    if c.refine_bonded and (c.bonded == "none" or not len(info.bonds)):
        raise ConfigurationError("refine_bonded: true needs bonded terms to refine (bonded: harmonic or table, and a "
                                 f"mapping with bonds; got bonded: {c.bonded}, {len(info.bonds)} bonds)")
    if c.bonded != "none" and len(info.bonds):
        fixed = invert_bonded_terms(ds.positions, info, c.temperature, box=ds.box, harmonic=c.bonded == "harmonic",
                                    dihedrals=c.dihedrals, bandwidth_scale=c.kde_bandwidth_scale)
    settings = IBISettings(
        temperature=c.temperature, cutoff=c.cutoff, bin_width=c.bin_width, max_iterations=c.max_iterations,
        damping=c.damping, smoothing=c.smoothing, g_min=c.g_min, tolerance=c.tolerance, tail_width=c.tail_width,
        timestep=c.timestep, friction=c.friction, equilibration_steps=c.equilibration_steps,
        production_steps=c.production_steps, sample_interval=c.sample_interval, target_pressure=c.target_pressure,
        pressure_tolerance=c.pressure_tolerance,
        pressure_factor=1.0 / c.pressure_scale, pressure_start=c.pressure_start, pressure_ramp=c.pressure_ramp,
        seed=c.seed, platform=c.platform, threads=c.threads, refine_bonded=c.refine_bonded, method=c.method,
        imc_regularization=c.imc_regularization,
    )
    bonded_targets = (bonded_samples(ds.positions, info, box=ds.box, dihedrals=c.dihedrals) if c.refine_bonded
                      else None)
    ibi = IterativeBoltzmannInversion(info, positions, targets, settings, fixed_terms=fixed,
                                      bonded_targets=bonded_targets)
    result = ibi.run(c.output_dir, resume=c.resume, progress=progress)
    if c.refine_bonded:
        fixed = result.bonded_terms
    atomic_write_text(Path(c.output_dir) / "config.yaml", yaml.safe_dump(c.to_data(), sort_keys=False))
    return result, fixed, mapping, info, positions


def run(args) -> int:
    c = load_config(args.config, IBIConfig)
    result = run_ibi(c)[0]
    print(f"IBI {'converged' if result.converged else 'stopped'} after {result.iterations} iterations; best "
          f"iteration {result.best_iteration} with RDF error {result.history[result.best_iteration]['error']:.4f}; "
          f"tables in {c.output_dir}")
    return 0


def add_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser("ibi", help="iterative Boltzmann inversion of CG pair potentials",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML configuration (see the description)")
    p.set_defaults(func=run)
