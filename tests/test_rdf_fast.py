"""compute_rdf's cell-list pair search against a brute-force O(N^2) minimum-image reference and against freud.

The reference here shares no code with openmm_cgml.analysis.rdf: every pair, the minimum image by trying all
lattice shifts, bins found by searching the edges.
"""

import itertools

import numpy as np
import pytest

from openmm_cgml.analysis import compute_rdf
from openmm_cgml.analysis import rdf as rdf_module
from openmm_cgml.geometry import perpendicular_widths

BOXES = {
    "orthorhombic": np.diag([3.1, 2.7, 3.4]),
    "triclinic": np.array([[3.0, 0.0, 0.0], [0.9, 2.8, 0.0], [-0.7, 0.6, 3.1]]),
    "rhombic_dodecahedron": np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.5, 1.5, 2.1213203435596424]]),
}
_LATTICE = np.array(list(itertools.product(range(-2, 3), repeat=3)), dtype=float)


_DISTANCES = {}


def _min_image_distances(x, box):
    """Distances of all pairs i < j of ``x`` (n, 3), minimum image over 125 lattice shifts (cached)."""
    key = (x.tobytes(), np.asarray(box, dtype=float).tobytes())
    if key not in _DISTANCES:
        i, j = np.triu_indices(x.shape[0], 1)
        frac = (x[j] - x[i]) @ np.linalg.inv(box)
        delta = (frac - np.round(frac)) @ box  # within one box length; then every shift of up to 2 box vectors
        shifts = _LATTICE @ box
        d = np.empty(i.size)
        for s in range(0, i.size, 20_000):
            part = delta[s:s + 20_000, None, :] + shifts[None]
            d[s:s + 20_000] = np.sqrt(np.min(np.einsum("pkc,pkc->pk", part, part), axis=1))
        _DISTANCES[key] = (i, j, d)
    return _DISTANCES[key]


def _reference(x, box, types, pairs, mol, kind, r_min, r_max, n_bins):
    """{pair: (g averaged over frames, coordination, n_pairs)} by brute force."""
    boxes = np.broadcast_to(box, (x.shape[0], 3, 3))
    edges = np.linspace(r_min, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    per_frame = [_min_image_distances(x[f], boxes[f]) for f in range(x.shape[0])]
    distinct = ~np.eye(types.size, dtype=bool)
    out = {}
    for a, b in pairs:
        in_a, in_b = types == a, types == b
        n_a = int(in_a.sum())
        ordered = distinct & in_a[:, None] & in_b[None, :]  # ordered pairs (p, q), p of type a, q of type b
        n_all = int(ordered.sum())
        n_intra = 0 if mol is None else int(np.sum(ordered & (mol[:, None] == mol[None, :])))
        norm = n_all - n_intra if kind == "inter" else n_all
        g_frames, c_frames = [], []
        for f, (i, j, d) in enumerate(per_frame):
            weight = ordered[i, j].astype(float) + ordered[j, i]
            if kind != "all":
                same_mol = mol[i] == mol[j]
                weight = weight * (same_mol if kind == "intra" else ~same_mol)
            k = np.searchsorted(edges, d, side="left") - 1  # edges[k] < d <= edges[k + 1]
            ok = (k >= 0) & (k < n_bins)
            counts = np.bincount(k[ok], weights=weight[ok], minlength=n_bins)
            g_frames.append(counts * abs(np.linalg.det(boxes[f])) / (norm * shell))
            c_frames.append(counts)
        out[(a, b)] = (np.mean(g_frames, axis=0), np.cumsum(np.mean(c_frames, axis=0)) / n_a, norm)
    return out


def _frames(box, n, n_frames, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 2.0, (n_frames, n, 3)) @ box  # outside the box too: wrapping is part of the test
    types = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    mol = rng.integers(0, n // 3, n)  # molecules of about 3 beads, scattered over the box
    return x, types, mol


def _check(ours, ref):
    assert ours.keys() == ref.keys()
    for p, (g, coordination, n_pairs) in ref.items():
        assert ours[p].n_pairs == n_pairs, p
        assert np.any(g > 0), p
        np.testing.assert_allclose(ours[p].g, g, rtol=1e-12, atol=0, err_msg=str(p))
        np.testing.assert_allclose(ours[p].coordination, coordination, rtol=1e-12, atol=0, err_msg=str(p))


@pytest.mark.parametrize("box_name", sorted(BOXES))
@pytest.mark.parametrize("kind", ["all", "inter", "intra"])
def test_matches_brute_force(box_name, kind):
    box = BOXES[box_name]
    x, types, mol = _frames(box, 400, 2, seed=sorted(BOXES).index(box_name))
    r_max = 0.49 * perpendicular_widths(box).min()
    pairs = [("A", "A"), ("A", "B"), ("A", "C"), ("B", "B"), ("B", "C"), ("C", "C"), ("C", "A")]
    kw = dict(r_min=0.0, r_max=r_max, n_bins=41, kind=kind, molecule_index=None if kind == "all" else mol)
    ours = compute_rdf(x, box, types, pairs=pairs, **kw)
    _check(ours, _reference(x, box, types, pairs, None if kind == "all" else mol, kind, 0.0, r_max, 41))


@pytest.mark.parametrize("box_name", sorted(BOXES))
def test_r_min_per_frame_boxes_and_coincident_particles(box_name):
    box = BOXES[box_name]
    x, types, mol = _frames(box, 300, 3, seed=7)
    x[:, 1] = x[:, 0]  # coincident (d = 0 falls out)
    x[:, 2] = 0.0  # on a corner
    x[:, 3] = box.sum(axis=0)  # on the opposite corner: the same point
    scale = np.array([1.0, 1.03, 0.98])  # the volume changes between frames
    boxes = box[None] * scale[:, None, None]
    x = x * scale[:, None, None]
    r_max = 0.45 * min(perpendicular_widths(b).min() for b in boxes)
    pairs = [("A", "B"), ("C", "C")]
    ours = compute_rdf(x, boxes, types, pairs=pairs, molecule_index=mol, kind="inter", r_min=0.4, r_max=r_max,
                       n_bins=23)
    ref = {}
    for p in pairs:  # per frame (each has its own box), then averaged as compute_rdf does
        per = [_reference(x[f:f + 1], boxes[f], types, [p], mol, "inter", 0.4, r_max, 23)[p] for f in range(3)]
        ref[p] = (np.mean([r[0] for r in per], axis=0), np.mean([r[1] for r in per], axis=0), per[0][2])
    _check(ours, ref)
    assert np.all(np.isfinite(ours[("A", "B")].g_err))


_PLANS = [((3, 3, 3), (1, 1, 1)), ((6, 6, 6), (2, 2, 2)), ((9, 9, 9), (3, 3, 3)), ((7, 5, 8), (3, 2, 3)),
          ((2, 2, 2), (1, 1, 1)), ((4, 4, 4), (2, 2, 2))]  # the last two: a neighbourhood wider than the box


@pytest.mark.parametrize("cells", _PLANS, ids=lambda c: "x".join(map(str, c[0])) + "_reach" + str(c[1][0]))
@pytest.mark.parametrize("block", [(1, 1, 1), (2, 3, 1), (4, 4, 4), (100, 100, 100)])
@pytest.mark.parametrize("box_name", ["orthorhombic", "triclinic"])
def test_every_cell_and_block_layout_matches_brute_force(cells, block, box_name, monkeypatch):
    """Cells and blocks forced (the planner would pick one layout): blocks of one cell, blocks that do not divide
    the grid, one block holding the whole box (its own periodic images as neighbours)."""
    box = BOXES[box_name]
    n_cells, reach = cells
    widths = perpendicular_widths(box)
    r_max = float(np.min(widths * np.array(reach) / np.array(n_cells))) * 0.999  # within reach cells
    r_max = min(r_max, 0.49 * widths.min())
    plan = (n_cells, reach, tuple(min(b, n) for b, n in zip(block, n_cells, strict=True)))
    monkeypatch.setattr(rdf_module, "_plan", lambda *a, **k: plan)
    x, types, mol = _frames(box, 350, 1, seed=3)
    pairs = [("A", "A"), ("A", "B"), ("B", "B"), ("C", "B")]
    for kind in ("all", "inter"):
        ours = compute_rdf(x, box, types, pairs=pairs, molecule_index=mol, kind=kind, r_max=r_max, n_bins=30)
        _check(ours, _reference(x, box, types, pairs, mol, kind, 0.0, r_max, 30))


@pytest.mark.parametrize("box_name", sorted(BOXES))
def test_tree_path_matches_brute_force(box_name, monkeypatch):
    """The k-d tree pair list (chosen where particles have few neighbours) gives the same results."""
    monkeypatch.setattr(rdf_module, "_plan", lambda *a, **k: rdf_module._TREE)
    box = BOXES[box_name]
    x, types, mol = _frames(box, 300, 2, seed=11)
    r_max = 0.45 * perpendicular_widths(box).min()
    pairs = [("A", "A"), ("B", "A"), ("C", "C")]
    for kind in ("all", "inter", "intra"):
        ours = compute_rdf(x, box, types, pairs=pairs, molecule_index=mol, kind=kind, r_min=0.2, r_max=r_max,
                           n_bins=25)
        _check(ours, _reference(x, box, types, pairs, mol, kind, 0.2, r_max, 25))


def test_planned_layouts_find_every_pair():
    """Whatever the planner picks for 10^4-bead frames (cells and blocks where particles have many neighbours, the
    k-d tree pair list where they have few) covers every pair: the same counts as scipy's periodic k-d tree with the
    same bin arithmetic."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(5)
    for density, r_max, path in ((10.0, 1.5, "cells"), (40.0, 1.0, "cells"), (10.0, 0.3, "tree")):
        L = np.cbrt(1e4 / density)
        x = rng.uniform(0, L, (1, 10_000, 3))
        plan = rdf_module._plan(tuple(np.diag([L] * 3).ravel().tolist()), r_max, (10_000,), ((0, 0),))
        assert (plan == rdf_module._TREE) == (path == "tree"), plan  # few neighbours: the k-d tree pair list
        res = compute_rdf(x, [L] * 3, r_max=r_max, n_bins=150)[(0, 0)]
        a, b = cKDTree(x[0], boxsize=L).query_pairs(r_max, output_type="ndarray").T
        delta = x[0, b] - x[0, a]
        delta -= L * np.round(delta / L)
        k = np.ceil(np.sqrt(np.einsum("ij,ij->i", delta, delta)) / (r_max / 150)).astype(int) - 1
        expected = 2 * np.bincount(k[(k >= 0) & (k < 150)], minlength=150)
        np.testing.assert_array_equal(np.rint(res.coordination * 10_000), np.cumsum(expected))


@pytest.mark.parametrize("box_name", ["orthorhombic", "triclinic"])
def test_matches_freud(box_name):
    """freud's RDF (normalization_mode="finite_size": N (N - 1) pairs, as ours) on the same frame.  freud works in
    single precision, so a few pairs within ~1e-7 nm of a bin edge may land in the neighbouring bin: compared as
    pair counts, to a few pairs per bin."""
    freud = pytest.importorskip("freud")
    freud.parallel.set_num_threads(1)
    box = BOXES[box_name] * 1.6
    n, r_max, n_bins = 2000, 2.0, 80
    rng = np.random.default_rng(4)
    x = (rng.uniform(0, 1, (n, 3)) @ box).astype(np.float32).astype(np.float64)  # the same points for both
    ours = compute_rdf(x[None], box, r_max=r_max, n_bins=n_bins)[(0, 0)]
    fbox = freud.box.Box.from_matrix(box.T)  # freud's columns are the box vectors
    theirs = freud.density.RDF(bins=n_bins, r_max=r_max, normalization_mode="finite_size")
    theirs.compute((fbox, fbox.wrap(x.astype(np.float32))), reset=True)
    np.testing.assert_allclose(theirs.bin_edges, ours.edges, rtol=1e-6)
    to_counts = n * (n - 1) * (4.0 / 3.0 * np.pi * np.diff(ours.edges**3)) / abs(np.linalg.det(box))
    ours_counts, their_counts = ours.g * to_counts, np.asarray(theirs.rdf, dtype=float) * to_counts
    assert ours_counts.sum() > 1e6
    assert np.max(np.abs(ours_counts - their_counts)) <= 6.0  # a normalisation off by N / (N - 1) is ~50 here
    assert abs(ours_counts.sum() - their_counts.sum()) <= 6.0
    np.testing.assert_allclose(ours.g[20:], theirs.rdf[20:], rtol=5e-4)
    np.testing.assert_allclose(ours.coordination, theirs.n_r, rtol=1e-3, atol=4.0 / n)
