"""Generated ``--help`` text: the YAML keys of every command, read from its configuration model.

Each key is listed with its type (for a quantity: its kind and MD unit; any unit of that kind is accepted),
its default (or ``required``) and a one-line description.  Descriptions come, in this order, from the field's
``Field(description=...)``, an override given here, the model's docstring (numpydoc ``Attributes`` or
``Parameters`` entries, or ````key````: paragraphs) and the comments of the example configuration in the
model's module docstring.  Nested models are listed with dotted keys (``mapping.method``) and lists of them with
``[]`` (``components[].smiles``); free-form sections that a model of their own validates (``cgml train``'s
``training`` and ``model``) are expanded too.

The text is generated when help is shown (:class:`HelpParser`), so building the parser imports no model.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMANDS", "ConfigHelp", "HelpParser", "KeyHelp", "config_help", "config_model", "model_keys",
           "format_keys", "add_config_command"]

#: The configuration model of each command, as ``module:Class`` (imported when help is shown).
COMMANDS: dict[str, str] = {
    "reference": "openmm_cgml.reference.run:ReferenceConfig",
    "map": "openmm_cgml.workflows.map:MapConfig",
    "ibi": "openmm_cgml.workflows.ibi:IBIConfig",
    "train": "openmm_cgml.workflows.train:TrainConfig",
    "build": "openmm_cgml.workflows.build:BuildConfig",
    "run": "openmm_cgml.workflows.run:RunConfig",
    "compare": "openmm_cgml.workflows.compare:CompareConfig",
    "demo": "openmm_cgml.workflows.demo:DemoConfig",
    "sweep": "openmm_cgml.sweep.definition:SweepConfig",
    "learn": "openmm_cgml.learn.workflow:LearnConfig",
    "export": "openmm_cgml.workflows.export:ExportConfig",
    "polymer": "openmm_cgml.workflows.polymer:PolymerConfig",
    "temperature": "openmm_cgml.sweep.temperature:TemperatureStudyConfig",
}

# ReferenceConfig documents its keys in no docstring of its own; these say what each is.
_REFERENCE = {
    "components": "the species of the liquid",
    "smiles": "the molecule's SMILES",
    "count": "how many molecules",
    "name": "residue name (default: from the molecule)",
    "density": "initial density of the packed box; give density or box_length",
    "box_length": "edge of the cubic box; or density",
    "forcefield": "OpenFF force field (any installed one)",
    "charge_method": "partial charges",
    "cutoff": "nonbonded cutoff (null: the force field's)",
    "temperature": "thermostat temperature",
    "pressure": "barostat pressure (NPT equilibration)",
    "timestep": "integration timestep (bonds to hydrogen constrained)",
    "friction": "Langevin friction coefficient",
    "barostat_interval": "steps between Monte Carlo volume moves",
    "minimize": "minimise the packed box first",
    "nvt": "NVT equilibration time",
    "npt": "NPT equilibration time",
    "production": "recorded production time",
    "max_production": "budget for extending the production until the molecular MSD is diffusive (the "
                      "production doubles while it is not; null: no extension); every check is recorded",
    "production_ensemble": "nvt (at the mean NPT density) | npt",
    "report_interval": "time between recorded frames",
    "checkpoint_interval": "time between checkpoints (a multiple of report_interval)",
    "fields": "per-atom arrays recorded each frame (positions always)",
    "precision": "storage precision of the recorded arrays",
    "platform": "OpenMM platform: auto (the fastest available; OpenCL only on a GPU) | CUDA | OpenCL | CPU | Reference",
    "seed": "random seed of packing, velocities and thermostat",
}

# Keys whose models describe them nowhere (by dotted key; a Field description of the model's own wins).
_MAP = {
    "input": "the all-atom dataset (from `cgml reference`)",
    "output": "the coarse-grained dataset to write (with its CG topology)",
    "mapping": "how atoms become beads",
    "mapping.smarts": "smarts: {bead name: SMARTS}, tried in order",
    "mapping.bead_types": "bead types per bead, overriding the method's (or {residue: [...]})",
    "mapping.options": "options of a method added by a plug-in (learned: force_weight, epochs, restarts, ...)",
    "chunk_frames": "frames mapped per chunk (memory)",
    "precision": "storage precision of the CG arrays",
}
_IBI = {
    "temperature": "temperature of the target and of the IBI runs",
    "max_iterations": "most IBI iterations",
    "timestep": "timestep of the IBI runs",
    "seed": "random seed of the IBI runs",
    "output_dir": "directory for the tables, bonded_terms.json, logs and the checkpoint",
    "target_stride": "use every n-th frame of the dataset for the target RDFs",
    "target_start": "first frame of the dataset used for the target RDFs",
    "dihedrals": "also Boltzmann-invert the dihedrals along CG bonds (tables)",
    "resume": "continue from the checkpoint in output_dir",
}
_TRAIN = {
    "resume": "continue from the checkpoint in output",
    "model": "the model and its hyperparameters (keys below)",
    "training.epochs": "most training epochs",
    "training.batch_size": "frames per mini-batch",
    "training.learning_rate": "Adam learning rate",
    "training.weight_decay": "Adam weight decay",
    "training.scheduler": "learning-rate schedule",
    "training.scheduler_factor": "plateau: factor applied to the learning rate",
    "training.scheduler_patience": "plateau: epochs without improvement before it is reduced",
    "training.early_stopping_patience": "epochs without validation improvement before training stops",
    "training.validation_fraction": "fraction of the frames held out for validation (whole time blocks)",
    "training.n_blocks": "time blocks the frames are split into for the validation split",
    "training.seed": "random seed of the split, initialisation and batches",
    "training.max_frames": "use at most this many frames of the dataset (null: all)",
}

_HEADER = ("configuration keys (YAML).  A quantity is a number with a unit of its kind, e.g. \"300 K\" or "
           "\"2 fs\" (a bare number is refused); [unit] is the unit it is stored in.")


@dataclass(frozen=True)
class KeyHelp:
    """One configuration key: dotted name, type text, default text (None: required) and description."""

    key: str
    type: str
    default: str | None
    description: str = ""
    unit: str | None = None


# ----------------------------------------------------------------------------- types
def _unit_symbols() -> dict[str, str]:
    from ..units import MD_UNITS, format_quantity

    return {format_quantity(1.0, kind).split(" ", 1)[1]: kind for kind in MD_UNITS}


def _quantity_kind(metadata) -> str | None:
    """The kind of a quantity field (``openmm_cgml.config.quantity_field``) from its annotation metadata."""
    from pydantic import PlainSerializer

    from ..units import MD_UNITS

    for m in metadata:
        kind = getattr(m, "kind", None)
        if isinstance(kind, str) and kind in MD_UNITS:
            return kind
    for m in metadata:
        if isinstance(m, PlainSerializer):
            try:
                text = m.func(1.0)
            except Exception:  # not a quantity serializer
                continue
            if isinstance(text, str) and " " in text:
                kind = _unit_symbols().get(text.split(" ", 1)[1].strip())
                if kind is not None:
                    return kind
    return None


def _symbol(kind: str) -> str:
    from ..units import format_quantity

    return format_quantity(1.0, kind).split(" ", 1)[1]


def _constraints(metadata) -> list[str]:
    out = []
    for m in metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "at least"),
                         ("max_length", "at most")):
            value = getattr(m, attr, None)
            if value is not None and not callable(value):
                out.append(f"{op} {value}" if not attr.endswith("length") else f"{op} {value} entries")
    return out


def _model_class(tp):
    from pydantic import BaseModel

    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _strip_optional(tp) -> tuple[object, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def _nested(tp) -> tuple[type | None, str]:
    """A nested model of a field's type, and how its keys are written below the field (``.`` or ``[].``)."""
    inner, _ = _strip_optional(tp)
    if typing.get_origin(inner) is typing.Annotated:
        inner = typing.get_args(inner)[0]
    if _model_class(inner):
        return inner, "."
    if typing.get_origin(inner) in (list, tuple, set) and typing.get_args(inner):
        item = typing.get_args(inner)[0]
        if _model_class(item):
            return item, "[]."
    return None, ""


def type_text(tp, metadata=()) -> tuple[str, str | None]:
    """``(readable type, unit symbol or None)`` of an annotation."""
    kind = _quantity_kind(metadata)
    if kind is not None:
        return f"{kind} [{_symbol(kind)}]", _symbol(kind)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_text(args[0], tuple(tp.__metadata__) + tuple(metadata))
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        text = " or ".join(p[0] for p in parts)
        units = [p[1] for p in parts if p[1]]
        return text + (" or null" if type(None) in args else ""), (units[0] if units else None)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args), None
    if origin in (list, tuple, set) or tp in (list, tuple, set):
        item = type_text(args[0])[0] if args else "any"
        return f"list of ({item})" if " " in item else f"list of {item}", None
    if origin is dict or tp is dict:
        if len(args) == 2:
            return f"mapping of {type_text(args[0])[0]} to {type_text(args[1])[0]}", None
        return "mapping", None
    if _model_class(tp):
        return "section", None
    if tp is typing.Any:
        return "any", None
    if isinstance(tp, type) and issubclass(tp, Path):
        return "path", None
    return {str: "text", int: "int", float: "float", bool: "true | false"}.get(tp, getattr(tp, "__name__", str(tp))), None


def _yaml(value) -> str:
    """A default as it would be written in YAML."""
    import yaml

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if hasattr(value, "model_dump"):  # a nested configuration's default: its YAML form (units as strings)
        value = value.model_dump(mode="json")
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def _default(field) -> str | None:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            return _yaml(field.get_default(call_default_factory=True, validated_data={}))
        except TypeError:
            return _yaml(field.default_factory())
    if field.default is PydanticUndefined:
        return None
    return _yaml(field.default)


# ----------------------------------------------------------------------------- descriptions
_ENTRY = re.compile(r"^([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*:(?:\s.*)?$")
_PARAGRAPH = re.compile(r"^``([A-Za-z_]\w*)``(?:\s*\([^)]*\))?\s*:\s*(.+)$")
_YAML_LINE = re.compile(r"^(\s*)(?:#\s*)?([A-Za-z_]\w*):(?:\s+(.*?))?\s+#\s*(.*?)\s*$|^(\s*)(?:#\s*)?([A-Za-z_]\w*):")


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.search(r"(?<=[a-z0-9)\]`'\"])\.\s+[A-Z0-9(]", text)
    text = text[: m.start()] if m else text.rstrip(".")
    word = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if word[:1].isupper() and word[1:].islower() else text


def _docstring_entries(cls) -> dict[str, str]:
    """``{name: description}`` from numpydoc entries (``name : type`` and an indented description) and
    ````name````: paragraphs of a class docstring."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__dict__.get("__doc__") or "").splitlines()
    for i, line in enumerate(lines):
        if line[:1].isspace():
            continue
        m = _PARAGRAPH.match(line)
        if m:
            out.setdefault(m.group(1), _first_sentence(" ".join([m.group(2), *_continuation(lines, i + 1, 0)])))
            continue
        m = _ENTRY.match(line)
        if m and " : " in line:
            body = list(_continuation(lines, i + 1, 1))
            for name in re.split(r"\s*,\s*", m.group(1)) if body else ():
                out.setdefault(name, _first_sentence(" ".join(body)))
    return out


def _continuation(lines, start: int, min_indent: int):
    for line in lines[start:]:
        if not line.strip():
            return
        indent = len(line) - len(line.lstrip())
        if indent < min_indent:
            return
        yield line.strip()


def _example_comments(module) -> dict[str, str]:
    """``{dotted key: comment}`` from the example configuration in a module docstring (a comment continued on the
    lines below, as comment-only lines, is joined)."""
    out: dict[str, str] = {}
    doc = inspect.cleandoc(getattr(module, "__doc__", None) or "")
    stack: list[tuple[int, str]] = []
    current: list[str] | None = None  # the comment being continued
    for line in doc.splitlines():
        if not line.strip():
            current = None
            continue
        m = _YAML_LINE.match(line)
        indent = len(line) - len(line.lstrip())
        if not m and current is not None and line.lstrip().startswith("#"):
            current.append(line.lstrip()[1:].strip())
            continue
        current = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not m:
            continue
        key = m.group(2) or m.group(6)
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        if m.group(4) and not m.group(4).startswith("--"):
            current = [m.group(4)]
            out.setdefault(path, current)
    return {k: _first_sentence(" ".join(v)) for k, v in out.items()}


def _descriptions(model, prefix: str, root_comments: Mapping[str, str]) -> Callable[[str], str]:
    entries: dict[str, str] = {}
    comments: dict[str, str] = {}
    for cls in model.__mro__:
        if cls.__module__.startswith("pydantic") or cls is object:
            continue
        for name, text in _docstring_entries(cls).items():
            entries.setdefault(name, text)
        for key, text in _example_comments(importlib.import_module(cls.__module__)).items():
            comments.setdefault(key, text)

    def describe(name: str) -> str:
        return entries.get(name) or root_comments.get(prefix + name) or comments.get(name) or ""

    return describe


# ----------------------------------------------------------------------------- keys
def model_keys(model, *, prefix: str = "", descriptions: Mapping[str, str] | None = None,
               sections: Mapping[str, Callable[[], list[KeyHelp]]] | None = None,
               _root_comments: Mapping[str, str] | None = None) -> list[KeyHelp]:
    """Every key of the configuration ``model`` (nested models included), in field order.

    ``descriptions`` overrides descriptions by dotted key or field name; ``sections`` adds, after a free-form field, the keys
    that validate its content (``{"training": lambda: model_keys(TrainingConfig, prefix="training.")}``).
    """
    descriptions = dict(descriptions or {})
    root = (_example_comments(importlib.import_module(model.__module__)) if _root_comments is None
            else _root_comments)
    describe = _descriptions(model, prefix, root)
    out = []
    for name, field in model.model_fields.items():
        key = prefix + name
        text, unit = type_text(field.annotation, field.metadata)
        limits = _constraints(field.metadata)
        if limits:
            text += f" ({', '.join(limits)})"
        nested, joiner = _nested(field.annotation)
        if nested is not None:
            text = text.replace("section", "section (keys below)" if joiner == "." else "sections (keys below)", 1)
        description = field.description or descriptions.get(key) or descriptions.get(name) or describe(name)
        out.append(KeyHelp(key, text, _default(field), " ".join(description.split()), unit))
        if nested is not None:
            out.extend(model_keys(nested, prefix=key + joiner, descriptions=descriptions, _root_comments=root))
        if sections and name in sections:
            out.extend(sections[name]())
    return out


def format_keys(keys, *, width: int = 100) -> str:
    """The keys as help text: ``key: type; default X`` (or ``required``) and the description indented below."""
    lines = [textwrap.fill(_HEADER, width), ""]
    for k in keys:
        default = "; required" if k.default is None else f"; default {k.default}" if k.default else ""
        lines.append(f"  {k.key}: {k.type}{default}")  # one line, however long: a key is found by grep
        if k.description:
            lines.append(textwrap.fill(k.description, width, initial_indent="      ", subsequent_indent="      ",
                                       break_on_hyphens=False))
    return "\n".join(lines)


def config_model(command: str):
    """The configuration model class of ``command`` (:data:`COMMANDS`)."""
    module, _, name = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), name)


def _train_sections() -> dict[str, Callable[[], list[KeyHelp]]]:
    def training():
        from ..training.config import TrainingConfig

        return model_keys(TrainingConfig, prefix="training.", descriptions=_TRAIN)

    def model():
        from ..models.registry import MODELS

        names = MODELS.names()
        rows = [KeyHelp("model.name", " | ".join(names), "schnet", "the registered model to train; the other "
                        "model keys are its own (listed per model below)")]
        for name in names:
            cls = MODELS.get(name)
            config = getattr(cls, "Config", None)
            if config is None:
                continue
            documented = _docstring_entries(cls) if isinstance(cls, type) else {}  # the model's own parameters
            for row in model_keys(config, prefix="model.", descriptions=documented):
                rows.append(KeyHelp(row.key, row.type, row.default,
                                    f"(name: {name}) {row.description}".strip(), row.unit))
        return rows

    def priors():
        from ..models.priors import PRIORS

        return [KeyHelp("priors.<name>", "section", "", "one section per prior, parsed by that prior; registered: "
                        + ", ".join(PRIORS.names()))]

    return {"training": training, "model": model, "priors": priors}


_SECTIONS: dict[str, Callable[[], dict]] = {"train": _train_sections}
_DESCRIPTIONS: dict[str, Mapping[str, str]] = {"reference": _REFERENCE, "map": _MAP, "ibi": _IBI, "train": _TRAIN}


def command_keys(command: str, descriptions: Mapping[str, str] | None = None) -> list[KeyHelp]:
    """The keys of ``command``'s configuration (:func:`model_keys` with that command's sections)."""
    merged = {**_DESCRIPTIONS.get(command, {}), **(descriptions or {})}
    sections = _SECTIONS[command]() if command in _SECTIONS else None
    return model_keys(config_model(command), descriptions=merged, sections=sections)


class ConfigHelp:
    """The generated key list of a command, made when first shown (``str(help)``)."""

    def __init__(self, command: str, descriptions: Mapping[str, str] | None = None):
        if command not in COMMANDS:
            raise KeyError(f"no configuration model is registered for the command {command!r}")
        self.command = command
        self.descriptions = dict(descriptions or {})
        self._text: str | None = None

    def keys(self) -> list[KeyHelp]:
        return command_keys(self.command, self.descriptions)

    def __str__(self) -> str:
        if self._text is None:
            self._text = format_keys(self.keys())
        return self._text

    def __repr__(self) -> str:
        return f"ConfigHelp({self.command!r})"


def config_help(command: str, descriptions: Mapping[str, str] | None = None) -> ConfigHelp:
    """The ``epilog`` of a command's parser: its configuration keys, generated when help is shown."""
    return ConfigHelp(command, descriptions)


class HelpParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that appends a :class:`ConfigHelp` epilog, verbatim, to its help (sub-command parsers
    inherit the class)."""

    def format_help(self) -> str:
        epilog = self.epilog
        if not isinstance(epilog, ConfigHelp):
            return super().format_help()
        self.epilog = None
        try:
            text = super().format_help()
        finally:
            self.epilog = epilog
        return f"{text}\n{epilog}\n"


def add_config_command(subparsers, name: str, help: str, workflow, func, *, overwrite: str | None = None,
                       quiet: bool = False) -> argparse.ArgumentParser:
    """The parser of a command that takes one YAML configuration: the workflow module's docstring as its
    description, the generated key list as its epilog (added by ``build_parser``), and optionally
    ``--overwrite`` (with ``overwrite`` as its help) and ``--quiet`` (no progress bar)."""
    parser = subparsers.add_parser(name, help=help, description=workflow.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML configuration (keys below)")
    if overwrite is not None:
        parser.add_argument("--overwrite", action="store_true", help=overwrite)
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=func)
    return parser
