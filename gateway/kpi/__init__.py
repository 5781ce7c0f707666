"""Machine states, parts and OEE: the ``machines:`` section, the KPI engine, the ``kpi`` points.

- :mod:`~gateway.kpi.config` — the section's model (registered here, so the whole file's model,
  ``gateway validate`` and ``gateway schema`` cover it);
- :mod:`~gateway.kpi.calendar`, :mod:`~gateway.kpi.timeline`, :mod:`~gateway.kpi.compute` — the
  pure computation: shifts in local time with DST, state intervals, counters with resets, the
  ratios;
- :mod:`~gateway.kpi.engine` — the engine: reads the history through the ``HistoryReader``
  ability, keeps compact rollups (state runs, counter increases) per hour, follows the live
  values;
- :mod:`~gateway.kpi.source` — the built-in component that runs the engine and writes the
  ``kpi`` points to every sink;
- :mod:`~gateway.kpi.report` — ``gateway kpi``'s tables, JSON and CSV.

Definitions: docs/KPI.md.
"""

from gateway.kpi.config import MachineConfig, Machines, check_counters, machines_of
from gateway.registry import Section, register_section

__all__ = ["MachineConfig", "machines_of"]

register_section(
    Section(
        name="machines",
        annotation=Machines,
        description="Machines whose states, parts and OEE the gateway computes (docs/KPI.md).",
        check=check_counters,
    )
)
