"""A folder of frames: DICOM (`.dcm`, pydicom) or PNG (`.png`, opencv), in file-name order.

DICOM, as a fluoroscopy (RF/XA) export writes it:

- `BitsStored` bits of each stored value count (the rest are masked off); signed data
  (`PixelRepresentation` 1) is offset to unsigned;
- `RescaleSlope` / `RescaleIntercept` are applied and the result is laid linearly on the detector's
  range 0 .. 2**BitsStored - 1: a linear map normalised to the detector range, so a negative slope
  inverts the image and a positive one leaves the stored values' order as it is;
- `MONOCHROME1` (minimum = white) is inverted to the convention here (bright = more X-rays through);
  other photometric interpretations (colour) are refused;
- a multi-frame file (`NumberOfFrames`) gives its frames in order, each its own index;
- the pixel spacing is `PixelSpacing`, else `ImagerPixelSpacing` divided by
  `EstimatedRadiographicMagnificationFactor`, else the `pixel_mm` option (the operator's calibration);
- the rate is the `fps` option, else the file's `FrameTime` (ms) or `CineRate`; with a rate the frames
  are stamped at open time + k / rate on the host's monotonic clock, without one at the time read.

PNG: 8-bit (bit depth 8) or 16-bit (bit depth from the `bit_depth` option, else 16), grey or colour
(converted to grey). Every file is read whole with a size bound (host/file_limits.py). A file that
cannot be decoded (a corrupt DICOM, a truncated PNG) is a `FrameRejected` naming the file and why; the
source goes on with the next file. The folder's end is `FrameStreamEnded`.
"""

from __future__ import annotations

import io
import logging
import os
from collections import deque
from typing import Any

import numpy as np

from host.file_limits import MAX_DICOM_BYTES, MAX_IMAGE_BYTES, FileRejectedError, read_regular
from host.frames.checks import FrameChecks, SourceOptions, read_timeout, split_clock
from host.frames.frame import FluoroFrame, FrameRejected, FrameSourceError, FrameStreamEnded

__all__ = ["MAX_FOLDER_FILES", "FolderFrameSource", "dicom_frames"]

log = logging.getLogger(__name__)

MAX_FOLDER_FILES = 100_000
"""An hour at 30 frames/s is 108 000 single-frame files; beyond that, use multi-frame files or video."""
KINDS = {".dcm": "DICOM", ".png": "PNG"}


class _Decoded:
    """Frames of one file: grey arrays, their bit depth, the spacing and rate the file states."""

    def __init__(
        self, images: list[np.ndarray], bit_depth: int, pixel_mm: float | None, fps: float | None
    ) -> None:
        self.images = images
        self.bit_depth = bit_depth
        self.pixel_mm = pixel_mm
        self.fps = fps


class _UndecodableError(Exception):
    """A file that is not what its name says: the reason, for FrameRejected."""


def dicom_frames(data: bytes) -> _Decoded:
    """The frames of one DICOM file, on the detector convention (see the module docstring)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
        raise _UndecodableError(f"not a readable DICOM file ({exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        allowed = "allowed MONOCHROME1 or MONOCHROME2"
        raise _UndecodableError(f"PhotometricInterpretation {photometric}; {allowed}")
    try:
        raw = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many kinds here (no handler, truncated data, bad VR)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown transfer syntax")
        raise _UndecodableError(f"its pixel data cannot be decoded ({syntax}: {exc})") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3 or raw.shape[0] != frames:
        raise _UndecodableError(f"pixel data of shape {raw.shape} for NumberOfFrames {frames}")
    allocated = int(ds.get("BitsAllocated", 8 * raw.dtype.itemsize))
    stored = int(ds.get("BitsStored", allocated))
    if not 8 <= stored <= 16:
        raise _UndecodableError(f"BitsStored {stored}; allowed 8..16")
    top = (1 << stored) - 1
    values = raw.astype(np.int64)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        values = values + (1 << (stored - 1))  # signed -> unsigned
    values &= top
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    real = values * slope + intercept
    lo, hi = sorted((intercept, top * slope + intercept))
    out = np.rint((real - lo) * (top / (hi - lo))).astype(np.int64)
    if photometric == "MONOCHROME1":
        out = top - out
    dtype = np.uint8 if stored == 8 else np.uint16
    images = [np.ascontiguousarray(f.astype(dtype)) for f in out]
    return _Decoded(images, stored, _dicom_spacing(ds), _dicom_fps(ds))


def _dicom_spacing(ds: Any) -> float | None:
    spacing = ds.get("PixelSpacing") or None
    if spacing is None and ds.get("ImagerPixelSpacing"):
        factor = float(ds.get("EstimatedRadiographicMagnificationFactor", 1.0) or 1.0)
        return float(ds.ImagerPixelSpacing[0]) / factor
    return None if spacing is None else float(spacing[0])


def _dicom_fps(ds: Any) -> float | None:
    frame_time_ms = ds.get("FrameTime")
    if frame_time_ms:
        return 1000.0 / float(frame_time_ms)
    rate = ds.get("CineRate") or ds.get("RecommendedDisplayFrameRate")
    return float(rate) if rate else None


def png_frame(data: bytes, bit_depth: int | None) -> _Decoded:
    import cv2

    from host.frames.video_source import to_grey

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise _UndecodableError("not a readable PNG file")
    if image.dtype not in (np.uint8, np.uint16):
        raise _UndecodableError(f"sample type {image.dtype}; allowed 8 or 16 bit")
    try:
        grey = to_grey(image)
    except ValueError as exc:
        raise _UndecodableError(f"image of shape {exc}; allowed grey or colour") from None
    depth = 8 if grey.dtype == np.uint8 else (bit_depth or 16)
    return _Decoded([np.ascontiguousarray(grey)], depth, None, None)


class FolderFrameSource:
    """A FrameSource on a folder of .dcm or .png frames."""

    def __init__(self, folder: str, **options: Any) -> None:
        self.url = folder
        self._clock, rest = split_clock(options)
        self.options = SourceOptions.parse(rest)
        self.checks = FrameChecks(folder, self.options)
        try:
            names = []
            with os.scandir(folder) as entries:
                for entry in entries:
                    if os.path.splitext(entry.name)[1].lower() in KINDS and entry.is_file():
                        names.append(entry.name)
                        if len(names) > MAX_FOLDER_FILES:
                            raise FrameSourceError(folder, f"more than {MAX_FOLDER_FILES} frame files")
        except OSError as exc:
            raise FrameSourceError(folder, f"cannot list the folder: {exc.strerror}") from None
        kinds = {os.path.splitext(n)[1].lower() for n in names}
        if not names:
            raise FrameSourceError(folder, "no .dcm or .png frames in the folder; allowed a folder of either")
        if len(kinds) > 1:
            counts = ", ".join(f"{sum(n.lower().endswith(k) for n in names)} {k}" for k in sorted(kinds))
            raise FrameSourceError(
                folder, f"both DICOM and PNG frames ({counts}); allowed one kind per folder"
            )
        self.kind = KINDS[kinds.pop()]
        self._files = deque(sorted(names))
        self._pending: deque[tuple[np.ndarray, int, float]] = deque()
        self._index = 0
        self._t0 = self._clock()
        self._fps = self.options.fps
        self._ended: FrameStreamEnded | None = None
        self.files_read = 0

    def _load_next_file(self) -> None:
        name = self._files.popleft()
        path = os.path.join(self.url, name)
        index = self._index
        try:
            if self.kind == "DICOM":
                decoded = dicom_frames(read_regular(path, MAX_DICOM_BYTES))
            else:
                decoded = png_frame(read_regular(path, MAX_IMAGE_BYTES), self.options.bit_depth)
        except (_UndecodableError, FileRejectedError, OSError) as exc:
            self._index += 1  # the file had a place in the sequence: leave its gap
            raise FrameRejected(self.url, "file", name, f"a {self.kind} frame: {exc}", index) from None
        self.files_read += 1
        if self._fps is None and decoded.fps is not None:
            self._fps = decoded.fps
        spacing = decoded.pixel_mm or self.options.pixel_mm
        for image in decoded.images:
            self._pending.append((image, decoded.bit_depth, spacing))

    def read(self, timeout_s: float) -> FluoroFrame | None:
        read_timeout(timeout_s)  # checked like every source's; a file is read at once
        if self._ended is not None:
            raise self._ended
        while not self._pending:
            if not self._files:
                self._ended = FrameStreamEnded(self.url, f"end of the folder after {self._index} frames")
                raise self._ended
            self._load_next_file()
        image, depth, spacing = self._pending.popleft()
        index = self._index
        self._index += 1
        t_s = self._t0 + index / self._fps if self._fps else self._clock()
        frame = FluoroFrame(
            index=index,
            t_us=round(t_s * 1e6),
            view=self.options.view,
            pixels=image,
            bit_depth=depth,
            pixel_mm=spacing,
            source=self.url,
        )
        return self.checks.check(frame)

    def close(self) -> None:
        if self._ended is None:
            self._ended = FrameStreamEnded(self.url, "closed by the reader")
        self._pending.clear()
        self._files.clear()
