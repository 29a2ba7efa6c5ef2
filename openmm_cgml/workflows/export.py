"""Export a tabulated CG model as complete LAMMPS and GROMACS simulations and VOTCA potentials: ``cgml export``.

Example configuration::

    ibi: ibi/                       # an IBI output directory -- or force_field: ff.json (CGPotential.save)
    dataset: cg_mapped.h5           # CG dataset: topology, masses, box and the start frame
    frame: -1
    output: exported/               # lammps/, gromacs/, votca/ inside
    engines: [lammps, gromacs, votca]
    temperature: "298.15 K"
    timestep: "5 fs"
    duration: "1 ns"
    check_frames: 5                 # frames of the dataset written for the engines' reruns (check.md says how)

What each engine gets, and how it was verified, is in :mod:`openmm_cgml.export` and the guide page "Running the
model elsewhere".  A neural model has no LAMMPS or GROMACS equivalent: the error says so before anything is
written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Duration, StrictModel, Temperature, Time, Timestep

__all__ = ["ExportConfig", "ExportResult", "run_export"]


class ExportConfig(StrictModel):
    """Configuration of ``cgml export`` (:func:`run_export`)."""

    ibi: Path | None = Field(None, description="an IBI output directory (from `cgml ibi`); or force_field")
    force_field: Path | None = Field(None, description="a force-field JSON file (CGPotential.save); or ibi")
    dataset: Path = Field(description="coarse-grained dataset: its CG topology, masses, box and start positions")
    frame: int = Field(-1, description="the dataset frame that starts the runs (negative: from the end)")
    output: Path = Field(description="output directory (lammps/, gromacs/, votca/ inside)")
    engines: list[Literal["lammps", "gromacs", "votca"]] = Field(
        default_factory=lambda: ["lammps", "gromacs", "votca"], description="what to write")
    temperature: Temperature = Field("298.15 K", description="thermostat temperature (Bussi / v-rescale)")
    timestep: Timestep = Field("5 fs", description="integration timestep (use the model's stable one in OpenMM)")
    duration: Duration = Field("1 ns", description="length of the exported runs")
    thermostat_tau: Time = Field("1 ps", description="time constant of the Bussi thermostat (LAMMPS temp/csvr, "
                                                     "GROMACS v-rescale)")
    seed: int = Field(1, ge=1, description="seed of the initial velocities and the thermostat")
    table_points: int = Field(20000, ge=100, description="points of the LAMMPS pair tables (first grid point to "
                                                         "the cutoff)")
    check_frames: int = Field(5, ge=0, description="frames of the dataset written for each engine's rerun, to "
                                                   "check its energies and forces against OpenMM's")

    @model_validator(mode="after")
    def _one_model(self):
        if (self.ibi is None) == (self.force_field is None):
            raise ValueError("give exactly one of 'ibi' (an IBI output directory) and 'force_field' (a force-field "
                             "JSON file); neural bundles have no LAMMPS or GROMACS equivalent")
        return self


@dataclass
class ExportResult:
    """The directories written, by engine, and the files in each."""

    directories: dict[str, Path] = field(default_factory=dict)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _votca(terms, types, output: Path) -> tuple[str, ...]:
    """VOTCA potential tables (``A-B.pot``: r, U, flag) of the pair term for every pair of bead ``types``, as
    OpenMM evaluates it."""
    from .._io import atomic_write_text
    from ..export import _pair_values, _split_terms

    pair, _ = _split_terms(terms, "VOTCA")
    output.mkdir(parents=True, exist_ok=True)
    names = []
    r = np.round(np.arange(0, int(round(pair.cutoff / 0.002)) + 1) * 0.002, 10)
    for ia, a in enumerate(types):
        for b in types[ia:]:
            u, _ = _pair_values(pair, a, b, r)
            lines = [f"# {a}-{b} pair potential: r (nm), U (kJ/mol), flag (written by openmm_cgml)"]
            lines += [f"{x:.6f} {e:.10e} i" for x, e in zip(r, u)]
            atomic_write_text(output / f"{a}-{b}.pot", "\n".join(lines) + "\n")
            names.append(f"{a}-{b}.pot")
    return tuple(names)


def run_export(config: ExportConfig | dict) -> ExportResult:
    """Write the engines' simulations of ``config``'s model on its dataset (see the module docs)."""
    from ..export import export_gromacs, export_lammps, write_frames, write_gro
    from ..potential import CGPotential
    from .build import cg_frame

    cfg = config if isinstance(config, ExportConfig) else ExportConfig.from_data(dict(config))
    ds, topology, positions = cg_frame(cfg.dataset, cfg.frame, "cgml export")
    potential = CGPotential(cfg.ibi if cfg.ibi is not None else cfg.force_field)
    steps = max(1, int(round(cfg.duration / cfg.timestep)))
    n_check = min(cfg.check_frames, ds.n_frames)
    check = list(range(ds.n_frames - n_check, ds.n_frames))
    common = {"temperature": cfg.temperature, "timestep_fs": cfg.timestep * 1000, "steps": steps, "seed": cfg.seed,
              "thermostat_tau_ps": cfg.thermostat_tau}
    result = ExportResult()
    out = Path(cfg.output)
    if "lammps" in cfg.engines:
        lmp = export_lammps(potential, topology, positions, out / "lammps", table_points=cfg.table_points, **common)
        files = list(lmp.files)
        if check:
            write_frames(lmp.directory / "frames.lammpstrj", ds.positions[check], ds.box[check],
                         [lmp.atom_types[t] for t in topology.bead_types], topology.molecule_index)
            files.append("frames.lammpstrj")
        result.directories["lammps"], result.files["lammps"] = lmp.directory, tuple(files)
    if "gromacs" in cfg.engines:
        gmx = export_gromacs(potential, topology, positions, out / "gromacs", **common)
        files = list(gmx.files)
        if check:
            write_gro(gmx.directory / "frames.gro", ds.positions[check], ds.box[check], topology)
            files.append("frames.gro")
        result.directories["gromacs"], result.files["gromacs"] = gmx.directory, tuple(files)
    if "votca" in cfg.engines:
        result.directories["votca"] = out / "votca"
        result.files["votca"] = _votca(potential.terms, list(topology.type_names), out / "votca")
    return result
