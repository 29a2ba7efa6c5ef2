"""``cgml learn LEARN.yaml``: train a predicted-alpha model from parameter sweeps and evaluate it on held-out
samples.

Writes into ``output``: ``predicted_potential.json`` (a :class:`~openmm_cgml.learn.PredictedPotential`: the
IBI force field from force-field parameters), ``dynamics_potential.json`` (the dynamics-preserving one, from
pairs of samples whose D_CG and D_AA agree), ``alpha_model.json`` (a :class:`~openmm_cgml.learn.PredictedAlpha`, loaded by
:func:`openmm_cgml.dynamics.load_alpha_model`), ``evaluation.json`` and ``evaluation.md`` (predicted against
measured alpha on the train, validation and test samples: median relative error, how often the measured alpha is
inside the predicted 68 % and 95 % intervals, the constant-alpha baseline) and ``alpha_parity.png``.

Example::

    sweeps: [runs/sweeps/fast]     # sweep directories (relative to this file), one definition
    output: learned
    seed: 0
    alpha: {n_members: 5, hidden: [32, 32]}
    potential: {n_members: 5, evaluate_samples: 10}   # null: none
    dynamics: {n_members: 5, evaluate_samples: 10, pair_tolerance: 1.0}

Across molecules (``features: descriptor``, :mod:`~openmm_cgml.learn.descriptors`): sweeps of several molecules
of one family, and ``holdout: [MPE]`` keeps a molecule out of training; every figure is then given for its
samples too (the ``holdout`` set).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel

__all__ = ["AlphaSettings", "DynamicsSettings", "LearnConfig", "LearnResult", "NetworkSettings", "PotentialSettings",
           "run_learn"]

logger = logging.getLogger(__name__)


class NetworkSettings(StrictModel):
    """A network ensemble and its training."""

    n_members: int = Field(5, ge=1, le=64, description="networks in the ensemble (their spread is the uncertainty)")
    hidden: list[int] = Field([32, 32], min_length=1, description="hidden layer widths")
    epochs: int = Field(3000, ge=1, description="full-batch Adam epochs at most")
    patience: int = Field(200, ge=1, description="epochs without a better validation loss before stopping")
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class AlphaSettings(NetworkSettings):
    """The alpha network ensemble (parameters and temperature -> ln alpha)."""


class PotentialSettings(NetworkSettings):
    """The IBI-potential network ensemble (parameters and temperature -> pair tables and bonded parameters)."""

    variance: float = Field(0.9999, gt=0, le=1, description="fraction of the tables' spread the principal "
                            "components keep")
    max_components: int = Field(12, ge=1, description="principal components of the pair tables at most")
    evaluate_samples: int = Field(10, ge=0, description="held-out test samples whose CG liquid is run with the "
                                  "predicted force field (0: tables only)")


class DynamicsSettings(PotentialSettings):
    """The dynamics-preserving potential (parameters of one sample -> the IBI force field of samples whose D_CG
    equals its D_AA)."""

    pair_tolerance: float = Field(1.0, gt=0, description="D_AA(i) and D_CG(j) agree within this many combined "
                                  "standard errors to pair samples i and j")


class LearnConfig(StrictModel):
    """``cgml learn``: sweep directories in, a predicted-alpha model, a predicted IBI potential and their evaluation
    out."""

    sweeps: list[str] = Field(min_length=1, description="sweep directories (`cgml sweep` outputs) of one definition")
    output: str = Field("learned", description="output directory")
    split: list[float] = Field([0.7, 0.15, 0.15], min_length=3, max_length=3,
                               description="train, validation, test fractions of the samples (split by sample)")
    seed: int = Field(0, ge=0, description="seed of the split and the networks")
    require_converged: bool = Field(True, description="use only samples whose D_AA and D_CG were diffusive")
    features: Literal["parameter", "descriptor"] = Field(
        "parameter", description="the models' inputs: the sweeps' varied parameters (sweeps of one definition) or "
        "molecule descriptors (sweeps of several molecules of one family)")
    holdout: list[str] = Field([], description="descriptor features: molecules (by name) left out of training and "
                               "evaluated as the holdout set")
    cross_validation: int | Literal["loo"] | None = Field(
        None, description="also evaluate by k-fold cross-validation over the samples (a number of folds >= 2, or "
        "'loo': one sample per fold), for sweeps too small for one held-out test set: every sample is predicted by "
        "models that never saw it (the models written are still those of the split)")
    alpha: AlphaSettings = AlphaSettings()
    potential: PotentialSettings | None = Field(PotentialSettings(), description="the predicted IBI potential "
                                                "(null: none)")
    dynamics: DynamicsSettings | None = Field(DynamicsSettings(), description="the predicted dynamics-preserving "
                                              "potential (null: none)")


@dataclass
class LearnResult:
    alpha_model: Path
    evaluation: dict
    output: Path


def _markdown(evaluation: dict, meta: dict) -> str:
    sets = [n for n in ("train", "validation", "test", "holdout") if n in evaluation]
    held = (f" Molecules {', '.join(meta.get('molecules') or [])}; held out of training: "
            f"{', '.join(meta['holdout'])} (the holdout set)." if meta.get("holdout") else "")
    lines = ["# Predicted alpha: evaluation", "",
             f"Sweeps: {', '.join(meta['sweeps'])} ({meta['family']} family); target ln alpha; "
             f"{meta['n_train']} training, {meta['n_validation']} validation, {meta['n_test']} test samples "
             f"(split by sample).{held}", "",
             "| set | samples | median relative error | max relative error | measured inside 68 % interval | "
             "inside 95 % |", "|---|---|---|---|---|---|"]
    for name in sets:
        e = evaluation[name]
        lines.append(f"| {name} | {e['n']} | {100 * e['median_relative_error']:.1f} % | "
                     f"{100 * e['max_relative_error']:.1f} % | {100 * e['within_68']:.0f} % | "
                     f"{100 * e['within_95']:.0f} % |")
    b = evaluation["constant_baseline"]
    lines += ["", f"A constant alpha (the training mean, {b['alpha']:.3g}) has a median relative error of "
              f"{100 * b['median_relative_error']:.1f} % on the test samples; the measured alphas themselves carry a "
              f"median relative standard error of "
              f"{100 * evaluation['measurement']['median_relative_error_of_measured_alpha']:.1f} %.", ""]
    if "constant_baseline_holdout" in evaluation:
        lines += [f"On the held-out molecules the constant alpha's median relative error is "
                  f"{100 * evaluation['constant_baseline_holdout']['median_relative_error']:.1f} % (measured alphas: "
                  f"{100 * evaluation['measurement']['median_relative_error_of_measured_alpha_holdout']:.1f} %).",
                  ""]
    pot = evaluation.get("potential")
    if pot:
        lines += ["# Predicted IBI potential", "",
                  f"{pot['pca_components']} principal components of the pair tables ({100 * pot['pca_variance']:.3f} % "
                  "of their spread); table error: RMS of predicted minus IBI where the IBI table is below 5 kT.", "",
                  "| set | samples | median table RMS (kT) |", "|---|---|---|"]
        for name in sets:
            t = pot["tables"][name]
            lines.append(f"| {name} | {t['n']} | {t['table_rms_kT_median']:.3g} |")
        for key, what in (("simulated", "test"), ("simulated_holdout", "held-out")):
            sim = pot.get(key)
            if not (sim and sim["n"]):
                continue
            lines += ["", f"CG runs of {sim['n']} {what} samples with the predicted force field: RDF error over the "
                      f"sample's own IBI one, median {sim['ratio_median']:.3g}, largest {sim['ratio_max']:.3g}; "
                      f"{100 * sim['within_1_5']:.0f} % within 1.5x.", "",
                      "| sample | RDF error, predicted | RDF error, own IBI | ratio |", "|---|---|---|---|"]
            lines += [f"| {s['sample_id']} | {s['rdf_error_predicted']:.3g} | {s['rdf_error_own_ibi']:.3g} | "
                      f"{s['ratio']:.3g} |" for s in sim["samples"]]
        lines.append("")
    dyn = evaluation.get("dynamics")
    if dyn and "error" in dyn:
        lines += ["# Predicted dynamics-preserving potential", "", f"None: {dyn['error']}.", ""]
    elif dyn:
        lines += ["# Predicted dynamics-preserving potential", "",
                  f"Trained on {dyn['pairs']['pairs_train']} pairs (validation {dyn['pairs']['pairs_validation']}) of "
                  f"samples whose D_AA and D_CG agree within {dyn['pair_tolerance_se']:g} standard errors.", ""]
        for key, what in (("simulated", "test"), ("simulated_holdout", "held-out")):
            sim = dyn.get(key)
            if not (sim and sim["n"]):
                continue
            lines += [f"CG runs of {sim['n']} {what} samples inside the pairing's D range "
                      f"({sim['n_rows_outside_pairing_range']} {what} samples lie outside it): D_CG against the "
                      f"sample's D_AA, median relative error {100 * sim['relative_error_median']:.1f} %, "
                      f"{100 * sim['within_15_percent']:.0f} % within 15 %.", "",
                      "| sample | D_AA (target) | D_CG (predicted potential) | relative error |", "|---|---|---|---|"]
            lines += [f"| {s['sample_id']} | {s['D_AA_target']:.4g} ± {s['D_AA_err']:.2g} | {s['D_CG']:.4g} ± "
                      f"{(s['D_CG_err'] or float('nan')):.2g}{'' if s['D_CG_converged'] else ' (not converged)'} | "
                      f"{100 * s['relative_error']:+.1f} % |" for s in sim["samples"]]
            lines.append("")
        lines.append("")
    cv = evaluation.get("cross_validation")
    if cv:
        lines += _cv_markdown(cv)
    return "\n".join(lines)


def _cv_markdown(cv: dict) -> list[str]:
    a = cv["alpha"]
    lines = [f"# Cross-validation ({cv['folds']} folds)", "",
             "Every sample predicted by models trained without it.", "",
             "| model | samples | figure |", "|---|---|---|",
             f"| alpha | {a['n']} | median relative error {100 * a['median_relative_error']:.1f} % (largest "
             f"{100 * a['max_relative_error']:.1f} %; constant alpha {100 * a['constant_baseline_median_relative_error']:.1f} "
             f"%; measured alphas' own error {100 * a['median_relative_error_of_measured_alpha']:.1f} %); inside 68 % "
             f"interval {100 * a['within_68']:.0f} %, inside 95 % {100 * a['within_95']:.0f} % |"]
    p = cv.get("potential")
    if p:
        lines.append(f"| IBI potential, tables | {len(p['table_rms_kT'])} | median table RMS "
                     f"{p['table_rms_kT_median']:.3g} kT |")
        sim = p["simulated"]
        if sim["n"]:
            lines.append(f"| IBI potential, CG runs | {sim['n']} | RDF error over the sample's own IBI: median "
                         f"{sim['ratio_median']:.3g}, largest {sim['ratio_max']:.3g}; {100 * sim['within_1_5']:.0f} % "
                         "within 1.5x |")
    d = cv.get("dynamics")
    if d:
        sim = d["simulated"]
        what = (f"D_CG against the target D_AA: median relative error {100 * sim['relative_error_median']:.1f} %, "
                f"{100 * sim['within_15_percent']:.0f} % within 15 %" if sim["n"] else "no sample inside a fold's "
                "pairing range")
        lines.append(f"| dynamics-preserving potential | {sim['n']} | {what} ({d['folds_without_pairs']} of "
                     f"{d['folds']} folds without enough D_AA = D_CG pairs to train) |")
    return lines + [""]


def _plot(path: Path, evaluation: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .._io import atomic_path

    fig, ax = plt.subplots(figsize=(4.2, 4))
    lo, hi = np.inf, -np.inf
    for name, marker in (("train", "."), ("validation", "s"), ("test", "o"), ("holdout", "^")):
        if name not in evaluation:
            continue
        e = evaluation[name]
        m, p = np.array(e["measured"]), np.array(e["predicted"])
        err = p * np.array(e["predicted_sd_ln"])
        ax.errorbar(m, p, yerr=err, fmt=marker, ms=4 if marker != "." else 6, alpha=0.8, capsize=2 if name in ("test", "holdout")
                    else 0, label=f"{name} ({e['n']})")
        lo, hi = min(lo, m.min(), p.min()), max(hi, m.max(), p.max())
    cv = evaluation.get("cross_validation", {}).get("alpha")
    if cv:  # out of fold: each sample by the models that did not see it
        m, p = np.array(cv["measured"]), np.array(cv["predicted"])
        ax.errorbar(m, p, yerr=p * np.array(cv["predicted_sd_ln"]), fmt="D", ms=4, alpha=0.8, capsize=2,
                    mfc="none", label=f"out of fold ({cv['n']})")
        lo, hi = min(lo, m.min(), p.min()), max(hi, m.max(), p.max())
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel("measured alpha (sweep)")
    ax.set_ylabel("predicted alpha (± 1 sd)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _training(settings: NetworkSettings) -> dict:
    """A network block's training settings, as :func:`~openmm_cgml.learn.train_potential_model` takes them."""
    keys = ("n_members", "hidden", "epochs", "patience", "learning_rate", "weight_decay")
    extra = ("variance", "max_components") if isinstance(settings, PotentialSettings) else ()
    return {k: getattr(settings, k) for k in keys + extra}


def _cross_validate(config: LearnConfig, data, targets, progress: bool) -> dict:
    """The ``cross_validation`` block of the evaluation: alpha and, when configured, both potentials, out of fold."""
    from .alpha import cross_validate_alpha
    from .data import cross_validation_folds
    from .potential import cross_validate_potential

    folds = cross_validation_folds(data, config.cross_validation, tuple(config.split), config.seed)
    result = {"folds": len(folds), "alpha": cross_validate_alpha(data, folds, seed=config.seed,
                                                                  **_training(config.alpha))}
    if config.potential is not None:
        p = config.potential
        result["potential"] = cross_validate_potential(data, folds, evaluate_samples=p.evaluate_samples,
                                                       progress=progress, targets=targets, seed=config.seed,
                                                       **_training(p))
    if config.dynamics is not None:
        q = config.dynamics
        result["dynamics"] = cross_validate_potential(data, folds, kind="dynamics", pair_tolerance=q.pair_tolerance,
                                                      evaluate_samples=q.evaluate_samples, progress=progress,
                                                      targets=targets, seed=config.seed, **_training(q))
    return result


def run_learn(config: LearnConfig, *, base: Path | None = None, progress: bool = False) -> LearnResult:
    """Train and evaluate the predicted-alpha model of ``config`` (relative paths against ``base``)."""
    from .._io import atomic_write_text
    from ..dynamics.alpha import save_alpha_model
    from .alpha import train_alpha_model
    from .data import load_sweeps

    base = Path(base or ".")
    out = base / config.output
    out.mkdir(parents=True, exist_ok=True)
    data = load_sweeps([base / s for s in config.sweeps], require_converged=config.require_converged,
                       features=config.features, holdout=config.holdout)
    a = config.alpha
    model, evaluation = train_alpha_model(data, **_training(a), fractions=tuple(config.split), seed=config.seed)
    targets = None
    if config.potential is not None or config.dynamics is not None:
        from .potential import load_ibi_targets

        targets = load_ibi_targets(data)  # every sample's IBI output, read once for both potentials
    if config.potential is not None:
        from .potential import evaluate_potential_model, train_potential_model

        p = config.potential
        potential, split, table_errors = train_potential_model(
            data, **_training(p), fractions=tuple(config.split), seed=config.seed, targets=targets)
        potential.save(out / "predicted_potential.json")
        evaluation["potential"] = {"tables": table_errors, "pca_components": potential.metadata["pca_components"],
                                   "pca_variance": potential.metadata["pca_variance"]}
        if p.evaluate_samples:
            for key, name in (("simulated", "test"), ("simulated_holdout", "holdout")):
                if name in split:
                    evaluation["potential"][key] = evaluate_potential_model(
                        potential, data, split[name], max_samples=p.evaluate_samples, progress=progress)
    if config.dynamics is not None:
        from ..exceptions import DatasetError
        from .potential import evaluate_dynamics_model, train_potential_model

        q = config.dynamics
        try:
            dynamics, split, pairs = train_potential_model(
                data, kind="dynamics", pair_tolerance=q.pair_tolerance, **_training(q),
                fractions=tuple(config.split), seed=config.seed, targets=targets)
        except DatasetError as exc:  # no D_AA = D_CG pairs: the other models stand, the evaluation says why
            logger.warning("no dynamics-preserving potential: %s", exc)
            (out / "dynamics_potential.json").unlink(missing_ok=True)
            evaluation["dynamics"] = {"error": str(exc), "pair_tolerance_se": q.pair_tolerance}
            dynamics = None
        else:
            dynamics.save(out / "dynamics_potential.json")
            evaluation["dynamics"] = {"pairs": pairs, "pair_tolerance_se": q.pair_tolerance}
        if q.evaluate_samples and dynamics is not None:
            for key, name in (("simulated", "test"), ("simulated_holdout", "holdout")):
                if name in split:
                    evaluation["dynamics"][key] = evaluate_dynamics_model(
                        dynamics, data, split[name], max_samples=q.evaluate_samples, pair_tolerance=q.pair_tolerance,
                        progress=progress)
    if config.cross_validation is not None:
        evaluation["cross_validation"] = _cross_validate(config, data, targets, progress)
    evaluation["excluded_samples"] = data.excluded
    path = save_alpha_model(out / "alpha_model.json", model)
    atomic_write_text(out / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    atomic_write_text(out / "evaluation.md", _markdown(evaluation, model.metadata))
    _plot(out / "alpha_parity.png", evaluation)
    if "holdout" in evaluation:
        h = evaluation["holdout"]
        logger.info("predicted alpha on %d samples of the held-out molecules: median relative error %.1f %%, %.0f %% "
                    "inside the 95 %% interval", h["n"], 100 * h["median_relative_error"], 100 * h["within_95"])
    t = evaluation["test"]
    logger.info("predicted alpha on %d test samples: median relative error %.1f %%, %.0f %% inside the 95 %% "
                "interval (constant alpha: %.1f %%)", t["n"], 100 * t["median_relative_error"], 100 * t["within_95"],
                100 * evaluation["constant_baseline"]["median_relative_error"])
    return LearnResult(path, evaluation, out)
