"""The sweep definition (``cgml sweep``'s YAML) and its samples.

Example (a fast-family sweep; ``examples/sweep.yaml``)::

    name: isopentane-ua
    family: united-atom                    # united-atom (OpenMM only, fast) | openff
    molecule:
      name: IPE
      sites: [CH3, CH, CH3, CH2, CH3]      # united-atom site types (TraPPE-UA LJ by default)
      bonds: [[0, 1], [1, 2], [1, 3], [3, 4]]
      count: 125
      density: 0.62 g/cm**3
    parameters:
      - {handler: Bonds, attribute: k, factor: [0.5, 2.0]}
      - {handler: Angles, attribute: angle, range: [105 degree, 118 degree]}
      - {handler: ProperTorsions, attribute: k1, range: [1 kJ/mol, 8 kJ/mol]}
      - {handler: vdW, site: CH3, attribute: epsilon, factor: [0.8, 1.2]}
    sampling: {method: latin-hypercube, n_samples: 200, seed: 1}
    temperatures: [298.15 K]
    pipeline: {...}                        # see PipelineSettings
    execution: {cluster: local}            # see ExecutionSettings

For ``family: openff`` the molecule is ``{smiles, count, density, forcefield, charge_method}`` and each varied
parameter is addressed by its handler, SMIRKS and attribute (``{handler: Bonds, smirks: "[#6X4:1]-[#6X4:2]",
attribute: k, factor: [0.8, 1.2]}``); the force field is read when the definition is checked, so a SMIRKS that
is not in it is an error before any work starts.

Every sample (one point of parameter space at one temperature) has an id derived from what it computes (the
molecule, its parameter values, the temperature, its seed and the pipeline settings): the same definition
gives the same ids, so a rerun finds its finished samples.  Latin-hypercube samples depend on ``n_samples``
(changing it gives a new design); ``random`` samples do not (raising ``n_samples`` keeps the earlier ones).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import Acceleration, Density, Duration, PositiveLength, StrictModel, Temperature, Timestep

__all__ = ["ATTRIBUTE_UNITS", "UA_SITES", "ParameterSpec", "UnitedAtomMolecule", "OpenFFMolecule", "AASettings",
           "CGSettings", "PipelineSettings", "JobQueueSettings", "ExecutionSettings", "SamplingSettings",
           "SweepConfig", "Sample", "generate_samples", "parameter_values"]

#: The canonical unit (pint) of each varied attribute: values are sampled, stored and reported in it.
ATTRIBUTE_UNITS: dict[tuple[str, str], str] = {
    ("Bonds", "k"): "kJ/mol/nm**2",
    ("Bonds", "length"): "nm",
    ("Angles", "k"): "kJ/mol/rad**2",
    ("Angles", "angle"): "degree",
    **{("ProperTorsions", f"k{i}"): "kJ/mol" for i in range(1, 7)},
    ("vdW", "epsilon"): "kJ/mol",
    ("vdW", "sigma"): "nm",
    ("vdW", "rmin_half"): "nm",
}

#: TraPPE-UA sites: mass (Da), LJ epsilon (kJ/mol; epsilon/kB of 98, 46, 10 and 0.5 K) and sigma (nm).
UA_SITES: dict[str, tuple[float, float, float]] = {
    "CH3": (15.035, 0.8148, 0.375),
    "CH2": (14.027, 0.3825, 0.395),
    "CH": (13.019, 0.0831, 0.468),
    "C": (12.011, 0.0042, 0.640),
}
#: Default bonded parameters of the united-atom family (TraPPE-UA angles, a stiff harmonic bond in place of
#: TraPPE's constraint, one threefold torsion).
UA_DEFAULTS: dict[tuple[str, str], float] = {
    ("Bonds", "k"): 250000.0,            # kJ/mol/nm**2
    ("Bonds", "length"): 0.154,          # nm
    ("Angles", "k"): 519.6,              # kJ/mol/rad**2 (TraPPE k_theta / kB = 62500 K)
    ("Angles", "angle"): 112.0,          # degree
    ("ProperTorsions", "k1"): 4.0,       # kJ/mol, periodicity 3, phase 0
}


def _pint():
    from ..units import _registry

    return _registry()


def convert(value: str, unit: str, *, what: str) -> float:
    """``value`` (a string with a unit) in ``unit``; a ValueError naming ``what`` and the expected unit otherwise."""
    import pint

    if isinstance(value, bool) or isinstance(value, (int, float)):
        raise ValueError(f"{what}: the number {value!r} has no unit; write it with a unit compatible with {unit}")
    try:
        q = _pint().Quantity(str(value))
        if q.dimensionless and not _pint().Quantity(1, unit).dimensionless:
            raise ValueError(f"{what}: {value!r} has no unit; expected a unit compatible with {unit}")
        return float(q.to(unit).magnitude)
    except (pint.errors.PintError, TypeError, AssertionError) as exc:
        raise ValueError(f"{what}: cannot read {value!r} as a quantity in {unit} ({exc})") from None


class ParameterSpec(StrictModel):
    """One varied force-field parameter: which one (handler, SMIRKS or site, attribute) and over what values.

    ``range`` gives absolute bounds with units (``[105 degree, 118 degree]``); ``factor`` bounds relative to the
    force field's own value (``[0.8, 1.2]``).  Exactly one of them.
    """

    handler: Literal["Bonds", "Angles", "ProperTorsions", "vdW"] = Field(
        description="parameter handler (OpenFF names): Bonds | Angles | ProperTorsions | vdW")
    attribute: str = Field(description="Bonds: k | length; Angles: k | angle; ProperTorsions: k1..k6; vdW: "
                                       "epsilon | sigma (| rmin_half, openff)")
    smirks: str | None = Field(None, description="openff: the SMIRKS of the parameter in the force field")
    site: str | None = Field(None, description="united-atom, vdW only: the site type (CH3, CH2, CH, C)")
    range: tuple[str, str] | None = Field(None, description="absolute [low, high] with units")
    factor: tuple[float, float] | None = Field(None, description="[low, high] relative to the force field's value")
    name: str | None = Field(None, description="column name in the index (default handler_attribute[_site])")

    @model_validator(mode="after")
    def _check(self):
        unit = ATTRIBUTE_UNITS.get((self.handler, self.attribute))
        if unit is None:
            allowed = sorted(a for h, a in ATTRIBUTE_UNITS if h == self.handler)
            raise ValueError(f"attribute {self.attribute!r} of {self.handler} cannot be varied; expected one of "
                             f"{allowed}")
        if (self.range is None) == (self.factor is None):
            raise ValueError("give exactly one of range (absolute bounds with units) and factor (relative bounds)")
        if self.range is not None:
            lo, hi = (convert(v, unit, what=f"range of {self.handler}.{self.attribute}") for v in self.range)
            if not lo < hi:
                raise ValueError(f"range of {self.handler}.{self.attribute}: low ({self.range[0]}) must be below "
                                 f"high ({self.range[1]})")
            if lo < 0 and self.attribute != "angle" and not self.attribute.startswith("k"):
                raise ValueError(f"range of {self.handler}.{self.attribute} must not be negative")
            if self.attribute in ("k", "length", "epsilon", "sigma", "rmin_half") and lo <= 0 and \
                    self.handler != "ProperTorsions":
                raise ValueError(f"range of {self.handler}.{self.attribute}: expected positive values, got "
                                 f"{self.range[0]}")
        if self.factor is not None:
            lo, hi = self.factor
            if not 0 < lo < hi:
                raise ValueError(f"factor of {self.handler}.{self.attribute}: expected 0 < low < high, got "
                                 f"[{lo}, {hi}]")
        return self

    @property
    def unit(self) -> str:
        return ATTRIBUTE_UNITS[(self.handler, self.attribute)]

    def column(self) -> str:
        if self.name:
            return self.name
        parts = [self.handler.lower(), self.attribute] + ([self.site] if self.site else [])
        return "_".join(parts)

    def bounds(self, base: float | None) -> tuple[float, float]:
        """Absolute bounds in :attr:`unit` (``base``: the force field's value, for ``factor``)."""
        if self.range is not None:
            return tuple(convert(v, self.unit, what=f"{self.handler}.{self.attribute}") for v in self.range)
        assert base is not None
        lo, hi = sorted((self.factor[0] * base, self.factor[1] * base))
        return lo, hi


class UnitedAtomMolecule(StrictModel):
    """The fast family's molecule: united-atom sites, bonds (angles and torsions follow from them), count and
    density of the box.  Default: 2-methylbutane (isopentane), TraPPE-UA."""

    name: str = Field("IPE", description="residue name (1-4 letters or digits)")
    sites: list[str] = Field(["CH3", "CH", "CH3", "CH2", "CH3"], description="site types: CH3 | CH2 | CH | C")
    bonds: list[tuple[int, int]] = Field([(0, 1), (1, 2), (1, 3), (3, 4)], description="bonds between sites")
    count: int = Field(125, ge=8, description="molecules in the box")
    density: Density = Field("0.62 g/cm**3", description="density of the box (NVT throughout)")
    cutoff: PositiveLength = Field("1.0 nm", description="LJ cutoff (long-range dispersion correction on)")

    @model_validator(mode="after")
    def _check(self):
        if not (1 <= len(self.name) <= 4 and self.name.isalnum()):
            raise ValueError(f"name must be 1-4 letters or digits (a residue name), got {self.name!r}")
        bad = [s for s in self.sites if s not in UA_SITES]
        if bad:
            raise ValueError(f"unknown site types {bad}; expected {sorted(UA_SITES)}")
        n = len(self.sites)
        if n < 2:
            raise ValueError("a molecule needs at least two sites")
        for a, b in self.bonds:
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"bond ({a}, {b}) does not join two different sites of the {n}")
        import networkx as nx

        graph = nx.Graph(list(self.bonds))
        graph.add_nodes_from(range(n))
        if not nx.is_tree(graph):
            raise ValueError("the bonds must join all sites into one molecule without rings")
        return self


class OpenFFMolecule(StrictModel):
    """The OpenFF family's molecule: SMILES, count and density of the box, force field and charges."""

    smiles: str = Field("CC(C)C(C)C(C)C", description="the molecule (default 2,3,4-trimethylpentane)")
    name: str = Field("TMP", description="residue name")
    count: int = Field(64, ge=8, description="molecules in the box")
    density: Density = Field("0.70 g/cm**3", description="initial density (then NPT)")
    forcefield: str = Field("openff-2.2.0", description="OpenFF force field whose parameters are varied")
    charge_method: Literal["am1bcc", "gasteiger", "mmff94", "zeros"] = "am1bcc"
    cutoff: PositiveLength | None = Field(None, description="nonbonded cutoff (null: the force field's)")


class AASettings(StrictModel):
    """The all-atom reference of each sample.  The production (that D_AA comes from) runs under ``thermostat``'s
    transport-safe default (Bussi, tau 1 ps); the equilibration under Langevin."""

    timestep: Timestep = "2 fs"
    nvt: Duration = Field("10 ps", description="Langevin equilibration at the box's density")
    npt: Duration = Field("0 ps", description="openff only: NPT equilibration (then NVT at its mean density)")
    production: Duration = Field("40 ps", description="recorded production (Bussi)")
    max_production: Duration | None = Field(None, description="openff only: extend the production (doubling) "
                                                              "until the molecular MSD is diffusive")
    report_interval: Duration = Field("0.2 ps", description="time between recorded frames")


class CGSettings(StrictModel):
    """The CG run with the IBI force field (Bussi, tau 1 ps): D_CG and the structure come from it."""

    timesteps: list[Timestep] = Field(["10 fs", "5 fs"], min_length=1, description="tried largest first; a run "
                                      "that blows up is rerun at the next")
    duration: Duration = Field("100 ps", description="recorded CG time")
    equilibration_steps: int = Field(1000, ge=0, description="Langevin steps before the recorded run")
    report_interval: Duration = Field("0.25 ps", description="time between recorded frames")


class ViscositySettings(StrictModel):
    """Per-sample shear viscosities of the AA and the CG liquid by periodic perturbation
    (:func:`~openmm_cgml.dynamics.periodic_perturbation_viscosity`, from each run's last frame), so that D_AA, D_CG
    and alpha are also reported Yeh-Hummer corrected, each liquid with its own viscosity."""

    aa_accelerations: list[Acceleration] = Field(["0.1 nm/ps**2", "0.05 nm/ps**2"], min_length=1,
                                                 description="AA amplitudes (two or more check the linear regime)")
    cg_accelerations: list[Acceleration] = Field(["0.04 nm/ps**2", "0.02 nm/ps**2"], min_length=1,
                                                 description="CG amplitudes")
    equilibration: Duration = Field("10 ps", description="time to the steady profile, per amplitude")
    aa_production: Duration = Field("50 ps", description="AA time sampled per amplitude")
    cg_production: Duration = Field("200 ps", description="CG time sampled per amplitude")


class PipelineSettings(StrictModel):
    """Per-sample pipeline: AA reference -> mapping -> IBI -> CG run -> D_AA, D_CG, alpha, RDF errors."""

    aa: AASettings = AASettings()
    beads: int = Field(1, ge=1, le=8, description="beads per molecule (automatic mapping, centres of mass)")
    ibi: dict = Field(default_factory=lambda: {"max_iterations": 5, "equilibration_steps": 500,
                                               "production_steps": 3000, "sample_interval": 50},
                      description="IBI settings (any key of `cgml ibi` but cg_dataset, output_dir, temperature, "
                                  "seed; cutoff default: half the box, at most 1.2 nm)")
    cg: CGSettings = CGSettings()
    platform: str = Field("CPU", description="OpenMM platform of every run")
    threads: int | None = Field(1, ge=1, description="CPU threads per sample (null: the worker's)")
    keep_datasets: bool = Field(True, description="keep each sample's trajectories (false: results only)")
    viscosity: ViscositySettings | None = Field(
        None, description="per-sample AA and CG viscosities for Yeh-Hummer corrected D and alpha (null: D and "
        "alpha of the simulated box, AA and CG in the same box, not corrected)")

    @model_validator(mode="after")
    def _viscosity_samples(self):
        v = self.viscosity
        if v is None:
            return self
        # periodic_perturbation_viscosity samples every 10 steps into 20 blocks of at least 2 samples
        for side, production, dt in (("aa", v.aa_production, self.aa.timestep),
                                     ("cg", v.cg_production, max(self.cg.timesteps))):
            if production / dt < 400 * (1 - 1e-9):
                raise ValueError(f"viscosity.{side}_production ({production:g} ps) must be at least 400 steps of "
                                 f"{dt * 1e3:g} fs ({400 * dt:g} ps) for the viscosity's block error")
        return self

    @field_validator("ibi")
    @classmethod
    def _ibi(cls, value: dict) -> dict:
        from ..ibi import IBISettings

        reserved = {"cg_dataset", "output_dir", "temperature", "seed"} & set(value)
        if reserved:
            raise ValueError(f"ibi: {sorted(reserved)} are set by the sweep per sample; remove them")
        IBISettings.from_data({"temperature": "300 K", "cutoff": "1 nm", **value}, source="pipeline.ibi")
        return value


class JobQueueSettings(StrictModel):
    """A batch-queue cluster through dask-jobqueue (``execution.cluster: slurm | pbs``)."""

    cores: int = Field(1, ge=1, description="cores per job")
    processes: int = Field(1, ge=1, description="Dask worker processes per job")
    memory: str = Field("4GB", description="memory per job")
    walltime: str = Field("02:00:00", description="walltime per job")
    queue: str | None = Field(None, description="partition (SLURM) or queue (PBS)")
    account: str | None = Field(None, description="account to charge")
    job_extra: list[str] = Field(default_factory=list, description="extra #SBATCH / #PBS directives")
    job_script_prologue: list[str] = Field(default_factory=list, description="shell lines before the worker "
                                           "starts (module load, source venv/bin/activate)")
    n_jobs: int = Field(1, ge=1, description="jobs submitted (workers = n_jobs x processes)")
    python: str | None = Field(None, description="the workers' Python (default: this one)")
    local_directory: str | None = Field(None, description="workers' scratch directory")


class ExecutionSettings(StrictModel):
    """Where the samples run: a LocalCluster here (default), an existing scheduler, or SLURM / PBS jobs."""

    cluster: Literal["local", "slurm", "pbs"] = "local"
    scheduler: str | None = Field(None, description="address of a running Dask scheduler (overrides cluster)")
    workers: int | None = Field(None, ge=1, description="local: worker processes (null: cores / threads)")
    threads_per_worker: int = Field(1, ge=1, description="local: threads of each worker (= OpenMM threads)")
    processes: bool = Field(True, description="local: workers in processes (false: threads of this process)")
    memory_limit: str = Field("auto", description="local: memory limit per worker")
    retries: int = Field(2, ge=0, description="resubmissions of a task whose worker died")
    jobqueue: JobQueueSettings = JobQueueSettings()


class SamplingSettings(StrictModel):
    """How parameter space is sampled."""

    method: Literal["latin-hypercube", "random"] = "latin-hypercube"
    n_samples: int = Field(16, ge=1, description="points of parameter space (each run at every temperature)")
    seed: int = Field(0, ge=0, description="seed of the design and of every sample's runs")


class SweepConfig(StrictModel):
    """A parameter sweep: molecule, varied parameters, sampling, temperatures, per-sample pipeline and execution."""

    name: str = Field("sweep", description="name of the sweep (recorded in the index)")
    output: str = Field("sweep-output", description="sweep directory (results, index); relative to the YAML's folder")
    family: Literal["united-atom", "openff"] = Field("united-atom", description="united-atom (fast, OpenMM only) | "
                                                                                "openff")
    molecule: dict = Field(default_factory=dict, description="united-atom: {name, sites, bonds, count, density, "
                           "cutoff}; openff: {smiles, name, count, density, forcefield, charge_method, cutoff}")
    parameters: list[ParameterSpec] = Field(min_length=1, description="the varied parameters")
    sampling: SamplingSettings = SamplingSettings()
    temperatures: list[Temperature] = Field(["298.15 K"], min_length=1, description="every sample runs at each")
    pipeline: PipelineSettings = PipelineSettings()
    execution: ExecutionSettings = ExecutionSettings()

    @model_validator(mode="after")
    def _check(self):
        from ..exceptions import ConfigurationError

        try:
            mol = self.molecule_model()
        except ConfigurationError as exc:
            lines = [line.strip().replace("(top level)", "molecule") for line in getattr(exc, "config_lines", [])]
            lines = ["molecule." + line if not line.startswith("molecule") else line for line in lines]
            raise ValueError(f"{self.family} molecule: " + "; ".join(lines or [str(exc)])) from None
        columns = [p.column() for p in self.parameters]
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise ValueError(f"parameters: two parameters share the index column(s) {dup}; give them distinct "
                             "'name's")
        for i, p in enumerate(self.parameters):
            where = f"parameters.{i}"
            if self.family == "openff":
                if p.smirks is None:
                    raise ValueError(f"{where}: openff parameters are addressed by smirks; none given")
                if p.site is not None:
                    raise ValueError(f"{where}: site is for the united-atom family; openff uses smirks")
            else:
                if p.smirks is not None:
                    raise ValueError(f"{where}: smirks addresses openff parameters; the united-atom family varies "
                                     "bonded terms globally and vdW per site")
                if p.handler == "vdW":
                    if p.site not in set(mol.sites):
                        raise ValueError(f"{where}: vdW needs site, one of the molecule's site types "
                                         f"{sorted(set(mol.sites))}; got {p.site!r}")
                    if p.attribute not in ("epsilon", "sigma"):
                        raise ValueError(f"{where}: the united-atom vdW attributes are epsilon and sigma")
                elif p.site is not None:
                    raise ValueError(f"{where}: site selects vdW parameters only")
                elif (p.handler, p.attribute) not in UA_DEFAULTS:
                    raise ValueError(f"{where}: the united-atom family has no {p.handler}.{p.attribute}; expected "
                                     f"one of {sorted(f'{h}.{a}' for h, a in UA_DEFAULTS)}")
        aa = self.pipeline.aa
        if self.family == "united-atom" and (aa.npt > 0 or aa.max_production is not None):
            raise ValueError("pipeline.aa: npt and max_production are for the openff family (the united-atom box "
                             "runs at its given density)")
        for name in ("nvt", "npt", "production", "report_interval"):
            n = getattr(aa, name) / aa.timestep
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise ValueError(f"pipeline.aa.{name} ({getattr(aa, name)} ps) is not a whole number of timesteps")
        if aa.production < 10 * aa.report_interval:
            raise ValueError("pipeline.aa.production must hold at least 10 report intervals (D needs frames)")
        cg = self.pipeline.cg
        for dt in cg.timesteps:
            for name in ("duration", "report_interval"):
                n = getattr(cg, name) / dt
                if abs(n - round(n)) > 1e-6 * max(1.0, n):
                    raise ValueError(f"pipeline.cg.{name} ({getattr(cg, name)} ps) is not a whole number of "
                                     f"timesteps of {dt * 1e3:g} fs")
        if cg.duration < 10 * cg.report_interval:
            raise ValueError("pipeline.cg.duration must hold at least 10 report intervals (D needs frames)")
        return self

    def molecule_model(self) -> UnitedAtomMolecule | OpenFFMolecule:
        """The ``molecule`` section validated for the family."""
        model = UnitedAtomMolecule if self.family == "united-atom" else OpenFFMolecule
        return model.from_data(dict(self.molecule), source="molecule")


@dataclass(frozen=True)
class Sample:
    """One task of the sweep: parameter values (canonical units), temperature, seed and the id derived from them."""

    index: int
    sample_id: str
    parameters: dict[str, float]
    temperature: float
    seed: int

    def to_data(self) -> dict:
        return {"index": self.index, "sample_id": self.sample_id, "parameters": dict(self.parameters),
                "temperature_K": self.temperature, "seed": self.seed}


def base_values(config: SweepConfig) -> dict[str, float]:
    """The force field's value of every varied parameter (canonical units), by column.

    united-atom: the family's defaults; openff: read from the force field (a SMIRKS it lacks is a
    ConfigurationError naming it)."""
    from ..exceptions import ConfigurationError

    out = {}
    if config.family == "united-atom":
        for p in config.parameters:
            if p.handler == "vdW":
                _, eps, sigma = UA_SITES[p.site]
                out[p.column()] = eps if p.attribute == "epsilon" else sigma
            else:
                out[p.column()] = UA_DEFAULTS[(p.handler, p.attribute)]
        return out
    from ..reference.liquid import forcefield_parameter_value, load_forcefield

    mol = config.molecule_model()
    ff = load_forcefield(mol.forcefield)
    for i, p in enumerate(config.parameters):
        try:
            out[p.column()] = forcefield_parameter_value(ff, p.handler, p.smirks, p.attribute, p.unit)
        except ConfigurationError as exc:
            raise ConfigurationError(f"parameters.{i}: {exc}") from None
    return out


def _canonical(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _pipeline_identity(pipeline: PipelineSettings) -> dict:
    """The pipeline settings in a sample's id: without ``viscosity`` when it is off, so that samples computed
    before the key existed keep their ids."""
    data = pipeline.to_data()
    if data.get("viscosity") is None:
        data.pop("viscosity", None)
    return data


def generate_samples(config: SweepConfig, *, bases: dict[str, float] | None = None) -> list[Sample]:
    """The samples of ``config``: a seeded Latin-hypercube (``scipy.stats.qmc``) or random design over the
    parameters' bounds, each point at every temperature, with a seed and an id of their own."""
    import numpy as np

    bases = base_values(config) if bases is None else bases
    s = config.sampling
    bounds = np.array([p.bounds(bases[p.column()]) for p in config.parameters])
    d = len(config.parameters)
    if s.method == "latin-hypercube":
        from scipy.stats import qmc

        unit = qmc.LatinHypercube(d=d, seed=np.random.default_rng(s.seed)).random(s.n_samples)
    else:
        unit = np.random.default_rng(s.seed).random((s.n_samples, d))
    values = bounds[:, 0] + unit * (bounds[:, 1] - bounds[:, 0])
    common = {"family": config.family, "molecule": config.molecule_model().to_data(),
              "pipeline": _pipeline_identity(config.pipeline),
              "addresses": [[p.handler, p.smirks, p.site, p.attribute, p.unit] for p in config.parameters]}
    samples = []
    for i, row in enumerate(values):
        params = {p.column(): float(f"{v:.10g}") for p, v in zip(config.parameters, row)}
        for j, temperature in enumerate(config.temperatures):
            index = i * len(config.temperatures) + j
            seed = int(np.random.SeedSequence([s.seed, i]).generate_state(1)[0] % 2**31)
            digest = hashlib.sha256(_canonical({**common, "parameters": params, "temperature": temperature,
                                                "seed": seed}).encode()).hexdigest()[:12]
            samples.append(Sample(index, f"s{i:04d}-{digest}", params, float(temperature), seed))
    return samples


def parameter_values(config: SweepConfig, sample: Sample) -> list[tuple[ParameterSpec, float]]:
    """(parameter, value in its canonical unit) of a sample."""
    return [(p, sample.parameters[p.column()]) for p in config.parameters]
