"""``arrhenius_study``: Arrhenius laws of D(T) over models and species, alpha(T) fitted at training temperatures and
checked at held-out ones, on exact and noisy Arrhenius data with known Ea and A."""

import json

import numpy as np
import pytest

from openmm_cgml.analysis import GAS_CONSTANT, arrhenius_plot, arrhenius_study
from openmm_cgml.analysis.msd import DiffusionResult
from openmm_cgml.dynamics import ArrheniusAlpha
from openmm_cgml.exceptions import ConfigurationError, TrajectoryError

#: (A in nm^2/ps, Ea in kJ/mol) of each model and species: the CG model is faster and less activated.
LAWS = {"AA": {"cation": (5.0, 20.0), "anion": (2.0, 18.0)},
        "CG": {"cation": (3.0, 12.0), "anion": (0.5, 9.0)}}
TRAINING, HELD_OUT = (280.0, 300.0, 340.0, 360.0), (320.0, 400.0)  # 320 K interpolated, 400 K extrapolated
TEMPS = TRAINING + HELD_OUT


def _d(model: str, species: str, t) -> np.ndarray:
    a, ea = LAWS[model][species]
    return a * np.exp(-ea / (GAS_CONSTANT * np.asarray(t, dtype=float)))


def _data(rel_err: float = 0.02, rng=None, converged=True) -> dict:
    """``{model: {species: {T: record}}}``: exact D, or with relative Gaussian noise ``rel_err`` when ``rng``."""
    out = {}
    for model, laws in LAWS.items():
        out[model] = {}
        for species in laws:
            out[model][species] = {}
            for t in TEMPS:
                d = float(_d(model, species, t))
                noisy = d * (1 + rel_err * rng.standard_normal()) if rng is not None else d
                out[model][species][t] = {"D": noisy, "D_err": rel_err * d, "converged": converged}
    return out


def test_exact_arrhenius_data_give_back_ea_alpha_and_the_reference_d():
    study = arrhenius_study(_data(), training=TRAINING, held_out=HELD_OUT)
    assert study.models == ["AA", "CG"] and study.species == ["cation", "anion"] and not study.flags
    for model, laws in LAWS.items():
        for species, (a, ea) in laws.items():
            e = study.results[model][species]
            for fit in (e.fit_all, e.fit_training):
                assert fit.activation_energy == pytest.approx(ea, rel=1e-9)
                assert fit.ln_prefactor == pytest.approx(np.log(a), rel=1e-9)
            assert e.fit_all.temperatures.size == 6 and e.fit_training.temperatures.tolist() == list(TRAINING)
    for species in LAWS["CG"]:
        (a_cg, ea_cg), (a_aa, ea_aa) = LAWS["CG"][species], LAWS["AA"][species]
        c = study.results["CG"][species].vs_reference
        assert c.ea_deviation == pytest.approx(abs(ea_cg - ea_aa) / ea_aa, rel=1e-9)
        assert c.ea_deviation_training == pytest.approx(c.ea_deviation, rel=1e-9)
        assert [p.temperature for p in c.held_out] == list(HELD_OUT)
        assert [p.extrapolated for p in c.held_out] == [False, True]
        model = ArrheniusAlpha.from_fits(study.results["CG"][species].fit_training,
                                         study.results["AA"][species].fit_training)
        for p in c.held_out:
            t = p.temperature
            assert p.alpha == pytest.approx(a_cg / a_aa * np.exp(-(ea_cg - ea_aa) / (GAS_CONSTANT * t)), rel=1e-9)
            assert p.alpha == pytest.approx(model.alpha(t), rel=1e-12)
            assert p.alpha_err == pytest.approx(model.alpha_err(t), rel=1e-9)
            assert p.d_predicted == pytest.approx(_d("AA", species, t), rel=1e-9)
            assert p.d_reference == pytest.approx(_d("AA", species, t), rel=1e-12)
            assert abs(p.relative_error) < 1e-9
            # the error of the prediction: D_CG's and alpha's, independent
            assert p.d_predicted_err == pytest.approx(p.d_predicted * np.hypot(0.02, p.alpha_err / p.alpha), rel=1e-9)
        assert c.held_out[1].alpha_err > c.held_out[0].alpha_err  # extrapolation is less certain
        # the comparison's alpha model is ArrheniusAlpha.from_fits
        assert ArrheniusAlpha(**c.alpha_parameters()).to_data() == model.to_data()


def test_records_of_species_diffusion_check_json_keys_and_diffusion_results_are_read_alike():
    plain = arrhenius_study(_data(), training=TRAINING, held_out=HELD_OUT)
    records, results = {}, {}
    for model, per in _data().items():
        records[model] = {s: {str(t): {"D_nm2_per_ps": r["D"], "D_err_nm2_per_ps": r["D_err"], "converged": True,
                                       "reason": "converged: ..."} for t, r in series.items()}
                          for s, series in per.items()}
        results[model] = {s: {t: DiffusionResult(D=r["D"], D_err=r["D_err"], fit_range=(1.0, 10.0), intercept=0.0,
                                                 linear_regime_detected=True, error_method="blocks", converged=True)
                              for t, r in series.items()} for s, series in per.items()}
    for other in (arrhenius_study(json.loads(json.dumps(records)), training=TRAINING, held_out=HELD_OUT),
                  arrhenius_study(results, training=TRAINING, held_out=HELD_OUT)):
        assert other.to_data() == plain.to_data()


def test_noisy_data_propagate_errors_into_the_prediction():
    """Over many noisy draws the predicted D_AA scatters about the true one by its stated error (pull of unit
    spread), at the interpolated and the extrapolated temperature; so does the relative error of the prediction
    about zero, and the Ea deviation about the true one."""
    rng = np.random.default_rng(11)
    pulls = {"d_320": [], "d_400": [], "rel_400": [], "ea": []}
    for _ in range(400):
        study = arrhenius_study(_data(0.03, rng), training=TRAINING, held_out=HELD_OUT, models=["CG"])
        c = study.results["CG"]["cation"].vs_reference
        for p in c.held_out:
            pulls[f"d_{p.temperature:g}"].append((p.d_predicted - _d("AA", "cation", p.temperature)) / p.d_predicted_err)
        pulls["rel_400"].append(c.held_out[1].relative_error / c.held_out[1].relative_error_err)
        pulls["ea"].append((c.ea_deviation - 0.4) / c.ea_deviation_err)
    for name, values in pulls.items():
        values = np.asarray(values)
        assert abs(values.mean()) < 0.2, name
        assert 0.85 < values.std() < 1.15, (name, values.std())


def test_flags_name_what_is_doubtful_and_skipped_fits_do_not_crash():
    data = _data()
    data["AA"]["cation"][300.0]["converged"] = False
    data["AA"]["cation"][300.0]["reason"] = "not converged: local slope 0.6-0.8"
    data["CG"]["anion"] = {280.0: data["CG"]["anion"][280.0], 400.0: data["CG"]["anion"][400.0]}  # 1 training T
    data["CG"]["cation"][280.0]["D_err"] = None  # unweighted fits
    data["CG"]["dication"] = {t: {"D": 1e-3, "D_err": 1e-4} for t in TRAINING}  # not in the reference
    data["CG"]["cation"][320.0] = {"converged": False, "reason": "not converged: the trajectory is too short"}
    study = arrhenius_study(data, training=TRAINING, held_out=HELD_OUT)
    flags = "\n".join(study.flags)
    assert "AA/cation: D at 300 K is not converged (not converged: local slope 0.6-0.8)" in flags
    anion = study.results["CG"]["anion"]
    assert anion.fit_training is None and anion.fit_all is not None
    assert "CG/anion: fit over the training temperatures skipped: fewer than 2 temperatures (280 K)" in flags
    assert "CG/anion: alpha(T) not fitted: the model's training fit was skipped" in flags
    assert anion.vs_reference.held_out == () and np.isnan(anion.vs_reference.ea_deviation_training)
    assert np.isfinite(anion.vs_reference.ea_deviation)
    assert "CG/cation: fit over all temperatures unweighted: no positive D error at 280 K" in flags
    assert "CG/cation: no D at 320 K, left out (not converged: the trajectory is too short)" in flags
    assert "CG/cation: no D of the model at the held-out 320 K" in flags
    assert [p.temperature for p in study.results["CG"]["cation"].vs_reference.held_out] == [400.0]
    assert "CG/dication: not compared: the reference 'AA' has no species 'dication'" in flags
    # a law that is not Arrhenius within small errors: chi-squared flagged
    curved = _data(0.002)
    curved["CG"]["cation"] = {t: {"D": float(_d("CG", "cation", t) * (1 + 1e-4 * (t - 330) ** 2)), "D_err":
                                  0.002 * float(_d("CG", "cation", t))} for t in TEMPS}
    flags = "\n".join(arrhenius_study(curved, training=TRAINING, held_out=HELD_OUT).flags)
    assert "CG/cation: fit over all temperatures: chi2/dof" in flags and "not linear in 1/T" in flags
    assert "AA/cation: fit" not in flags
    # everything is plain data and the table has a row per model and species
    data_out = study.to_data()
    json.dumps(data_out, allow_nan=False)
    assert data_out["results"]["CG"]["anion"]["fit_training"] is None
    assert data_out["results"]["CG"]["cation"]["vs_reference"]["held_out"][0]["temperature_K"] == 400.0
    assert "vs_reference" not in data_out["results"]["AA"]["cation"]
    table = study.table_markdown()
    assert table.count("\n| CG |") == 3 and table.count("\n| AA |") == 2 and "skipped" in table


def test_inconsistent_studies_are_refused():
    data = _data()
    with pytest.raises(ConfigurationError, match="reference model 'AA' is not in"):
        arrhenius_study({"CG": data["CG"]}, training=TRAINING)
    with pytest.raises(ConfigurationError, match=r"held-out temperature\(s\) \[300.0\] K are also training"):
        arrhenius_study(data, training=TRAINING, held_out=(300.0, 400.0))
    with pytest.raises(ConfigurationError, match="models \\['MARTINI'\\] are not in"):
        arrhenius_study(data, training=TRAINING, models=["MARTINI"])
    missing = _data()
    del missing["AA"]["anion"][340.0]
    with pytest.raises(ConfigurationError, match=r"no D of 'anion' at training temperature\(s\) 340 K"):
        arrhenius_study(missing, training=TRAINING, held_out=HELD_OUT)
    for bad in (0.0, -1e-3, float("nan")):
        wrong = _data()
        wrong["CG"]["cation"][320.0]["D"] = bad
        with pytest.raises(TrajectoryError, match="CG/cation at 320 K"):
            arrhenius_study(wrong, training=TRAINING, held_out=HELD_OUT)


def test_the_plot_is_written(tmp_path):
    study = arrhenius_study(_data(0.02, np.random.default_rng(0)), training=TRAINING, held_out=HELD_OUT)
    path = arrhenius_plot(tmp_path / "arrhenius.png", study)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["arrhenius.png"]  # no temporary file left
