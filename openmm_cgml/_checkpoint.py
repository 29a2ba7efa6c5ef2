"""The one checkpoint file format of long jobs (the reference run, IBI, force-matching training), and their one
resume policy.

A checkpoint is ``MAGIC + 8-byte header length + JSON header + payload``: the header is plain JSON
(the job's identity, stage, counters; it records the payload's SHA-256), the payload opaque bytes
(an OpenMM checkpoint, a NumPy ``.npz``, a ``torch.save`` archive of tensors only).  Files are
replaced atomically, so a crash leaves the previous checkpoint intact; a truncated or altered file
fails its checksum and is refused with a :class:`~openmm_cgml.exceptions.CheckpointError`, as is a
checkpoint that belongs to another job (:func:`check_identity`).

The header's ``identity`` is a hash of what makes two runs the same job; ``identity_data`` is that data itself
(JSON), so that a refusal can say which settings differ.  :func:`resume_or_start` applies the policy every long
job shares (``resume`` / ``overwrite`` against the checkpoint found):

========  =========  ===========================  ============================================================
resume    overwrite  checkpoint                   behaviour
========  =========  ===========================  ============================================================
any       any        none                         start fresh ("no checkpoint ...: starting fresh")
True      False      same job                     resume from it
True      False      other job / corrupt          :class:`CheckpointError` naming the file and what differs
False     False      any                          :class:`CheckpointError`: it is not clobbered silently
any       True       any                          start fresh, replacing it ("overwriting checkpoint ...")
========  =========  ===========================  ============================================================
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

from ._io import atomic_path
from .exceptions import CheckpointError

__all__ = ["write_checkpoint", "read_checkpoint", "check_identity", "identity_hash", "identity_differences",
           "json_ready", "resume_or_start"]

logger = logging.getLogger(__name__)

MAGIC = b"CGMLCKPT1\n"
#: How a refused checkpoint can be replaced, in the words of the library, the YAML files and the command line.
OVERWRITE_HINT = "pass --overwrite (overwrite: true in a configuration file, overwrite=True in Python)"


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
                              f"or {OVERWRITE_HINT} to start afresh") from exc
    return header, payload


def identity_hash(identity: Any) -> str:
    """A SHA-256 of JSON-ready ``identity`` (what makes two runs the same job)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def json_ready(data: Any) -> Any:
    """``data`` as plain JSON values (what a header stores and reads back; other objects as their ``str``)."""
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def identity_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two JSON-ready identities differ (``["settings.cutoff", "model.args.hidden"]``);
    ``[prefix or "(value)"]`` when they differ but are not both mappings."""
    old, new = json_ready(old), json_ready(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(name)
            else:
                out.extend(identity_differences(old[key], new[key], name))
        return out
    return [] if old == new else [prefix or "(value)"]


def _stored(header: dict[str, Any]) -> tuple[Any, Any]:
    """``(identity hash, identity data)`` of a header (earlier reference checkpoints called them ``config_key``
    and ``config``)."""
    return (header.get("identity", header.get("config_key")),
            header.get("identity_data", header.get("config")))


def _mismatch(header: dict[str, Any], expected: str, identity: Any) -> list[str] | None:
    """None if ``header`` belongs to the job ``expected``, else the differing keys (``[]`` if not known)."""
    found, data = _stored(header)
    if found == expected:
        return None
    if data is None or identity is None:
        return []
    return identity_differences(data, identity)


def check_identity(header: dict[str, Any], expected: str, path, what: str, identity: Any = None) -> None:
    """Refuse a checkpoint whose identity is not ``expected`` (another job's checkpoint).

    With ``identity`` (the data ``expected`` hashes) and a checkpoint that stored its own, the message names the
    keys that differ.
    """
    keys = _mismatch(header, expected, identity)
    if keys is None:
        return
    differ = f"these settings differ: {', '.join(keys)}" if keys else "its settings, inputs or system differ"
    raise CheckpointError(f"the checkpoint {path} belongs to a different {what} ({differ}); {OVERWRITE_HINT} to "
                          "start again and replace it, use another output location, or rerun with the settings it "
                          "was made with")


def resume_or_start(path, identity: Any, *, resume: bool = True, overwrite: bool = False, what: str = "run",
                    key: str | None = None) -> tuple[dict[str, Any], bytes] | None:
    """Apply the resume policy (see the module documentation) to the checkpoint ``path`` of a job ``identity``.

    Returns ``(header, payload)`` to resume from, or None to start fresh (the caller logs where it resumed).
    ``key`` is the identity's hash if the job computes it otherwise than :func:`identity_hash`.

    Raises
    ------
    CheckpointError
        If the checkpoint is corrupt or of another job (and ``overwrite`` is off), or exists while ``resume`` is
        off (and ``overwrite`` is off).
    """
    path = Path(path)
    expected = identity_hash(identity) if key is None else key
    if not path.exists():
        logger.info("no checkpoint at %s: starting fresh", path)
        return None
    if overwrite:
        try:
            header, _ = read_checkpoint(path)
        except CheckpointError:
            reason = "it is unreadable"
        else:
            keys = _mismatch(header, expected, identity)
            reason = ("overwrite requested; same configuration" if keys is None else
                      f"configuration changed: {', '.join(keys)}" if keys else "configuration changed")
        logger.info("overwriting checkpoint %s (%s): starting fresh", path, reason)
        return None
    if not resume:
        raise CheckpointError(f"the checkpoint {path} exists but resuming is off (resume: false / --no-resume); "
                              f"it is not replaced silently: {OVERWRITE_HINT} to start again, drop resume: false "
                              "to continue it, or use another output location")
    header, payload = read_checkpoint(path)
    check_identity(header, expected, path, what, identity)
    return header, payload
