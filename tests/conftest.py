"""Suite-wide settings.

Hypothesis explores new random examples on every developer run; under CI (the CI environment
variable, which .ci/run's environment sets) it is derandomized so that a landing is judged on a
reproducible set of examples. A failure found locally is replayed from .hypothesis/ and gets fixed.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
