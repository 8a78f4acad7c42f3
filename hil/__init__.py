"""Hardware-in-the-loop scenarios, runner and sweeps."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
