"""Neighbour search: cell list, batched and NNPOps paths against brute force and an explicit image search."""

import itertools

import numpy as np
import pytest
import torch
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture)

from openmm_cgml.exceptions import InvalidSystemError
from openmm_cgml.models import (
    batched_neighbor_pairs,
    brute_force_pairs,
    cell_list_pairs,
    check_cutoff,
    neighbor_pairs,
    nnpops_available,
    nnpops_neighbor_pairs,
)


def _pairs_set(pairs):
    return set(map(tuple, pairs.T.tolist()))


def _explicit_images(pos, cutoff, box):
    """Ground truth: every pair checked against all images within two box vectors (NumPy, float64)."""
    pos = np.asarray(pos, dtype=float)
    shifts = np.array([np.array(k) @ box for k in itertools.product(range(-2, 3), repeat=3)])
    found = {}
    for i in range(len(pos)):
        d = pos[i + 1:, None, :] - pos[i] + shifts[None]  # (n - i - 1, 125, 3)
        dmin = np.linalg.norm(d, axis=-1).min(axis=1)
        for k in np.nonzero(dmin < cutoff)[0]:
            found[(i, i + 1 + int(k))] = float(dmin[k])
    return found


BOXES = {
    "cubic": np.eye(3) * 3.0,
    "triclinic": np.array([[3.0, 0, 0], [0.9, 2.8, 0], [-1.1, 0.7, 2.9]]),
}


@pytest.mark.parametrize("shape", sorted(BOXES))
def test_brute_force_matches_explicit_images(shape):
    box = BOXES[shape]
    rng = np.random.default_rng(1)
    pos = rng.uniform(-0.5, 1.2, size=(80, 3)) @ box  # some outside the box: wrapping must not matter
    cutoff = 1.2
    truth = _explicit_images(pos, cutoff, box)
    pairs, shifts = brute_force_pairs(torch.tensor(pos), cutoff, torch.tensor(box))
    assert _pairs_set(pairs) == set(truth)
    vec = torch.tensor(pos)[pairs[1]] - torch.tensor(pos)[pairs[0]] + shifts
    got = dict(zip(map(tuple, pairs.T.tolist()), vec.norm(dim=-1).tolist()))
    for key, d in truth.items():
        assert got[key] == pytest.approx(d, abs=1e-12)


@pytest.mark.parametrize("shape", sorted(BOXES))
@pytest.mark.parametrize("density", ["random", "dense"])
def test_cell_list_equals_brute_force(shape, density):
    scale = 3.0 if density == "random" else 1.0
    box = torch.tensor(BOXES[shape]) * scale
    n = 600 if density == "random" else 900  # dense: ~33 beads/nm^3
    gen = torch.Generator().manual_seed(3)
    frac = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    pos = frac @ box
    cutoff = 1.0
    ref, ref_shift = brute_force_pairs(pos, cutoff, box)
    got, got_shift = cell_list_pairs(pos, cutoff, box)
    assert got.shape[1] == ref.shape[1] > 0
    assert _pairs_set(got) == _pairs_set(ref)
    # the shifts give the same pair vectors
    order_ref = {p: k for k, p in enumerate(map(tuple, ref.T.tolist()))}
    idx = torch.tensor([order_ref[p] for p in map(tuple, got.T.tolist())])
    torch.testing.assert_close(got_shift, ref_shift[idx])


def test_cell_list_non_periodic_and_small_grid():
    gen = torch.Generator().manual_seed(4)
    pos = torch.rand(400, 3, generator=gen, dtype=torch.float64) * 4.0
    for cutoff in (0.7, 3.0):  # 3.0 nm gives a 1-cell grid
        ref, _ = brute_force_pairs(pos, cutoff, None)
        got, shifts = cell_list_pairs(pos, cutoff, None)
        assert _pairs_set(got) == _pairs_set(ref)
        assert bool((shifts == 0).all())
    # a periodic box with fewer than 3 cells per axis falls back to all pairs
    box = torch.eye(3, dtype=torch.float64) * 2.5
    assert _pairs_set(cell_list_pairs(pos % 2.5, 1.2, box)[0]) == _pairs_set(brute_force_pairs(pos % 2.5, 1.2, box)[0])


def test_batched_and_scripted_paths_agree():
    gen = torch.Generator().manual_seed(5)
    box = torch.tensor(BOXES["triclinic"]) * 2
    frames = torch.rand(3, 300, 3, generator=gen, dtype=torch.float64) @ box
    boxes = box.expand(3, 3, 3)
    for brute_max in (10_000, 10):  # vectorised all-pairs, then cell list frame by frame
        pairs, _ = batched_neighbor_pairs(frames, 1.1, boxes, brute_max)
        expected = set()
        for f in range(3):
            expected |= {(i + 300 * f, j + 300 * f) for i, j in _pairs_set(brute_force_pairs(frames[f], 1.1, box)[0])}
        assert _pairs_set(pairs) == expected
    scripted = torch.jit.script(neighbor_pairs)
    got, _ = scripted(frames[0], 1.1, box, 10)
    assert _pairs_set(got) == _pairs_set(brute_force_pairs(frames[0], 1.1, box)[0])


def test_cutoff_beyond_half_box_is_refused():
    check_cutoff(1.0, np.eye(3) * 2.0)
    with pytest.raises(InvalidSystemError, match="half the smallest box width"):
        check_cutoff(1.2, np.eye(3) * 2.0)
    with pytest.raises(InvalidSystemError):
        check_cutoff(1.2, BOXES["triclinic"] * 0.8)


@pytest.mark.skipif(not nnpops_available(), reason="NNPOps is not installed (optional accelerator)")
def test_nnpops_gives_the_same_pairs():
    gen = torch.Generator().manual_seed(6)
    box = torch.tensor(BOXES["triclinic"], dtype=torch.float32) * 2
    pos = torch.rand(500, 3, generator=gen) @ box
    ref, ref_shift = brute_force_pairs(pos, 1.0, box)
    got, got_shift = nnpops_neighbor_pairs(pos, 1.0, box)
    assert _pairs_set(got) == _pairs_set(ref)


@pytest.mark.parametrize("mode", ["good", "bad"])
def test_nnpops_path_with_a_stand_in_kernel(mode):
    """Our NNPOps path (search module, probe check, model, TorchForce, the term's neighbor_search option) run
    against a stand-in for NNPOps' op with its documented schema, registered in a subprocess (NNPOps itself is
    conda-only).  "bad": a kernel with the opposite delta sign is caught by the probe check."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("_nnpops_standin.py")
    run = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stdout[-2000:] + run.stderr[-4000:]
