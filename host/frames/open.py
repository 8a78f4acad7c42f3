"""`open_frame_source`: the URL picks the source, as the serial port URL picks the link.

    sim:///run/sim-frames.sock   the simulator's frame stream on a Unix socket
    sim://127.0.0.1:5600         ... on a TCP port
    mem://name                   an in-process source (HIL, sweeps): host.frames.memory.PushFrameSource
    /dev/video0                  a video capture device (opencv)
    run.mp4 | .avi | .mkv | .mov a video file (opencv)
    a folder                     its .dcm or .png frames in name order (pydicom / opencv)

Each kind lives in its own module, imported only when that kind is opened, so that opening a sim://
source never imports opencv and nothing here is imported by `cementguard stop`.
"""

from __future__ import annotations

import os
from typing import Any

from host.frames.frame import FrameSource, FrameSourceError

__all__ = ["VIDEO_SUFFIXES", "open_source"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def open_source(url: str, **options: Any) -> FrameSource:
    if not isinstance(url, str) or not url:
        raise FrameSourceError(
            repr(url), "empty source; allowed sim://..., a video device, a video file or a folder"
        )
    if url.startswith("sim://"):
        from host.frames.sim_source import SimFrameSource

        return SimFrameSource(url, **options)
    if url.startswith("mem://"):
        from host.frames.memory import PushFrameSource

        return PushFrameSource(url, **options)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise FrameSourceError(
            url, f"unknown scheme {scheme!r}; allowed sim://, mem://, a device path, a video file or a folder"
        )
    if url.startswith("/dev/"):
        from host.frames.video_source import VideoFrameSource

        return VideoFrameSource(url, device=True, **options)
    if os.path.isdir(url):
        from host.frames.folder_source import FolderFrameSource

        return FolderFrameSource(url, **options)
    if url.lower().endswith(VIDEO_SUFFIXES):
        from host.frames.video_source import VideoFrameSource

        return VideoFrameSource(url, device=False, **options)
    if not os.path.exists(url):
        raise FrameSourceError(url, "no such file, folder or device")
    raise FrameSourceError(
        url,
        f"not a frame source; allowed sim://..., /dev/videoN, a video file ({', '.join(VIDEO_SUFFIXES)}) "
        "or a folder of .dcm or .png frames",
    )
