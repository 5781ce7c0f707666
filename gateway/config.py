"""Loading configuration: YAML (one file or a folder of files) → validated pydantic models.

Every problem is reported at once, one line each, as ``file:line: key.path: what is wrong``::

    configs/cell.yaml:14: connectors[0].brokr: unknown key 'brokr' (did you mean 'broker'?)

``${VAR}`` and ``${VAR:-default}`` in values read the environment (``$${`` is a literal ``${``).
No message ever quotes a secret: a value at a secret-typed key (``SecretStr``) or under a key
whose name says it is one (``password``, ``token``…) is left out of "(got …)" and masked as
``***`` wherever a message would repeat it (see :mod:`gateway.secrets`).
The models themselves live beside their components; :func:`config_model` assembles the whole
file's model from the registered connector and sink types and the registered top-level
sections (``machines:``, see :func:`gateway.registry.register_section`).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from pydantic_core import ErrorDetails

from gateway.errors import ConfigError, ConfigProblem
from gateway.registry import component_types, sections
from gateway.secrets import SecretRegistry, is_secret_annotation, is_secret_key, secret_values
from gateway.settings import ComponentConfig, ConnectorConfig, GatewaySettings, SinkConfig, StrictModel

__all__ = [
    "GatewayConfig",
    "LoadedConfig",
    "config_digest",
    "config_model",
    "json_schema",
    "load_config",
    "load_config_source",
    "validate_data",
]

Loc = tuple[str | int, ...]
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^}])*))?\}")
# `${VAR}` holds '{' and '}', which YAML's flow mappings ({user: ${OPC_USER}}) read as syntax:
# references are masked with plain tokens (same line) before parsing and restored after.
_ENV_REF = re.compile(r"(?<!\$)\$\{[^}\n]*\}")
_ENV_MASK = "__gwenv{}__"
_ENV_MASKED = re.compile(r"__gwenv(\d+)__")


class GatewayConfig(StrictModel):
    """The whole configuration (the model the registered component types are plugged into)."""

    gateway: GatewaySettings = GatewaySettings()
    sinks: list[SinkConfig] = Field(default_factory=list)
    connectors: list[ConnectorConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> GatewayConfig:
        _unique_names("sinks", self.sinks)
        _unique_names("connectors", self.connectors)
        if self.connectors and not self.sinks:
            raise _RefError((), _NO_SINKS)
        known = {sink.name for sink in self.sinks}
        for index, connector in enumerate(self.connectors):
            for name in connector.sinks or ():
                if name not in known:
                    raise _RefError(
                        ("connectors", index, "sinks"),
                        f"sink {name!r} is not defined"
                        + (f"; defined sinks: {', '.join(sorted(known))}" if known else ""),
                    )
        return self


_NO_SINKS = "connectors are configured but no sinks: add at least one sink"


class _RefError(ValueError):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _unique_names(section: str, items: Sequence[ComponentConfig]) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in seen:
            raise _RefError(
                (section, index, "name"),
                f"name {item.name!r} is already used by {section}[{seen[item.name]}]; names must be unique",
            )
        seen[item.name] = index


def _union(base: type[ComponentConfig], models: list[type[BaseModel]]) -> Any:
    if not models:
        return base
    if len(models) == 1:
        return Annotated[models[0], Field(discriminator="type")]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


@cache
def config_model() -> type[GatewayConfig]:
    """The whole file's model, with every registered connector and sink type plugged in."""
    sink_models = [c.config_model for c in component_types("sink").values()]
    connector_models = [c.config_model for c in component_types("connector").values()]
    sinks: Any = list[_union(SinkConfig, sink_models)]  # type: ignore[misc]
    connectors: Any = list[_union(ConnectorConfig, connector_models)]  # type: ignore[misc]
    extra: dict[str, Any] = {
        section.name: (section.annotation, Field(default_factory=list, description=section.description))
        for section in sections().values()
    }
    return create_model(
        "GatewayConfig",
        __base__=GatewayConfig,
        sinks=(sinks, Field(default_factory=list)),
        connectors=(connectors, Field(default_factory=list)),
        **extra,
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a whole config file (for editors: ``gateway schema > gateway.schema.json``)."""
    schema = config_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Shop-floor gateway configuration"
    return schema


# --- YAML with locations -------------------------------------------------------------------


class _Document:
    """Plain data read from YAML, with the file and line of every key and value."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.locations: dict[Loc, tuple[str, int]] = {}
        self.problems: list[ConfigProblem] = []
        self.masked: list[str] = []
        # Problems at a key path, kept as (loc, file, line, message) until the files are merged
        # (a list item's index in a second file moves when the lists are concatenated).
        self.keyed: list[tuple[Loc, str, int, str]] = []
        self.unresolved: list[Loc] = []  # values with an environment variable that is not set
        self.nodes = 0  # values read so far (see _MAX_NODES)


def _interpolate(text: str, file: str, line: int, loc: Loc, doc: _Document) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:  # ${VAR:-default} also applies the default to an empty variable
            if default is None:
                message = (
                    f"environment variable {name} is not set (set it, or write ${{{name}:-default}} to give a default)"
                )
                doc.keyed.append((loc, file, line, message))
                doc.unresolved.append(loc)
                return ""
            return default
        if value == "" and default is not None:
            return default
        return value

    return _ENV.sub(replace, text)


def _mask_env(text: str, masked: list[str]) -> str:
    def mask(match: re.Match[str]) -> str:
        masked.append(match.group(0))
        return _ENV_MASK.format(len(masked) - 1)

    return _ENV_REF.sub(mask, text)


#: Most values one file may expand to: YAML aliases can make a small file enormous ("billion laughs").
_MAX_NODES = 1_000_000


class _TooLarge(Exception):
    pass


def _read_yaml(path: Path, display: str) -> _Document:
    doc = _Document()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        doc.problems.append(ConfigProblem(display, None, "", f"cannot read the file: {exc}"))
        return doc
    try:
        original = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        doc.problems.append(
            ConfigProblem(
                display,
                line,
                "",
                f"the file is not UTF-8 text (byte {raw[exc.start]:#04x} here; saved as Latin-1 or Windows-1252?): "
                "save it as UTF-8",
            )
        )
        return doc
    text = _mask_env(original, doc.masked)
    try:
        loader = yaml.SafeLoader(text)  # (it checks every character already)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        doc.problems.append(
            ConfigProblem(display, line, "", f"YAML syntax error: {reason}{_syntax_hint(original, line, reason)}")
        )
        return doc
    except yaml.reader.ReaderError as exc:  # a control character: no mark, a position
        line = text[: exc.position].count("\n") + 1
        reason = f"YAML error: {exc.reason} (character #x{exc.character:04x})"
        doc.problems.append(ConfigProblem(display, line, "", reason))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(ConfigProblem(display, 1, "", f"YAML error: {exc}"))
        return doc
    except RecursionError:
        doc.problems.append(ConfigProblem(display, 1, "", "YAML error: brackets or blocks nested hundreds deep"))
        return doc
    if root is None:
        return doc
    try:
        data = _construct(root, (), display, doc, loader)
    except (_TooLarge, RecursionError):
        doc.problems.append(
            ConfigProblem(
                display,
                root.start_mark.line + 1,
                "",
                "the file expands to more values than a config holds (YAML aliases that repeat or contain themselves?)",
            )
        )
        return doc
    if not isinstance(data, dict):
        doc.problems.append(
            ConfigProblem(
                display, root.start_mark.line + 1, "", "expected a mapping with gateway:, sinks:, connectors:"
            )
        )
        return doc
    doc.data = data
    return doc


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _syntax_hint(text: str, line: int, reason: str) -> str:
    """When indentation is the likely cause of a YAML syntax error at ``line``, say so (else "").

    Read from the lines themselves, as a person would check them: a tab; a list item without
    the space after its dash; a line whose indentation matches no key or list item above it; a
    key written at the indentation of a list's dashes, below an item it was meant to be part of.
    """
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return ""
    current = lines[line - 1]
    lead = current[: len(current) - len(current.lstrip(" \t"))]
    if "\t" in lead or "'\\t'" in reason:
        return f" (line {line} is indented with a tab: YAML indents with spaces only; set the editor to insert spaces)"
    above = [(n, t) for n, t in enumerate(lines[: line - 1], 1) if t.strip() and not t.lstrip().startswith("#")]
    for number, previous in reversed(above[-2:]):
        stripped = previous.lstrip(" ")
        if re.match(r"-[^\s-]", stripped):
            return f" (line {number}: a list item needs a space after '-', as in '- {stripped[1:].strip()}')"
    if not current.strip() or not above:
        return ""
    indent = _indent(current)
    levels: set[int] = set()
    items: dict[int, tuple[int, int]] = {}  # indentation of a list's dashes → (line, indentation of its keys)
    for number, previous in above:
        level = _indent(previous)
        levels.add(level)
        dash = re.match(r"(- +)+", previous[level:])
        if dash:
            levels.add(level + dash.end())
            items[level] = (number, level + dash.end())
    if indent not in levels:
        near = sorted(levels, key=lambda level: (abs(level - indent), level))[:2]
        spaces = "space" if indent == 1 else "spaces"
        return (
            f" (line {line} is indented by {indent} {spaces}, the lines above by {' or '.join(map(str, sorted(near)))}:"
            " a key must line up with the keys of its mapping, a list item with the items of its list)"
        )
    if indent in items and not current.lstrip(" ").startswith("-"):
        number, keys = items[indent]
        return (
            f" (line {line} is a key at the indentation of the list item on line {number}: to put it in that item,"
            f" indent it by {keys} spaces like the item's other keys)"
        )
    return ""


def _value_of(node: yaml.Node, loc: Loc, file: str, doc: _Document, loader: yaml.SafeLoader) -> Any:
    """A scalar (or a key) as PyYAML reads it; a problem at its line when it cannot (an unknown
    ``!!tag``, a date such as 2024-13-45, bad ``!!binary``): ``_UNREADABLE``."""
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        reason = getattr(exc, "problem", None) or str(exc)
        doc.keyed.append((loc, file, node.start_mark.line + 1, f"this value cannot be read: {reason}"))
        return _UNREADABLE


_UNREADABLE: Any = object()


def _construct(node: yaml.Node, loc: Loc, file: str, doc: _Document, loader: yaml.SafeLoader) -> Any:
    line = node.start_mark.line + 1
    doc.locations.setdefault(loc, (file, line))
    doc.nodes += 1
    if doc.nodes > _MAX_NODES:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        try:
            loader.flatten_mapping(node)
        except yaml.YAMLError as exc:  # a merge key (<<:) that does not name a mapping
            mark = getattr(exc, "problem_mark", None) or node.start_mark
            doc.keyed.append((loc, file, mark.line + 1, f"YAML error: {getattr(exc, 'problem', None) or exc}"))
            return {}
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _value_of(key_node, loc, file, doc, loader)
            if key is _UNREADABLE:
                continue
            if not isinstance(key, str | int | float | bool) or key is None:
                doc.keyed.append((loc, file, key_node.start_mark.line + 1, "keys must be text"))
                continue
            if key in result:
                doc.keyed.append(
                    (
                        (*loc, str(key)),
                        file,
                        key_node.start_mark.line + 1,
                        f"key {key!r} appears twice in the same mapping",
                    )
                )
            child: Loc = (*loc, str(key))
            doc.locations[child] = (file, key_node.start_mark.line + 1)
            result[key] = _construct(value_node, child, file, doc, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, index), file, doc, loader) for index, item in enumerate(node.value)]
    value = _value_of(node, loc, file, doc, loader)
    if value is _UNREADABLE:
        return None
    if isinstance(value, str) and "__gwenv" in value:
        value = _ENV_MASKED.sub(lambda m: doc.masked[int(m.group(1))], value)
    if isinstance(value, str) and "$" in value:
        substituted = _interpolate(value, file, line, loc, doc)
        if substituted != value and isinstance(node, yaml.ScalarNode) and node.style is None:
            return _typed(substituted, loader)
        return substituted
    return value


def _typed(text: str, loader: yaml.SafeLoader) -> Any:
    """A plain scalar after substitution: a number written plainly becomes a number.

    ``qos: ${QOS:-1}`` is the int 1, as if ``1`` were written there. Only numbers written the
    way Python writes them are converted, so that ``password: ${PW}`` with PW=0123 stays the
    text "0123" (YAML would read 83), and true/yes/null stay text (the config models read
    true/false themselves where they expect a boolean). Text fields take numbers as their text.
    """
    tag = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        number = loader.construct_object(yaml.ScalarNode(tag, text), deep=True)
        if isinstance(number, int | float) and repr(number) == text:
            return number
    return text


def _merge(documents: Sequence[_Document]) -> _Document:
    merged = _Document()
    owner_of_gateway: str | None = None
    for doc in documents:
        merged.problems.extend(doc.problems)
        shifts: dict[str, int] = {}
        for key, value in doc.data.items():
            if key in _list_sections() and isinstance(value, list):
                existing = merged.data.setdefault(key, [])
                if isinstance(existing, list):
                    shifts[key] = len(existing)
                    existing.extend(value)
                    continue
            if key in merged.data:
                file, line = doc.locations.get((key,), ("?", 0))
                merged.problems.append(
                    ConfigProblem(
                        file, line, key, f"'{key}' is already defined in {owner_of_gateway or 'another file'}"
                    )
                )
                continue
            merged.data[key] = value
            if key == "gateway":
                owner_of_gateway = doc.locations.get((key,), ("?", 0))[0]
        for loc, where in doc.locations.items():
            merged.locations.setdefault(_shift(loc, shifts), where)
        for loc, file, line, message in doc.keyed:
            merged.problems.append(ConfigProblem(file, line, format_loc(_shift(loc, shifts)), message))
        merged.unresolved.extend(_shift(loc, shifts) for loc in doc.unresolved)
    return merged


def _list_sections() -> tuple[str, ...]:
    """Top-level lists that files of a folder add to (``sinks``, ``connectors``, registered sections)."""
    return ("sinks", "connectors", *sections())


def _shift(loc: Loc, shifts: dict[str, int]) -> Loc:
    """A key path of a second file, with its list indexes moved past the earlier files' items."""
    if len(loc) > 1 and loc[0] in shifts and isinstance(loc[1], int):
        return (loc[0], loc[1] + shifts[str(loc[0])], *loc[2:])
    return loc


def _config_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigError([ConfigProblem(str(path), None, "", "the folder holds no .yaml or .yml file")])
        return files
    if not path.exists():
        raise ConfigError([ConfigProblem(str(path), None, "", "no such file or folder")])
    return [path]


# --- validation and error messages -----------------------------------------------------------


def format_loc(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Drop the discriminator tags pydantic puts in error locations (``connectors.0.mqtt.x``)."""
    result: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part not in current and current.get("type") == part:
            continue
        current = _child(current, part)
        result.append(part)
    return tuple(result)


def _child(value: Any, part: str | int) -> Any:
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def _model_at(model: Any, data: Any, loc: Loc) -> type[BaseModel] | None:
    """The config model that validates the mapping at ``loc`` (for "did you mean" hints)."""
    current: Any = model
    value = data
    for part in loc:
        current = _unwrap(current, value)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
        else:
            return None
        value = _child(value, part)
    current = _unwrap(current, value)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, value: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            chosen = members[0] if len(members) == 1 else None
            for member in members:
                if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(value, dict):
                    tag = member.model_fields.get("type")
                    if tag is not None and value.get("type") in typing.get_args(tag.annotation):
                        chosen = member
            if chosen is None:
                return None
            annotation = chosen
        else:
            return annotation


def _allowed_keys(model: type[BaseModel], data: Any, loc: Loc) -> list[str]:
    parent = _model_at(model, data, loc)
    return sorted(parent.model_fields) if parent else []


def _misspelled(errors: list[tuple[ErrorDetails, Loc]], model: type[BaseModel], data: Any) -> set[Loc]:
    """Required keys reported missing because they were misspelled (``brokr:`` for ``broker:``).

    The unknown key's "did you mean" says it all; "required key 'broker' is missing" would be a
    second line for one mistake.
    """
    found = set()
    for error, loc in errors:
        if error["type"] == "extra_forbidden" and loc:
            hint = difflib.get_close_matches(str(loc[-1]), _allowed_keys(model, data, loc[:-1]), n=1)
            if hint:
                found.add((*loc[:-1], hint[0]))
    return found


def _message(error: ErrorDetails, model: type[BaseModel], data: Any, loc: Loc) -> tuple[Loc, str]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(model, data, loc[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        if hint:
            return loc, f"unknown key {key!r} (did you mean {hint[0]!r}?)"
        return loc, f"unknown key {key!r}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return loc, f"required key {str(loc[-1])!r} is missing"
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        section = "connector" if loc and loc[0] == "connectors" else "sink"
        return (*loc, "type"), f"unknown {section} type {ctx.get('tag')!r}; known types: {expected}"
    if kind == "union_tag_not_found":
        return (*loc, "type"), "required key 'type' is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if (
        kind not in ("value_error", "assertion_error")
        and not isinstance(error.get("input"), dict | list)
        and not _secret_at(model, data, loc)
    ):
        message += f" (got {error.get('input')!r:.60})"
    return loc, message


def _secret_at(model: type[BaseModel], data: Any, loc: Loc) -> bool:
    """True when the value at ``loc`` is (or is inside) a secret: a key so named, or a SecretStr field."""
    for end in range(len(loc)):
        part = loc[end]
        if isinstance(part, int):
            continue
        if is_secret_key(part):
            return True
        parent = _model_at(model, data, loc[:end])
        field = parent.model_fields.get(part) if parent is not None else None
        if field is not None and is_secret_annotation(field.annotation):
            return True
    return False


def _raw_secrets(model: type[BaseModel], data: Any) -> set[str]:
    """The secret values in plain data as read from YAML: under secret-named keys (any type, since
    the value may be the wrong one) and at SecretStr fields, and passwords written inside URLs."""
    found = secret_values(data)

    def walk(value: Any, loc: Loc) -> None:
        if isinstance(value, dict):
            parent = _model_at(model, data, loc)
            for key, child in value.items():
                field = parent.model_fields.get(str(key)) if parent is not None else None
                if field is not None and is_secret_annotation(field.annotation):
                    found.update(secret_values({"secret": child}))
                else:
                    walk(child, (*loc, str(key)))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                walk(child, (*loc, index))

    walk(data, ())
    return found


def validate_data(
    data: dict[str, Any],
    locations: dict[Loc, tuple[str, int]] | None = None,
    default_file: str = "<config>",
) -> GatewayConfig:
    """Validate plain data (as read from YAML); raise ConfigError with every problem found."""
    model = config_model()
    locations = locations or {}
    references = _reference_problems(data)  # checked on the plain data, so they come with every other problem
    found = list(references)
    config: GatewayConfig | None = None
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        errors = [(error, _data_loc(data, tuple(error["loc"]))) for error in exc.errors(include_url=False)]
        misspelled = _misspelled(errors, model, data)
        for error, loc in errors:
            if error["type"] == "missing" and loc in misspelled:
                continue
            ref = _find_ref_error(error)
            if ref is not None:
                if not references:  # (the model's own check; the plain-data check already has it)
                    found.append((ref.loc, str(ref)))
                continue
            found.append(_message(error, model, data, loc))
    if config is not None:
        # Checks across sections (a machine's counter against what the connectors declare) need
        # the validated models, so they run once everything else is valid.
        for section in sections().values():
            if section.check is not None:
                found.extend(section.check(config))
    if found:
        # The last line: a validator's own message may quote a value (a URL with a password in it).
        secrets = SecretRegistry()
        secrets.add(_raw_secrets(model, data))
        problems = []
        for loc, message in found:
            file, line = _locate(locations, loc, default_file)
            problems.append(ConfigProblem(file, line, format_loc(loc), secrets.mask(message)))
        raise ConfigError(problems)
    assert config is not None
    return config


def _reference_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Names used twice, connectors naming sinks that do not exist, connectors without sinks."""
    found: list[tuple[Loc, str]] = []
    names: dict[str, dict[str, int]] = {}
    for section in ("sinks", "connectors"):
        seen = names[section] = {}
        items = data.get(section)
        for index, item in enumerate(items if isinstance(items, list) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str | int | float) and not isinstance(name, bool):
                if str(name) in seen:
                    found.append(
                        (
                            (section, index, "name"),
                            f"name {str(name)!r} is already used by {section}[{seen[str(name)]}]; names must be unique",
                        )
                    )
                else:
                    seen[str(name)] = index
    connectors = data.get("connectors")
    if not isinstance(connectors, list):
        return found
    if connectors and not data.get("sinks"):
        found.append(((), _NO_SINKS))
    known = names["sinks"]
    for index, item in enumerate(connectors):
        wanted = item.get("sinks") if isinstance(item, dict) else None
        for position, name in enumerate(wanted if isinstance(wanted, list) else []):
            if isinstance(name, str) and name not in known and data.get("sinks"):
                found.append(
                    (
                        ("connectors", index, "sinks", position),
                        f"sink {name!r} is not defined"
                        + (f"; defined sinks: {', '.join(sorted(known))}" if known else ""),
                    )
                )
    return found


def _find_ref_error(error: ErrorDetails) -> _RefError | None:
    cause = (error.get("ctx") or {}).get("error")
    return cause if isinstance(cause, _RefError) else None


def _locate(locations: dict[Loc, tuple[str, int]], loc: Loc, default_file: str) -> tuple[str, int | None]:
    for end in range(len(loc), -1, -1):
        where = locations.get(loc[:end])
        if where is not None:
            return where
    return default_file, None


def _within(key: str, parent: str) -> bool:
    return key == parent or key.startswith((parent + ".", parent + "["))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and where it came from: its files and a hash of their text."""

    config: GatewayConfig
    path: Path
    files: tuple[Path, ...]
    sha256: str


def config_digest(files: Sequence[Path]) -> str:
    """SHA-256 of the files' names and bytes, in order (shown in status; equal text, equal hash)."""
    digest = hashlib.sha256()
    for file in files:
        with contextlib.suppress(OSError):
            data = file.read_bytes()
            digest.update(file.name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def load_config_source(path: str | os.PathLike[str]) -> LoadedConfig:
    """:func:`load_config`, with the files it read and their hash (what a reload compares)."""
    path = Path(path)
    files = tuple(_config_files(path))
    digest = config_digest(files)
    return LoadedConfig(_load(path, files), path, files, digest)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a config file or a folder of them; raise ConfigError listing every problem."""
    path = Path(path)
    return _load(path, _config_files(path))


def _load(path: Path, files: Sequence[Path]) -> GatewayConfig:
    documents = [_read_yaml(file, str(file)) for file in files]
    merged = _merge(documents)
    first_file = str(files[0])
    problems = list(merged.problems)
    try:
        config = validate_data(merged.data, merged.locations, first_file)
    except ConfigError as exc:
        # A value whose environment variable is not set was already reported as such: so were
        # the checks of the mapping that holds it (auth: {username: ${OPC_USER}} → "username missing").
        unresolved = [format_loc(loc) for loc in merged.unresolved]
        holders = {format_loc(loc[:-1]) for loc in merged.unresolved if len(loc) > 1}
        problems.extend(
            p for p in exc.problems if p.key not in holders and not any(_within(p.key, key) for key in unresolved)
        )
        config = None
    if problems:
        problems.sort(key=lambda p: (p.file, p.line or 0))
        raise ConfigError(problems)
    assert config is not None
    return config
