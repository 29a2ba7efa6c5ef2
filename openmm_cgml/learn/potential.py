"""Learned CG potentials (Bag et al., J. Chem. Theory Comput. 2022): the structure-preserving one, a sweep sample's
IBI force field predicted from its force-field parameters and temperature, and the dynamics-preserving one, the
IBI force field of another sample whose CG diffusion equals this sample's AA diffusion (their pairing
construction, :func:`dynamic_pairs`).

Every sample's IBI output (``samples/<id>/work/ibi``: ``pair_tables.json`` and, with bonded beads,
``bonded_terms.json``) is one training target: the pair tables on their common grid, compressed to their leading
principal components, and the harmonic bonded parameters.  A network ensemble
(:func:`~openmm_cgml.learn.train_ensemble`) maps (parameters, temperature) to those numbers;
:meth:`PredictedPotential.force_field` turns a prediction back into a
:class:`~openmm_cgml.potential.CGPotential` (tabulated pairs with the sweep's exclusions, harmonic bonds and
angles), so ``createSystem`` builds its OpenMM System directly.  The model file is JSON (no executable content).

:func:`evaluate_potential_model` runs each held-out sample's CG liquid with the predicted force field, as the sweep
ran it with its own IBI one, and compares the RDF error of the two against the AA reference;
:func:`evaluate_dynamics_model` runs the dynamics-preserving one and compares its D_CG with the sample's D_AA.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, CorruptFileError, DatasetError
from .data import Feature, SweepData, feature_row, split_by_sample, training_range
from .ensemble import Ensemble, train_ensemble

__all__ = ["PredictedPotential", "cross_validate_potential", "dynamic_pairs", "evaluate_dynamics_model",
           "evaluate_potential_model", "load_ibi_targets", "train_potential_model"]

logger = logging.getLogger(__name__)

FORMAT = "openmm_cgml.predicted_potential"
_HARMONIC = {"harmonic_bonds", "harmonic_angles"}


def _sample_dir(data: SweepData, row: int) -> Path:
    f = data.frame.iloc[row]
    return Path(f["sweep"]) / "samples" / f["sample_id"] / "work"


#: Stands for the molecule's residue name in the bead types of a model of molecule descriptors ("*_A-*_B").
WILDCARD = "*"


def generic_key(key: str, molecule: str) -> str:
    """A pair or bonded key (bead types joined by ``-``) with ``molecule``'s residue-name prefix replaced by
    :data:`WILDCARD`: ``"IPE_A-IPE_A"`` -> ``"*_A-*_A"``."""
    return "-".join(WILDCARD + t[len(molecule):] if t.startswith(molecule + "_") else t for t in key.split("-"))


def specific_key(key: str, molecule: str) -> str:
    """The inverse of :func:`generic_key`: the wildcard replaced by ``molecule``'s residue name."""
    return "-".join(molecule + t[len(WILDCARD):] if t.startswith(WILDCARD + "_") else t for t in key.split("-"))


def load_ibi_targets(data: SweepData) -> dict[str, Any]:
    """The IBI force field of every sample of ``data``: pair keys, the common r grid (nm), the tables
    (n_samples, n_pairs * n_r, kJ/mol), the bonded-term template and parameters (n_samples, n_bonded).  With
    descriptor features (several molecules) the bead types are generic (:func:`generic_key`), so the molecules
    must share their bead layout (the same beads per molecule, e.g. one).

    Raises
    ------
    DatasetError
        A sample without its IBI output, or samples whose pair types, grids or bonded terms differ.
    """
    from ..forces.tabulated import read_openmm_tables

    generic = any(f.kind == "descriptor" for f in data.features)
    keys, grid, rows, bonded_rows, template, cutoff, exclusions = None, None, [], [], None, None, None
    for i in range(len(data.frame)):
        ibi = _sample_dir(data, i) / "ibi"
        if not (ibi / "pair_tables.json").exists():
            raise DatasetError(f"{ibi} holds no pair_tables.json: the sample's IBI output is missing (was the sweep "
                               "run with its work directories kept?)")
        term = read_openmm_tables(ibi / "pair_tables.json")
        molecule = str(data.frame["molecule"].iloc[i])

        def rename(key, molecule=molecule):
            return generic_key(key, molecule) if generic else key

        tables = {rename("-".join(k)): v for k, v in term.tables.items()}
        if keys is None:
            keys = sorted(tables)
            grid = np.asarray(tables[keys[0]][0], dtype=np.float64)
            cutoff, exclusions = term.cutoff, term.exclusions
        if sorted(tables) != keys or abs(term.cutoff - cutoff) > 1e-9:
            raise DatasetError(f"{ibi}: its pair types {sorted(tables)} or cutoff ({term.cutoff} nm) differ from the "
                               f"other samples' ({keys}, {cutoff} nm)" + ("; molecules learned together need the "
                                                                         "same beads" if generic else ""))
        row = []
        for k in keys:
            r, u = (np.asarray(a, dtype=np.float64) for a in tables[k])
            if r.shape != grid.shape or np.abs(r - grid).max() > 1e-9:
                u = np.interp(grid, r, u)
            row.append(u)
        rows.append(np.concatenate(row))
        terms = json.loads((ibi / "bonded_terms.json").read_text())["terms"] if (ibi / "bonded_terms.json").exists() \
            else []
        if generic:
            terms = [{**t, "parameters": {rename(k): v for k, v in t["parameters"].items()}} for t in terms]
        bad = [t["kind"] for t in terms if t["kind"] not in _HARMONIC]
        if bad:
            raise ConfigurationError(f"{ibi}: predicting {bad} terms is not supported; sweep with ibi bonded: harmonic")
        names = [(ti, key, p) for ti, t in enumerate(terms) for key in sorted(t["parameters"])
                 for p in sorted(t["parameters"][key])]
        if template is None:
            template = {"terms": terms, "names": names}
        elif names != template["names"]:
            raise DatasetError(f"{ibi}: its bonded terms differ from the other samples'")
        bonded_rows.append([float(terms[ti]["parameters"][key][p]) for ti, key, p in names])
    return {"keys": keys, "r": grid, "tables": np.array(rows), "cutoff": cutoff, "exclusions": exclusions,
            "bonded_template": template, "bonded": np.array(bonded_rows).reshape(len(rows), -1)}


class PredictedPotential:
    """IBI force fields predicted from force-field parameters (module docstring).  Build with
    :func:`train_potential_model`, write with :meth:`save`, read with :meth:`load`."""

    def __init__(self, data: dict[str, Any]):
        try:
            self.features = [Feature.from_data(f) for f in data["features"]]
            self.keys = list(data["keys"])
            self.r = np.asarray(data["r_nm"], dtype=np.float64)
            self.cutoff, self.exclusions = float(data["cutoff_nm"]), str(data["exclusions"])
            self.mean = np.asarray(data["pca_mean"], dtype=np.float64)
            self.components = np.asarray(data["pca_components"], dtype=np.float64).reshape(-1, self.mean.size)
            self.bonded_template = data["bonded_template"]
            self.training_range = {k: list(v) for k, v in (data.get("training_range") or {}).items()}
            self.ensemble = Ensemble.from_data(data["ensemble"])
            self.metadata = dict(data.get("metadata") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"not a predicted potential: {exc!r}") from exc
        if self.mean.size != len(self.keys) * self.r.size:
            raise CorruptFileError("a predicted potential's table size does not match its pairs and grid")
        n_out = self.components.shape[0] + len(self.bonded_template["names"])
        if self.ensemble.y_mean.size != n_out or self.ensemble.x_mean.size != len(self.features) + 1:
            raise CorruptFileError("a predicted potential's networks do not match its inputs or outputs")
        self._data = data

    def to_data(self) -> dict[str, Any]:
        return self._data

    def save(self, path) -> Path:
        from .._io import atomic_write_text

        atomic_write_text(path, json.dumps({"format": FORMAT, "format_version": 1, **self._data}) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path) -> PredictedPotential:
        from .._io import read_json

        data = read_json(path, "a predicted potential")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptFileError(f"{path} is not a predicted potential (format {FORMAT!r})")
        return cls({k: v for k, v in data.items() if k not in ("format", "format_version")})

    @property
    def generic(self) -> bool:
        """Whether the bead types are generic (a model of molecule descriptors: :func:`generic_key`)."""
        return any(k.startswith(WILDCARD + "_") for key in self.keys for k in key.split("-"))

    def _inputs(self, parameters: dict, temperature) -> np.ndarray:
        return feature_row(self.features, parameters, temperature, self.training_range, what="predicted potential")

    def predict(self, parameters: dict, temperature) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """The pair tables ``{"A-B": (r, U)}`` (nm, kJ/mol) and the bonded parameters at ``parameters``."""
        y, _ = self.ensemble.predict(self._inputs(parameters, temperature))
        k = self.components.shape[0]
        tables = self.mean + y[0, :k] @ self.components
        n = self.r.size
        return ({key: (self.r, tables[i * n:(i + 1) * n]) for i, key in enumerate(self.keys)}, y[0, k:])

    def force_field(self, parameters: dict | None, temperature, molecule: str | dict | None = None):
        """The predicted force field as a :class:`~openmm_cgml.potential.CGPotential`.

        A model of molecule descriptors needs ``molecule``: its residue name (the bead types are named after it;
        ``parameters`` then the descriptors) or its sweep molecule block (descriptors evaluated from it and
        ``parameters``, its united-atom force field, unless ``parameters`` names every descriptor)."""
        from ..forces.base import term_from_data
        from ..forces.tabulated import TabulatedPairPotential
        from ..potential import CGPotential

        name = molecule.get("name") if isinstance(molecule, dict) else molecule
        if self.generic and not name:
            raise ConfigurationError("this predicted potential is for any molecule (descriptor inputs): give "
                                     "molecule= (its residue name, or its molecule block)")
        if isinstance(molecule, dict) and not (parameters and {f.column for f in self.features} <= set(parameters)):
            from .descriptors import molecule_descriptors

            parameters = molecule_descriptors(molecule, parameters=parameters)
        tables, bonded = self.predict(parameters or {}, temperature)

        def rename(key):
            return specific_key(key, name) if self.generic else key

        terms = [TabulatedPairPotential({rename(k): v for k, v in tables.items()}, cutoff=self.cutoff,
                                        exclusions=self.exclusions)]
        template = json.loads(json.dumps(self.bonded_template["terms"]))
        for value, (ti, key, p) in zip(bonded, self.bonded_template["names"]):
            template[ti]["parameters"][key][p] = float(max(value, 0.0) if p == "k" else value)
        for t in template:
            t["parameters"] = {rename(k): v for k, v in t["parameters"].items()}
        terms += [term_from_data(t) for t in template]
        return CGPotential(terms)


def _pca(tables: np.ndarray, variance: float, max_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = tables.mean(axis=0)
    _, s, vt = np.linalg.svd(tables - mean, full_matrices=False)
    frac = np.cumsum(s**2) / max(np.sum(s**2), 1e-300)
    k = int(min(max_components, np.searchsorted(frac, variance) + 1, vt.shape[0]))
    return mean, vt[:k], frac


def dynamic_pairs(data: SweepData, inputs, partners, tolerance: float = 1.0) -> list[tuple[int, int]]:
    """Bag et al.'s pairing: (i, j) for i in ``inputs`` and j in ``partners`` of the same molecule at the same
    temperature whose D_AA(i) and D_CG(j) agree within ``tolerance`` combined standard errors.  The CG model of j
    then has the dynamics of the AA model of i, so j's IBI force field is a dynamics-preserving force field for
    i's parameters (another molecule's beads have other masses, so partners never cross molecules)."""
    f = data.frame
    molecule = f["molecule"].to_numpy() if "molecule" in f else np.zeros(len(f))
    da, ea = f["D_AA"].to_numpy(np.float64), f["D_AA_err"].to_numpy(np.float64)
    dc, ec = f["D_CG"].to_numpy(np.float64), f["D_CG_err"].to_numpy(np.float64)
    temps = f["temperature_K"].to_numpy(np.float64)
    partners = np.asarray(partners)
    out = []
    for i in inputs:
        same = partners[(np.abs(temps[partners] - temps[i]) < 1e-6) & (molecule[partners] == molecule[i])]
        close = same[np.abs(da[i] - dc[same]) <= tolerance * np.hypot(ea[i], ec[same])]
        out += [(int(i), int(j)) for j in close if j != i]
    return out


def train_potential_model(data: SweepData, *, kind: str = "structure", pair_tolerance: float = 1.0,
                          variance: float = 0.9999, max_components: int = 12, n_members: int = 5, hidden=(32, 32),
                          epochs: int = 3000, patience: int = 200, learning_rate: float = 3e-3,
                          weight_decay: float = 1e-4, fractions=(0.7, 0.15, 0.15), seed: int = 0,
                          targets: dict | None = None, split: dict | None = None):
    """Train a :class:`PredictedPotential` on the samples' IBI force fields (principal components of the pair tables
    fitted on the training samples, up to ``variance`` of their spread) and return it with the split and the
    errors.

    ``kind="structure"``: each sample's parameters map to its own IBI force field; the errors are the table errors
    (RMS of predicted minus IBI over the grid points where the IBI table is below 5 kT, in kT).
    ``kind="dynamics"``: each sample's parameters map to the IBI force field of its partners
    (:func:`dynamic_pairs`: D_CG of the partner = D_AA of the sample), a dynamics-preserving force field; the
    errors are the numbers of pairs.  ``targets``: :func:`load_ibi_targets` of ``data``, if already read;
    ``split``: the train/validation/test rows (default: :func:`~openmm_cgml.learn.data.split_by_sample`)."""
    from ..units import KB

    if kind not in ("structure", "dynamics"):
        raise ConfigurationError(f"kind must be 'structure' or 'dynamics', got {kind!r}")
    targets = load_ibi_targets(data) if targets is None else targets
    split = split_by_sample(data, fractions, seed) if split is None else split
    tr, va = split["train"], split["validation"]
    mean, comps, frac = _pca(targets["tables"][tr], variance, max_components)
    y_all = np.column_stack([(targets["tables"] - mean) @ comps.T, targets["bonded"]])
    x_all = data.inputs()
    if kind == "structure":
        (xi_tr, yi_tr), (xi_va, yi_va) = (tr, tr), (va, va)
    else:
        pairs_tr = dynamic_pairs(data, tr, tr, pair_tolerance)
        pairs_va = dynamic_pairs(data, va, np.concatenate([tr, va]), pair_tolerance)
        if len(pairs_tr) < 2 or not pairs_va:
            raise DatasetError(f"too few dynamic pairs (D_AA of one sample = D_CG of another within "
                               f"{pair_tolerance:g} s.e.): {len(pairs_tr)} for training, {len(pairs_va)} for "
                               "validation; the sweep's D_AA range must overlap its D_CG range")
        (xi_tr, yi_tr), (xi_va, yi_va) = (np.array(p).T for p in (pairs_tr, pairs_va))
    ens = train_ensemble(x_all[xi_tr], y_all[yi_tr], x_all[xi_va], y_all[yi_va], n_members=n_members,
                         hidden=tuple(hidden), epochs=epochs, patience=patience, learning_rate=learning_rate,
                         weight_decay=weight_decay, seed=seed)
    ens.calibrate(x_all[xi_va], y_all[yi_va])
    model = PredictedPotential({
        "features": [f.to_data() for f in data.features], "keys": targets["keys"], "r_nm": targets["r"].tolist(),
        "cutoff_nm": targets["cutoff"], "exclusions": targets["exclusions"], "pca_mean": mean.tolist(),
        "pca_components": comps.tolist(), "bonded_template": targets["bonded_template"],
        "training_range": training_range(data.features, x_all[np.unique(xi_tr)]),
        "ensemble": ens.to_data(),
        "metadata": {"kind": kind, **data.provenance(),
                     "pca_components": int(comps.shape[0]), "pca_variance": float(frac[comps.shape[0] - 1])}})
    if kind == "dynamics":
        model.metadata.update({"pairs_train": len(xi_tr), "pairs_validation": len(xi_va),
                               "pair_tolerance_se": pair_tolerance})
        return model, split, {"pairs_train": len(xi_tr), "pairs_validation": len(xi_va)}
    errors = {}
    for name, rows in split.items():
        rms = []
        for i in rows:
            f = data.frame.iloc[i]
            tables, _ = model.predict({c.column: f[c.column] for c in data.features}, f["temperature_K"])
            kt = KB * float(f["temperature_K"])
            pred = np.concatenate([tables[k][1] for k in targets["keys"]])
            true = targets["tables"][i]
            sampled = true < 5 * kt
            rms.append(float(np.sqrt(np.mean(((pred - true)[sampled] / kt) ** 2))))
        errors[name] = {"n": int(rows.size), "table_rms_kT_median": float(np.median(rms)), "table_rms_kT": rms}
    return model, split, errors


def _run_predicted(model: PredictedPotential, data: SweepData, i: int, platform: str):
    """Run sample ``i``'s CG liquid with ``model``'s force field as the sweep ran it with its own IBI one (same
    thermostat, timesteps and length, from the sweep's definition; from the reference's last frame); return the
    mapped AA reference and the run (datasets)."""
    from ..dataset import open_dataset
    from ..simulation import run_simulation
    from ..thermostat import TRANSPORT_DEFAULT
    from ..topology import CGTopology
    from ..workflows.demo import run_stepping_down
    from .data import _sweep_definition

    f = data.frame.iloc[i]
    work = _sample_dir(data, i)
    config = _sweep_definition(Path(f["sweep"]))
    ref_path = work / "cg_reference.h5"
    if not ref_path.exists():
        raise DatasetError(f"{ref_path} is missing: evaluating a predicted potential needs the sample's mapped AA "
                           "reference (sweeps keep it unless pipeline.keep_datasets is false)")
    ref = open_dataset(ref_path)
    topology = CGTopology.from_dataset(ref)
    system = model.force_field({c.column: f[c.column] for c in data.features}, f["temperature_K"],
                               molecule=str(f["molecule"])).createSystem(topology)
    cg = config.pipeline.cg
    path = work / f"cg_predicted_{model.metadata.get('kind', 'structure')}.h5"

    def run_at(dt_fs, attempt):
        path.unlink(missing_ok=True)
        dt = dt_fs * 1e-3
        report = int(round(cg.report_interval / dt))
        steps = int(round(cg.duration / dt)) // report * report
        return run_simulation(system, topology, ref.positions[-1], path, temperature=float(f["temperature_K"]),
                              timestep=f"{dt_fs:g} fs", thermostat=TRANSPORT_DEFAULT, steps=steps,
                              report_interval=report, equilibration_steps=cg.equilibration_steps,
                              box_vectors=topology.box_vectors, platform=platform, seed=int(f["seed"]),
                              fields=("positions", "velocities"))

    run_stepping_down(run_at, [dt * 1e3 for dt in cg.timesteps])
    return ref, open_dataset(path), path


def _rows_progress(rows, progress: bool, what: str):
    if not progress:
        return rows
    from tqdm.auto import tqdm

    return tqdm(rows, desc=what, unit="sample")


def evaluate_potential_model(model: PredictedPotential, data: SweepData, rows, *, max_samples: int = 10,
                             platform: str = "CPU", progress: bool = False) -> dict[str, Any]:
    """Structure: run up to ``max_samples`` of ``rows`` with the predicted force field as the sweep ran them with their
    own IBI one and compare the largest RMS RDF difference from the AA reference of the predicted run with the
    sample's own (the index's ``rdf_error``, measured the same way)."""
    from ..analysis.compare import compare_runs

    rows, missing = _with_reference(data, rows)
    out = []
    for i in _rows_progress(rows[:max_samples], progress, "predicted potentials"):
        f = data.frame.iloc[i]
        ref, run, path = _run_predicted(model, data, i, platform)
        comparison = compare_runs(ref, run, n_bins=80)
        errs = [r.value for r in comparison.rows if r.quantity.startswith("g_")]
        predicted = float(max(errs)) if errs else float("nan")
        own = float(f["rdf_error"])
        out.append({"sample_id": f["sample_id"], "rdf_error_predicted": predicted, "rdf_error_own_ibi": own,
                    "ratio": predicted / own if own > 0 else float("nan")})
        path.unlink(missing_ok=True)
    return _structure_figures(out, missing)


def _with_reference(data: SweepData, rows) -> tuple[list[int], int]:
    """The rows whose sample kept its mapped AA reference (a predicted potential is run from it and compared with
    it; an archive without references has none), and how many did not."""
    rows = [int(i) for i in rows]
    kept = [i for i in rows if (_sample_dir(data, i) / "cg_reference.h5").exists()]
    if len(kept) < len(rows):
        logger.warning("%d of %d samples have no mapped AA reference (cg_reference.h5: an archive without "
                       "references, or pipeline.keep_datasets false): their predicted potentials are not run",
                       len(rows) - len(kept), len(rows))
    return kept, len(rows) - len(kept)


def _structure_figures(out: list[dict], missing: int = 0) -> dict[str, Any]:
    ratios = np.array([o["ratio"] for o in out])
    return {"n": len(out), "samples": out, "n_without_reference": missing,
            "ratio_median": float(np.median(ratios)) if out else None,
            "ratio_max": float(np.max(ratios)) if out else None,
            "within_1_5": float(np.mean(ratios <= 1.5)) if out else None}


def evaluate_dynamics_model(model: PredictedPotential, data: SweepData, rows, *, max_samples: int = 10,
                            pair_tolerance: float = 1.0, platform: str = "CPU", progress: bool = False) -> dict[str, Any]:
    """Dynamics: run up to ``max_samples`` of ``rows`` (those whose D_AA lies in the range the pairing covers: some
    sample's D_CG matches it) with the predicted dynamics-preserving force field and compare D_CG with the target,
    the sample's own D_AA (relative error, and whether it is within 15 %)."""
    from ..analysis.compare import diffusion_check

    rows, missing = _with_reference(data, rows)
    covered = [i for i in rows if dynamic_pairs(data, [i], np.arange(len(data.frame)), pair_tolerance)]
    out = []
    for i in _rows_progress(covered[:max_samples], progress, "dynamics-preserving potentials"):
        f = data.frame.iloc[i]
        _, run, path = _run_predicted(model, data, i, platform)
        d = diffusion_check(run)
        target, target_err = float(f["D_AA"]), float(f["D_AA_err"])
        value = d.get("D_nm2_per_ps", float("nan"))
        out.append({"sample_id": f["sample_id"], "D_AA_target": target, "D_AA_err": target_err, "D_CG": value,
                    "D_CG_err": d.get("D_err_nm2_per_ps"), "D_CG_converged": bool(d["converged"]),
                    "relative_error": value / target - 1})
        path.unlink(missing_ok=True)
    return _dynamics_figures(out, len(rows) - len(covered), missing)


def _dynamics_figures(out: list[dict], outside: int, missing: int = 0) -> dict[str, Any]:
    rel = np.abs([o["relative_error"] for o in out])
    return {"n": len(out), "samples": out, "n_rows_outside_pairing_range": outside, "n_without_reference": missing,
            "relative_error_median": float(np.median(rel)) if out else None,
            "within_15_percent": float(np.mean(rel <= 0.15)) if out else None}


def cross_validate_potential(data: SweepData, folds: list[dict], *, kind: str = "structure",
                             pair_tolerance: float = 1.0, evaluate_samples: int = 10, platform: str = "CPU",
                             progress: bool = False, targets: dict | None = None, **training) -> dict[str, Any]:
    """Out-of-fold evaluation of a predicted potential (:func:`~openmm_cgml.learn.data.cross_validation_folds`):
    one model per fold (``training``: :func:`train_potential_model`'s settings), each sample judged by the fold
    that held it out.  ``kind="structure"``: every sample's table error, and the CG runs of up to
    ``evaluate_samples`` of them (:func:`evaluate_potential_model`'s figures over all folds).
    ``kind="dynamics"``: the runs of up to ``evaluate_samples`` samples inside the pairing's D range
    (:func:`evaluate_dynamics_model`'s figures); a fold whose training samples hold too few pairs is counted in
    ``folds_without_pairs`` and judges none of its samples."""
    targets = load_ibi_targets(data) if targets is None else targets
    runs, rms, outside, no_pairs, pairs, missing = [], [], 0, 0, [], 0
    for split in _rows_progress(folds, progress, f"cross-validation ({kind})"):
        budget = max(0, evaluate_samples - len(runs))
        try:
            model, _, errors = train_potential_model(data, kind=kind, pair_tolerance=pair_tolerance, targets=targets,
                                                     split=split, **training)
        except DatasetError as exc:
            if kind != "dynamics":
                raise
            logger.info("cross-validation: a fold has too few dynamic pairs (%s)", exc)
            no_pairs += 1
            continue
        if kind == "structure":
            rms += errors["test"]["table_rms_kT"]
            if budget:
                ev = evaluate_potential_model(model, data, split["test"], max_samples=budget, platform=platform)
                runs += ev["samples"]
                missing += ev["n_without_reference"]
        else:
            pairs.append(errors["pairs_train"])
            if budget:
                ev = evaluate_dynamics_model(model, data, split["test"], max_samples=budget,
                                             pair_tolerance=pair_tolerance, platform=platform)
                runs += ev["samples"]
                outside += ev["n_rows_outside_pairing_range"]
                missing += ev["n_without_reference"]
    out = {"folds": len(folds)}
    if kind == "structure":
        out.update({"table_rms_kT_median": float(np.median(rms)), "table_rms_kT": rms,
                    "simulated": _structure_figures(runs, missing)})
    else:
        out.update({"folds_without_pairs": no_pairs, "pairs_train_median": float(np.median(pairs)) if pairs else 0,
                    "simulated": _dynamics_figures(runs, outside, missing)})
    return out
