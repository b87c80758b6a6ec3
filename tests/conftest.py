"""Fixtures shared by the test files."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from browser import find_chromium

REPO = Path(__file__).resolve().parents[1]
MOCAP = REPO.parent / "shared" / "data" / "mocap"


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory) -> Path:
    """The dataset cache: the developer's data_cache/ when built, else one built for this run from
    ../shared/data/mocap (as on a fresh clone in CI, about 20 s)."""
    cache = REPO / "data_cache"
    if (cache / "index.json").exists():
        return cache
    if not MOCAP.is_dir():
        pytest.skip("no ../shared/data/mocap here")
    from engine.body.body_model import load_default_body
    from engine.data.dataset import build

    cache = tmp_path_factory.mktemp("data_cache")
    build(MOCAP, cache, load_default_body(), REPO.parent / "shared" / "data" / "cmu_index" / "cmu_mocap_index.csv")
    return cache


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable for the browser tests (tests/browser.py). Without one they skip on a
    developer's machine, but fail in CI, where .ci/run installs it: a skip there would hide them."""
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run should have installed Debian's chromium")
        pytest.skip("Chromium is not installed here (Debian: apt-get install chromium)")
    return exe


class SmallDisk:
    """A real 1 MiB file system (tmpfs) at `path`, for the tests of a disk that fills up."""

    def __init__(self, path: Path):
        self.path = path

    def fill(self, leave: int) -> Path:
        """Fill it until about `leave` bytes are free; returns the filler file (unlink: room again)."""
        filler = self.path / "filler"
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * max(0, shutil.disk_usage(self.path).free - leave))
                f.flush()
            except OSError:
                pass
        return filler


@pytest.fixture
def small_disk(tmp_path) -> SmallDisk:
    """A SmallDisk mounted for the test. Mounting needs root and a container that allows it;
    elsewhere these tests skip, and the fault suite's full-disk run (a file-size limit, which
    needs neither) still covers the recorder's failing writes."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
