"""Fixtures the guard's tests share with the host and imaging tests: the fake device, the spatial body."""

from tests.host.conftest import fake_device
from tests.imaging.conftest import vertebra

__all__ = ["fake_device", "vertebra"]
