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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..exceptions import ConfigurationError
from ..ibi import IBIResult, IBISettings
from ..topology import CGTopology

__all__ = ["BASE_MODEL", "IBIConfig", "IBIRun", "interpolate_refinements", "run_ibi"]

logger = logging.getLogger(__name__)

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
        bundle, options = _base_model(c.base_model, c.temperature)
        fixed = list(CGPotential(bundle, **options).terms)
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


def interpolate_refinements(refinements, temperature, output_dir) -> Path:
    """The corrections of one temperature-conditioned model refined at several temperatures, at another one.

    ``refinements`` maps temperatures (K) to refinement directories (``cgml ibi`` with the same ``base_model`` at
    each temperature).  At ``temperature`` (K) between two of them, every correction table (the pair tables and any
    bonded correction tables) is interpolated linearly in T between the two nearest; outside their range the nearest
    refinement's tables are used as they are (clamped, not extrapolated; the base model carries the rest of the
    temperature dependence).  ``output_dir`` gets a refinement directory like theirs (``pair_tables.json``,
    ``bonded_terms.json``, the base model, and a ``config.yaml`` with the temperature and the weights), so that
    ``CGPotential(output_dir)`` builds the base model at ``temperature`` plus the interpolated corrections.

    Raises ConfigurationError for refinements of different base models or with different table grids, and for
    bonded terms that are not tables and differ between them."""
    import hashlib
    import json
    import shutil

    import yaml

    from .._io import atomic_path, atomic_write_text, package_versions
    from ..forces.tabulated import read_openmm_tables, write_openmm_tables
    from ..potential import FORCE_FIELD_FORMAT, read_terms
    from ..units import to_md

    t = to_md(temperature, "temperature", name="temperature")
    dirs = {to_md(k, "temperature", name="refinement temperature"): Path(v) for k, v in dict(refinements).items()}
    if not dirs:
        raise ConfigurationError("interpolate_refinements needs at least one refinement directory")
    digests = {}
    for tk, d in dirs.items():
        if not (d / BASE_MODEL).exists() or not (d / "pair_tables.json").exists():
            raise ConfigurationError(f"{d} (refinement at {tk:g} K) is not a refinement directory: it needs "
                                     f"{BASE_MODEL} and pair_tables.json (cgml ibi with base_model)")
        digests[tk] = hashlib.sha256((d / BASE_MODEL).read_bytes()).hexdigest()
    if len(set(digests.values())) > 1:
        raise ConfigurationError("the refinements correct different base models "
                                 f"({', '.join(f'{tk:g} K: {h[:12]}' for tk, h in sorted(digests.items()))}); "
                                 "interpolating their corrections needs one model refined at every temperature")
    temps = sorted(dirs)
    if t <= temps[0] or t >= temps[-1] or len(temps) == 1:
        nearest = temps[0] if t <= temps[0] else temps[-1]
        lo = hi = nearest
        weight = 0.0
    else:
        hi = next(tk for tk in temps if tk >= t)
        lo = temps[temps.index(hi) - 1]
        weight = (t - lo) / (hi - lo)
    clamped = not temps[0] <= t <= temps[-1]
    if clamped:
        logger.warning("%g K is outside the refined temperatures (%g-%g K): the corrections of %g K are used as they "
                       "are", t, temps[0], temps[-1], lo)

    def blend(x0, u0, x1, u1, what: str) -> tuple[np.ndarray, np.ndarray]:
        x0, u0, x1, u1 = (np.asarray(a, dtype=float) for a in (x0, u0, x1, u1))
        if x0.shape != x1.shape or not np.allclose(x0, x1, rtol=0, atol=1e-9):
            raise ConfigurationError(f"{what}: the refinements at {lo:g} and {hi:g} K tabulate it on different grids "
                                     "(refine with the same cutoff, bin width and bonded settings at every temperature)")
        return x0, (1.0 - weight) * u0 + weight * u1

    pair_lo, pair_hi = (read_openmm_tables(dirs[tk] / "pair_tables.json") for tk in (lo, hi))
    if set(pair_lo.tables) != set(pair_hi.tables) or pair_lo.cutoff != pair_hi.cutoff:
        raise ConfigurationError(f"the pair tables of the refinements at {lo:g} and {hi:g} K differ in their pairs or "
                                 "cutoff")
    pair = pair_lo.with_tables({k: blend(*pair_lo.tables[k], *pair_hi.tables[k], f"pair table {k[0]}-{k[1]}")
                                for k in pair_lo.tables})
    bonded = []
    paths = [dirs[tk] / "bonded_terms.json" for tk in (lo, hi)]
    if paths[0].exists() != paths[1].exists():
        raise ConfigurationError(f"only one of the refinements at {lo:g} and {hi:g} K has bonded correction terms")
    if paths[0].exists():
        terms_hi = {term.name: term for term in read_terms(paths[1])}
        for term in read_terms(paths[0]):
            other = terms_hi.get(term.name)
            if other is None or other.kind != term.kind:
                raise ConfigurationError(f"bonded term {term.name!r} is not in both refinements ({lo:g}, {hi:g} K)")
            if hasattr(term, "tables") and hasattr(term, "with_tables"):
                if set(term.tables) != set(other.tables):
                    raise ConfigurationError(f"bonded term {term.name!r}: the refinements tabulate different keys")
                term = term.with_tables({k: blend(*term.tables[k], *other.tables[k], f"{term.name} {k}")
                                         for k in term.tables})
            elif term.to_data() != other.to_data():
                raise ConfigurationError(f"bonded term {term.name!r} ({term.kind}) differs between the refinements "
                                         f"at {lo:g} and {hi:g} K and is not a table to interpolate")
            bonded.append(term)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = {"temperature": f"{t:g} K", "interpolated_from": {f"{tk:g} K": str(dirs[tk]) for tk in sorted({lo, hi})},
            "weights": {f"{lo:g} K": 1.0 - weight, **({f"{hi:g} K": weight} if hi != lo else {})},
            "clamped": clamped}
    write_openmm_tables(out / "pair_tables.json", pair, settings=made)
    if bonded:
        atomic_write_text(out / "bonded_terms.json", json.dumps(
            {"format": FORCE_FIELD_FORMAT, "format_version": 1, "refined": True, "interpolated": made,
             "terms": [term.to_data() for term in bonded], "package_versions": package_versions()}, indent=1))
    else:
        (out / "bonded_terms.json").unlink(missing_ok=True)
    with atomic_path(out / BASE_MODEL) as tmp:
        shutil.copyfile(dirs[lo] / BASE_MODEL, tmp)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(made, sort_keys=False))
    return out


def _base_model(bundle_path, temperature: float):
    """``(bundle, options)`` of a refinement's base model, read once: a temperature-conditioned one is evaluated at
    the refinement's temperature, any other as it is."""
    from ..forces.neural import is_temperature_conditioned
    from ..models.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    return bundle, ({"temperature": temperature} if is_temperature_conditioned(bundle) else {})


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
