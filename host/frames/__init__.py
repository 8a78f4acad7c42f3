"""Fluoroscopy frames for the guard: one `FluoroFrame` type and one `FrameSource` interface for the
simulator's stream, video devices and files, and folders of DICOM or PNG frames
(docs/fluoroscopy.md). Importing this package imports numpy only; opencv and pydicom are imported
when a source that needs them is opened."""

from host.frames.frame import (
    VIEWS,
    FluoroFrame,
    FrameError,
    FrameRejected,
    FrameSource,
    FrameSourceError,
    FrameSourceLost,
    FrameStreamEnded,
    open_frame_source,
)

__all__ = [
    "VIEWS",
    "FluoroFrame",
    "FrameError",
    "FrameRejected",
    "FrameSource",
    "FrameSourceError",
    "FrameSourceLost",
    "FrameStreamEnded",
    "open_frame_source",
]
