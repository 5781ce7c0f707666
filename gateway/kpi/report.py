"""``gateway kpi``: the machines' KPIs over a range as a table, JSON (the API's objects) or CSV.

The numbers come from the same engine as ``GET /api/machines/{name}/kpi``, reading the
history of the config's historian (read-only, so it works while the gateway runs).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import Any, Literal, TextIO

from gateway.history import HistoryReader
from gateway.kpi.compute import CATEGORIES
from gateway.kpi.config import MachineConfig
from gateway.kpi.engine import Bucket, KpiEngine
from gateway.kpi.rollups import RollupStore

__all__ = ["print_report", "run_kpi_command"]

Output = Literal["table", "json", "csv"]
RATIOS = ("availability", "performance", "quality", "oee")


async def run_kpi_command(
    machines: Sequence[MachineConfig],
    reader: HistoryReader,
    *,
    names: Sequence[str],
    start: int,
    end: int,
    by: Bucket | None,
    output: Output,
    out: TextIO,
    rollups: RollupStore | None = None,
) -> None:
    """Compute and print; ``names`` empty: every machine. Raises GatewayError / ValueError in words.

    ``rollups``: the gateway's compact hours (read-only), so last week is not read again raw."""
    engine = KpiEngine(machines, lambda: reader, rollups=rollups)
    chosen = list(names) or [m.name for m in machines]
    results = [await engine.kpi(name, start, end, by) for name in chosen]
    print_report(results, output, out, single=len(names) == 1)


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result["rows"]) if result.get("rows") is not None else [result]


def print_report(results: Sequence[dict[str, Any]], output: Output, out: TextIO, *, single: bool = False) -> None:
    if output == "json":
        body: Any = results[0] if single and len(results) == 1 else list(results)
        out.write(json.dumps(body, ensure_ascii=False, indent=2) + "\n")
        return
    if output == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "machine",
                "shift",
                "bucket",
                "from",
                "to",
                *(f"{c}_s" for c in CATEGORIES),
                "planned_s",
                "parts",
                "scrap",
                "good",
                *RATIOS,
            ]
        )
        for result in results:
            for row in _rows(result):
                writer.writerow(
                    [
                        row["machine"],
                        row.get("shift") or "",
                        row.get("bucket") or "",
                        row["from"],
                        row["to"],
                        *(row["seconds"][c] for c in CATEGORIES),
                        row["planned_seconds"],
                        *("" if row[k] is None else row[k] for k in ("parts", "scrap", "good")),
                        *("" if row[k] is None else row[k] for k in RATIOS),
                    ]
                )
        return
    _table(results, out)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _table(results: Sequence[dict[str, Any]], out: TextIO) -> None:
    header: tuple[str, ...] = (
        "machine",
        "period",
        "from",
        "to",
        "running",
        "idle",
        "down",
        "setup",
        "planned stop",
        "unknown",
        "no data",
        "planned",
        "parts",
        "scrap",
        "good",
        "A",
        "P",
        "Q",
        "OEE",
    )
    rows: list[tuple[str, ...]] = []
    warnings: list[str] = []
    for result in results:
        for row in _rows(result):
            period = row.get("shift") or row.get("bucket") or ("total" if result.get("rows") is not None else "")
            rows.append(
                (
                    row["machine"],
                    period,
                    row["from"].replace("T", " "),
                    row["to"].replace("T", " "),
                    *(_duration(row["seconds"][c]) for c in CATEGORIES),
                    _duration(row["planned_seconds"]),
                    *(_count(row[k]) for k in ("parts", "scrap", "good")),
                    *(_percent(row[k]) for k in RATIOS),
                )
            )
        if result.get("rows") is not None:
            rows.append(
                (
                    result["machine"],
                    "all",
                    result["from"].replace("T", " "),
                    result["to"].replace("T", " "),
                    *(_duration(result["seconds"][c]) for c in CATEGORIES),
                    _duration(result["planned_seconds"]),
                    *(_count(result[k]) for k in ("parts", "scrap", "good")),
                    *(_percent(result[k]) for k in RATIOS),
                )
            )
        warnings += [f"{result['machine']}: {w}" for w in result.get("warnings", [])]
    if not any(r[1] for r in rows):  # no periods: no period column
        header = (header[0], *header[2:])
        rows = [(r[0], *r[2:]) for r in rows]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    numeric = {i for i, name in enumerate(header) if name not in ("machine", "period", "from", "to")}
    for line in (header, tuple("-" * w for w in widths), *rows):
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    out.write("(times h:mm:ss; A availability, P performance, Q quality: definitions in docs/KPI.md)\n")
    for warning in dict.fromkeys(warnings):
        out.write(f"warning: {warning}\n")
