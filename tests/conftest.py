"""Fixtures shared by the test files."""
import os
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
