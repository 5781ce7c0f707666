"""Tests of machine states, parts and OEE (gateway/kpi)."""
