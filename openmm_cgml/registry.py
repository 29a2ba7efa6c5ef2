"""Named registries for pluggable parts (models, priors, mappings, ...).

A :class:`Registry` maps names to factories.  Third-party packages can add entries
through the entry-point group ``openmm_cgml.<kind>``; an unknown name raises
:class:`~openmm_cgml.exceptions.UnknownNameError` listing every known name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

from .exceptions import ConfigurationError, UnknownNameError

__all__ = ["Registry"]

logger = logging.getLogger(__name__)


class Registry:
    """A name -> factory table for one kind of pluggable part.

    Parameters
    ----------
    kind : str
        What is registered (``"model"``, ``"prior"``, ``"mapping"``); also names the
        entry-point group ``openmm_cgml.<kind>`` searched for plug-ins.

    Examples
    --------
    >>> models = Registry("model")
    >>> @models.register("linear")
    ... def make_linear(**kwargs): ...
    >>> models.get("linear") is make_linear
    True
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._plugins_loaded = False

    def register(self, name: str, factory: Callable[..., Any] | None = None, *, overwrite: bool = False):
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def _add(obj):
            if name in self._entries and not overwrite and self._entries[name] is not obj:
                raise ConfigurationError(
                    f"a {self.kind} named {name!r} is already registered; pass overwrite=True to replace it"
                )
            self._entries[name] = obj
            return obj

        return _add if factory is None else _add(factory)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=f"openmm_cgml.{self.kind}"):
            if ep.name in self._entries:
                continue
            try:
                self._entries[ep.name] = ep.load()
            except Exception as exc:  # a broken plug-in must not break the registry
                logger.warning("could not load %s plug-in %r from %s: %s", self.kind, ep.name, ep.value, exc)

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered as ``name``.

        Raises
        ------
        UnknownNameError
            If ``name`` is not registered; the message lists the known names.
        """
        if name not in self._entries:
            self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            if not known:  # even the built-ins are missing: they come from the package's metadata
                known = (f"(none registered: openmm_cgml's built-in {self.kind}s are registered through its entry points "
                         "in pyproject.toml, so the package must be installed, e.g. pip install -e .)")
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def create(self, name: str, /, **kwargs) -> Any:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Sorted list of registered names (plug-ins included)."""
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
