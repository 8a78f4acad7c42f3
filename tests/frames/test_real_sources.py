"""Real sources on real files: PNG and DICOM folders written here (opencv, pydicom), a video file
written with cv2.VideoWriter, and the bad input of each (issue 15, "Bad input")."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from host.frames import (
    FluoroFrame,
    FrameRejected,
    FrameSourceError,
    FrameSourceLost,
    FrameStreamEnded,
    open_frame_source,
)
from host.frames.folder_source import FolderFrameSource
from host.frames.video_source import VideoFrameSource


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def drain(src: object, frames: list[FluoroFrame], timeout_s: float = 1.0) -> None:
    """Read until the source raises (what it raises is the caller's to check)."""
    while True:
        frame = src.read(timeout_s)  # type: ignore[attr-defined]
        assert frame is not None
        frames.append(frame)


def read_all(src: object) -> list[FluoroFrame]:
    frames: list[FluoroFrame] = []
    with pytest.raises(FrameStreamEnded):
        drain(src, frames)
    return frames


# -- PNG ----------------------------------------------------------------------------------------
def test_a_png_folder_gives_its_frames_in_name_order(tmp_path: Path) -> None:
    images = [np.full((40, 30), 10 * (i + 1), np.uint8) for i in range(3)]
    for i, img in enumerate(images):
        assert cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), img)
    (tmp_path / "notes.txt").write_text("not a frame")
    src = open_frame_source(str(tmp_path), fps=10, pixel_mm=0.25, clock=Clock(5.0))
    assert isinstance(src, FolderFrameSource)
    frames = read_all(src)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.t_us for f in frames] == [5_000_000, 5_100_000, 5_200_000]
    assert all(f.bit_depth == 8 and f.pixel_mm == 0.25 and f.view == "lateral" for f in frames)
    assert [int(f.pixels[0, 0]) for f in frames] == [10, 20, 30]


def test_a_16_bit_png_takes_the_operators_bit_depth_and_refuses_values_above_it(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((32, 32), 4095, np.uint16))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((32, 32), 5000, np.uint16))
    src = open_frame_source(str(tmp_path), bit_depth=12)
    first = src.read(0.0)
    assert first is not None
    assert first.bit_depth == 12
    assert first.pixels.dtype == np.uint16
    with pytest.raises(FrameRejected, match=r"pixel value 5000 is not allowed; allowed below 2\*\*12"):
        src.read(0.0)


def test_a_colour_png_is_read_as_grey(tmp_path: Path) -> None:
    bgr = np.dstack([np.full((20, 20), v, np.uint8) for v in (50, 100, 150)])
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    frame = open_frame_source(str(tmp_path)).read(0.0)
    assert frame is not None
    assert frame.pixels.shape == (20, 20)
    assert int(frame.pixels[0, 0]) == round(0.114 * 50 + 0.587 * 100 + 0.299 * 150)


def test_another_size_and_a_truncated_png_are_rejected_and_the_folder_goes_on(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((32, 32), np.uint8))
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((32, 48), np.uint8))
    (tmp_path / "2.png").write_bytes((tmp_path / "0.png").read_bytes()[:20])
    cv2.imwrite(str(tmp_path / "3.png"), np.zeros((32, 32), np.uint8))
    src = open_frame_source(str(tmp_path))
    assert src.read(0.0) is not None
    with pytest.raises(FrameRejected, match="size 32x48 is not allowed; allowed 32x32"):
        src.read(0.0)
    with pytest.raises(
        FrameRejected, match=r"frame 2: file 2.png is not allowed; allowed a PNG frame: not a"
    ):
        src.read(0.0)
    last = src.read(0.0)
    assert last is not None
    assert last.index == 3


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({}, "no .dcm or .png frames in the folder"),
        ({"a.png": b"x", "b.dcm": b"y"}, "both DICOM and PNG frames .1 .dcm, 1 .png.; allowed one kind"),
    ],
)
def test_a_folder_without_one_kind_of_frames_is_refused(tmp_path: Path, files: dict, match: str) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(FrameSourceError, match=match):
        open_frame_source(str(tmp_path))


def test_a_png_larger_than_its_bound_is_rejected_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import host.frames.folder_source as folder

    cv2.imwrite(str(tmp_path / "big.png"), np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    monkeypatch.setattr(folder, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(FrameRejected, match=r"big.png.*bytes is too large; allowed at most 100 bytes"):
        open_frame_source(str(tmp_path)).read(0.0)


# -- DICOM --------------------------------------------------------------------------------------
def write_dicom(path: Path, frames: np.ndarray, **tags: object) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.2"  # X-Ray Radiofluoroscopic Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RF"
    n, rows, cols = frames.shape
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if n > 1:
        ds.NumberOfFrames = n
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_a_dicom_folder_honours_bits_stored_spacing_and_rate(tmp_path: Path) -> None:
    px = np.arange(16 * 16, dtype=np.uint16).reshape(1, 16, 16) * 16  # up to 4080
    noisy = px | 0xF000  # garbage in the 4 bits above BitsStored = 12
    write_dicom(tmp_path / "001.dcm", noisy, PixelSpacing=[0.15, 0.15], FrameTime=100.0)
    write_dicom(tmp_path / "002.dcm", px)
    a, b = read_all(open_frame_source(str(tmp_path), clock=Clock(2.0)))
    assert a.bit_depth == 12
    assert np.array_equal(a.pixels, px[0])  # the unused bits are masked off
    assert a.pixel_mm == pytest.approx(0.15)
    assert b.pixel_mm == pytest.approx(0.3)  # no spacing in the file: the operator's default
    assert (a.t_us, b.t_us) == (2_000_000, 2_100_000)  # FrameTime 100 ms


def test_monochrome1_and_a_negative_slope_are_inverted_to_bright_is_more_x_rays(tmp_path: Path) -> None:
    px = np.tile(np.array([[0, 1000], [3000, 4095]], dtype=np.uint16), (8, 8))[None]
    write_dicom(tmp_path / "a.dcm", px, PhotometricInterpretation="MONOCHROME1")
    write_dicom(tmp_path / "b.dcm", px, RescaleSlope=-1.0, RescaleIntercept=4095.0)
    write_dicom(tmp_path / "c.dcm", px, RescaleSlope=2.0, RescaleIntercept=-100.0)
    a, b, c = read_all(open_frame_source(str(tmp_path)))
    assert np.array_equal(a.pixels, 4095 - px[0])
    assert np.array_equal(b.pixels, 4095 - px[0])
    assert np.array_equal(c.pixels, px[0])  # a positive linear rescale keeps the detector values


def test_a_multi_frame_dicom_gives_each_frame_its_own_index_and_time(tmp_path: Path) -> None:
    cine = np.stack([np.full((16, 16), 100 * (k + 1), np.uint16) for k in range(4)])
    write_dicom(tmp_path / "run.dcm", cine, CineRate=15)
    frames = read_all(open_frame_source(str(tmp_path), clock=Clock(0.0)))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [int(f.pixels[0, 0]) for f in frames] == [100, 200, 300, 400]
    assert [f.t_us for f in frames] == [round(k / 15 * 1e6) for k in range(4)]


def test_a_corrupt_dicom_is_rejected_naming_the_file_and_the_next_one_is_read(tmp_path: Path) -> None:
    good = np.full((1, 16, 16), 7, np.uint16)
    write_dicom(tmp_path / "1.dcm", good)
    (tmp_path / "2.dcm").write_bytes(b"DICM but not really" * 10)
    data = (tmp_path / "1.dcm").read_bytes()
    (tmp_path / "3.dcm").write_bytes(data[: len(data) - 200])  # pixel data cut short
    write_dicom(tmp_path / "4.dcm", good)
    src = open_frame_source(str(tmp_path))
    assert src.read(0.0) is not None
    with pytest.raises(
        FrameRejected, match=r"file 2.dcm is not allowed; allowed a DICOM frame: not a readable"
    ):
        src.read(0.0)
    with pytest.raises(FrameRejected, match=r"file 3.dcm is not allowed; allowed a DICOM frame"):
        src.read(0.0)
    last = src.read(0.0)
    assert last is not None
    assert last.index == 3


def test_a_colour_dicom_is_refused(tmp_path: Path) -> None:
    write_dicom(tmp_path / "c.dcm", np.zeros((1, 16, 16), np.uint16), PhotometricInterpretation="RGB")
    with pytest.raises(
        FrameRejected, match="PhotometricInterpretation RGB; allowed MONOCHROME1 or MONOCHROME2"
    ):
        open_frame_source(str(tmp_path)).read(0.0)


# -- video ---------------------------------------------------------------------------------------
def write_video(path: Path, n: int = 5, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.full((48, 64, 3), 40 * k + 20, np.uint8))
    writer.release()


def test_a_video_file_gives_grey_frames_on_its_own_timing_then_ends(tmp_path: Path) -> None:
    path = tmp_path / "run.avi"
    write_video(path)
    src = open_frame_source(str(path), max_fps=10, clock=Clock(3.0))
    assert isinstance(src, VideoFrameSource)
    frames = read_all(src)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.pixels.shape == (48, 64) and f.pixels.dtype == np.uint8 for f in frames)
    assert [f.t_us - frames[0].t_us for f in frames] == [0, 100_000, 200_000, 300_000, 400_000]
    assert all(abs(int(f.pixels[10, 10]) - (40 * k + 20)) <= 3 for k, f in enumerate(frames))


def test_a_device_that_stops_delivering_is_the_source_lost(tmp_path: Path) -> None:
    """A video file opened as a device stands in for a grabber: its end is the device going away."""
    path = tmp_path / "grabber.avi"
    write_video(path, n=3)
    src = VideoFrameSource(str(path), device=True)
    frames: list[FluoroFrame] = []
    with pytest.raises(FrameSourceLost, match="the device stopped delivering frames") as info:
        drain(src, frames, timeout_s=5.0)
    assert len(frames) == 3
    assert not isinstance(info.value, FrameStreamEnded)
    with pytest.raises(FrameSourceLost):  # and it stays lost
        src.read(0.0)
    src.close()


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("junk.mp4", b"\x00not a video" * 100, "not a video opencv can decode"),
        ("missing.avi", None, "no such video file"),
    ],
)
def test_a_video_file_that_is_not_one_is_refused(
    tmp_path: Path, name: str, content: bytes | None, match: str
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(FrameSourceError, match=match):
        open_frame_source(str(tmp_path / name))


def test_a_missing_video_device_is_refused() -> None:
    with pytest.raises(FrameSourceError, match="/dev/video-cementguard-test: no such video device"):
        open_frame_source("/dev/video-cementguard-test")
