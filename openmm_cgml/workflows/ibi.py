"""Iterative Boltzmann inversion of the pair potentials of a mapped dataset: the ``cgml ibi`` workflow.

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
    noise_factor: 1.5                 # at the noise floor when error <= 1.5 x floor; null: off
    max_sampling_factor: 8            # at the floor, production_steps doubles up to 8 x; then it stops there
    patience: 4                       # stop after 4 iterations without a better one; null: never
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
    bonded_update: boltzmann          # table: boltzmann (BI of the distributions) | moments (a smooth correction
                                      # matching bonded_moments moments: gentle, for a refined network)
    bonded_moments: 4                 # or per kind, e.g. {bond: 2, angle: 4} (2: a harmonic correction)
    targets: {}                       # optional {"A-B": path/to/A-B.dist.tgt} (VOTCA) overriding the dataset
    bonded_targets: {}                # optional {"A-B": bond.dist.tgt, "A-B-A": angle.dist.tgt} (VOTCA bonded
                                      # distributions, x in nm or rad) overriding the dataset's bonded samples:
                                      # the initial bonded terms and the refine_bonded targets
    pair_cutoffs: {}                  # optional {"A-B": 1.35 nm}: shorter cutoffs of some pairs (VOTCA's max)
    exclusions: molecule              # molecule: tables act between molecules | bonded: on all but 1-2 and 1-3
                                      # pairs along the bonds (polymer chains: excluded volume along the chain)
    core_curvature: 1000              # kJ/mol/nm^2, the smallest curvature of the wall extrapolated into the
                                      # core (1e5 keeps beads out of a refined network's untrained close contacts)
    target_pressure: 1 bar            # optional pressure correction
    pressure_tolerance: 100 bar       # with it: converged, and best, only within this of the target pressure
    pressure_scale: 3333 bar          # A = -sign(dP) 0.1 kT min(1, |dP| / pressure_scale)
    base_model: null                  # a model bundle (cgml train) to refine: its terms stay fixed, the pair
                                      # tables become its structure-matching correction (with initial: zero,
                                      # bonded: none; or bonded: table + refine_bonded: true for bonded
                                      # correction tables too); CGPotential(output_dir) builds bundle + corrections
    resume: true                      # the default: continue from output_dir's checkpoint (same settings)
    overwrite: false                  # true (or --overwrite): start again, replacing the checkpoint

Every key but the data and workflow ones (``cg_dataset``, ``output_dir``, ``target_stride``,
``target_start``, ``bonded``, ``dihedrals``, ``kde_bandwidth_scale``, ``targets``, ``bonded_targets``, ``resume``,
``overwrite``)
is an :class:`~openmm_cgml.ibi.IBISettings` field: the same schema in YAML and Python.

Rerunning after an interruption resumes exactly (the iterations after the last checkpoint come out as in an
uninterrupted run).  A checkpoint made with other settings or data is refused with a message naming what
differs; ``max_iterations``, ``tolerance``, ``pressure_tolerance``, ``patience``, ``platform`` and ``threads``
may change.  The target's sampling noise (blocks of the dataset's frames) is part of the noise floor.
``resume: false`` starts fresh but refuses to replace an existing checkpoint unless ``overwrite: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..exceptions import ConfigurationError
from ..ibi import IBIResult, IBISettings
from ..topology import CGTopology

__all__ = ["BASE_MODEL", "IBIConfig", "IBIRun", "run_ibi"]

#: The copy of ``base_model`` in a refinement's output directory (CGPotential of the directory includes it).
BASE_MODEL = "base_model.cgml"


class IBIConfig(IBISettings):
    """Configuration of ``cgml ibi`` (:func:`run_ibi`): the IBI settings plus where the data come from."""

    cg_dataset: str
    output_dir: str
    target_stride: int = Field(1, ge=1)
    target_start: int = Field(0, ge=0)
    bonded: Literal["harmonic", "table", "none"] = "harmonic"
    dihedrals: bool = False
    kde_bandwidth_scale: float = Field(1.0, gt=0)
    targets: dict[str, str] = {}
    bonded_targets: dict[str, str] = Field(default_factory=dict, description="VOTCA bonded distributions by bead-type "
                                           "key ('A-B': bond length in nm, 'A-B-C': angle in rad, 'A-B-C-D': "
                                           "dihedral in rad) instead of the dataset's bonded samples")
    base_model: str | None = Field(None, description="a model bundle whose force field the pair tables correct "
                                   "(structure-matching refinement of a neural model; with bonded: table and "
                                   "refine_bonded: true, bonded correction tables too)")
    resume: bool = True
    overwrite: bool = False

    def settings(self) -> IBISettings:
        """The :class:`~openmm_cgml.ibi.IBISettings` part of this configuration."""
        data = self.to_data()
        return IBISettings.from_data({k: data[k] for k in IBISettings.model_fields})


@dataclass(frozen=True)
class IBIRun:
    """What :func:`run_ibi` made: the IBI result (whose ``terms`` are the whole force field: pair tables and bonded
    terms, as written to the output directory), the CG topology (with the start frame's box) and the start
    positions (nm)."""

    result: IBIResult
    topology: CGTopology
    positions: np.ndarray

    @property
    def terms(self) -> list:
        return self.result.terms


def run_ibi(config: IBIConfig, *, progress: bool = False) -> IBIRun:
    """Run the IBI of ``config``: targets and bonded terms from the mapped dataset, the loop in OpenMM, outputs in
    ``output_dir`` (tables, ``bonded_terms.json``, logs, ``config.yaml``).  ``CGPotential(output_dir)`` builds the
    resulting force field."""
    import yaml

    from .._io import atomic_write_text
    from ..analysis.boltzmann import bonded_samples
    from ..dataset import open_dataset
    from ..ibi import IterativeBoltzmannInversion, read_votca_distribution, targets_from_dataset, terms_from_samples
    from ..topology import key_from_str

    c = config if isinstance(config, IBIConfig) else IBIConfig.from_data(dict(config))
    ds = open_dataset(c.cg_dataset)
    topology = CGTopology.from_dataset(ds)  # the box of the last frame, which is also the start frame
    positions = np.asarray(ds.positions[-1], dtype=float)
    targets, noise = targets_from_dataset(ds, c.cutoff, c.bin_width, stride=c.target_stride, start=c.target_start,
                                          return_noise=True, exclusions=c.exclusions)
    noise = dict(noise or {})
    for key, path in c.targets.items():
        targets[key_from_str(key, 2)] = read_votca_distribution(path)
        noise.pop(key_from_str(key, 2), None)  # a VOTCA target's noise is unknown
    fixed = []
    if c.base_model is not None:
        from ..potential import CGPotential

        pairs_only = c.bonded == "none" and not c.refine_bonded
        with_bonded = c.bonded == "table" and c.refine_bonded
        if c.initial != "zero" or not (pairs_only or with_bonded):
            raise ConfigurationError("base_model: the model's own terms (its priors included) are the force field the "
                                     "tables correct, so set initial: zero and either bonded: none (pair corrections "
                                     "only) or bonded: table with refine_bonded: true (bonded correction tables too, "
                                     f"from zero); got bonded: {c.bonded}, refine_bonded: {c.refine_bonded}, "
                                     f"initial: {c.initial}")
        fixed = list(CGPotential(c.base_model).terms)
    if c.refine_bonded and (c.bonded == "none" or not len(topology.bonds)):
        raise ConfigurationError("refine_bonded: true needs bonded terms to refine (bonded: harmonic or table, and a "
                                 f"mapping with bonds; got bonded: {c.bonded}, {len(topology.bonds)} bonds)")
    samples = None
    if (c.bonded != "none" or c.refine_bonded) and len(topology.bonds):
        samples = bonded_samples(ds.positions, topology, box=ds.box, dihedrals=c.dihedrals)
        for kind, key, values in _file_bonded_samples(c.bonded_targets, topology):
            samples.setdefault(kind, {})[key] = values
    elif c.bonded_targets:
        raise ConfigurationError("bonded_targets need bonded terms (bonded: harmonic or table, and a topology with "
                                 f"bonds; got bonded: {c.bonded}, {len(topology.bonds)} bonds)")
    if c.bonded != "none" and len(topology.bonds):
        inverted = terms_from_samples(samples, c.temperature, harmonic=c.bonded == "harmonic",
                                      bandwidth_scale=c.kde_bandwidth_scale)
        # on a base model the bonded tables are its corrections: zero on the inverted tables' grids, grown by
        # bonded IBI (their walls keep a coordinate inside the range the reference samples, padded)
        fixed = inverted if c.base_model is None else fixed + [_zero_correction(t) for t in inverted]
    bonded_targets = samples if c.refine_bonded else None
    ibi = IterativeBoltzmannInversion(topology, positions, targets, c.settings(), fixed_terms=fixed,
                                      bonded_targets=bonded_targets, target_noise=noise)
    result = ibi.run(c.output_dir, resume=c.resume, overwrite=c.overwrite, progress=progress)
    if c.base_model is not None:  # the refined force field is the model plus the tables: keep a copy beside them
        import shutil

        from .._io import atomic_path

        with atomic_path(Path(c.output_dir) / BASE_MODEL) as tmp:
            shutil.copyfile(c.base_model, tmp)
    record = {k: v for k, v in c.to_data().items() if k != "overwrite"}  # rerunning the record resumes
    atomic_write_text(Path(c.output_dir) / "config.yaml", yaml.safe_dump(record, sort_keys=False))
    return IBIRun(result, topology, positions)


def _zero_correction(term):
    """A tabulated bonded term with the grids and wall of ``term`` and zero tables, named as a correction."""
    return term.with_tables({k: (x, np.zeros_like(u)) for k, (x, u) in term.tables.items()},
                            name=f"{term.name}_correction")


def _file_bonded_samples(paths: dict[str, str], topology: CGTopology):
    """(kind, key, samples) of each VOTCA bonded distribution in ``paths`` (``{"A-B": file}``), refusing keys the
    topology has no bonded tuple of."""
    from ..forcespec import ARITY
    from ..ibi import read_votca_distribution, samples_from_distribution
    from ..topology import key_from_str, type_key

    kinds = {n: kind for kind, n in ARITY.items()}
    present = {kind: {type_key(topology.bead_types[i] for i in tup) for tup in topology.bonded_tuples(kind)}
               for kind in kinds.values()}
    for name, path in paths.items():
        key = key_from_str(name)
        kind = kinds.get(len(key))
        if kind is None or key not in present[kind]:
            raise ConfigurationError(f"bonded_targets: {name!r} names no bond, angle or dihedral of the topology; its "
                                     f"keys are {sorted('-'.join(k) for v in present.values() for k in v)}")
        target = read_votca_distribution(path)
        yield kind, key, samples_from_distribution(target.r, target.g)
