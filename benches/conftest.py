"""Fixtures for the pytest-benchmark benches (``python -m pytest benches``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benches.rootfs import build_rootfs


@pytest.fixture(scope="session")
def bench_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    return build_rootfs(tmp_path_factory.mktemp("bench") / "rootfs")


@pytest.fixture
def bench_root(tmp_path: Path) -> Path:
    return tmp_path / "pyctr-root"
