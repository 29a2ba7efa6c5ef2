"""Training data: a CG dataset's frames as tensors, the time-block split, and cached neighbour pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..dataset import Dataset, open_dataset, open_h5, read_header, stored_fields
from ..exceptions import ConfigurationError, DatasetError
from ..topology import CGTopology
from .config import PAIR_MARGIN

__all__ = ["ForceData", "check_force_dataset", "load_force_data", "time_block_split", "PairCache"]


@dataclass(frozen=True)
class ForceData:
    """Frames of a CG dataset as tensors: positions/forces (F, N, 3), boxes (F, 3, 3) or None."""

    positions: torch.Tensor
    forces: torch.Tensor
    boxes: torch.Tensor | None
    topology: CGTopology
    temperature: torch.Tensor | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])


def check_force_dataset(dataset, *, max_frames: int | None = None) -> None:
    """Check, from the file's header alone (no array is read), that force matching can use ``dataset`` (path
    or :class:`Dataset`): coarse-grained, with forces, at least two frames.  Cheap: run before any other work.

    Raises
    ------
    DatasetError
        Naming the file and what it holds instead.
    """
    if isinstance(dataset, Dataset):
        _require_force_data(dataset.path, dataset.kind, dataset.fields, dataset.n_frames, max_frames)
        return
    with open_h5(dataset) as f:
        kind, _, _, n_frames = read_header(f)
        _require_force_data(dataset, kind, stored_fields(f), n_frames, max_frames)


def _require_force_data(path, kind: str, fields, n_frames: int, max_frames: int | None) -> None:
    if kind != "coarse-grained":
        raise DatasetError(
            f"{path} holds {kind!r} data; force matching needs a coarse-grained dataset "
            "(map the all-atom data first: cgml map, or openmm_cgml.mapping.map_dataset)"
        )
    if "forces" not in fields:
        raise DatasetError(f"{path} stores no forces ({tuple(fields)}); force matching needs mapped forces")
    n = n_frames if max_frames is None else min(n_frames, int(max_frames))
    if n < 2:
        raise DatasetError(f"{path} has {n_frames} frames; force matching needs at least 2")


def load_force_data(dataset, *, temperature=None, max_frames: int | None = None, dtype=torch.float32) -> ForceData:
    """Read a coarse-grained dataset (path or :class:`Dataset`) for force matching.

    Raises
    ------
    DatasetError
        Not coarse-grained data, no forces, or NaN/inf in positions or forces (the
        message names the first bad frames).
    """
    ds: Dataset = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    check_force_dataset(ds, max_frames=max_frames)
    n = ds.n_frames if max_frames is None else min(ds.n_frames, int(max_frames))
    for name, arr in (("forces", ds.forces[:n]), ("positions", ds.positions[:n])):
        bad = ~np.isfinite(arr).all(axis=(1, 2))
        if bad.any():
            frames = np.nonzero(bad)[0]
            raise DatasetError(
                f"{ds.path} has non-finite {name} (NaN or inf) in {len(frames)} frame(s), first {frames[:5].tolist()}; "
                "remove those frames or regenerate the data"
            )
    box = ds.box[:n]
    periodic = bool(np.any(box))
    temp = None
    if temperature is not None:
        temp = torch.as_tensor(np.broadcast_to(np.asarray(temperature, dtype=float), (n,)).copy(), dtype=dtype)
    return ForceData(
        positions=torch.as_tensor(ds.positions[:n], dtype=dtype),
        forces=torch.as_tensor(ds.forces[:n], dtype=dtype),
        boxes=torch.as_tensor(box, dtype=dtype) if periodic else None,
        topology=CGTopology.from_dataset(ds, frame=None),
        temperature=temp,
        source=str(ds.path),
        metadata=dict(ds.metadata),
    )


def time_block_split(n_frames: int, validation_fraction: float = 0.2, n_blocks: int = 10, seed: int = 0):
    """Split frame indices into contiguous time blocks; a seeded choice of blocks is the validation set."""
    if not 0 < validation_fraction < 1:
        raise ConfigurationError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_blocks = max(2, min(int(n_blocks), n_frames))
    blocks = np.array_split(np.arange(n_frames), n_blocks)
    n_val = max(1, int(round(validation_fraction * n_blocks)))
    chosen = set(np.random.default_rng(seed).choice(n_blocks, size=n_val, replace=False).tolist())
    val = np.concatenate([b for k, b in enumerate(blocks) if k in chosen])
    train = np.concatenate([b for k, b in enumerate(blocks) if k not in chosen])
    return train, val


class PairCache:
    """Neighbour pairs of every frame of a dataset, searched once and reused by every epoch.

    The frames' positions never change during training (only the distances computed from
    them need autograd), so the neighbour search is done once per frame, within the
    model's longest cutoff plus a small ``margin`` (the model still masks each block by its
    own cutoff, so the result equals a fresh search).  :meth:`batch` concatenates the pairs
    of a mini-batch with the global indices ``frame_in_batch * n_beads + i`` that
    ``energy_from_pairs`` expects.

    Parameters
    ----------
    data : ForceData
    cutoff : float
        nm; the model's longest cutoff.
    margin : float
        nm added to the cutoff (guards the float32 rounding of pairs at the cutoff).
    brute_force_max : int
        All-pairs search up to this many beads, cell list above.
    """

    def __init__(self, data: ForceData, cutoff: float, margin: float = PAIR_MARGIN, brute_force_max: int = 1000):
        from ..models.neighbors import neighbor_pairs

        self.cutoff = float(cutoff) + float(margin)
        self.n_beads = int(data.positions.shape[1])
        self.pairs: list[torch.Tensor] = []
        self.shifts: list[torch.Tensor] = []
        for f in range(data.n_frames):
            box = None if data.boxes is None else data.boxes[f]
            pairs, shifts = neighbor_pairs(data.positions[f], self.cutoff, box, brute_force_max)
            self.pairs.append(pairs)
            self.shifts.append(shifts)

    def batch(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pairs (2, P), shifts (P, 3))`` of the frames ``index`` stacked in that order."""
        index = [int(f) for f in np.asarray(index).ravel()]
        pairs = torch.cat([self.pairs[f] + k * self.n_beads for k, f in enumerate(index)], 1)
        shifts = torch.cat([self.shifts[f] for f in index], 0)
        return pairs, shifts
