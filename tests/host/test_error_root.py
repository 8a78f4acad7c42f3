"""One root exception for the product's errors: `except CementguardError` catches the recorder's and
the recording reader's errors too (they used to sit outside it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.errors import CementguardError
from host.recording import Recorder, Recording
from protocol.telemetry import empty_samples


def test_reading_a_directory_that_is_not_a_recording_is_a_cementguard_error(tmp_path: Path) -> None:
    with pytest.raises(CementguardError, match="is not a recording"):
        Recording.open(tmp_path)


def test_a_closed_recorder_refuses_data_with_a_cementguard_error(tmp_path: Path) -> None:
    recorder = Recorder.create(tmp_path / "run", {"name": "x"}, background=False)
    recorder.close()
    with pytest.raises(CementguardError, match="is closed"):
        recorder.add_samples(np.concatenate([empty_samples(1)]))
