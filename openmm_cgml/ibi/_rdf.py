"""Intermolecular g(r) per bead-type pair on a fixed grid, accumulated frame by frame during IBI (pairs from the
analysis layer's k-d tree search), with the block estimate of its sampling noise."""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError
from ..topology import type_key

__all__ = ["PairRDFCounter", "NOISE_BLOCKS", "bonded_exclusions"]

#: Number of contiguous blocks of frames of the sampling-noise estimate (:meth:`PairRDFCounter.noise`).
NOISE_BLOCKS = 8
#: At most this many running sums of consecutive frames are kept (pairs are merged, doubling their length, beyond).
_MAX_CHUNKS = 64


def bonded_exclusions(topology) -> np.ndarray:
    """(n, 2) sorted bead pairs 1-2 and 1-3 along the bonds of a CG topology: the pairs a pair potential with
    ``exclusions="bonded"`` leaves out (as OpenMM's ``createExclusionsFromBonds(bonds, 2)``)."""
    bonds = np.asarray(topology.bonds, dtype=np.int64).reshape(-1, 2)
    angles = np.asarray(topology.bonded_tuples("angle"), dtype=np.int64).reshape(-1, 3)
    pairs = np.concatenate([bonds, angles[:, [0, 2]]])
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


class PairRDFCounter:
    """Accumulate pair histograms frame by frame.

    By default pairs of beads in the same molecule are left out and the normalisation counts only
    intermolecular pairs, so g -> 1 at large r (matching pair forces that exclude
    intramolecular pairs).  With ``excluded`` (pairs of bead indices, e.g. :func:`bonded_exclusions`), every
    pair but those is counted, intramolecular ones included, and the normalisation counts the same pairs
    (matching pair forces with ``exclusions="bonded"``: the excluded volume along a polymer chain).

    Parameters
    ----------
    bead_types : sequence of str
    molecule_index : array of int
    pairs : sequence of (str, str)
    r_max, bin_width : float
        nm; bins [k w, (k+1) w) for k < r_max / w.
    keep_frames : bool
        Also keep every frame's counts (:meth:`frame_counts`), for inverse Monte Carlo.
    excluded : array of int, shape (n, 2), optional
        Bead pairs left out instead of all intramolecular pairs.

    Notes
    -----
    Besides the totals the counter keeps the counts of runs of consecutive frames (at most 64 runs, of equal
    length but the last; when they would be more, neighbours are merged), so that :meth:`noise` can estimate
    the sampling noise of g(r) from blocks of frames in bounded memory.
    """

    def __init__(self, bead_types, molecule_index, pairs, r_max: float, bin_width: float, *, keep_frames: bool = False,
                 excluded=None):
        self.types = np.asarray(bead_types)
        self.mol = np.asarray(molecule_index)
        n = len(self.types)
        if excluded is None:
            self._excluded_codes = None
        else:
            ex = np.sort(np.asarray(excluded, dtype=np.int64).reshape(-1, 2), axis=1)
            if len(ex) and (ex.min() < 0 or ex.max() >= n or np.any(ex[:, 0] == ex[:, 1])):
                raise ConfigurationError(f"excluded pairs must be pairs of distinct bead indices below {n}")
            self._excluded_codes = np.unique(ex[:, 0] * n + ex[:, 1])
        self.n_bins = int(round(r_max / bin_width))
        if self.n_bins < 4:
            raise ConfigurationError(f"r_max / bin_width = {r_max}/{bin_width} gives fewer than 4 RDF bins")
        self.edges = np.arange(self.n_bins + 1) * bin_width
        self.r = 0.5 * (self.edges[1:] + self.edges[:-1])
        self.pairs = [type_key(p) for p in pairs]
        self.index = {t: np.flatnonzero(self.types == t) for t in set(self.types.tolist())}
        for p in self.pairs:
            for t in p:
                if t not in self.index:
                    raise ConfigurationError(f"bead type {t!r} of pair {p} is not in the system "
                                             f"(types: {sorted(self.index)})")
        names = sorted(self.index)
        self.code = np.searchsorted(names, self.types)
        self.n_codes = len(names)
        self.pair_codes = {(a, b): min(names.index(a), names.index(b)) * self.n_codes + max(names.index(a),
                                                                                            names.index(b))
                           for a, b in self.pairs}
        self.counts = {p: np.zeros(self.n_bins) for p in self.pairs}
        self.n_inter = {}  # the pairs counted (intermolecular, or all but the excluded), per type pair
        for a, b in self.pairs:
            ia, ib = self.index[a], self.index[b]
            if self._excluded_codes is None:
                same = np.sum(self.mol[ia][:, None] == self.mol[ib][None, :])
            else:
                i, j = np.divmod(self._excluded_codes, n)
                ti, tj = self.types[i], self.types[j]
                n_ex = np.sum(((ti == a) & (tj == b)) | ((ti == b) & (tj == a)))  # excluded unordered pairs
                same = 2 * n_ex + len(ia) if a == b else n_ex  # as counted above: ordered, self-pairs included
            if a == b:
                self.n_inter[(a, b)] = (len(ia) * (len(ia) - 1) - (same - len(ia))) / 2
            else:
                self.n_inter[(a, b)] = len(ia) * len(ib) - same
        self.volume_sum = 0.0
        self.n_frames = 0
        self.keep_frames = keep_frames
        self._frames: list[np.ndarray] = []
        # runs of consecutive frames: counts (n_pairs, n_bins), frames and volume sum of each
        self._chunk_len = 1
        self._chunks: list[list] = []

    def add(self, positions: np.ndarray, box: np.ndarray) -> None:
        """Add one frame (positions (n, 3) nm, box (3, 3) nm)."""
        from ..analysis.rdf import _pairs_within

        box = np.asarray(box, dtype=float)
        self.volume_sum += abs(np.linalg.det(box))
        self.n_frames += 1
        i, j, d, once = _pairs_within(np.asarray(positions, dtype=float), box, self.edges[-1])
        if self._excluded_codes is None:
            keep = self.mol[i] != self.mol[j]
        else:
            lo, hi = np.minimum(i, j), np.maximum(i, j)
            keep = (lo != hi) & ~np.isin(lo.astype(np.int64) * len(self.types) + hi, self._excluded_codes)
        if not once:  # every ordered pair listed: keep each unordered pair once
            keep &= i < j
        ci, cj, d = self.code[i[keep]], self.code[j[keep]], d[keep]
        key = np.minimum(ci, cj) * self.n_codes + np.maximum(ci, cj)
        frame = []
        for p, k in self.pair_codes.items():
            c = np.histogram(d[key == k], bins=self.edges)[0]
            self.counts[p] += c
            frame.append(c)
        if self.keep_frames:
            self._frames.append(np.concatenate(frame).astype(float))
        self._add_chunk(np.array(frame, dtype=float), abs(np.linalg.det(box)))

    def _add_chunk(self, counts: np.ndarray, volume: float) -> None:
        if self._chunks and self._chunks[-1][1] < self._chunk_len:
            last = self._chunks[-1]
            last[0] += counts
            last[1] += 1
            last[2] += volume
            return
        if len(self._chunks) == _MAX_CHUNKS:  # all full: merge neighbours, doubling the run length
            self._chunks = [[a[0] + b[0], a[1] + b[1], a[2] + b[2]] for a, b in zip(self._chunks[::2],
                                                                                   self._chunks[1::2], strict=True)]
            self._chunk_len *= 2
        self._chunks.append([counts, 1, volume])

    def noise(self, n_blocks: int = NOISE_BLOCKS) -> dict[tuple[str, str], float] | None:
        """Per pair: the expected RMS deviation over the grid of :meth:`rdfs` from its infinite-sampling limit,
        estimated from contiguous blocks of frames; None with fewer than 2 frames.

        The frames are split into ``B = min(n_blocks, runs of frames kept)`` contiguous blocks of (nearly) equal
        length; each block gives its own g_b(r).  The squared standard error of g at bin k is
        ``SE_k^2 = B / (B - 1) sum_b w_b^2 (g_b,k - gbar_k)^2`` (w_b the block's share of the frames, gbar the
        weighted mean; for equal blocks ``sum_b (g_b,k - gbar_k)^2 / (B (B - 1))``), and the noise is
        ``sqrt(mean_k SE_k^2)``, on the scale of :func:`~openmm_cgml.ibi.rdf_error`.  Blocks must be longer
        than the correlation time of g(r) for this to be unbiased; shorter ones underestimate it.  For independent
        frames it falls as 1 / sqrt(frames).
        """
        if self.n_frames < 2:
            return None
        groups = np.array_split(np.arange(len(self._chunks)), min(n_blocks, len(self._chunks)))
        shell = 4.0 / 3.0 * np.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        n_inter = np.array([self.n_inter[p] for p in self.pairs])[:, None]
        g, w = [], []
        for idx in groups:
            counts = sum(self._chunks[i][0] for i in idx)
            frames = sum(self._chunks[i][1] for i in idx)
            volume = sum(self._chunks[i][2] for i in idx) / frames
            ideal = n_inter * shell[None, :] / volume * frames
            g.append(counts / np.where(ideal > 0, ideal, np.inf))
            w.append(frames)
        g, w = np.array(g), np.array(w, dtype=float) / self.n_frames
        b = len(w)
        mean = np.tensordot(w, g, axes=1)
        se2 = b / (b - 1) * np.tensordot(w**2, (g - mean) ** 2, axes=1)
        return {p: float(np.sqrt(np.mean(se2[k]))) for k, p in enumerate(self.pairs)}

    def frame_counts(self) -> np.ndarray:
        """(n_frames, n_pairs * n_bins) pair counts of every frame, pairs in ``self.pairs`` order (``keep_frames``)."""
        if not self.keep_frames:
            raise ConfigurationError("this PairRDFCounter was made without keep_frames=True")
        if not self._frames:
            raise ConfigurationError("no frames were added to the RDF")
        return np.array(self._frames)

    def ideal_counts(self) -> np.ndarray:
        """(n_pairs * n_bins) counts per frame of an ideal gas at the mean volume: g(r) = counts / ideal."""
        volume = self.volume_sum / max(self.n_frames, 1)
        shell = 4.0 / 3.0 * np.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        return np.concatenate([self.n_inter[p] * shell / volume for p in self.pairs])

    def rdfs(self) -> dict[tuple[str, str], np.ndarray]:
        """g(r) per pair from the frames added so far."""
        if self.n_frames == 0:
            raise ConfigurationError("no frames were added to the RDF")
        ideal = self.ideal_counts().reshape(len(self.pairs), self.n_bins) * self.n_frames
        return {p: self.counts[p] / np.where(ideal[k] > 0, ideal[k], np.inf) for k, p in enumerate(self.pairs)}
