"""An image folder entry swapped for a special file between the scan and the read (issue 17):
the type is checked on the opened descriptor, so the read never blocks on a FIFO or reads a
device, and the data prep fails in one line leaving nothing behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cdarts.config import DataConfig
from cdarts.data.regular_file import read_regular_file
from cdarts.data.sources import SourceData
from cdarts.errors import DataError
from cdarts.runners import data_prep
from tests.test_data_prep import write_image_folder


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device_link(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path) -> None:
    path.mkdir()


SWAPS: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (_fifo, "is no longer a regular file"),
    "symlink to /dev/zero": (_device_link, "is no longer a regular file"),
    "directory": (_directory, "is no longer a regular file"),
    "removed": (lambda path: None, "No such file or directory"),
}


@pytest.mark.parametrize("case", list(SWAPS))
def test_an_entry_swapped_after_the_scan_is_refused_on_the_open_file(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, fragment = SWAPS[case]
    root = write_image_folder(tmp_path / "imgs", classes=2, per_class=6, with_val=False)
    scanned = data_prep.read_source

    def scan_then_swap(config: DataConfig) -> SourceData:
        source = scanned(config)
        victim = source.train.files[-1]  # type: ignore[union-attr]
        victim.unlink()
        make(victim)
        return source

    monkeypatch.setattr(data_prep, "read_source", scan_then_swap)
    out = tmp_path / "out"
    with pytest.raises(DataError) as caught:
        data_prep.run_data_prep(DataConfig(source="imagefolder", location=str(root)), 0, out)
    message = str(caught.value)
    assert "\n" not in message and fragment in message and str(root) in message, message
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_a_regular_file_and_a_link_to_one_are_read_whole(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000
    (tmp_path / "image.png").write_bytes(payload)
    (tmp_path / "link.png").symlink_to(tmp_path / "image.png")
    assert read_regular_file(tmp_path / "image.png") == payload
    assert read_regular_file(tmp_path / "link.png") == payload


def test_a_file_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.png").write_bytes(b"x" * 101)
    with pytest.raises(DataError, match="101 bytes, more than 100 for one image"):
        read_regular_file(tmp_path / "huge.png", limit=100)
