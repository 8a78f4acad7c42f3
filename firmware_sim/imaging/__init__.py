"""Synthetic fluoroscopy of the simulated vertebra, and publishing its frames (docs/fluoroscopy.md).

Ground truth (the front's depth, leak onsets, the body's true outline) is produced beside the frames
(`truth.py`) for scoring and never travels inside a frame."""
