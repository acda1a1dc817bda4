"""Testing helpers for chanlite (fake clock, test cases, clients, pytest plugin)."""

from .clock import FakeClock

__all__ = ["FakeClock"]
