"""``gateway report interconnection CONFIG --machine M --from D --to D --out report.html [--pdf]``.

Reads the historian's file read-only, the link journal and the audit trail: it runs beside a
running gateway without disturbing it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.component import RuntimeContext, Sink
from gateway.config import LoadedConfig
from gateway.history import HistoryReader
from gateway.registry import component_types
from gateway.report.interconnection import InterconnectionReport, gather, resolve_machine
from gateway.report.pdf import print_pdf
from gateway.report.render import Lang, render_html

__all__ = ["ReportOptions", "local_timezone", "parse_bound", "run_interconnection_report"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ReportOptions:
    machine: str
    start: str
    end: str
    out: Path
    lang: Lang = "it"
    pdf: bool = False
    connectors: tuple[str, ...] = ()
    sink: str | None = None
    timezone: str | None = None


def local_timezone() -> str:
    """This computer's time zone as an IANA name (TZ, /etc/timezone, /etc/localtime), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    try:
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return "UTC"


def parse_bound(text: str, tz: tzinfo, *, end: bool) -> int:
    """A range bound → Unix ns. A date is its local midnight; as an end, the day is included
    (``--to 2026-03-31`` ends at 1 April 00:00). An ISO time without offset is local time."""
    value = text.strip()
    if _DATE.fullmatch(value):
        day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
        moment = datetime(day.year, day.month, day.day, tzinfo=tz)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a date or a time: write 2026-01-01 (a whole day) or 2026-01-01T06:00"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(microseconds=1) * 1000


def history_reader(config: Any, sink: str | None) -> HistoryReader | None:
    """The history of the sink named ``sink``, or of the first that keeps one, opened read-only; None if none."""
    names = [s.name for s in config.sinks]
    if sink is not None and sink not in names:
        raise ValueError(f"no sink named {sink!r} (sinks: {', '.join(names) or 'none'})")
    context = RuntimeContext(
        config.gateway.name, config.gateway.data_dir, logging.LoggerAdapter(logging.getLogger("gateway.report"), {})
    )
    for sink_config in config.sinks:
        if sink is None or sink_config.name == sink:
            built = component_types("sink")[sink_config.type].factory(sink_config, context)
            reader = built.history() if isinstance(built, Sink) else None
            if reader is not None:
                return reader
    if sink is not None:
        raise ValueError(f"sink {sink!r} keeps no history to read (a historian sink does)")
    return None


async def build_report(
    loaded: LoadedConfig, options: ReportOptions, now_ns: int | None = None
) -> InterconnectionReport:
    """Gather the report (its time zone: --tz, else the machine's under machines:, else this computer's)."""
    config = loaded.config
    machine = resolve_machine(config, options.machine, options.connectors)
    zone = options.timezone or machine.timezone or local_timezone()
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--tz {zone!r}: not a time zone (an IANA name, e.g. Europe/Rome)") from None
    start = parse_bound(options.start, tz, end=False)
    end = parse_bound(options.end, tz, end=True)
    if end <= start:
        raise ValueError("the end (--to) must be after the start (--from)")
    reader = history_reader(config, options.sink)
    try:
        return await gather(
            loaded,
            reader,
            options.machine,
            start,
            end,
            now_ns=now_ns if now_ns is not None else time.time_ns(),
            timezone=zone,
            connectors=options.connectors,
        )
    finally:
        close = getattr(reader, "aclose", None)
        if close is not None:
            await close()


async def run_interconnection_report(loaded: LoadedConfig, options: ReportOptions, out: TextIO) -> Path | None:
    """Write the HTML (and the PDF with ``options.pdf``); → the PDF's path, if one was printed.

    The HTML is written first, so a PDF that cannot be printed still leaves the report."""
    report = await build_report(loaded, options)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(render_html(report, options.lang), encoding="utf-8")
    links = ", ".join(
        f"{a.connector} {a.ratio * 100:.2f}% connected" if a.ratio is not None else a.connector
        for a in report.availability
    )
    out.write(
        f"{options.out}: machine {report.machine}, {len(report.signals)} signals, "
        f"{sum(s.count for s in report.signals):,} samples, {len(report.writes)} writes; {links}\n"
    )
    if not options.pdf:
        return None
    pdf = options.out.with_suffix(".pdf")
    print_pdf(options.out, pdf)
    out.write(f"{pdf}: printed\n")
    return pdf
