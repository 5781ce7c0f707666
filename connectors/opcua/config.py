"""Configuration of the OPC UA connector (``type: opcua``): the model is the spec.

Every option is described here with ``Field(description=...)``; ``gateway schema`` and the
README are generated from, or checked against, these models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, SecretStr, Tag, field_validator, model_validator

from connectors.opcua.nodes import NodeRef, is_node_id, parse_browse_path, parse_node_id
from gateway.settings import ConnectorConfig, StrictModel
from gateway.units import Duration
from gateway.writes import WriteLimits

__all__ = [
    "AuthConfig",
    "BrowseSpec",
    "Deadband",
    "NodeSpec",
    "OpcUaConfig",
    "ReconnectConfig",
    "SecurityConfig",
    "SubscriptionConfig",
]

SecurityPolicyName = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
SecurityModeName = Literal["None", "Sign", "SignAndEncrypt"]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class Deadband(StrictModel):
    """Report a change only when it moves more than this (numbers only)."""

    absolute: float | None = Field(
        default=None,
        gt=0,
        description="Smallest change reported, in the unit of the stored value (after scale and offset).",
    )
    percent: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Smallest change reported, in percent of the variable's EURange (the server must publish it; "
        "mode: subscribe only).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Deadband:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("give exactly one of 'absolute' or 'percent', e.g. {absolute: 5} or {percent: 1}")
        return self


class _ItemOptions(StrictModel):
    """Options shared by single nodes and browsed folders (they override the connector's)."""

    deadband: Deadband | None = Field(default=None, description="Deadband for this node (overrides the connector's).")
    sampling_interval: Duration | None = Field(
        default=None, description="How often the server samples this node (overrides the subscription's)."
    )
    queue_size: int | None = Field(
        default=None, ge=1, le=10_000, description="Changes the server keeps between two publishes (default 1)."
    )
    scale: float | None = Field(default=None, description="Multiply numeric values by this (e.g. 0.1).")
    offset: float | None = Field(default=None, description="Add this to numeric values, after scale.")
    enum_names: bool | None = Field(
        default=None, description="For enumerations, also store the name as a text field <field>_name."
    )
    arrays: Literal["expand", "skip"] | None = Field(
        default=None, description="Arrays: one field per element (<field>_0, <field>_1 …) or skipped."
    )


class NodeSpec(_ItemOptions):
    """One variable, by node id (``ns=2;i=1005``, ``nsu=urn:lab:cnc;s=Spindle.Speed``) or browse path."""

    node: str = Field(
        description="Node id (i=, s=, g=, b= with ns=<index> or nsu=<namespace URI>), or a browse path "
        "such as Objects/Machine/Spindle/Speed.",
        examples=["nsu=urn:lab:cnc;s=Spindle.Speed", "ns=2;i=1005", "Objects/Machine/Spindle/Speed"],
    )
    field: str | None = Field(
        default=None, description="Field name in the store (default: derived from the node's browse name)."
    )
    write: WriteLimits | None = Field(
        default=None,
        description="The node may be written (POST /api/write, gateway write), within these limits: "
        "{allowed: [O1001, O1002]}, {min: 0, max: 120}, {pattern: ...}. Absent: read-only. Needs 'field'.",
    )

    @field_validator("node")
    @classmethod
    def _check_node(cls, value: str) -> str:
        if is_node_id(value):
            parse_node_id(value)
        else:
            parse_browse_path(value)
        return value

    @field_validator("field")
    @classmethod
    def _check_field(cls, value: str | None) -> str | None:
        if value is not None and not _FIELD.match(value):
            raise ValueError(f"{value!r} is not a usable field name: use letters, digits, '_', '.' and '-'")
        return value

    @model_validator(mode="after")
    def _writable(self) -> NodeSpec:
        if self.write is not None:
            if self.field is None:
                raise ValueError("a writable node needs 'field: <name>': writes name the field, e.g. field: program")
            if self.scale == 0:
                raise ValueError("scale 0 makes every value the same: a node with it cannot be written")
        return self

    def ref(self) -> NodeRef | None:
        """The parsed node id, or None when ``node`` is a browse path."""
        return parse_node_id(self.node) if is_node_id(self.node) else None


class BrowseSpec(_ItemOptions):
    """Every variable below a folder: found by browsing at each connect."""

    browse: str = Field(
        description="Where to start: a browse path from the root (Objects/Machine/Counters) or a node id.",
        examples=["Objects/Machine/Counters", "nsu=urn:lab:cnc;s=Machine"],
    )
    recursive: bool = Field(
        default=False, description="Also take the variables in sub-folders (all levels), not only direct children."
    )
    max_depth: int = Field(default=10, ge=1, le=50, description="How deep a recursive browse goes.")
    field_prefix: str = Field(default="", description="Text put before every derived field name (e.g. 'counters_').")

    @field_validator("browse")
    @classmethod
    def _check_browse(cls, value: str) -> str:
        if is_node_id(value):
            parse_node_id(value)
        else:
            parse_browse_path(value)
        return value


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "browse" in value:
            return "browse"
        return "node"
    if isinstance(value, BrowseSpec):
        return "browse"
    if isinstance(value, NodeSpec):
        return "node"
    return None


Item = Annotated[
    Annotated[NodeSpec, Tag("node")] | Annotated[BrowseSpec, Tag("browse")],
    Discriminator(
        _item_kind,
        custom_error_type="invalid_item",
        custom_error_message="each entry needs 'node: <node id or path>' or 'browse: <folder>'",
    ),
]


class SecurityConfig(StrictModel):
    """How the connection is secured (the OPC UA SecureChannel)."""

    policy: SecurityPolicyName = Field(default="None", description="Security policy offered by the server.")
    mode: SecurityModeName = Field(
        default="SignAndEncrypt", description="Sign, or SignAndEncrypt (ignored when policy is None)."
    )
    certificate: Path | None = Field(
        default=None,
        description="The gateway's client certificate (DER or PEM). Default: generated once, with the "
        "application URI, as <data_dir>/opcua/pki/own/cert.der, and kept.",
    )
    private_key: Path | None = Field(
        default=None, description="The client certificate's private key (PEM). Default: generated with it."
    )
    trusted_servers: Path | None = Field(
        default=None,
        description="Folder of trusted server certificates (default <data_dir>/opcua/pki/trusted). A server "
        "certificate not in it is refused, saved under pki/rejected, and the error names the file to copy here.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if self.policy != "None" and self.mode == "None":
            raise ValueError(f"policy {self.policy!r} needs mode Sign or SignAndEncrypt")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both 'certificate' and 'private_key', or neither (to use a generated pair)")
        return self

    @property
    def secured(self) -> bool:
        return self.policy != "None"


class AuthConfig(StrictModel):
    """Who the gateway is on the server: anonymous (no auth block), user name and password, or X.509."""

    username: str | None = Field(default=None, description="User name (write ${OPC_USER} to read it from the env).")
    password: SecretStr | None = Field(
        default=None, description="Password (write ${OPC_PASSWORD}); never shown or logged."
    )
    certificate: Path | None = Field(default=None, description="X.509 user certificate (instead of a password).")
    private_key: Path | None = Field(default=None, description="Private key of the X.509 user certificate.")

    @model_validator(mode="after")
    def _one_kind(self) -> AuthConfig:
        user = self.username is not None or self.password is not None
        cert = self.certificate is not None or self.private_key is not None
        if user and cert:
            raise ValueError("use either username/password or certificate/private_key, not both")
        if cert and (self.certificate is None or self.private_key is None):
            raise ValueError("an X.509 user needs both 'certificate' and 'private_key'")
        if user and not self.username:
            raise ValueError("'username' is missing or empty")
        return self


class SubscriptionConfig(StrictModel):
    """Subscription parameters (mode: subscribe)."""

    publishing_interval: Duration = Field(
        default=1.0, gt=0, description="How often the server sends the changes it collected."
    )
    sampling_interval: Duration | None = Field(
        default=None, description="How often the server samples each node (default: the publishing interval)."
    )
    queue_size: int = Field(default=1, ge=1, le=10_000, description="Changes kept per node between two publishes.")
    keepalive_count: int = Field(
        default=10, ge=1, le=1000, description="Publishing intervals without changes before the server says 'alive'."
    )
    max_notifications_per_publish: int = Field(
        default=0, ge=0, description="Most changes in one publish response (0: no limit)."
    )


class ReconnectConfig(StrictModel):
    """How a lost connection is detected and re-established."""

    initial_delay: Duration = Field(default=1.0, gt=0, description="First wait before reconnecting.")
    max_delay: Duration = Field(default=30.0, gt=0, description="Longest wait between two attempts (capped backoff).")
    watchdog_interval: Duration = Field(
        default=5.0,
        gt=0,
        description="The longest a connection that died without closing (a frozen network, a hung server) goes "
        "unnoticed: the server state is read every half of it and must answer within the other half.",
    )
    request_timeout: Duration = Field(default=10.0, gt=0, description="How long one request may take.")
    session_timeout: Duration = Field(
        default=120.0,
        ge=10,
        description="How long the server keeps the session when the gateway is gone (an abandoned session "
        "is freed after this).",
    )


class OpcUaConfig(ConnectorConfig):
    """An OPC UA server (a machine, a PLC): subscribe to, or poll, its variables."""

    type: Literal["opcua"]
    endpoint: str = Field(description="Server URL, opc.tcp://host:port[/path].", examples=["opc.tcp://10.0.0.20:4840"])
    security: SecurityConfig = Field(default_factory=SecurityConfig, description="Policy and mode.")
    auth: AuthConfig | None = Field(default=None, description="User identity (default: anonymous).")
    application_uri: str | None = Field(
        default=None,
        description="Application URI of the gateway (default urn:<host>:shopfloor-gateway:<gateway name>); "
        "it is written into the generated client certificate.",
    )
    measurement: str = Field(default="opcua", description="Measurement of the stored points.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every point.")
    mode: Literal["subscribe", "poll"] = Field(
        default="subscribe",
        description="subscribe (the server reports changes) or poll (grouped reads every poll_interval, for "
        "servers whose subscriptions are broken or limited).",
    )
    poll_interval: Duration = Field(default=1.0, gt=0, description="Time between two reads (mode: poll).")
    subscription: SubscriptionConfig = Field(default_factory=SubscriptionConfig, description="Subscription options.")
    deadband: Deadband | None = Field(default=None, description="Deadband for every numeric node.")
    scale: float | None = Field(default=None, description="Default scale for numeric values.")
    offset: float | None = Field(default=None, description="Default offset for numeric values.")
    timestamps: Literal["source", "server", "gateway"] = Field(
        default="source",
        description="Which time is stored: the device's (source), the server's, or the time of receipt; an "
        "empty timestamp falls back to the next one.",
    )
    bad_values: Literal["store", "drop"] = Field(
        default="store",
        description="A Bad or Uncertain status is stored with a 'quality' tag and a <field>_status text field "
        "(store), or dropped and counted (drop). It is never stored as a good value.",
    )
    arrays: Literal["expand", "skip"] = Field(default="expand", description="Arrays: one field per element, or skip.")
    enum_names: bool = Field(default=False, description="For enumerations, also store the name as <field>_name.")
    units: bool = Field(
        default=True,
        description="Read each numeric variable's EngineeringUnits (OPC UA AnalogItems) at connect, so the web "
        "page shows it (e.g. °C, bar) where gateway.http.overview.fields sets no unit.",
    )
    batch_interval: Duration = Field(
        default=0.1, gt=0, le=5, description="Changes are handed on in batches at most this often."
    )
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Reconnect and watchdog.")
    nodes: list[Item] = Field(min_length=1, description="What to collect: nodes and browsed folders.")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        if not re.match(r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$", value):
            raise ValueError(
                f"{value!r} is not an OPC UA endpoint: write opc.tcp://host:port, e.g. opc.tcp://10.0.0.20:4840"
            )
        return value

    @model_validator(mode="after")
    def _percent_needs_subscribe(self) -> OpcUaConfig:
        # A percent deadband is a DataChangeFilter the server evaluates against the variable's
        # EURange; in poll mode there is no filter and the gateway does not read EURange, so
        # it would be silently ignored: refuse it instead.
        if self.mode != "poll":
            return self
        where = [] if self.deadband is None or self.deadband.percent is None else ["deadband"]
        where += [
            f"nodes[{index}].deadband"
            for index, item in enumerate(self.nodes)
            if item.deadband is not None and item.deadband.percent is not None
        ]
        if where:
            raise ValueError(
                f"{', '.join(where)}: a percent deadband works only with mode: subscribe (the server applies it "
                "against the variable's EURange); in mode: poll use an absolute one, e.g. deadband: {absolute: 5}"
            )
        return self

    @model_validator(mode="after")
    def _unique_fields(self) -> OpcUaConfig:
        seen: dict[str, int] = {}
        for index, item in enumerate(self.nodes):
            if isinstance(item, NodeSpec) and item.field is not None:
                if item.field in seen:
                    raise ValueError(
                        f"nodes[{index}]: field {item.field!r} is already used by nodes[{seen[item.field]}]"
                    )
                seen[item.field] = index
        return self
