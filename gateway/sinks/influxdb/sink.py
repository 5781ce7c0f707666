"""The InfluxDB sink: the project's line protocol POSTed to the v2 or v1 write API with aiohttp.

Why aiohttp and not influxdb-client: posting pre-encoded 5,000-line batches to the same
store measured the same throughput with either (the store is the limit: see
docs/PERFORMANCE.md), influxdb-client cannot speak the ``/write`` API of InfluxDB 1.x before
1.8, and its error handling hides the status codes and headers this sink acts on. aiohttp is
what influxdb-client's async client runs on, so no new dependency comes with it.

What each answer means (the route's retries act on the exception raised):

- 2xx: stored.
- 400/422 (bad points): when the store says how many it dropped (``partial write … dropped=N``
  from InfluxDB 1.x/2.x, the per-line list of InfluxDB 3) the rest is stored; otherwise the
  batch is split in halves until the bad points are alone. The rejected points are dropped
  and counted (:class:`SinkRejected`, raised after the rest is stored), never retried
  forever; the first rejected line and the store's message are logged.
- 401/403: :class:`SinkUnauthorized` (state ``unauthorized``; points stay buffered).
- 413: the batch is too large for the store: split in halves and written again.
- 404: the database or bucket does not exist: :class:`SinkUnavailable` (points stay buffered
  until it is created or the config is corrected).
- 429, 5xx, timeouts, connection errors: :class:`SinkUnavailable`, with the Retry-After the
  store asked for.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import json
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlencode

import aiohttp

from gateway.component import RuntimeContext, Sink
from gateway.errors import DecodeError, SinkRejected, SinkUnauthorized, SinkUnavailable
from gateway.lineprotocol import encode_batch, parse_line
from gateway.point import Point
from gateway.sinks.influxdb.config import InfluxDBConfig
from gateway.units import format_duration

__all__ = ["InfluxDBSink", "split_lines"]

#: Most write requests spent isolating rejected points in one batch; beyond, the rest of the
#: suspicious parts is rejected whole (a store that refuses everything must not take forever).
SPLIT_BUDGET = 200
#: Bodies smaller than this are not worth compressing.
GZIP_MIN_BYTES = 1024

_LINE = re.compile(
    rb"(?:[^\\ \n]|\\.)+ "  # measurement and tags (quotes are literal there)
    rb'(?:[^\\=, \n]|\\.)+=(?:"(?:[^"\\]|\\.)*"|[^ ,"\n]+)'  # first field
    rb'(?:,(?:[^\\=, \n]|\\.)+=(?:"(?:[^"\\]|\\.)*"|[^ ,"\n]+))*'  # more fields
    rb"(?: -?\d+)?\n",  # timestamp
    re.DOTALL,
)
_DROPPED = re.compile(r"dropped=(\d+)")
_UNPARSABLE = re.compile(r"unable to parse '((?:[^'\\]|\\.)*)'")
_CONFLICT = re.compile(r'input field "((?:[^"\\]|\\.)*)" on measurement "((?:[^"\\]|\\.)*)" is type (\w+)')
_TYPES = {"float": float, "integer": int, "boolean": bool, "string": str}


def split_lines(body: bytes, count: int) -> list[bytes]:
    """The lines of a line-protocol body (each without its newline).

    A newline inside a string field value belongs to the value: when the body has more
    newlines than points, lines are found by the grammar instead of by splitting.
    """
    if body.count(b"\n") == count:
        return body.split(b"\n")[:-1]
    lines: list[bytes] = []
    position = 0
    while position < len(body):
        match = _LINE.match(body, position)
        if match is None:  # not our encoder's output: fall back to plain lines
            lines.extend(line for line in body[position:].split(b"\n") if line)
            break
        lines.append(match.group(0)[:-1])
        position = match.end()
    return lines


def _join(lines: Sequence[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


@dataclass
class _Outcome:
    """What one write (and its splits) came to."""

    rejected: int = 0
    first_line: bytes | None = None
    message: str = ""
    requests: int = 0
    #: Points rejected whole once the split budget was used up (good ones may be among them).
    unsplit: int = 0

    def reject(self, count: int, line: bytes | None, message: str) -> None:
        self.rejected += count
        if self.first_line is None:
            self.first_line = line
            self.message = message


class InfluxDBSink(Sink):
    """Writes batches of line protocol to InfluxDB (v2 or v1 API) or a compatible store."""

    #: A network store: a durable buffer in front of it keeps collection going while it is down.
    needs_durable_buffer: ClassVar[bool] = True
    #: Writes the buffer's line protocol as it is.
    takes_line_protocol: ClassVar[bool] = True

    def __init__(self, config: InfluxDBConfig, context: RuntimeContext) -> None:
        super().__init__(config.name, "influxdb", context)
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._url, self._headers = _endpoint(config)
        self.status.detail.update(api=config.api, target=config.target)

    async def open(self) -> None:
        ssl_context: ssl.SSLContext | bool = False
        if self.config.url.startswith("https://"):
            ssl_context = ssl.create_default_context(
                cafile=str(self.config.tls.ca_file) if self.config.tls.ca_file else None
            )
            if not self.config.tls.verify:
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
                self.log.warning(
                    "TLS certificate checks are off for %s: use this only on a test bench", self.config.url
                )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=4),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            headers=self._headers,
        )
        self.log.info("writing to %s (%s write API)", self.config.target, self.config.api)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def write(self, points: Sequence[Point]) -> None:
        """Encode and write a batch of points (the route calls :meth:`write_lines` directly)."""
        await self.write_lines(encode_batch(points), len(points))

    async def write_lines(self, body: bytes, count: int) -> None:
        """Write a body of ``count`` lines; raise SinkRejected (after the rest is stored) for bad points."""
        outcome = _Outcome()
        await self._write_part(body, count, outcome)
        if outcome.unsplit:
            self.log.warning(
                "%s kept refusing parts of a batch of %d points and the split budget (%d write requests) is "
                "used up: %d points were dropped whole without being tried one by one, so good points may "
                "have been dropped with the bad ones (%s)",
                self.config.target,
                count,
                SPLIT_BUDGET,
                outcome.unsplit,
                outcome.message,
            )
        if outcome.rejected:
            line = (outcome.first_line or b"").decode(errors="replace")
            raise SinkRejected(
                f"{self.config.target} refused {outcome.rejected} of {count} points: {outcome.message}; "
                f"first rejected line: {line[:300]!r}",
                rejected=outcome.rejected,
            )

    async def _write_part(self, body: bytes, count: int, outcome: _Outcome) -> None:
        outcome.requests += 1
        status, text, headers = await self._post(body)
        if 200 <= status < 300:
            return
        message = _server_message(text) or f"HTTP {status}"
        if status in (401, 403):
            raise SinkUnauthorized(
                f"{self.config.target} refused the credentials (HTTP {status}: {message}); "
                + ("check token" if self.config.api == "v2" else "check username and password")
                + f" of sink {self.name}. Points are kept in the buffer"
            )
        if status == 413:
            if count <= 1:
                outcome.reject(count, body.rstrip(b"\n"), f"the point is larger than the store accepts ({message})")
                return
            await self._split(body, count, outcome, message)
            return
        if status in (400, 422):
            await self._rejected(body, count, outcome, message, text)
            return
        if status == 404:
            raise SinkUnavailable(
                f"{self.config.target}: not found (HTTP 404: {message}); create it or correct sink {self.name}'s "
                "config. Points are kept in the buffer"
            )
        retry_after = _retry_after(headers)
        if status == 429 or status >= 500:
            raise SinkUnavailable(
                f"{self.config.target} is overloaded or failing (HTTP {status}: {message})", retry_after=retry_after
            )
        raise SinkUnavailable(f"{self.config.target} answered HTTP {status}: {message}", retry_after=retry_after)

    async def _rejected(self, body: bytes, count: int, outcome: _Outcome, message: str, text: str) -> None:
        """400/422: drop what the store refused, keep (or resend) the rest."""
        known = _rejected_count(message, text)
        if known is not None:  # a partial write: the store kept every other point
            outcome.reject(known, _first_rejected_line(body, count, message, text), message)
            return
        if count <= 1:
            outcome.reject(count, body.rstrip(b"\n"), message)
            return
        if outcome.requests >= SPLIT_BUDGET:
            outcome.unsplit += count  # logged once for the whole batch by write_lines
            outcome.reject(count, split_lines(body, count)[0], f"{message} (not split further)")
            return
        await self._split(body, count, outcome, message)

    async def _split(self, body: bytes, count: int, outcome: _Outcome, reason: str) -> None:
        lines = split_lines(body, count)
        half = len(lines) // 2
        self.log.debug("splitting a batch of %d points in two (%s)", len(lines), reason)
        for part in (lines[:half], lines[half:]):
            if part:
                await self._write_part(_join(part), len(part), outcome)

    async def _post(self, body: bytes) -> tuple[int, str, Mapping[str, str]]:
        if self._session is None:
            raise SinkUnavailable(f"sink {self.name} is not open")
        headers = {}
        data = body
        if self.config.gzip and len(body) >= GZIP_MIN_BYTES:
            data = await asyncio.to_thread(gzip.compress, body, 1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(self._url, data=data, headers=headers) as response:
                text = await response.text(errors="replace")
                return response.status, text, response.headers
        except TimeoutError:
            raise SinkUnavailable(
                f"{self.config.target} did not answer within {format_duration(self.config.timeout)}"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
            raise SinkUnavailable(
                f"the TLS certificate of {self.config.url} is not trusted ({reason}); "
                "give the CA that signed it as tls.ca_file"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
            raise SinkUnavailable(f"cannot connect to {self.config.url}: {reason}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SinkUnavailable(f"writing to {self.config.url} failed: {exc or type(exc).__name__}") from None


def _endpoint(config: InfluxDBConfig) -> tuple[str, dict[str, str]]:
    headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "shopfloor-gateway"}
    if config.api == "v2":
        params = {"bucket": config.bucket or "", "precision": "ns"}
        if config.org:
            params["org"] = config.org
        if config.token is not None:
            headers["Authorization"] = f"Token {config.token.get_secret_value()}"
        return f"{config.url}/api/v2/write?{urlencode(params)}", headers
    params = {"db": config.database or "", "precision": "ns"}
    if config.retention_policy:
        params["rp"] = config.retention_policy
    if config.username is not None and config.password is not None:
        pair = f"{config.username}:{config.password.get_secret_value()}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    return f"{config.url}/write?{urlencode(params)}", headers


def _server_message(text: str) -> str:
    """The store's own words: ``error`` (1.x), ``message`` (2.x), ``error`` + ``data`` (3.x)."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(body, dict):
        message = body.get("error") or body.get("message") or ""
        return str(message)[:500]
    return text.strip()[:500]


def _rejected_count(message: str, text: str) -> int | None:
    """How many points a partial write dropped, when the store says so (the rest is stored)."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
        return len(body["data"])  # InfluxDB 3: one entry per rejected line
    dropped = _DROPPED.search(message)
    if dropped is None or "partial write" not in message:
        return None
    # InfluxDB 1.x counts unparsable lines apart from dropped ones.
    return int(dropped.group(1)) + len(_UNPARSABLE.findall(message)) or None


def _first_rejected_line(body: bytes, count: int, message: str, text: str) -> bytes | None:
    """The rejected line the store names, or the first line matching its complaint."""
    try:
        data = json.loads(text).get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "original_line" in data[0]:
            return str(data[0]["original_line"]).encode()
    except (ValueError, AttributeError):
        pass
    unparsable = _UNPARSABLE.search(message)
    if unparsable is not None:
        return unparsable.group(1).encode()
    conflict = _CONFLICT.search(message)
    if conflict is None:
        return None
    field, measurement, kind = conflict.groups()
    wanted = _TYPES.get(kind)
    for line in split_lines(body, count):
        if measurement.encode() not in line or field.encode() not in line:
            continue
        try:
            point = parse_line(line.decode(errors="replace"))
        except DecodeError:
            continue
        value = point.fields.get(field)
        if point.measurement == measurement and value is not None and type(value) is wanted:
            return line
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), kept within an hour."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), 3600.0)
