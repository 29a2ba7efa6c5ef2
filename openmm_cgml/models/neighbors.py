"""Neighbour search in pure PyTorch (TorchScript-compatible), with an optional NNPOps path.

Every routine returns the same thing: the unordered pairs ``i < j`` whose minimum-image
distance is below the cutoff, as

``pairs``  (2, n_pairs) int64, global bead indices (row 0 < row 1 within a frame),
``shifts`` (n_pairs, 3) the periodic image shift (nm) such that the pair vector is
``positions[j] - positions[i] + shifts`` (zeros without a box).

The shifts are computed without gradient from detached positions, so a model computes
the pair vectors itself and autograd sees only ``positions`` (the usual way to keep a
neighbour list out of the backward pass).

Boxes are OpenMM reduced triclinic boxes (rows are the box vectors ``a = (ax, 0, 0)``,
``b = (bx, by, 0)``, ``c = (cx, cy, cz)``), which makes the three sequential roundings
below an exact minimum image for any pair closer than half the smallest box width.
Requirement: ``cutoff <= half_min_width(box)``; :func:`check_cutoff` says so clearly.

The cell list bins beads in fractional coordinates on a grid whose planes are at least
one cutoff apart, and visits half of the 27-cell stencil (13 neighbour cells plus the
bead's own cell), so each pair is examined once; candidate pairs are generated from the
sorted cell ranges without padding.  It falls back to the all-pairs search when the grid
has fewer than three cells along an axis (where the stencil would visit a cell twice) or
when the system is small enough that all pairs are cheaper (``brute_force_max``).
"""

from __future__ import annotations

import torch

from ..exceptions import MissingDependencyError

__all__ = [
    "minimum_image",
    "brute_force_pairs",
    "cell_list_pairs",
    "neighbor_pairs",
    "batched_neighbor_pairs",
    "half_min_width",
    "check_cutoff",
    "nnpops_available",
    "nnpops_neighbor_pairs",
    "PairSearch",
    "NNPOpsPairSearch",
]


def minimum_image(delta: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Image shifts (same shape as ``delta``) that bring pair vectors ``delta`` to the minimum image.

    ``box`` is a reduced triclinic box, shape (3, 3), or one box per vector, shape (n, 3, 3).
    """
    if box.dim() == 2:
        c = box[2].unsqueeze(0)
        b = box[1].unsqueeze(0)
        a = box[0].unsqueeze(0)
        cz = box[2, 2]
        by = box[1, 1]
        ax = box[0, 0]
    else:
        c = box[:, 2]
        b = box[:, 1]
        a = box[:, 0]
        cz = box[:, 2, 2].unsqueeze(-1)
        by = box[:, 1, 1].unsqueeze(-1)
        ax = box[:, 0, 0].unsqueeze(-1)
    d = delta
    shift = torch.zeros_like(delta)
    n = torch.round(d[..., 2:3] / cz)
    shift = shift - n * c
    d = delta + shift
    n = torch.round(d[..., 1:2] / by)
    shift = shift - n * b
    d = delta + shift
    n = torch.round(d[..., 0:1] / ax)
    shift = shift - n * a
    return shift


def half_min_width(box: torch.Tensor) -> float:
    """Half the smallest distance between opposite faces of the box (nm)."""
    a, b, c = box[0], box[1], box[2]
    volume = torch.abs(torch.dot(a, torch.linalg.cross(b, c)))
    widths = torch.stack([
        volume / torch.linalg.norm(torch.linalg.cross(b, c)),
        volume / torch.linalg.norm(torch.linalg.cross(c, a)),
        volume / torch.linalg.norm(torch.linalg.cross(a, b)),
    ])
    return float(0.5 * widths.min())


def check_cutoff(cutoff: float, box, what: str = "the cutoff") -> None:
    """Raise :class:`InvalidSystemError` if ``cutoff`` exceeds half the smallest box width (the package's one
    cutoff rule, :func:`openmm_cgml.geometry.check_cutoff`; ``box`` may be a tensor)."""
    from ..geometry import check_cutoff as _check

    if box is None:
        return
    if isinstance(box, torch.Tensor):
        box = box.detach().cpu().double().numpy()
    _check(cutoff, box, what)


def brute_force_pairs(positions: torch.Tensor, cutoff: float, box: torch.Tensor | None = None):
    """All pairs ``i < j`` closer than ``cutoff`` (nm) by checking every pair; returns ``(pairs, shifts)``."""
    with torch.no_grad():
        pos = positions.detach()
        n = pos.shape[0]
        tri = torch.triu_indices(n, n, 1, device=pos.device)
        delta = pos[tri[1]] - pos[tri[0]]
        if box is not None:
            shift = minimum_image(delta, box.to(pos.dtype))
        else:
            shift = torch.zeros_like(delta)
        d2 = ((delta + shift) ** 2).sum(-1)
        keep = d2 < cutoff * cutoff
        return tri[:, keep], shift[keep]


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenate ``arange(s, s + c)`` for every (start, count)."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=starts.device)
    seg_ends = torch.cumsum(counts, 0)
    seg_starts = seg_ends - counts
    rep_start = torch.repeat_interleave(starts - seg_starts, counts)
    return torch.arange(total, device=starts.device) + rep_start


def cell_list_pairs(positions: torch.Tensor, cutoff: float, box: torch.Tensor | None = None):
    """Pairs ``i < j`` closer than ``cutoff`` with a cell list; identical output set to :func:`brute_force_pairs`.

    Pairs come out in a different order from the all-pairs search.
    """
    with torch.no_grad():
        pos = positions.detach()
        device = pos.device
        n_beads = pos.shape[0]
        periodic = box is not None
        if box is not None:
            boxd = box.to(pos.dtype)
            frac = pos @ torch.linalg.inv(boxd)
            frac = frac - torch.floor(frac)
            volume = torch.abs(torch.dot(boxd[0], torch.linalg.cross(boxd[1], boxd[2])))
            widths = torch.stack([
                volume / torch.linalg.norm(torch.linalg.cross(boxd[1], boxd[2])),
                volume / torch.linalg.norm(torch.linalg.cross(boxd[2], boxd[0])),
                volume / torch.linalg.norm(torch.linalg.cross(boxd[0], boxd[1])),
            ])
        else:
            boxd = torch.zeros(3, 3, dtype=pos.dtype, device=device)
            lo = pos.min(0).values
            widths = pos.max(0).values - lo + 1e-6
            frac = (pos - lo) / widths
        ncell = torch.clamp(torch.floor(widths / cutoff), min=1).to(torch.long)
        if periodic and bool((ncell < 3).any()):
            return brute_force_pairs(pos, cutoff, box)
        cell3 = torch.minimum(torch.floor(frac * ncell.to(pos.dtype)).to(torch.long), ncell - 1)
        cell3 = torch.clamp(cell3, min=0)
        n0 = int(ncell[0])
        n1 = int(ncell[1])
        n2 = int(ncell[2])
        flat = (cell3[:, 0] * n1 + cell3[:, 1]) * n2 + cell3[:, 2]
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=n0 * n1 * n2)
        starts = torch.cumsum(counts, 0) - counts
        # Half stencil: the own cell (pairs inside it filtered by order) and 13 of the 26 neighbours.
        # Offset k of the 27-cell stencil is (k // 9 - 1, k // 3 % 3 - 1, k % 3 - 1); k = 13 is the own
        # cell and k > 13 are the offsets lexicographically after (0, 0, 0).
        k = torch.arange(14, 27, device=device)
        offsets = torch.stack([torch.div(k, 9, rounding_mode="floor") - 1,
                               torch.remainder(torch.div(k, 3, rounding_mode="floor"), 3) - 1,
                               torch.remainder(k, 3) - 1], 1)
        cells_i = cell3.unsqueeze(1) + offsets.unsqueeze(0)  # (n, 13, 3)
        if periodic:
            cells_i = torch.remainder(cells_i, ncell)
            valid = torch.ones(cells_i.shape[0], cells_i.shape[1], dtype=torch.bool, device=device)
        else:
            valid = ((cells_i >= 0) & (cells_i < ncell)).all(-1)
            cells_i = torch.clamp(cells_i, min=torch.zeros_like(ncell), max=ncell - 1)
        nflat = (cells_i[..., 0] * n1 + cells_i[..., 1]) * n2 + cells_i[..., 2]
        i_rep = torch.arange(n_beads, device=device).unsqueeze(1).expand(n_beads, offsets.shape[0])
        i_rep = i_rep[valid]
        nflat = nflat[valid]
        cnt = counts[nflat]
        cand_j = order[_ranges(starts[nflat], cnt)]
        cand_i = torch.repeat_interleave(i_rep, cnt)
        # Own cell: every ordered pair inside the cell with i < j.
        own = flat
        cnt_own = counts[own]
        cj_own = order[_ranges(starts[own], cnt_own)]
        ci_own = torch.repeat_interleave(torch.arange(n_beads, device=device), cnt_own)
        keep_own = ci_own < cj_own
        cand_i = torch.cat([cand_i, ci_own[keep_own]])
        cand_j = torch.cat([cand_j, cj_own[keep_own]])
        # In the half stencil a pair may appear with j < i; order it.
        lo_idx = torch.minimum(cand_i, cand_j)
        hi_idx = torch.maximum(cand_i, cand_j)
        delta = pos[hi_idx] - pos[lo_idx]
        if periodic:
            shift = minimum_image(delta, boxd)
        else:
            shift = torch.zeros_like(delta)
        d2 = ((delta + shift) ** 2).sum(-1)
        keep = d2 < cutoff * cutoff
        return torch.stack([lo_idx[keep], hi_idx[keep]]), shift[keep]


def neighbor_pairs(positions: torch.Tensor, cutoff: float, box: torch.Tensor | None = None,
                   brute_force_max: int = 1000):
    """Pairs closer than ``cutoff``: all-pairs search up to ``brute_force_max`` beads, cell list above."""
    if positions.shape[0] <= brute_force_max:
        return brute_force_pairs(positions, cutoff, box)
    return cell_list_pairs(positions, cutoff, box)


def batched_neighbor_pairs(positions: torch.Tensor, cutoff: float, boxes: torch.Tensor | None = None,
                           brute_force_max: int = 1000):
    """Neighbour pairs of a batch of frames ``(n_frames, n, 3)`` with global indices ``frame * n + i``.

    Small systems are searched for all frames at once (one vectorised all-pairs pass);
    large ones frame by frame with the cell list.
    """
    with torch.no_grad():
        pos = positions.detach()
        n_frames = pos.shape[0]
        n = pos.shape[1]
        if n > brute_force_max:
            pair_list = []
            shift_list = []
            for f in range(n_frames):
                box_f: torch.Tensor | None = None
                if boxes is not None:
                    box_f = boxes[f]
                p, s = cell_list_pairs(pos[f], cutoff, box_f)
                pair_list.append(p + f * n)
                shift_list.append(s)
            return torch.cat(pair_list, 1), torch.cat(shift_list, 0)
        tri = torch.triu_indices(n, n, 1, device=pos.device)
        delta = pos[:, tri[1]] - pos[:, tri[0]]  # (F, P, 3)
        if boxes is not None:
            boxd = boxes.to(pos.dtype)
            box_per = boxd.unsqueeze(1).expand(n_frames, delta.shape[1], 3, 3).reshape(-1, 3, 3)
            shift = minimum_image(delta.reshape(-1, 3), box_per).reshape(delta.shape)
        else:
            shift = torch.zeros_like(delta)
        d2 = ((delta + shift) ** 2).sum(-1)
        hits = torch.nonzero(d2 < cutoff * cutoff)
        frame = hits[:, 0]
        pidx = hits[:, 1]
        pairs = tri[:, pidx] + frame.unsqueeze(0) * n
        return pairs, shift[frame, pidx]


class PairSearch(torch.nn.Module):
    """:func:`neighbor_pairs` as a module: what a model calls to (re)build its Verlet list."""

    def __init__(self, brute_force_max: int = 1000):
        super().__init__()
        self.brute_force_max = int(brute_force_max)

    def forward(self, positions: torch.Tensor, cutoff: float, box: torch.Tensor | None):
        return neighbor_pairs(positions, cutoff, box, self.brute_force_max)


class NNPOpsPairSearch(torch.nn.Module):
    """NNPOps' ``getNeighborPairs`` kernel returning exactly what :class:`PairSearch` returns.

    Built (and scripted) only where the ``neighbors::getNeighborPairs`` op is registered, i.e.
    NNPOps is importable; a model switches to it with :meth:`CGSchNet.use_nnpops
    <openmm_cgml.models.CGSchNet.use_nnpops>`, which first checks it against :class:`PairSearch`.
    NNPOps lists every pair (``max_num_pairs = -1``), marking those beyond the cutoff with index -1;
    ``deltas`` are the minimum-image vectors ``positions[row 0] - positions[row 1]``.
    """

    def forward(self, positions: torch.Tensor, cutoff: float, box: torch.Tensor | None):
        pos = positions.detach()
        if box is None:
            box_arg = torch.zeros(0, 0, dtype=pos.dtype, device=pos.device)
        else:
            box_arg = box.detach().to(pos.dtype)
        neighbors, deltas, distances, _ = torch.ops.neighbors.getNeighborPairs(pos, cutoff, -1, box_arg, False)
        keep = (neighbors[0] >= 0) & (distances < cutoff)
        a = neighbors[0][keep].to(torch.long)
        b = neighbors[1][keep].to(torch.long)
        lo = torch.minimum(a, b)
        hi = torch.maximum(a, b)
        # re-orient deltas (pos[a] - pos[b]) to pos[hi] - pos[lo]; the shift is what minimum image added
        sign = torch.where(a == lo, -1.0, 1.0).to(pos.dtype).unsqueeze(-1)
        vec = deltas[keep].to(pos.dtype) * sign
        shift = vec - (pos[hi] - pos[lo])
        if box is None:
            shift = torch.zeros_like(shift)
        order = torch.argsort(lo * pos.shape[0] + hi)
        return torch.stack([lo[order], hi[order]]), shift[order]


def nnpops_available() -> bool:
    """Whether NNPOps' neighbour kernel (the ``neighbors::getNeighborPairs`` op) is registered.

    Imports ``NNPOps.neighbors`` when installed, which registers the op."""
    try:
        import NNPOps.neighbors  # noqa: F401
    except ImportError:
        pass
    try:
        torch.ops.neighbors.getNeighborPairs  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def nnpops_neighbor_pairs(positions: torch.Tensor, cutoff: float, box: torch.Tensor | None = None):
    """The same pairs and shifts as :func:`brute_force_pairs`, found with NNPOps' ``getNeighborPairs``."""
    if not nnpops_available():
        raise MissingDependencyError("NNPOps is not installed (conda install -c conda-forge nnpops)")
    with torch.no_grad():
        return NNPOpsPairSearch()(positions, cutoff, box)
