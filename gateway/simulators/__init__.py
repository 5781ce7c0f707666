"""Simulated shop-floor devices for demos, tests and benchmarks."""
