"""Chain checks of the ``cgml reference`` workflow: chains against the box the configuration implies (before
anything is built) and the end-to-end relaxation of chain molecules over the production (recorded in the
dataset's metadata as ``chain_relaxation``)."""

import logging

import numpy as np
import pytest
from openmm import app

from openmm_cgml.dataset import TrajectoryWriter, open_dataset
from openmm_cgml.exceptions import InvalidSystemError
from openmm_cgml.testing import requires_openff
from openmm_cgml.workflows import reference as workflow
from openmm_cgml.workflows.reference import chain_relaxation, check_chain_box_length

L, N_DEC, N_ETH, N_FRAMES = 2.5, 12, 6, 80
C30 = "C" * 30
C30_MASS = 30 * 12.011 + 62 * 1.008  # Da


def _density(mass_da: float, box_nm: float) -> str:
    return f"{mass_da / 6.02214076e23 * 1e21 / box_nm**3:.6f} g/cm**3"


# ----------------------------------------------------------------------------- before the run
def test_a_chain_longer_than_the_implied_box_is_refused_before_anything_runs(tmp_path, monkeypatch, caplog):
    """4 x C30 at the density of a 2 nm box: 29 C-C bonds x 0.154 nm = 4.47 nm fully extended, longer than the
    box; refused (with the numbers) before any file is written, or warned about before the run starts."""
    config = dict(components=[dict(smiles=C30, count=4, name="TRI")], density=_density(4 * C30_MASS, 2.0),
                  cutoff="0.6 nm", charge_method="gasteiger", nvt="0.2 ps", npt="0.2 ps", production="0.4 ps",
                  platform="Reference")
    found = check_chain_box_length(config, on_problem="ignore")
    assert len(found) == 1 and found[0]["too_long"] and found[0]["backbone_bonds"] == 29
    assert found[0]["contour_nm"] == pytest.approx(29 * 0.154) and found[0]["box_length_nm"] == pytest.approx(2.0, 1e-3)
    assert found[0]["mass_da"] == pytest.approx(C30_MASS, rel=1e-3)

    def no_simulation(*args, **kwargs):
        raise AssertionError("the simulation was started")

    monkeypatch.setattr(workflow, "_run_reference", no_simulation)
    with pytest.raises(InvalidSystemError) as err:
        workflow.run_reference(config, tmp_path / "aa.h5", chain_box="raise")
    text = str(err.value)
    for number in ("29 bonds", "4.47 nm", "2 nm", "4 x 422.8 Da", "TRI: 45"):
        assert number in text, (number, text)
    assert not list(tmp_path.iterdir())  # nothing built, packed or written

    class Started(Exception):
        pass

    def started(*args, **kwargs):  # the warning is out before the run starts
        assert "too long for its box" in caplog.text
        raise Started

    monkeypatch.setattr(workflow, "_run_reference", started)
    with caplog.at_level(logging.WARNING), pytest.raises(Started):
        workflow.run_reference(config, tmp_path / "aa.h5")
    # a configured box_length is checked the same way; a box longer than the chain passes in silence
    assert check_chain_box_length(dict(config, density=None, box_length="3 nm"), on_problem="ignore")[0]["too_long"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ok = check_chain_box_length(dict(config, density=None, box_length="4.5 nm"), on_problem="raise")
    assert not ok[0]["too_long"] and "too long" not in caplog.text
    with pytest.raises(InvalidSystemError, match="on_problem"):
        check_chain_box_length(config, on_problem="maybe")


def test_several_components_share_the_box():
    """The box holds all components: 300 decanes and 4 C30 at 0.7 g/cm^3 fill a box (4.72 nm) longer than either
    chain (4.47 nm for C30)."""
    config = dict(components=[dict(smiles="C" * 10, count=300, name="DEC"), dict(smiles=C30, count=4)],
                  density="0.7 g/cm**3")
    found = check_chain_box_length(config, on_problem="raise")
    mass = 300 * (10 * 12.011 + 22 * 1.008) + 4 * C30_MASS
    assert [f["molecule"] for f in found] == ["DEC", "M1"] and [f["backbone_bonds"] for f in found] == [9, 29]
    assert found[0]["box_length_nm"] == pytest.approx((mass / 6.02214076e23 * 1e21 / 0.7) ** (1 / 3), rel=1e-3)
    assert not any(f["too_long"] for f in found)


# ----------------------------------------------------------------------------- after the run
def _alkane(n: int, rng, bond: float = 0.154) -> np.ndarray:
    """A random (freely jointed) carbon chain of n atoms."""
    u = rng.normal(size=(n - 1, 3))
    u *= bond / np.linalg.norm(u, axis=1, keepdims=True)
    return np.concatenate([np.zeros((1, 3)), np.cumsum(u, axis=0)])


def _write(path, *, frozen: bool, seed: int = 0):
    """An all-atom-like dataset of N_DEC decanes (carbons 0..9 bonded in a line, one hydrogen on each) and N_ETH
    ethanes (too short to be chains), wrapped into a small box so that many chains cross it.  Decanes redrawn every
    frame (relaxed at once), or ``frozen``: each keeps its conformation and only moves as a whole."""
    rng = np.random.default_rng(seed)
    top = app.Topology()
    chain = top.addChain()
    for _ in range(N_DEC):
        res = top.addResidue("DEC", chain)
        carbons = []
        for k in range(10):  # C0 H0 C1 H1 ...
            carbons.append(top.addAtom(f"C{k}", app.element.carbon, res))
            top.addBond(carbons[-1], top.addAtom(f"H{k}", app.element.hydrogen, res))
        for a, b in zip(carbons[:-1], carbons[1:]):
            top.addBond(a, b)
    for _ in range(N_ETH):
        res = top.addResidue("ETH", chain)
        a, b = (top.addAtom(f"C{k}", app.element.carbon, res) for k in range(2))
        top.addBond(a, b)
    n = top.getNumAtoms()
    masses = np.array([a.element.mass._value for a in top.atoms()])
    fixed = [_alkane(10, rng) for _ in range(N_DEC)]

    def frame():
        out = []
        for m in range(N_DEC):
            c = (fixed[m] if frozen else _alkane(10, rng)) + rng.uniform(0, L, 3)
            out.append(np.stack([c, c + [0.0, 0.0, 0.109]], axis=1).reshape(20, 3))  # a hydrogen above each carbon
        out += [_alkane(2, rng) + rng.uniform(0, L, 3) for _ in range(N_ETH)]
        return np.concatenate(out)

    with TrajectoryWriter(path, top, masses, {"kind": "all-atom reference"}, fields=("positions",)) as w:
        for k in range(N_FRAMES):
            x = frame()
            assert x.shape == (n, 3)
            w.append(positions=x % L, box=np.eye(3) * L, step=k * 50, time=0.1 * k)
    return path


def test_backbones_follow_the_heavy_atoms_end_to_end(tmp_path):
    """The longest heavy-atom path of a decane whose atoms alternate C, H: its ten carbons in order; ethane is no
    chain; a lower threshold takes it in."""
    data = open_dataset(_write(tmp_path / "a.h5", frozen=True)).topology_data
    chains = workflow._backbones(data, 8)
    assert list(chains) == ["DEC"] and len(chains["DEC"]) == N_DEC
    first = chains["DEC"][0]
    assert first in (list(range(0, 20, 2)), list(range(18, -1, -2)))
    assert chains["DEC"][1] == [i + 20 for i in first]
    assert set(workflow._backbones(data, 2)) == {"DEC", "ETH"}


def test_chain_relaxation_tells_a_frozen_reference_from_a_relaxed_one(tmp_path, caplog):
    """Decanes redrawn every frame: relaxed after one frame.  Decanes frozen in one conformation (moving whole,
    wrapped across the boundary): C(t) stays 1, so not decayed, a warning, and the record says so; the record is
    in the metadata (the dataset still opens) and is reused for the same frames."""
    relaxed = chain_relaxation(_write(tmp_path / "relaxed.h5", frozen=False, seed=1))
    assert set(relaxed) == {"DEC"}
    entry = relaxed["DEC"]
    assert entry["decayed"] is True and 0 < entry["tau_ps"] < 0.1 and entry["decay_time_ps"] == pytest.approx(0.1)
    assert entry["n_chains"] == N_DEC and entry["backbone_atoms"] == 10 and entry["frames"] == N_FRAMES
    assert "decayed below" in entry["message"]
    assert "chain_relaxation" not in open_dataset(tmp_path / "relaxed.h5").metadata  # record=False writes nothing

    path = _write(tmp_path / "frozen.h5", frozen=True, seed=2)
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.workflows.reference"):
        frozen = chain_relaxation(path, record=True)
    entry = frozen["DEC"]
    assert entry["decayed"] is False and entry["tau_ps"] == pytest.approx(entry["t_max_ps"], rel=0.02)
    assert "has not decayed" in entry["message"] and "not relaxed" in entry["message"]
    assert "DEC (12 chains, backbone of 10 heavy atoms)" in caplog.text and "not relaxed" in caplog.text
    stored = open_dataset(path).metadata["chain_relaxation"]
    assert stored == frozen
    assert set(stored["DEC"]) >= {"tau_ps", "decayed", "message"}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert chain_relaxation(path, record=True) == frozen  # reused, not recomputed
    assert "has not decayed" not in caplog.text


def test_no_chains_no_record(tmp_path):
    """A liquid of short molecules gets no chain_relaxation entry (its dataset is left as it was)."""
    path = _write(tmp_path / "a.h5", frozen=False)
    before = path.read_bytes()
    assert chain_relaxation(path, min_atoms=11, record=True) == {}
    assert path.read_bytes() == before


@pytest.mark.slow  # 16 s on an idle machine, up to a minute on a loaded one (OpenFF parametrisation)
@requires_openff
def test_a_short_alkane_reference_records_its_chain_relaxation(tmp_path, caplog):
    """End to end (a few ps, Reference platform): 8 n-decanes in a 1.56 nm box (longer than their 1.39 nm
    contour, so no box warning); the production's dataset carries chain_relaxation for DEC."""
    config = dict(components=[dict(smiles="CCCCCCCCCC", count=8, name="DEC")], density="0.5 g/cm**3",
                  cutoff="0.6 nm", charge_method="gasteiger", nvt="0.2 ps", npt="0.2 ps", production="2 ps",
                  report_interval="0.1 ps", checkpoint_interval="1 ps", platform="Reference", fields=["positions"])
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.workflows.reference"):
        result = workflow.run_reference(config, tmp_path / "dec.h5")
    assert "too long for its box" not in caplog.text
    entry = open_dataset(result.dataset).metadata["chain_relaxation"]["DEC"]
    assert entry["n_chains"] == 8 and entry["backbone_atoms"] == 10 and entry["frames"] == result.n_frames == 21
    assert isinstance(entry["decayed"], bool) and entry["tau_ps"] > 0
    assert ("has not decayed" in entry["message"]) is (not entry["decayed"])
    if not entry["decayed"]:  # 2 ps is short for a decane's end-to-end vector: expected, and warned about
        assert "DEC (8 chains" in caplog.text
