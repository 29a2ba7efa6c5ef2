"""The one checkpoint file format of long jobs (the reference run, IBI, force-matching training).

A checkpoint is ``MAGIC + 8-byte header length + JSON header + payload``: the header is plain JSON
(the job's identity, stage, counters; it records the payload's SHA-256), the payload opaque bytes
(an OpenMM checkpoint, a NumPy ``.npz``, a ``torch.save`` archive of tensors only).  Files are
replaced atomically, so a crash leaves the previous checkpoint intact; a truncated or altered file
fails its checksum and is refused with a :class:`~openmm_cgml.exceptions.CheckpointError`, as is a
checkpoint that belongs to another job (:func:`check_identity`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from ._io import atomic_path
from .exceptions import CheckpointError

__all__ = ["write_checkpoint", "read_checkpoint", "check_identity", "identity_hash"]

MAGIC = b"CGMLCKPT1\n"


def write_checkpoint(path, header: dict[str, Any], payload: bytes = b"") -> None:
    """Write ``header`` (JSON-ready) and ``payload`` to ``path`` atomically."""
    header = dict(header, payload_sha256=hashlib.sha256(payload).hexdigest())
    blob = json.dumps(header, sort_keys=True).encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(MAGIC + struct.pack("<Q", len(blob)) + blob + payload)


def read_checkpoint(path) -> tuple[dict[str, Any], bytes]:
    """``(header, payload)`` of a checkpoint written by :func:`write_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file cannot be read, is not a checkpoint, or fails its checksum.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint {path}: {exc.strerror}") from exc
    try:
        if not data.startswith(MAGIC):
            raise ValueError("wrong magic bytes (not an openmm_cgml checkpoint, or one written by an older version)")
        start = len(MAGIC)
        (n,) = struct.unpack("<Q", data[start : start + 8])
        header = json.loads(data[start + 8 : start + 8 + n])
        payload = data[start + 8 + n :]
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise ValueError("payload checksum mismatch")
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not an openmm_cgml checkpoint ({exc}); remove it "
                              "to start afresh") from exc
    return header, payload


def identity_hash(identity: Any) -> str:
    """A SHA-256 of JSON-ready ``identity`` (what makes two runs the same job)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def check_identity(header: dict[str, Any], expected: str, path, what: str) -> None:
    """Refuse a checkpoint whose ``header["identity"]`` is not ``expected`` (another job's checkpoint)."""
    if header.get("identity") != expected:
        raise CheckpointError(f"the checkpoint {path} belongs to a different {what} (its settings, inputs or system "
                              "differ); remove it, use another output location, or start without resume")
