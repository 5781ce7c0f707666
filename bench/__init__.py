"""Benchmarks that print figures (recorded in docs/PERFORMANCE.md); not timed tests."""
