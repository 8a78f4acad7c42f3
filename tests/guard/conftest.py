"""The host tests' fake device, for the guard's worker tests."""

from tests.host.conftest import fake_device

__all__ = ["fake_device"]
