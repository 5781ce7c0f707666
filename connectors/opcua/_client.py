"""The adapter to asyncua: the only module of the connector that imports it.

Everything asyncua-specific lives here — sessions, security, browsing, reads, subscriptions
and the translation of DataValues into plain :class:`~connectors.opcua.values.Sample` objects —
behind a small typed surface (:class:`Connection`), so the rest of the connector never sees
asyncua's types, its star imports or its configuration by attribute mutation.

One :class:`Connection` is one session, always. asyncua's supervisor watches it (a read of
the server state every half ``watchdog_interval``, to be answered within the other half, so a
connection that died without closing is found within ``watchdog_interval``; the warning says
the connection is frozen and names the endpoint) and, when the transport is lost, reconnects
with capped backoff by *re-activating the same session* on a new channel when the server
still holds it, or closing it before creating a new one when it does not — so reconnect
storms cannot pile up sessions on the server. Subscriptions are not restored by asyncua (it
would restore them with namespace indexes from before a server restart): the connector is
told the connection is back (``on_state``) and re-resolves and re-creates them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from connectors.opcua.nodes import IdKind, NodeRef, format_node_id
from connectors.opcua.pki import Pki
from connectors.opcua.values import Sample
from gateway.errors import SourceError

# asyncua's annotations (NewType aliases such as Int16 and String, names re-exported implicitly)
# do not type-check under --strict; this adapter treats asyncua as untyped and types its own
# surface instead, so nothing of asyncua leaks into the rest of the connector.
ua: Any = importlib.import_module("asyncua.ua")
Client: Any = importlib.import_module("asyncua.client.client").Client
Subscription: Any = importlib.import_module("asyncua.common.subscription").Subscription
data_type_to_variant_type: Any = importlib.import_module("asyncua.common.ua_utils").data_type_to_variant_type
security_policies: Any = importlib.import_module("asyncua.crypto.security_policies")

__all__ = [
    "Connection",
    "ConnectionSettings",
    "Limits",
    "MonitorRequest",
    "Reference",
    "SubscribeResult",
    "SubscriptionGone",
    "Unauthorized",
    "VariableInfo",
    "explain",
    "is_connection_problem",
    "status_words",
]

NodeId = Any  # asyncua's ua.NodeId, opaque to the other modules
#: "resumed": the connection is back and the server still had the session, with its subscriptions
#: (call :meth:`Connection.recover`); "connected": back with a new session (subscribe again).
StateName = Literal["connected", "resumed", "reconnecting"]

_POLICIES: dict[str, Any] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
_KIND_OF_TYPE: dict[Any, IdKind] = {
    ua.NodeIdType.TwoByte: "i",
    ua.NodeIdType.FourByte: "i",
    ua.NodeIdType.Numeric: "i",
    ua.NodeIdType.String: "s",
    ua.NodeIdType.Guid: "g",
    ua.NodeIdType.ByteString: "b",
}
_TYPE_OF_KIND = {
    "i": ua.NodeIdType.Numeric,
    "s": ua.NodeIdType.String,
    "g": ua.NodeIdType.Guid,
    "b": ua.NodeIdType.ByteString,
}
_FILTER_REFUSED = {
    ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadMonitoredItemFilterUnsupported,
    ua.StatusCodes.BadMonitoredItemFilterInvalid,
    ua.StatusCodes.BadDeadbandFilterInvalid,
}
_AUTH_REFUSED = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadUserSignatureInvalid,
}
_CERT_REFUSED = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed,
}
_NODE_CLASSES = {int(c): c.name for c in ua.NodeClass}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_TIME = datetime(1601, 1, 2, tzinfo=UTC)
DEFAULT_LIMIT = 1000

_logger = logging.getLogger(__name__)


class _QuietAsyncua(logging.Filter):
    """asyncua logs every failed reconnect attempt and publish retry (once a second, with
    tracebacks); the connector reports the same once per episode with what to do. Its
    lines pass only when the gateway logs at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL or logging.getLogger().isEnabledFor(logging.DEBUG)


for _name in (
    "asyncua.client.client",
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.ua_session",
    "asyncua.client.ua_session.UaSession",
    "asyncua.common.subscription",
):
    logging.getLogger(_name).addFilter(_QuietAsyncua())


class Unauthorized(SourceError):
    """The server refused the user identity (user name, password or X.509 user)."""


class SubscriptionGone(SourceError):
    """A session that looked resumed has lost its subscription on the server: subscribe again."""


@dataclass(frozen=True)
class ConnectionSettings:
    endpoint: str
    application_uri: str
    policy: str = "None"
    mode: str = "SignAndEncrypt"
    certificate: str | None = None
    private_key: str | None = None
    pki: Pki | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr (tracebacks, debug logs)
    user_certificate: str | None = None
    user_private_key: str | None = None
    request_timeout: float = 10.0
    watchdog_interval: float = 5.0
    session_timeout: float = 120.0
    reconnect_max_delay: float = 30.0
    session_name: str = "shopfloor-gateway"


@dataclass(frozen=True)
class Limits:
    """The server's OperationLimits (0 in the server means 'no limit'; we then use DEFAULT_LIMIT)."""

    max_nodes_per_read: int = DEFAULT_LIMIT
    max_monitored_items_per_call: int = DEFAULT_LIMIT
    max_nodes_per_browse: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class Reference:
    """A child found by browsing."""

    node: NodeId
    text: str  # stable text form, nsu=… for non-standard namespaces
    browse_name: str
    node_class: str  # Object, Variable, Method, ObjectType, …
    is_property: bool


@dataclass(frozen=True)
class VariableInfo:
    browse_name: str
    data_type: NodeId
    data_type_name: str
    value_rank: int
    access: str  # "read", "read/write", "write" or ""
    value: Any
    status_name: str
    is_numeric: bool


@dataclass(frozen=True)
class MonitorRequest:
    handle: int
    node: NodeId
    sampling_interval: float  # seconds
    queue_size: int
    deadband: tuple[Literal["absolute", "percent"], float] | None = None


@dataclass
class SubscribeResult:
    created: int
    failed: list[tuple[int, str]]
    filter_dropped: list[int]


# --- values ------------------------------------------------------------------------------


def _ns(value: datetime | None) -> int | None:
    if value is None or value < _MIN_TIME:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _plain(value: Any) -> Any:
    """asyncua value objects → plain Python values (structures stay as they are, to be skipped)."""
    if isinstance(value, int | float | str | bool | datetime | bytes) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(element) for element in value]
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.QualifiedName):
        return value.to_string()
    if isinstance(value, ua.NodeId):
        return value.to_string()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.StatusCode):
        return int(value.value)
    return value


def to_sample(handle: int, dv: Any) -> Sample:
    """A DataValue → a Sample (status name looked up only when the status is not Good)."""
    variant = dv.Value
    if variant is None or variant.Value is None:
        value: Any = None
        kind = "Null" if variant is None else variant.VariantType.name
    else:
        value = _plain(variant.Value)
        kind = variant.VariantType.name
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    status = int(code) if code else 0
    return Sample(
        handle=handle,
        value=value,
        kind=kind,
        status=status,
        status_name="Good" if status == 0 else ua.StatusCode(status).name,
        source_ns=_ns(dv.SourceTimestamp),
        server_ns=_ns(dv.ServerTimestamp),
    )


def _status_name(code: int) -> str:
    return str(ua.StatusCode(code).name)


# --- errors ------------------------------------------------------------------------------


def explain(exc: BaseException, settings: ConnectionSettings) -> SourceError:
    """Any exception from asyncua or the network → a SourceError a plant engineer can act on."""
    endpoint = settings.endpoint
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ua.UaStatusCodeError):
        code = int(exc.code)
        name = _status_name(code)
        if code in _AUTH_REFUSED:
            if settings.username:
                who, hint = f"user {settings.username!r}", "check auth.username and auth.password"
            elif settings.user_certificate:
                who = f"the X.509 user {settings.user_certificate}"
                hint = "the server must accept this certificate as a user (ask its administrator)"
            else:
                who, hint = "anonymous access", "the server needs a user: add auth: {username: …, password: …}"
            return Unauthorized(f"{endpoint} refused {who} ({name}): {hint}")
        if code in _CERT_REFUSED:
            where = settings.certificate or "the gateway's certificate"
            return SourceError(
                f"{endpoint} refused the gateway's certificate ({name}): trust {where} on the server "
                "(copy it into the server's trusted clients folder) and check the server's clock"
            )
        if code == ua.StatusCodes.BadTooManySessions:
            return SourceError(f"{endpoint} has no free session ({name}): other clients use them all")
        if code == ua.StatusCodes.BadSecurityPolicyRejected:
            return SourceError(f"{endpoint} does not accept security policy {settings.policy} ({name})")
        return SourceError(f"{endpoint}: {name}")
    if isinstance(exc, ConnectionRefusedError):
        return SourceError(
            f"cannot connect to {endpoint}: connection refused (is the server running? is the port right?)"
        )
    if isinstance(exc, socket.gaierror):
        return SourceError(f"cannot connect to {endpoint}: host name not found")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return SourceError(f"no answer from {endpoint} within {settings.request_timeout:g}s")
    if isinstance(exc, OSError):
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
        return SourceError(f"connection to {endpoint} failed: {reason}")
    if isinstance(exc, ConnectionError):
        return SourceError(f"connection to {endpoint} lost: {exc}")
    if isinstance(exc, ua.UaError):
        return SourceError(f"{endpoint}: {exc}")
    return SourceError(f"{endpoint}: {type(exc).__name__}: {exc}")


def is_connection_problem(exc: BaseException) -> bool:
    """Network, timeout and OPC UA errors (reported as SourceError); anything else is a bug."""
    return isinstance(exc, OSError | ConnectionError | TimeoutError | ua.UaError)


# --- subscriptions ---------------------------------------------------------------------------

SamplesCallback = Callable[[list[Sample]], Awaitable[None]]


class _Subscription(Subscription):  # type: ignore[misc]  # asyncua is untyped here (see above)
    """A subscription whose publish responses become Sample batches directly (no per-item objects)."""

    def __init__(
        self, session: Any, params: Any, on_samples: SamplesCallback, on_status: Callable[[str], None]
    ) -> None:
        super().__init__(session, params, handler=None, queue_maxsize=1)
        self._on_samples = on_samples
        self._on_status = on_status
        self.last_publish_at = time.monotonic()
        #: the last data message received before the connection was lost (None: not lost)
        self.lost_after: int | None = None
        #: data messages received since the connection was lost (from the resumed session)
        self.seen_since_lost: set[int] = set()

    async def publish_callback(self, publish_result: Any) -> None:
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        data = message.NotificationData
        if not data:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        if self.lost_after is not None:
            self.seen_since_lost.add(self.last_sequence_number)
        samples: list[Sample] = []
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                samples.extend(to_sample(item.ClientHandle, item.Value) for item in notification.MonitoredItems)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._on_status(_status_name(int(notification.Status.value)))
        if samples:
            await self._on_samples(samples)


# --- the connection ------------------------------------------------------------------------


class Connection:
    """One OPC UA session with one server; ``async with Connection(settings) as conn``."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        on_state: Callable[[StateName, str | None], None] | None = None,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.settings = settings
        self._on_state = on_state
        self.log = log or logging.LoggerAdapter(_logger, {})
        self._client: Any = None
        self._watch_task: asyncio.Task[None] | None = None
        self._subscriptions: list[_Subscription] = []
        self._lost_reason: str | None = None
        self._session_token = ""  # the session's authentication token: unchanged when a reconnect resumed it
        self._server_started: Any = None  # the server's ServerStatus.StartTime: changed when it restarted
        self._type_names: dict[Any, str] = {}
        self._numeric_types: dict[Any, bool] = {}
        self.limits = Limits()
        self.namespaces: list[str] = []
        self.server_certificate: bytes | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.state.value == "connected"

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the channel and the session; raise SourceError (or Unauthorized) saying why not."""
        s = self.settings
        client = Client(
            s.endpoint,
            timeout=s.request_timeout,
            # asyncua waits one `watchdog_intervall`, then reads the server state and waits at most
            # as long again for the answer: half the configured interval each, so that a connection
            # that went dead (a frozen network, a hung server) is found within the interval itself.
            watchdog_intervall=s.watchdog_interval / 2,
            auto_reconnect=True,
            reconnect_max_delay=s.reconnect_max_delay,
            reconnect_request_timeout=max(s.request_timeout, s.reconnect_max_delay * 2),
        )
        client.application_uri = s.application_uri
        client.product_uri = "urn:shopfloor-gateway"
        client.name = client.description = s.session_name
        client.session_timeout = int(s.session_timeout * 1000)
        client.connection_lost_callback = self._connection_lost
        if s.username is not None:
            client.set_user(s.username)
        if s.password is not None:
            client.set_password(s.password)
        try:
            if s.user_certificate and s.user_private_key:
                await client.load_client_certificate(s.user_certificate)
                await client.load_private_key(Path(s.user_private_key))
            if s.policy != "None":
                await self._secure(client)
            await asyncio.wait_for(client.connect(), s.request_timeout * 3)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), s.request_timeout)
            if isinstance(exc, Exception):
                raise explain(exc, s) from exc
            raise
        self._client = client
        self._session_token = self._token()
        self._server_started = await self._start_time()
        self._watch_task = asyncio.create_task(self._watch(), name=f"opcua-watch:{s.endpoint}")
        try:
            self.namespaces = await self.read_namespaces()
            self.limits = await self._read_limits()
        except BaseException:
            await self.close()
            raise

    async def _secure(self, client: Any) -> None:
        s = self.settings
        policy = _POLICIES[s.policy]
        mode = _MODES[s.mode]
        endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), s.request_timeout * 2)
        chosen = next(
            (e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode),
            None,
        )
        if chosen is None:
            offered = sorted(
                {f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name.rstrip('_')}" for e in endpoints}
            )
            raise SourceError(
                f"{s.endpoint} does not offer security {s.policy}/{s.mode}; it offers: {', '.join(offered)}"
            )
        der = _first_certificate(chosen.ServerCertificate or b"")
        if not der:
            raise SourceError(f"{s.endpoint} offers {s.policy}/{s.mode} but sent no server certificate")
        if s.pki is not None:
            s.pki.check_server(der, s.endpoint)
        self.server_certificate = der
        assert s.certificate is not None and s.private_key is not None
        await client.set_security(policy, s.certificate, s.private_key, server_certificate=der, mode=mode)

    async def close(self) -> None:
        """Delete the subscriptions and close the session (best effort, bounded in time)."""
        client, self._client = self._client, None
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
            self._watch_task = None
        self._subscriptions = []
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), self.settings.request_timeout)
        except Exception as exc:  # noqa: BLE001 - a dead server must not block the shutdown
            self.log.debug("closing the session failed: %s", exc)
            with contextlib.suppress(Exception):
                client.disconnect_socket()

    async def _connection_lost(self, exc: Exception) -> None:
        s = self.settings
        if isinstance(exc, TimeoutError):
            # Only the watchdog's read times out here (a request's own timeout does not end the
            # connection): the socket is open and nothing gets through, as behind a network that
            # drops packets without closing the connection.
            self._lost_reason = (
                f"no answer from {s.endpoint} to the watchdog's read of the server state within "
                f"{min(s.watchdog_interval, s.session_timeout) / 2:g}s (reconnect.watchdog_interval "
                f"{s.watchdog_interval:g}s): the connection is frozen"
            )
        else:
            self._lost_reason = str(explain(exc, s))

    async def _watch(self) -> None:
        client = self._client
        lost = False
        previous = self._session_token
        async with client.subscribe_state() as changes:
            while True:
                state = (await changes.next_change()).value
                if state == "connected":
                    if lost:
                        lost = False
                        # asyncua re-activates the session when the server still has it (a network
                        # that failed, not a server that restarted): same token, same subscriptions.
                        # A restarted server may hand out the same token again (asyncua numbers
                        # them from the same start in every process): its start time tells.
                        token, started = self._token(), await self._start_time()
                        resumed = token == previous and started is not None and started == self._server_started
                        self._session_token, self._server_started = token, started
                        self._notify("resumed" if resumed else "connected", None)
                elif state in ("reconnecting", "disconnected") and not lost:
                    lost = True
                    previous = self._session_token
                    for subscription in self._subscriptions:
                        if subscription.lost_after is None:
                            subscription.lost_after = subscription.last_sequence_number or 0
                            subscription.seen_since_lost = set()
                    self._notify(
                        "reconnecting", self._lost_reason or f"the connection to {self.settings.endpoint} was lost"
                    )

    def _token(self) -> str:
        return str(self._client.uaclient.session.authentication_token.to_string())

    async def _start_time(self) -> Any:
        """The server's start time (None when it cannot be read: then a reconnect subscribes again,
        which is always safe)."""
        try:
            node = self._client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime))
            return await asyncio.wait_for(node.read_value(), self.settings.request_timeout)
        except Exception:  # noqa: BLE001 - unknown means "not the same server": the safe answer
            return None

    async def recover(self) -> int:
        """After a resumed session: ask the server again (Republish) for the data messages it sent
        while the connection was down, which never arrived; their samples go the usual way.

        The server keeps every message until the client acknowledges it, and the monitored items
        queue what changed while it could not send (``queue_size``): with both, nothing measured
        during a network failure shorter than the session timeout is lost. Returns how many
        messages came again; raises if the server has the subscription no more (subscribe again).
        """
        again = 0
        for subscription in self._subscriptions:
            start, subscription.lost_after = subscription.lost_after, None
            if start is None or subscription.subscription_id is None:
                continue
            seen = subscription.seen_since_lost
            # Messages received on the new connection came after the gap; without any, the gap
            # ends where the server has nothing more to send again.
            end = min(seen) - 1 if seen else None
            sequence = start + 1
            while end is None or sequence <= end:
                if sequence not in seen:
                    try:
                        message = await asyncio.wait_for(
                            self._client.uaclient.session.republish(subscription.subscription_id, sequence),
                            self.settings.request_timeout,
                        )
                        if message.SequenceNumber != sequence:
                            # Some servers (asyncua's) answer an empty message instead of
                            # BadMessageNotAvailable: the same meaning, and the end of the gap
                            # when its end is not known (else this loop would never end).
                            raise ua.UaStatusCodeError(ua.StatusCodes.BadMessageNotAvailable)
                    except ua.UaStatusCodeError as exc:
                        if int(exc.code) != ua.StatusCodes.BadMessageNotAvailable:
                            # The session looked resumed but the server does not know the
                            # subscription: it restarted and handed out the same token again
                            # (asyncua numbers its tokens from the same start in every process).
                            raise SubscriptionGone(
                                f"{self.settings.endpoint} has no subscription {subscription.subscription_id} any "
                                f"more ({exc.__class__.__name__}): the server restarted"
                            ) from exc
                        if end is None:
                            break
                        # Gone from the server's retransmission queue (it keeps a bounded number).
                        self.log.warning(
                            "%s: data message %d of the subscription is no longer available on the server: "
                            "its values are lost",
                            self.settings.endpoint,
                            sequence,
                        )
                    else:
                        await subscription.publish_callback(
                            ua.PublishResult(subscription.subscription_id, NotificationMessage=message)
                        )
                        again += 1
                sequence += 1
            subscription.seen_since_lost = set()
        return again

    def _notify(self, state: StateName, reason: str | None) -> None:
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:
                self.log.exception("state callback failed")

    # -- namespaces and node ids ----------------------------------------------------------------

    async def read_namespaces(self) -> list[str]:
        return [str(uri) for uri in await self._client.get_namespace_array()]

    def node_id(self, ref: NodeRef) -> NodeId:
        """A configured node id → the server's, resolving ``nsu=`` with the namespace table read at connect."""
        index = ref.namespace_index
        if ref.namespace_uri is not None:
            try:
                index = self.namespaces.index(ref.namespace_uri)
            except ValueError:
                raise SourceError(
                    f"{self.settings.endpoint} has no namespace {ref.namespace_uri!r} "
                    f"(it has: {', '.join(self.namespaces)})"
                ) from None
        return ua.NodeId(ref.identifier, index, _TYPE_OF_KIND[ref.kind])

    def text(self, node: NodeId) -> str:
        """The stable text of a node id: ``nsu=<uri>;…`` outside namespace 0."""
        kind = _KIND_OF_TYPE.get(node.NodeIdType, "s")
        index = int(node.NamespaceIndex)
        uri = self.namespaces[index] if 0 < index < len(self.namespaces) else None
        ref = NodeRef(kind, node.Identifier, index)
        return format_node_id(ref, uri)

    @staticmethod
    def standard_node(identifier: int) -> NodeId:
        return ua.NodeId(identifier, 0)

    # -- limits, reads, browse -----------------------------------------------------------------

    async def _read_limits(self) -> Limits:
        ids = (
            ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
        )
        values = await self._read([ua.NodeId(i, 0) for i in ids], ua.AttributeIds.Value, chunk=len(ids))
        found = []
        for dv in values:
            value = dv.Value.Value if _good(dv) and dv.Value is not None else None
            found.append(int(value) if isinstance(value, int) and value > 0 else DEFAULT_LIMIT)
        return Limits(*found)

    async def _read(self, nodes: Sequence[NodeId], attribute: Any, *, chunk: int | None = None) -> list[Any]:
        """Read one attribute of many nodes, in requests of at most MaxNodesPerRead."""
        size = chunk or self.limits.max_nodes_per_read
        result: list[Any] = []
        start = 0
        while start < len(nodes):
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in nodes[start : start + size]]
            try:
                result.extend(await self._client.uaclient.read(params))
            except ua.UaStatusCodeError as exc:
                if int(exc.code) == ua.StatusCodes.BadTooManyOperations and size > 1:
                    size = max(1, size // 2)  # the server enforces a lower limit than it publishes
                    continue
                raise
            start += len(params.NodesToRead)
        return result

    async def read_samples(self, nodes: Sequence[NodeId], handles: Sequence[int]) -> list[Sample]:
        values = await self._read(nodes, ua.AttributeIds.Value)
        return [to_sample(handle, dv) for handle, dv in zip(handles, values, strict=True)]

    # -- writes ----------------------------------------------------------------------------------

    async def write_value(self, node: NodeId, variant_type: str, value: Any) -> int:
        """Write a variable's Value as ``variant_type`` (a built-in type's name: Double, Int16, String …);
        → the server's status code for it (0: Good). The DataValue carries no status and no
        timestamps: many servers refuse a write that sets them (BadWriteNotSupported)."""
        vtype = ua.VariantType[variant_type]
        if vtype == ua.VariantType.LocalizedText:
            value = ua.LocalizedText(value)
        data = ua.DataValue(ua.Variant(value, vtype), StatusCode=None)
        params = ua.WriteParameters()
        params.NodesToWrite = [ua.WriteValue(NodeId=node, AttributeId=ua.AttributeIds.Value, Value=data)]
        results = await self._client.uaclient.write(params)
        return int(results[0].value) if results else int(ua.StatusCodes.BadUnexpectedError)

    async def variant_type(self, data_type: NodeId) -> str:
        """The built-in type a variable of ``data_type`` is written as (an enumeration: Int32; a
        structure or an abstract type: the type's name, which the writer refuses)."""
        node = self._client.get_node(data_type)
        vtype = await data_type_to_variant_type(node)
        return str(vtype.name)

    async def browse(self, nodes: Sequence[NodeId]) -> list[list[Reference]]:
        """The hierarchical children of each node (properties flagged), continuation points followed."""
        result: list[list[Reference]] = []
        size = self.limits.max_nodes_per_browse
        for start in range(0, len(nodes), size):
            batch = nodes[start : start + size]
            params = ua.BrowseParameters()
            params.RequestedMaxReferencesPerNode = 1000
            params.NodesToBrowse = [
                ua.BrowseDescription(
                    NodeId=node,
                    BrowseDirection=ua.BrowseDirection.Forward,
                    ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                    IncludeSubtypes=True,
                    NodeClassMask=0,
                    ResultMask=int(ua.BrowseResultMask.All),
                )
                for node in batch
            ]
            answers = await self._client.uaclient.browse(params)
            for answer in answers:
                refs = list(answer.References or [])
                point = answer.ContinuationPoint
                while point:
                    next_params = ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[point])
                    more = (await self._client.uaclient.browse_next(next_params))[0]
                    refs.extend(more.References or [])
                    point = more.ContinuationPoint
                result.append([self._reference(r) for r in refs if r.IsForward])
        return result

    def _reference(self, ref: Any) -> Reference:
        node = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
        return Reference(
            node=node,
            text=self.text(node),
            browse_name=str(ref.BrowseName.Name),
            node_class=_NODE_CLASSES.get(int(ref.NodeClass), str(ref.NodeClass)),
            is_property=ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasProperty),
        )

    async def translate(self, path: Sequence[str], start: NodeId | None = None) -> NodeId:
        """A browse path (browse names from Root, or from ``start``) → the node, by browsing step by step."""
        node = start if start is not None else ua.NodeId(ua.ObjectIds.RootFolder)
        walked: list[str] = []
        for name in path:
            children = (await self.browse([node]))[0]
            matches = [c for c in children if c.browse_name == name]
            if not matches:
                here = "/".join(walked) or "the Root folder"
                names = ", ".join(sorted({c.browse_name for c in children})[:20]) or "nothing"
                raise SourceError(f"{self.settings.endpoint}: {here} has no child {name!r} (it has: {names})")
            if len({m.text for m in matches}) > 1:
                raise SourceError(
                    f"{self.settings.endpoint}: {'/'.join([*walked, name])} is ambiguous: "
                    f"{', '.join(m.text for m in matches)}; use a node id instead"
                )
            node = matches[0].node
            walked.append(name)
        return node

    async def node_class(self, node: NodeId) -> tuple[str, str]:
        """Browse name and node class of one node; a SourceError with the server's status if it has none."""
        name = (await self._read([node], ua.AttributeIds.BrowseName))[0]
        if not _good(name):
            raise SourceError(
                f"{self.text(node)}: {name.StatusCode.name}: the server {self.settings.endpoint} has no such node"
            )
        node_class = (await self._read([node], ua.AttributeIds.NodeClass))[0]
        cls = int(node_class.Value.Value) if _good(node_class) and node_class.Value else 0
        browse_name = str(name.Value.Value.Name) if name.Value and name.Value.Value else self.text(node)
        return browse_name, _NODE_CLASSES.get(cls, "unknown")

    async def variable_info(self, nodes: Sequence[NodeId]) -> list[VariableInfo | str]:
        """Browse name, DataType, ValueRank, AccessLevel and value of variables, or why a node is not one."""
        if not nodes:
            return []
        names = await self._read(nodes, ua.AttributeIds.BrowseName)
        classes = await self._read(nodes, ua.AttributeIds.NodeClass)
        types = await self._read(nodes, ua.AttributeIds.DataType)
        ranks = await self._read(nodes, ua.AttributeIds.ValueRank)
        access = await self._read(nodes, ua.AttributeIds.AccessLevel)
        values = await self._read(nodes, ua.AttributeIds.Value)
        type_ids = [dv.Value.Value if _good(dv) and dv.Value else None for dv in types]
        await self._learn_types([t for t in type_ids if t is not None])
        result: list[VariableInfo | str] = []
        for name, node_class, type_id, rank, level, value in zip(
            names, classes, type_ids, ranks, access, values, strict=True
        ):
            if not _good(name):
                result.append(f"it does not exist on the server ({name.StatusCode.name})")
                continue
            cls = int(node_class.Value.Value) if _good(node_class) and node_class.Value else 0
            if cls != int(ua.NodeClass.Variable) or type_id is None:
                result.append(f"it is not a variable (it is {_NODE_CLASSES.get(cls, 'unknown')})")
                continue
            level_bits = int(level.Value.Value) if _good(level) and level.Value else 0
            sample = to_sample(0, value)
            result.append(
                VariableInfo(
                    browse_name=str(name.Value.Value.Name) if name.Value and name.Value.Value else "",
                    data_type=type_id,
                    data_type_name=self._type_names.get(type_id, self.text(type_id)),
                    value_rank=int(rank.Value.Value) if _good(rank) and rank.Value else -1,
                    access=_access(level_bits),
                    value=sample.value,
                    status_name=sample.status_name,
                    is_numeric=self._numeric_types.get(type_id, False),
                )
            )
        return result

    async def _learn_types(self, type_ids: list[NodeId]) -> None:
        unknown = list({t: None for t in type_ids if t not in self._type_names})
        if not unknown:
            return
        names = await self._read(unknown, ua.AttributeIds.BrowseName)
        for type_id, dv in zip(unknown, names, strict=True):
            name = dv.Value.Value.Name if _good(dv) and dv.Value and dv.Value.Value else None
            self._type_names[type_id] = str(name) if name else self.text(type_id)
            self._numeric_types[type_id] = _is_numeric_type(type_id)

    async def enum_names(self, type_ids: Sequence[NodeId]) -> dict[Any, dict[int, str]]:
        """For enumeration data types: value → name (from EnumStrings or EnumValues)."""
        unique = list({t: None for t in type_ids})
        result: dict[Any, dict[int, str]] = {}
        if not unique:
            return result
        properties = await self.browse(unique)
        wanted: list[tuple[Any, str, NodeId]] = []
        for type_id, refs in zip(unique, properties, strict=True):
            for ref in refs:
                if ref.is_property and ref.browse_name in ("EnumStrings", "EnumValues"):
                    wanted.append((type_id, ref.browse_name, ref.node))
        values = await self._read([w[2] for w in wanted], ua.AttributeIds.Value) if wanted else []
        for (type_id, kind, _), dv in zip(wanted, values, strict=True):
            items = dv.Value.Value if dv.Value is not None else None
            if not isinstance(items, list):
                continue
            if kind == "EnumStrings":
                result[type_id] = {i: str(getattr(t, "Text", t)) for i, t in enumerate(items)}
            else:
                result[type_id] = {int(v.Value): str(getattr(v.DisplayName, "Text", v.DisplayName)) for v in items}
        return result

    async def engineering_units(self, nodes: Sequence[NodeId]) -> list[str]:
        """Each variable's EngineeringUnits (the DisplayName of its EUInformation, e.g. "°C"), or ""
        where it has none. One TranslateBrowsePaths and one Read per MaxNodesPerRead nodes."""
        if not nodes:
            return []
        target = ua.QualifiedName("EngineeringUnits", 0)
        found: list[NodeId | None] = []
        size = max(1, min(self.limits.max_nodes_per_read, 1000))
        start = 0
        while start < len(nodes):
            paths = []
            for node in nodes[start : start + size]:
                element = ua.RelativePathElement()
                element.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty)
                element.IsInverse = False
                element.IncludeSubtypes = False
                element.TargetName = target
                path = ua.BrowsePath()
                path.StartingNode = node
                path.RelativePath = ua.RelativePath(Elements=[element])
                paths.append(path)
            try:
                results = await self._client.uaclient.translate_browsepaths_to_nodeids(paths)
            except ua.UaStatusCodeError as exc:
                if int(exc.code) == ua.StatusCodes.BadTooManyOperations and size > 1:
                    size = max(1, size // 2)
                    continue
                raise
            for result in results:
                targets = (result.Targets or []) if result.StatusCode.is_good() else []
                if targets:
                    at = targets[0].TargetId
                    found.append(ua.NodeId(at.Identifier, at.NamespaceIndex, at.NodeIdType))
                else:
                    found.append(None)
            start += len(paths)
        properties = [n for n in found if n is not None]
        values = iter(await self._read(properties, ua.AttributeIds.Value)) if properties else iter(())
        units: list[str] = []
        for node in found:
            if node is None:
                units.append("")
                continue
            dv = next(values)
            info = dv.Value.Value if _good(dv) and dv.Value is not None else None
            text = getattr(getattr(info, "DisplayName", None), "Text", None) or ""
            units.append(str(text).strip()[:16])
        return units

    # -- subscriptions -------------------------------------------------------------------------

    async def subscribe(
        self,
        requests: Sequence[MonitorRequest],
        *,
        publishing_interval: float,
        keepalive_count: int,
        lifetime_count: int,
        max_notifications: int,
        on_samples: SamplesCallback,
        on_status: Callable[[str], None],
    ) -> SubscribeResult:
        """One subscription with every item, created in calls of at most MaxMonitoredItemsPerCall."""
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = publishing_interval * 1000
        params.RequestedLifetimeCount = lifetime_count
        params.RequestedMaxKeepAliveCount = keepalive_count
        params.MaxNotificationsPerPublish = max_notifications
        params.PublishingEnabled = True
        params.Priority = 0
        subscription = _Subscription(self._client.uaclient.session, params, on_samples, on_status)
        await subscription.init()
        self._subscriptions.append(subscription)
        result = SubscribeResult(created=0, failed=[], filter_dropped=[])
        retry: list[MonitorRequest] = []
        size = self.limits.max_monitored_items_per_call
        pending = list(requests)
        while pending:
            batch, pending = pending[:size], pending[size:]
            try:
                outcomes = await subscription.create_monitored_items([_item_request(r) for r in batch])
            except ua.UaStatusCodeError as exc:
                if int(exc.code) == ua.StatusCodes.BadTooManyOperations and size > 1:
                    size = max(1, size // 2)
                    pending = batch + pending
                    continue
                raise
            for request, outcome in zip(batch, outcomes, strict=True):
                if not isinstance(outcome, ua.StatusCode):
                    result.created += 1
                elif request.deadband is not None and int(outcome.value) in _FILTER_REFUSED:
                    retry.append(
                        MonitorRequest(
                            request.handle, request.node, request.sampling_interval, request.queue_size, None
                        )
                    )
                else:
                    result.failed.append((request.handle, str(outcome.name)))
        for start in range(0, len(retry), size):
            batch = retry[start : start + size]
            outcomes = await subscription.create_monitored_items([_item_request(r) for r in batch])
            for request, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, ua.StatusCode):
                    result.failed.append((request.handle, str(outcome.name)))
                else:
                    result.created += 1
                    result.filter_dropped.append(request.handle)
        return result

    async def unsubscribe_all(self) -> None:
        """Delete every subscription of this connection on the server (old ones after a reconnect too)."""
        subscriptions, self._subscriptions = self._subscriptions, []
        ids = [s.subscription_id for s in subscriptions if s.subscription_id is not None]
        if not ids or self._client is None:
            return
        session = self._client.uaclient.session
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.delete_subscriptions(ids), self.settings.request_timeout)
        # A subscription the server had already forgotten (new session) keeps its local callback
        # in asyncua; drop it so reconnects do not accumulate them.
        callbacks = getattr(session, "_subscription_callbacks", None)
        if isinstance(callbacks, dict):
            for sid in ids:
                callbacks.pop(sid, None)

    def seconds_since_publish(self) -> float:
        """How long since the last publish response (data or keep-alive) of the oldest subscription."""
        if not self._subscriptions:
            return 0.0
        return time.monotonic() - min(s.last_publish_at or 0.0 for s in self._subscriptions)


def _item_request(request: MonitorRequest) -> Any:
    params = ua.MonitoringParameters()
    params.ClientHandle = request.handle
    params.SamplingInterval = request.sampling_interval * 1000
    params.QueueSize = request.queue_size
    params.DiscardOldest = True
    if request.deadband is not None:
        kind, value = request.deadband
        params.Filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue,
            DeadbandType=int(ua.DeadbandType.Absolute if kind == "absolute" else ua.DeadbandType.Percent),
            DeadbandValue=float(value),
        )
    item = ua.MonitoredItemCreateRequest()
    item.ItemToMonitor = ua.ReadValueId(NodeId=request.node, AttributeId=ua.AttributeIds.Value)
    item.MonitoringMode = ua.MonitoringMode.Reporting
    item.RequestedParameters = params
    return item


def _first_certificate(der: bytes) -> bytes:
    if len(der) < 4:
        return der
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


def _access(level: int) -> str:
    read, write = bool(level & 1), bool(level & 2)
    return "read/write" if read and write else "read" if read else "write" if write else ""


_NUMERIC_IDS = {
    ua.ObjectIds.SByte,
    ua.ObjectIds.Byte,
    ua.ObjectIds.Int16,
    ua.ObjectIds.UInt16,
    ua.ObjectIds.Int32,
    ua.ObjectIds.UInt32,
    ua.ObjectIds.Int64,
    ua.ObjectIds.UInt64,
    ua.ObjectIds.Float,
    ua.ObjectIds.Double,
    ua.ObjectIds.Number,
    ua.ObjectIds.Integer,
    ua.ObjectIds.UInteger,
    ua.ObjectIds.Decimal,
}


def _is_numeric_type(type_id: Any) -> bool:
    return int(type_id.NamespaceIndex) == 0 and type_id.Identifier in _NUMERIC_IDS


def _good(dv: Any) -> bool:
    return dv.StatusCode is None or bool(dv.StatusCode.is_good())


def status_words(code: int) -> tuple[str, str]:
    """A status code's name and the specification's sentence for it (BadUserAccessDenied, "User does not …")."""
    try:
        name, doc = ua.status_codes.get_name_and_doc(code)
    except Exception:  # noqa: BLE001 - an unknown code is shown as a number
        return f"0x{code:08X}", ""
    return str(name), str(doc)
