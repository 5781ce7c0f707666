"""Printable documents about the gateway's own records: ``gateway report interconnection``.

The interconnection report (docs/INTERCONNECTION.md) documents one machine's interconnection
over a period — its connection, the signals collected, the link's availability, the writes
performed, where the data goes, the gateway's version and config hash — as evidence for the
technical expert writing an Impresa 4.0 / Transizione 4.0 appraisal. It certifies nothing.
"""
