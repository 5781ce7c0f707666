"""``gateway browse``: what an OPC UA server offers, as a tree or as a ready connector config.

The tree shows, for every node: browse name, node id in its stable ``nsu=`` form, class,
and for variables the data type, the current value (or its Bad status) with its
EngineeringUnits when the server gives them, and the access level. ``--yaml`` prints a
config with one ``node:`` entry per variable found below ``--from`` (field names derived
from the browse names as ``browse:`` entries do, except that a leaf repeating its folder's
name is not repeated: ``Cycle/CycleTime`` → ``cycle_time``; the names are written in the
file, so they never change afterwards), which ``gateway validate`` accepts and ``gateway
run`` collects as it is. The connector is named after the endpoint's
host (and port, when not 4840) and tags its points ``machine: <name>``, so the configs of two
machines browsed one after the other can be merged without their series overwriting each other.

Browsing goes level by level, each level in a few batched calls (within the server's
MaxNodesPerBrowse / MaxNodesPerRead), with a progress line on large servers.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from connectors.opcua._client import Connection, ConnectionSettings, VariableInfo
from connectors.opcua.nodes import is_node_id, parse_browse_path, parse_node_id, unique_field_names
from connectors.opcua.pki import Pki, default_application_uri

__all__ = ["BrowseOptions", "BrowsedNode", "browse_tree", "render_tree", "render_yaml", "run_browse_command"]

SERVER_OBJECT = "i=2253"  # the standard Server object: diagnostics, not machine data
_POLICIES = ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")


@dataclass(frozen=True)
class BrowseOptions:
    endpoint: str
    depth: int = 4
    start: str = "Objects"
    security: str = "None"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr (tracebacks, debug logs)
    yaml: bool = False
    data_dir: Path = Path("data")
    name: str | None = None
    measurement: str = "machine"
    timeout: float = 10.0


@dataclass
class BrowsedNode:
    text: str
    browse_name: str
    node_class: str
    path: tuple[str, ...]
    info: VariableInfo | None = None
    enum: dict[int, str] | None = None  # value → name, when the data type is an enumeration
    children: list[BrowsedNode] = field(default_factory=list)
    truncated: bool = False
    unit: str = ""  # EngineeringUnits (AnalogItems), e.g. "bar"


def _security(text: str) -> tuple[str, str]:
    if text in ("None", "none", ""):
        return "None", "None"
    policy, _, mode = text.partition("/")
    mode = mode or "SignAndEncrypt"
    if policy not in _POLICIES or mode not in ("Sign", "SignAndEncrypt"):
        raise ValueError(
            f"--security {text!r}: write None, or POLICY/MODE with POLICY one of {', '.join(_POLICIES)} "
            "and MODE Sign or SignAndEncrypt (e.g. Basic256Sha256/SignAndEncrypt)"
        )
    return policy, mode


def _settings(options: BrowseOptions) -> ConnectionSettings:
    policy, mode = _security(options.security)
    pki = Pki(options.data_dir / "opcua" / "pki")
    app_uri = default_application_uri("gateway")
    certificate = private_key = None
    if policy != "None":
        own = pki.own_certificate(app_uri)
        certificate, private_key, app_uri = str(own.certificate), str(own.private_key), own.application_uri
    return ConnectionSettings(
        endpoint=options.endpoint,
        application_uri=app_uri,
        policy=policy,
        mode=mode,
        certificate=certificate,
        private_key=private_key,
        pki=pki,
        username=options.username,
        password=options.password,
        request_timeout=options.timeout,
        session_name="shopfloor-gateway browse",
    )


class _Progress:
    """A progress line on stderr once a browse passes 1,000 nodes (rewritten in place on a terminal)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.count = 0

    def add(self, count: int) -> None:
        before = self.count
        self.count += count
        if self.count < 1000:
            return
        if self.tty:
            self.err.write(f"\rbrowsed {self.count:,} nodes…")
            self.err.flush()
        elif self.count // 5000 > before // 5000:
            self.err.write(f"browsed {self.count:,} nodes…\n")

    def done(self) -> None:
        if self.count >= 1000:
            start = "\r" if self.tty else ""
            self.err.write(f"{start}browsed {self.count:,} nodes.   \n")


async def browse_tree(conn: Connection, start: str, depth: int, progress: _Progress | None = None) -> BrowsedNode:
    """The tree below ``start`` (a browse path or node id), ``depth`` levels deep."""
    if is_node_id(start):
        node = conn.node_id(parse_node_id(start))
        name, node_class = await conn.node_class(node)  # a node the server does not have: its status
    else:
        parts = parse_browse_path(start)
        node = await conn.translate(parts)
        name, node_class = parts[-1], "Object"
    root = BrowsedNode(conn.text(node), name, node_class if node_class != "Variable" else "Object", ())
    infos = await conn.variable_info([node])
    numeric: list[tuple[Any, BrowsedNode]] = []  # variables that may have EngineeringUnits
    if isinstance(infos[0], VariableInfo):
        root.node_class, root.info = "Variable", infos[0]
        if infos[0].is_numeric:
            numeric.append((node, root))
    level: list[tuple[Any, BrowsedNode]] = [(node, root)]
    seen = {root.text}
    for _ in range(depth):
        if not level:
            break
        expandable = [(n, b) for n, b in level if b.text != SERVER_OBJECT or b is root]
        for _, skipped in (x for x in level if x[1].text == SERVER_OBJECT and x[1] is not root):
            skipped.truncated = True
        children = await conn.browse([n for n, _ in expandable]) if expandable else []
        next_level: list[tuple[Any, BrowsedNode]] = []
        variables: list[tuple[Any, BrowsedNode]] = []
        for (_, parent), refs in zip(expandable, children, strict=True):
            for ref in refs:
                if ref.is_property or ref.text in seen:
                    continue
                seen.add(ref.text)
                child = BrowsedNode(ref.text, ref.browse_name, ref.node_class, (*parent.path, ref.browse_name))
                parent.children.append(child)
                if ref.node_class in ("Object", "Variable"):
                    next_level.append((ref.node, child))
                if ref.node_class == "Variable":
                    variables.append((ref.node, child))
        for start_index in range(0, len(variables), 1000):
            chunk = variables[start_index : start_index + 1000]
            for (child_node, child), info in zip(chunk, await conn.variable_info([n for n, _ in chunk]), strict=True):
                if isinstance(info, VariableInfo):
                    child.info = info
                    if info.is_numeric:
                        numeric.append((child_node, child))
            if progress is not None:
                progress.add(len(chunk))
        if progress is not None:
            progress.add(len(next_level) - len(variables))
        level = next_level
    for _, leftover in level:
        if leftover.node_class == "Object":
            leftover.truncated = True
    await _learn_enums(conn, root)
    await _learn_units(conn, numeric)
    return root


async def _learn_units(conn: Connection, numeric: list[tuple[Any, BrowsedNode]]) -> None:
    """The EngineeringUnits of numeric variables; a server that refuses the lookup shows none."""
    if not numeric:
        return
    try:
        units = await conn.engineering_units([node for node, _ in numeric])
    except Exception:  # noqa: BLE001 - units are a nicety of the listing, never a reason to fail it
        return
    for (_, variable), unit in zip(numeric, units, strict=True):
        variable.unit = unit


async def _learn_enums(conn: Connection, root: BrowsedNode) -> None:
    """Mark the variables whose data type is an enumeration (it has EnumStrings or EnumValues)."""
    variables = [v for v in [root, *_variables(root)] if v.info is not None]
    types = list({v.info.data_type: None for v in variables if v.info is not None and not _builtin(v.info.data_type)})
    if not types:
        return
    enums = await conn.enum_names(types)
    for variable in variables:
        assert variable.info is not None
        variable.enum = enums.get(variable.info.data_type)


def _builtin(type_id: Any) -> bool:
    """The built-in data types (Boolean … DiagnosticInfo) are never enumerations: not worth a browse."""
    return (
        getattr(type_id, "NamespaceIndex", 1) == 0
        and isinstance(getattr(type_id, "Identifier", None), int)
        and (1 <= type_id.Identifier <= 25)
    )


def _value_text(info: VariableInfo, enum: dict[int, str] | None = None) -> str:
    if info.status_name != "Good":
        return f"({info.status_name})"
    value = info.value
    single = info.data_type_name == "Float"
    if isinstance(value, list):
        shown = ", ".join(_short(v, single, enum) for v in value[:5])
        return f"[{shown}{', …' if len(value) > 5 else ''}] ({len(value)} values)"
    return _short(value, single, enum)


def _short(value: Any, single: bool = False, enum: dict[int, str] | None = None) -> str:
    if isinstance(value, str):
        return json.dumps(value[:60] + ("…" if len(value) > 60 else ""), ensure_ascii=False)
    if isinstance(value, float) and single and math.isfinite(value):
        # A Float is 32 bits: 7 significant digits, not the noise of its conversion to a double.
        return repr(float(f"{value:.7g}"))
    if isinstance(value, int) and not isinstance(value, bool) and enum is not None and value in enum:
        return f"{value} ({enum[value]})"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return f"<{type(value).__name__}>"


def render_tree(root: BrowsedNode, out: TextIO) -> int:
    """Print the tree; returns the number of variables shown."""
    count = 0

    def line(node: BrowsedNode, prefix: str, connector: str) -> None:
        nonlocal count
        text = f"{prefix}{connector}{node.browse_name}  {node.text}  {node.node_class}"
        if node.info is not None:
            count += 1
            info = node.info
            dims = "[]" if info.value_rank >= 1 else ""
            unit = f" {node.unit}" if node.unit else ""
            text += (
                f"  {info.data_type_name}{dims} = {_value_text(info, node.enum)}{unit}  [{info.access or 'no access'}]"
            )
        if node.truncated and not node.children:
            text += "  …"
        out.write(text + "\n")

    def walk(node: BrowsedNode, prefix: str) -> None:
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            line(child, prefix, "└── " if last else "├── ")
            walk(child, prefix + ("    " if last else "│   "))

    line(root, "", "")
    walk(root, "")
    return count


def _variables(root: BrowsedNode) -> list[BrowsedNode]:
    found: list[BrowsedNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.info is not None and node is not root:
            found.append(node)
        stack.extend(reversed(node.children))
    return found


def _storable(value: Any) -> bool:
    """Values the store can hold (None: not known yet, assume yes); structures and bytes cannot."""
    if isinstance(value, list):
        return all(_storable(v) and not isinstance(v, list) for v in value)
    return value is None or isinstance(value, bool | int | float | str | datetime)


def _name(options: BrowseOptions) -> str:
    """The connector's name: --name, else the endpoint's host (and its port, when not 4840).

    Not the start node's browse name: every machine of a kind has the same (``Machine``), and
    two connectors with one name cannot live in one config.
    """
    if options.name:
        return options.name
    address = re.sub(r"^opc\.tcp://", "", options.endpoint).split("/")[0]
    host, _, port = address.rpartition(":") if re.search(r":\d+$", address) else (address, "", "")
    base = host if port in ("", "4840") else f"{host}-{port}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-._").lower()
    return name or "opcua"


def render_yaml(root: BrowsedNode, options: BrowseOptions, out: TextIO) -> int:
    """A whole config (sink + connector) collecting every variable below the browsed start node."""
    variables = _variables(root)
    storable = [v for v in variables if v.info is not None and _storable(v.info.value)]
    others = [v for v in variables if v not in storable]
    fields = unique_field_names([(v.text, v.path) for v in variables], collapse=True)
    name = _name(options)
    policy, mode = _security(options.security)
    command = f"gateway browse {options.endpoint} --from {options.start}"
    lines = [
        f"# Generated by: {command} --yaml",
        f"# {len(storable)} variables below {options.start}"
        + (f" ({len(others)} more cannot be stored: commented out)" if others else "")
        + ".",
        "# To add this machine to an existing config, keep only the connectors: entry.",
        "sinks:",
        "  - name: local",
        "    type: historian",
        "    path: ./data/history.db",
        "connectors:",
        f"  - name: {name}",
        "    type: opcua",
        f"    endpoint: {options.endpoint}",
    ]
    if policy != "None":
        lines.append(f"    security: {{policy: {policy}, mode: {mode}}}")
    if options.username:
        lines.append("    auth: {username: ${OPC_USER}, password: ${OPC_PASSWORD}}")
    lines += [
        f"    measurement: {options.measurement}",
        f"    tags: {{machine: {json.dumps(name)}}}  # keeps this machine's series apart from the others'",
        "    nodes:",
    ]
    if not storable:
        lines.append("      []")
    for node in storable:
        assert node.info is not None
        enum = ", enum_names: true" if node.enum is not None else ""
        lines.append(
            f"      - {{node: {json.dumps(node.text, ensure_ascii=False)}, field: {fields[node.text]}{enum}}}"
            f"  # {node.info.data_type_name}{'[]' if node.info.value_rank >= 1 else ''}"
            + (f", {node.unit}" if node.unit else "")
        )
    for node in others:
        assert node.info is not None
        lines.append(
            f"      # - {{node: {json.dumps(node.text, ensure_ascii=False)}, field: {fields[node.text]}}}"
            f"  # {node.info.data_type_name}: a structure or binary type, cannot be stored"
        )
    out.write("\n".join(lines) + "\n")
    return len(storable)


async def run_browse_command(options: BrowseOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
    """The body of ``gateway browse``."""
    if options.depth < 1:
        raise ValueError("--depth must be 1 or more")
    progress = _Progress(err)
    try:
        async with Connection(_settings(options)) as conn:
            root = await browse_tree(conn, options.start, options.depth, progress)
    finally:
        progress.done()
    if options.yaml:
        count = render_yaml(root, options, out)
        err.write(f"{count} variables written as a connector config.\n")
        if options.username:
            err.write("Set OPC_USER and OPC_PASSWORD before gateway run (the password is not written in the file).\n")
    else:
        count = render_tree(root, out)
        err.write(f"{count} variables shown (depth {options.depth} below {options.start}).\n")
