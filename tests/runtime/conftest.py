"""Fixtures of the runtime's tests."""

from tests.runtime.fakes import fake_types

__all__ = ["fake_types"]
