"""Writes to machines through the API: what is writable, the write itself, and the audit trail.

=====================================  =========================================================
``GET /api/writable``                  every field a connector declares writable: type, allowed
                                       values, min/max, pattern, unit (viewer and up)
``POST /api/write``                    ``{"connector", "field", "value"}``: checked, written, read
                                       back, audited (operator or admin)
``GET /api/audit``                     the audit trail, newest first (``from``, ``to``,
                                       ``connector``, ``field``, ``limit``; viewer and up)
=====================================  =========================================================

Every answer of ``POST /api/write`` has the same shape, written or refused: ``result`` (one word),
``message`` (in words), ``requested``, ``old``, ``read_back``, ``at`` (ISO 8601) and ``at_ms``,
``user`` and ``role``. The HTTP status follows the result: 200 written; 422 refused_limits or
refused_type; 404 not_writable; 403 forbidden; 502 refused_by_machine; 504 timeout; 503 error.

A write must come as ``Content-Type: application/json`` from the page's own origin: a form or a
script of another site cannot make a logged-in browser write to a machine (a cross-site request
with that content type needs a CORS permission this server never gives). Without credentials
configured (loopback only) the ``Host`` must be a loopback name, so a web page whose domain
resolves to 127.0.0.1 (DNS rebinding) cannot reach the machines through the gateway either.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.audit import AuditQuery
from gateway.http.auth import Role, identify
from gateway.http.config import AuthSettings
from gateway.writes import Value, WriteResult
from gateway.writing import Caller, WriteDesk

__all__ = ["AuditEntryOut", "AuditOut", "WritableOut", "WriteOut", "write_routes"]

#: The HTTP status of each result.
STATUS: dict[str, int] = {
    WriteResult.WRITTEN: 200,
    WriteResult.REFUSED_LIMITS: 422,
    WriteResult.REFUSED_TYPE: 422,
    WriteResult.NOT_WRITABLE: 404,
    WriteResult.FORBIDDEN: 403,
    WriteResult.REFUSED_BY_MACHINE: 502,
    WriteResult.TIMEOUT: 504,
    WriteResult.ERROR: 503,
}
#: Most audit entries one request returns.
MAX_AUDIT = 10_000
#: Largest body of a write request (a value is at most a thousand characters).
MAX_BODY = 16 * 1024

Result = Literal[
    "written",
    "refused_limits",
    "refused_type",
    "not_writable",
    "forbidden",
    "refused_by_machine",
    "timeout",
    "error",
]


class WritableOut(BaseModel):
    """One field a connector declares writable, with what the page needs to offer it."""

    connector: str
    field: str
    measurement: str = Field(description="The measurement its values are stored in (to find the machine's card).")
    tags: dict[str, str] = Field(description="The tags of its points: the card whose tags these match is its machine.")
    type: Literal["string", "number", "integer", "boolean"]
    allowed: list[Value] | None = Field(description="The only values allowed (offer them as a list), or null.")
    min: float | None
    max: float | None
    pattern: str | None = Field(description="A regular expression the whole text must match, or null.")
    unit: str | None
    target: str = Field(description="Where on the machine: a node id, a register, an S7 address, an MQTT topic.")
    range: list[float] | None = Field(description="The range the machine's own type holds (int16 …), or null.")
    max_length: int | None = Field(description="The longest text the machine's field holds, or null.")
    timeout: float = Field(description="Seconds a write of it may take before it is reported as timed out.")


class WriteOut(BaseModel):
    """One write attempt and what came of it (also each entry of the audit trail)."""

    result: Result
    message: str = Field(description="What happened, in words.")
    connector: str | None
    field: str | None
    requested: Value | None = Field(description="The value asked for, as given.")
    old: Value | None = Field(description="The value on the machine before the write (null: not read).")
    read_back: Value | None = Field(
        description="The value read from the machine after the write (null for MQTT, whose confirmation is the "
        "broker's acknowledgement, and when nothing was written)."
    )
    at: str = Field(description="When it was asked for, ISO 8601 in UTC.")
    at_ms: int = Field(description="The same time in Unix milliseconds.")
    user: str = Field(description="Who: the user name logged in with, '<role> token', or 'local' without credentials.")
    role: str
    client: str = Field(description="The client's address.")
    id: str
    code: str | None = Field(default=None, description="The machine's own code for a refusal (BadUserAccessDenied …).")
    target: str | None = None
    duration_ms: float | None = None


class AuditEntryOut(WriteOut):
    pass


class AuditOut(BaseModel):
    entries: list[AuditEntryOut] = Field(description="Newest first.")


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _role_name(role: Role) -> str:
    return role.name.lower()


def _loopback_host(host_header: str) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cross_site(request: Request) -> str | None:
    """Why this request may come from another site's page (None: it does not)."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return "the request came from another site's page"
    origin = request.headers.get("origin")
    if origin and origin != "null":
        netloc = urlsplit(origin).netloc.lower()
        if netloc != request.headers.get("host", "").lower():
            return f"the request came from a page of {origin}, not from the gateway's own page"
    return None


def write_routes(
    desk: Callable[[], WriteDesk | None],
    auth: AuthSettings,
    unit_of: Callable[[str, str], str],
    parse_time: Callable[[str | None, int, int], int],
) -> APIRouter:
    """The write and audit endpoints, on ``desk()`` (None: this gateway writes nothing)."""
    router = APIRouter(tags=["writes"])

    def answer(record: dict[str, Any]) -> Response:
        return Response(
            orjson.dumps(record), status_code=STATUS.get(str(record["result"]), 500), media_type="application/json"
        )

    def refusal(result: WriteResult, message: str, status: int) -> Response:
        now = time.time_ns()
        return JSONResponse(
            {"result": result.value, "message": message, "at_ms": now // 1_000_000, "connector": None, "field": None},
            status_code=status,
        )

    @router.get("/api/writable", response_model=list[WritableOut])
    async def writable() -> Response:
        """Every field a connector declares writable (``write:`` in its config), with its type and limits."""
        found = desk()
        fields = found.writable() if found is not None else []
        out = []
        for spec in fields:
            item = spec.as_dict()
            if not item["unit"]:
                item["unit"] = unit_of(spec.measurement, spec.field) or None
            out.append(item)
        return Response(orjson.dumps(out), media_type="application/json")

    @router.post(
        "/api/write",
        response_model=WriteOut,
        responses={code: {"model": WriteOut} for code in (403, 404, 422, 502, 503, 504)},
    )
    async def write(request: Request) -> Response:
        """Write a value to a machine: ``{"connector": "cnc-01", "field": "program", "value": "O1002"}``.

        The value is checked against the field's type and limits before anything is sent; the
        machine's value is read before and after (MQTT: the broker's acknowledgement); every attempt,
        refused or not, is in the audit trail before this answers. Operator or admin only."""
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return refusal(WriteResult.REFUSED_TYPE, "send the write as JSON (Content-Type: application/json)", 415)
        body = await request.body()
        if len(body) > MAX_BODY:
            return refusal(WriteResult.REFUSED_TYPE, f"the request is larger than {MAX_BODY} bytes", 413)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return refusal(
                WriteResult.REFUSED_TYPE,
                'the body must be a JSON object: {"connector": "cnc-01", "field": "program", "value": "O1002"}',
                422,
            )
        found = desk()
        if found is None:
            return refusal(WriteResult.ERROR, "this gateway writes to no machine", 503)
        role: Role = request.state.role
        caller = Caller(identify(auth, request.headers.get("authorization"), role), _role_name(role), _client(request))
        connector, field, value = data.get("connector"), data.get("field"), data.get("value")
        why = _cross_site(request)
        if why is None and not auth.configured and not _loopback_host(request.headers.get("host", "")):
            why = (
                f"without credentials configured, writes are taken only on a loopback address, not on "
                f"{request.headers.get('host', '')!r}"
            )
        if why is not None:
            record = await found.refuse(
                connector, field, value, caller, WriteResult.FORBIDDEN, f"refused: {why}; nothing was written"
            )
            return answer(record)
        if role < Role.OPERATOR:
            record = await found.refuse(
                connector,
                field,
                value,
                caller,
                WriteResult.FORBIDDEN,
                f"the {caller.role} role may look but not write: writing to machines needs the operator or admin "
                "role; nothing was written",
            )
            return answer(record)
        return answer(await found.write(connector, field, value, caller))

    @router.get("/api/audit", response_model=AuditOut)
    async def audit(
        from_: Annotated[
            str | None,
            Query(alias="from", description="Start: Unix ms, ISO 8601, now, or -7d (default: the beginning)."),
        ] = None,
        to: Annotated[str | None, Query(description="End: Unix ms, ISO 8601, now, or -1h (default: now).")] = None,
        connector: Annotated[str | None, Query(description="Only this connector.")] = None,
        field: Annotated[str | None, Query(description="Only this field.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT, description="Most entries returned (the newest).")] = 200,
    ) -> Response:
        """Every write attempt in the audit trail, newest first: who, from where, what, and what came of it."""
        found = desk()
        if found is None:
            return Response(orjson.dumps({"entries": []}), media_type="application/json")
        now = time.time_ns()
        try:
            start = parse_time(from_, now, 0) if from_ else None
            end = parse_time(to, now, now)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if start is not None and end < start:
            raise HTTPException(422, "'to' must be after 'from'")
        entries = await found.audit(AuditQuery(start, end, connector, field, limit))
        return Response(orjson.dumps({"entries": entries}), media_type="application/json")

    return router
