"""``gateway write``: a write to a machine through the running gateway's API, as the page does it.

The gateway's address comes from the config's ``gateway.http.listen`` (``0.0.0.0`` and ``::``
mean this host) or from ``--url``; the credential from the environment (``GATEWAY_TOKEN``, or
``GATEWAY_USER`` and ``GATEWAY_PASSWORD``) or a file (``--token-file``) — never from the command
line, whose arguments every user of the machine can read with ``ps``. The value is given as
text and sent as the field's type (``/api/writable`` says which: ``--value 80`` is the number 80
for a number field, the text "80" for a text field); a value that does not convert is sent as it
is, so the gateway refuses it with its reason and the refusal is in the audit trail too.

Exit status: 0 written (and read back); 1 refused or failed (the gateway's reason is printed);
2 the gateway could not be asked (not running, wrong address, credentials refused).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

__all__ = ["RemoteError", "WriteCommand", "convert", "gateway_url", "render", "run_write"]

#: Seconds the CLI waits for the gateway's answer (a write's own timeout is at most 300 s).
ANSWER_TIMEOUT = 330.0


class RemoteError(GatewayError):
    """The gateway could not be asked (exit status 2)."""


@dataclass(frozen=True)
class WriteCommand:
    url: str
    connector: str
    field: str
    value: str
    authorization: str | None = None
    ca_file: Path | None = None


def gateway_url(listen: str, tls: bool = False) -> str:
    """The URL of a gateway listening on ``listen`` (host:port), reached from this host."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def authorization(token_file: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The ``Authorization`` header from --token-file, GATEWAY_TOKEN, or GATEWAY_USER/GATEWAY_PASSWORD."""
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            lines = token_file.read_text().strip().splitlines()
        except OSError as exc:
            raise RemoteError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise RemoteError(f"the token file {token_file} is empty")
        return f"Bearer {token}"
    if env.get("GATEWAY_TOKEN"):
        return f"Bearer {env['GATEWAY_TOKEN'].strip()}"
    if env.get("GATEWAY_USER") and env.get("GATEWAY_PASSWORD"):
        pair = f"{env['GATEWAY_USER']}:{env['GATEWAY_PASSWORD']}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    return None


def convert(kind: str | None, text: str) -> Any:
    """``text`` as a value of ``kind`` (string, number, integer, boolean); as it is if it does not convert."""
    stripped = text.strip()
    if kind == "boolean":
        lowered = stripped.lower()
        if lowered in ("true", "on", "yes", "1"):
            return True
        if lowered in ("false", "off", "no", "0"):
            return False
        return text
    if kind in ("number", "integer"):
        try:
            return int(stripped)
        except ValueError:
            pass
        try:
            number = float(stripped)
        except ValueError:
            return text
        return int(number) if kind == "integer" and number.is_integer() else number
    return text


def _request(command: WriteCommand, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(command.url.rstrip("/") + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if command.authorization:
        request.add_header("Authorization", command.authorization)
    context = ssl.create_default_context(cafile=str(command.ca_file)) if command.ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, {"detail": raw.decode(errors="replace")[:200]}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(f"the gateway at {command.url} does not answer ({reason}): is it running?") from None
    except ValueError:
        raise RemoteError(f"{command.url} answered something that is not the gateway's API") from None


def _refused_access(status: int, body: Any, url: str) -> RemoteError:
    detail = body.get("detail") if isinstance(body, dict) else None
    if status == 401:
        return RemoteError(
            f"the gateway at {url} refused the credentials ({detail or 'credentials required'}): set GATEWAY_TOKEN, "
            "or GATEWAY_USER and GATEWAY_PASSWORD, or give --token-file"
        )
    return RemoteError(f"the gateway at {url} answered {status}: {detail or body}")


def run_write(command: WriteCommand) -> dict[str, Any]:
    """Ask the gateway; → its answer (the write's record). RemoteError when it cannot be asked."""
    status, fields = _request(command, "GET", "/api/writable")
    if status != 200 or not isinstance(fields, list):
        raise _refused_access(status, fields, command.url)
    kind = next(
        (
            f.get("type")
            for f in fields
            if isinstance(f, dict) and f.get("connector") == command.connector and f.get("field") == command.field
        ),
        None,
    )
    body = {"connector": command.connector, "field": command.field, "value": convert(kind, command.value)}
    status, record = _request(command, "POST", "/api/write", body)
    if status in (401, 429) or not isinstance(record, dict) or "result" not in record:
        raise _refused_access(status, record, command.url)
    return record


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(record: dict[str, Any]) -> str:
    """The answer in words, one line (and the machine's code when it refused)."""
    where = f"{record.get('connector')}.{record.get('field')}"
    unit = f" {record['unit']}" if record.get("unit") else ""
    requested = _shown(record.get("requested"))
    if record.get("result") == "written":
        return (
            f"written: {where} = {requested}{unit} (before: {_shown(record.get('old'))}, read back: "
            f"{_shown(record.get('read_back'))}): {record.get('message')}"
        )
    code = f" [{record['code']}]" if record.get("code") else ""
    return f"not written ({record.get('result')}): {where} = {requested}{unit}: {record.get('message')}{code}"
