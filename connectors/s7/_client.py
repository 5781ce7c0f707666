"""The adapter to python-snap7: the only module of the connector that imports it.

One :class:`Connection` is one ``snap7.AsyncClient`` (python-snap7 3.x, pure Python, asyncio
streams): one ISO-on-TCP connection to the CPU, its PDU size negotiated when it opens. The
library's client sends one request at a time and waits for its answer (its lock).

Why not the client's ``read_multi_vars``: in python-snap7 3.3 the async client's version
sends one request *per item* (only the threaded client packs them, and it raises on the
first item in error). The connector needs the S7comm multi-variable read — one request, up
to 20 items — and each item's own return code, so that a missing DB fails only its fields.
So :meth:`Connection.read` builds the request with the library's own protocol encoder
(``client.protocol.build_multi_read_request``), sends it through the client's public raw
exchange (``iso_exchange_buffer``, under the client's lock), checks the answer's header with
``client.protocol.parse_response`` and splits the items itself (:func:`split_items`).

Errors come out as three exceptions and per-item codes:

- :class:`ConnectionLost` — the connection could not be made, was lost, or a request got no
  answer in time (the library then closes the connection: an answer arriving late would be
  taken for the next one's);
- :class:`Refused` — the PLC refused the whole request (e.g. PUT/GET not permitted);
- :class:`ItemError` in the result list — the PLC refused one item (a DB that does not exist,
  an address beyond the DB's end, an optimized block).

:meth:`Connection.write` writes one item (bytes, or one bit with the S7 bit transport, so the
other bits of its byte are never touched) with the same errors; the PLC's refusal of the item is
:class:`ItemRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from snap7 import AsyncClient
from snap7.datatypes import S7Area, S7WordLen
from snap7.error import S7ConnectionError, S7Error, S7ProtocolError, S7TimeoutError

from connectors.s7.address import Area

__all__ = [
    "AREA_CODES",
    "ITEM_ERRORS",
    "Connection",
    "ConnectionLost",
    "ConnectionSettings",
    "ItemError",
    "ItemRefused",
    "ReadItem",
    "Refused",
    "item_error_text",
    "quiet_snap7",
    "split_items",
]

AREA_CODES: dict[Area, int] = {"DB": int(S7Area.DB), "M": int(S7Area.MK), "I": int(S7Area.PE), "Q": int(S7Area.PA)}

#: Return codes of a read item (S7comm) and what they mean.
ITEM_ERRORS: dict[int, str] = {
    0x01: "hardware fault",
    0x03: "access to the object not allowed",
    0x05: "address out of range",
    0x06: "data type not supported",
    0x07: "data type inconsistent",
    0x0A: "object does not exist",
}
#: Header errors (error class and code) that mean the PLC refuses S7 reads from outside.
_PUT_GET_REFUSED = frozenset({0x8104, 0xD0A1})

_OPTIMIZED_HINT = (
    "on an S7-1200/1500 the data block must have 'Optimized block access' switched off (the DB's Properties → "
    "Attributes) and the CPU must permit PUT/GET (Properties → Protection & Security → Connection mechanisms → "
    "'Permit access with PUT/GET communication from remote partner'); download both to the PLC"
)


class ConnectionLost(Exception):
    """The connection could not be made, is gone, or did not answer in time."""


class Refused(Exception):
    """The PLC answered the request with an error for the whole request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ItemError:
    """The PLC refused one item of a read (its S7comm return code)."""

    code: int

    @property
    def meaning(self) -> str:
        return ITEM_ERRORS.get(self.code, "unknown error")


class ItemRefused(Exception):
    """The PLC refused the item of a write (its S7comm return code, in :attr:`error`)."""

    def __init__(self, error: ItemError) -> None:
        super().__init__(f"S7 item error {error.code:#04x}: {error.meaning}")
        self.error = error


@dataclass(frozen=True)
class ReadItem:
    """``size`` bytes of ``area`` (data block ``db``) from byte ``start``."""

    area: Area
    db: int
    start: int
    size: int


def item_error_text(error: ItemError, area: Area, db: int, start: int, size: int) -> str:
    """What a refused item means for the fields in it, and what to check."""
    where = f"DB{db}" if area == "DB" else {"M": "the merker area", "I": "the inputs", "Q": "the outputs"}[area]
    span = f"byte {start}" if size == 1 else f"bytes {start}–{start + size - 1}"
    code = f"S7 item error {error.code:#04x}: {error.meaning}"
    if error.code == 0x0A:
        if area == "DB":
            return f"DB{db} does not exist in the PLC ({code}): check the DB number, and that the DB is downloaded"
        return f"{where} is not available in this PLC ({code})"
    if error.code == 0x05:
        if area == "DB":
            return f"DB{db} has no {span} ({code}): check the address against the DB's length; {_OPTIMIZED_HINT}"
        return f"{where} has no {span} in this CPU ({code}): check the address"
    if error.code == 0x03:
        return f"the PLC does not allow reading {where} {span} ({code}): {_OPTIMIZED_HINT}"
    return f"the PLC refused {where} {span} ({code})"


def _refused_text(code: int, message: str) -> str:
    if code in _PUT_GET_REFUSED:
        return (
            f"the PLC refuses S7 reads (S7comm error {code:#06x}: {message}). On an S7-1200/1500: permit PUT/GET "
            "(the CPU's Properties → Protection & Security → Connection mechanisms → 'Permit access with PUT/GET "
            "communication from remote partner') and switch off 'Optimized block access' of the data blocks read; "
            "download the hardware configuration and the blocks. On an S7-300/400: check the CPU's protection level"
        )
    return f"the PLC refused the read (S7comm error {code:#06x}: {message})"


def split_items(data: bytes, sizes: Sequence[int]) -> list[bytes | ItemError]:
    """The items of a read answer's data section: each item's bytes, or its error.

    Each item is a return code (0xFF: success), a transport size, a length (in bits for the
    byte-wise transport sizes 3, 4 and 5, in bytes for the others) and its data, padded to an
    even length except after the last item. Raises ValueError for an answer that does not
    match the request.
    """
    results: list[bytes | ItemError] = []
    offset = 0
    for index, size in enumerate(sizes):
        if offset + 4 > len(data):
            raise ValueError(f"the answer ends before item {index + 1} of {len(sizes)}")
        code, transport, length = struct.unpack_from(">BBH", data, offset)
        offset += 4
        if code != 0xFF:
            count = (length + 7) // 8 if transport in (3, 4, 5) else length
            offset += count + (count & 1 if index < len(sizes) - 1 else 0)
            results.append(ItemError(code))
            continue
        count = (length + 7) // 8 if transport in (3, 4, 5) else length
        if offset + count > len(data):
            raise ValueError(f"item {index + 1} is cut short ({len(data) - offset} of {count} bytes)")
        if count != size:
            raise ValueError(f"item {index + 1} holds {count} bytes instead of the {size} asked for")
        results.append(bytes(data[offset : offset + count]))
        offset += count
        if index < len(sizes) - 1 and count & 1:
            offset += 1
    return results


class _QuietSnap7(logging.Filter):
    """python-snap7 logs every connect and disconnect at info level; the connector reports the
    same once per episode. Its lines pass only when the gateway logs at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_snap7() -> None:
    """Keep python-snap7's own log lines out unless the gateway logs at debug level."""
    for name in ("snap7.async_client", "snap7.client", "snap7.connection", "snap7.client_base", "snap7.s7protocol"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietSnap7) for f in logger.filters):
            logger.addFilter(_QuietSnap7())


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the PLC is and how to talk to it."""

    host: str
    port: int = 102
    rack: int = 0
    slot: int = 1
    connection_type: int = 1  # 1 PG, 2 OP, 3 basic: the high byte of the PLC's TSAP
    timeout: float = 2.0
    pdu_size: int = 960

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} (rack {self.rack}, slot {self.slot})"


class Connection:
    """One connection to a PLC; one request at a time, each within ``settings.timeout``."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.pdu_size = 0  # negotiated when it opens
        self._client: AsyncClient | None = None
        quiet_snap7()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.get_connected()

    async def open(self) -> None:
        """Connect (a new session; the previous one is closed first), or raise ConnectionLost."""
        await self.close()
        s = self.settings
        client = AsyncClient()
        client.connection_type = s.connection_type
        client.pdu_length = s.pdu_size
        try:
            await asyncio.wait_for(client.connect(s.host, s.rack, s.slot, s.port), s.timeout)
        except (TimeoutError, S7TimeoutError):
            await self._discard(client)
            raise ConnectionLost(self._cannot_connect(f"no answer within {s.timeout:g}s")) from None
        except (S7Error, OSError) as exc:
            await self._discard(client)
            raise ConnectionLost(self._cannot_connect(str(exc))) from None
        if client.connection is not None:
            client.connection.timeout = s.timeout  # each answer's deadline (the library's default is 5 s)
        self._client = client
        self.pdu_size = int(client.pdu_length)

    def _cannot_connect(self, why: str) -> str:
        s = self.settings
        return (
            f"cannot connect to the PLC at {s.where}: {why} (is the PLC on and reachable, port {s.port} open, "
            f"and rack {s.rack} / slot {s.slot} those of the CPU: 0/1 for S7-1200/1500, 0/2 for S7-300?)"
        )

    @staticmethod
    async def _discard(client: AsyncClient) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 2.0)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._discard(client)

    async def read(self, items: Sequence[ReadItem]) -> list[bytes | ItemError]:
        """Read ``items`` (at most 20, within the PDU) in one request: each item's bytes or its error."""
        client = self._client
        if client is None or not client.get_connected():
            raise ConnectionLost(f"not connected to the PLC at {self.settings.where}")
        specs = [(AREA_CODES[i.area], i.db if i.area == "DB" else 0, i.start, i.size) for i in items]
        request = client.protocol.build_multi_read_request(specs)
        sequence = struct.unpack_from(">H", request, 4)[0]
        try:
            answer = await client.iso_exchange_buffer(bytearray(request))
            response = client.protocol.parse_response(bytes(answer))
        except S7TimeoutError:
            await self.close()
            raise ConnectionLost(
                f"the PLC at {self.settings.where} did not answer within {self.settings.timeout:g}s"
            ) from None
        except S7ConnectionError as exc:
            await self.close()
            raise ConnectionLost(f"connection to the PLC at {self.settings.where} lost: {exc}") from None
        except S7ProtocolError as exc:
            if exc.error_code:
                raise Refused(exc.error_code, _refused_text(exc.error_code, str(exc).split(": ", 1)[-1])) from None
            await self.close()
            raise ConnectionLost(
                f"the PLC at {self.settings.where} sent an answer that cannot be read: {exc}"
            ) from None
        except OSError as exc:
            await self.close()
            raise ConnectionLost(f"connection to the PLC at {self.settings.where} failed: {exc}") from None
        parameters = response.get("parameters") or {}
        if response.get("sequence") != sequence or parameters.get("item_count") != len(items):
            await self.close()
            raise ConnectionLost(
                f"the PLC at {self.settings.where} answered out of step (sequence {response.get('sequence')} for "
                f"{sequence}, {parameters.get('item_count')} items for {len(items)}); reconnecting"
            )
        try:
            return split_items(bytes(response.get("raw_data") or b""), [i.size for i in items])
        except ValueError as exc:
            await self.close()
            raise ConnectionLost(
                f"the PLC at {self.settings.where} sent an answer that cannot be read: {exc}"
            ) from None

    async def write(self, area: Area, db: int, start: int, data: bytes, bit: int | None = None) -> None:
        """Write ``data`` at byte ``start`` of ``area`` (data block ``db``) in one request; with ``bit``,
        that one bit (``data`` is one byte: 0 or 1) with the S7 bit transport. Raises ConnectionLost,
        Refused (the whole request) or ItemRefused (the item: a DB that does not exist, a byte beyond it)."""
        client = self._client
        if client is None or not client.get_connected():
            raise ConnectionLost(f"not connected to the PLC at {self.settings.where}")
        if bit is not None:
            request = client.protocol.build_write_request(
                area=S7Area(AREA_CODES[area]),
                db_number=db if area == "DB" else 0,
                start=start * 8 + bit,
                word_len=S7WordLen.BIT,
                data=bytes([1 if data and data[0] else 0]),
            )
        else:
            request = client.protocol.build_write_request(
                area=S7Area(AREA_CODES[area]),
                db_number=db if area == "DB" else 0,
                start=start,
                word_len=S7WordLen.BYTE,
                data=bytes(data),
            )
        sequence = struct.unpack_from(">H", request, 4)[0]
        try:
            answer = await client.iso_exchange_buffer(bytearray(request))
            response = client.protocol.parse_response(bytes(answer))
        except S7TimeoutError:
            await self.close()
            raise ConnectionLost(
                f"the PLC at {self.settings.where} did not answer within {self.settings.timeout:g}s"
            ) from None
        except S7ConnectionError as exc:
            await self.close()
            raise ConnectionLost(f"connection to the PLC at {self.settings.where} lost: {exc}") from None
        except S7ProtocolError as exc:
            if exc.error_code:
                raise Refused(
                    exc.error_code, _refused_write_text(exc.error_code, str(exc).split(": ", 1)[-1])
                ) from None
            await self.close()
            raise ConnectionLost(
                f"the PLC at {self.settings.where} sent an answer that cannot be read: {exc}"
            ) from None
        except OSError as exc:
            await self.close()
            raise ConnectionLost(f"connection to the PLC at {self.settings.where} failed: {exc}") from None
        if response.get("sequence") != sequence:
            await self.close()
            raise ConnectionLost(f"the PLC at {self.settings.where} answered out of step; reconnecting")
        header_error = int(response.get("error_code") or 0)
        if header_error:
            raise Refused(header_error, _refused_write_text(header_error, "write refused"))
        item = response.get("data") or {}
        code = item.get("return_code")
        if code is None:
            raw = bytes(response.get("raw_data") or b"")
            code = raw[0] if raw else None
        if code is None:
            await self.close()
            raise ConnectionLost(f"the PLC at {self.settings.where} did not acknowledge the write's item")
        if int(code) != 0xFF:
            raise ItemRefused(ItemError(int(code)))


def _refused_write_text(code: int, message: str) -> str:
    if code in _PUT_GET_REFUSED:
        return (
            f"the PLC refuses S7 writes (S7comm error {code:#06x}: {message}): on an S7-1200/1500 permit PUT/GET "
            "(Protection & Security → Connection mechanisms) and switch off 'Optimized block access' of the DB"
        )
    if code == 0x8404:
        return f"the PLC refused the write (S7comm error {code:#06x}: the area or data block does not exist there)"
    return f"the PLC refused the write (S7comm error {code:#06x}: {message})"
