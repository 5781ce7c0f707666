"""``gateway query``: print what landed in the embedded historian, as a table, JSON or CSV.

Opens the historian file read-only, so it works while the gateway is running and writing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from gateway.errors import GatewayError
from gateway.point import now_ns
from gateway.sinks.historian.config import HistorianConfig
from gateway.sinks.historian.store import HistorianStore, StoredValue
from gateway.units import parse_duration

__all__ = ["format_time", "run_query_command"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_time(ns: int, *, trim: bool = False) -> str:
    """ISO 8601 UTC with nanoseconds: ``2026-11-27T08:30:00.123456789Z``.

    ``trim`` drops trailing groups of zeros (``…:00.120Z``, ``…:00Z``), for people.
    """
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}"
    if trim:
        while digits and digits.endswith("000"):
            digits = digits[:-3]
    return f"{text}.{digits}Z" if digits else f"{text}Z"


def _historian(settings: Any, name: str | None) -> HistorianConfig:
    sinks = list(getattr(settings, "sinks", []))
    historians = [s for s in sinks if isinstance(s, HistorianConfig)]
    if name is not None:
        chosen = next((s for s in sinks if s.name == name), None)
        if chosen is None:
            known = ", ".join(s.name for s in historians) or "none"
            raise GatewayError(f"there is no sink named {name!r} in the config (historian sinks: {known})")
        if not isinstance(chosen, HistorianConfig):
            raise GatewayError(f"sink {name!r} is of type {chosen.type!r}; gateway query reads historian sinks only")
        return chosen
    if not historians:
        raise GatewayError("the config has no historian sink (type: historian), so there is nothing to query")
    return historians[0]


def _ago(text: str, option: str) -> int:
    try:
        seconds = parse_duration(text)
    except (TypeError, ValueError) as exc:
        raise GatewayError(f"{option} {text!r}: {exc}") from None
    return now_ns() - int(seconds * 1e9)


def run_query_command(
    settings: Any,
    *,
    measurement: str,
    fields: Sequence[str],
    tags: Mapping[str, str],
    since: str,
    until: str | None,
    sink: str | None,
    output: str,
    limit: int,
    out: TextIO,
) -> None:
    """The body of ``gateway query``: read the historian read-only and print what matches."""
    config = _historian(settings, sink)
    path = config.file(settings.gateway.data_dir)
    since_ns = _ago(since, "--since")
    until_ns = _ago(until, "--until") if until is not None else None
    if not path.exists():
        raise GatewayError(
            f"{path} does not exist yet: sink {config.name!r} has stored nothing so far "
            "(start the gateway with: gateway run CONFIG)"
        )
    with HistorianStore(path, readonly=True) as store:
        values = store.read(
            measurement, fields=fields, tags=tags, since_ns=since_ns, until_ns=until_ns, limit=max(limit, 0)
        )
        hint = "" if values or output != "table" else _hint(store, measurement, fields, since)
    if output == "json":
        _print_json(values, out)
    elif output == "csv":
        _print_csv(values, out)
    elif values:
        _print_table(values, out)
    else:
        out.write(hint + "\n")


def _hint(store: HistorianStore, measurement: str, fields: Sequence[str], since: str) -> str:
    series = store.series()
    measurements = sorted({s.measurement for s in series})
    if measurement not in measurements:
        known = ", ".join(measurements) if measurements else "none yet"
        return f"no measurement {measurement!r} in the historian (measurements: {known})"
    known_fields = sorted({s.field for s in series if s.measurement == measurement})
    missing = [f for f in fields if f not in known_fields]
    if missing:
        return f"measurement {measurement!r} has no field {missing[0]!r} (fields: {', '.join(known_fields)})"
    return f"no values for {measurement!r} with these filters in the last {since} (try a longer --since)"


def _json_value(value: StoredValue) -> dict[str, Any]:
    return {
        "time": format_time(value.time),
        "time_ns": value.time,
        "measurement": value.measurement,
        "tags": value.tags,
        "field": value.field,
        "value": value.value,
    }


def _print_json(values: Sequence[StoredValue], out: TextIO) -> None:
    if not values:
        out.write("[]\n")
        return
    out.write("[\n  ")
    out.writelines(_join(",\n  ", (json.dumps(_json_value(v), ensure_ascii=False) for v in values)))
    out.write("\n]\n")


def _join(separator: str, items: Iterable[str]) -> Iterator[str]:
    """``separator.join(items)`` as a stream (a long result is never one huge string)."""
    for index, item in enumerate(items):
        if index:
            yield separator
        yield item


def _print_csv(values: Sequence[StoredValue], out: TextIO) -> None:
    tag_keys = sorted({key for value in values for key in value.tags})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "time_ns", "measurement", *tag_keys, "field", "value"])
    for v in values:
        text = v.value if not isinstance(v.value, bool) else ("true" if v.value else "false")
        writer.writerow(
            [format_time(v.time), v.time, v.measurement, *(v.tags.get(k, "") for k in tag_keys), v.field, text]
        )


def _print_table(values: Sequence[StoredValue], out: TextIO) -> None:
    rows = [
        (
            format_time(v.time, trim=True),
            v.measurement,
            ",".join(f"{k}={t}" for k, t in sorted(v.tags.items())),
            v.field,
            _display(v.value),
        )
        for v in values
    ]
    header = ("time (UTC)", "measurement", "tags", "field", "value")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(5)]
    out.writelines(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in (header, tuple("-" * w for w in widths), *rows)
    )
    out.write(f"({len(rows)} value{'s' if len(rows) != 1 else ''})\n")


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # quotes show it is text, escapes show newlines
    return repr(value)
