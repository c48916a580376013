"""pytest-benchmark benches of the in-process API (not part of the test suite):

python -m pytest benches --benchmark-only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytest_benchmark")


def test_bench_api_run_true(benchmark: Any, bench_rootfs: Path, bench_root: Path) -> None:
    from pyctr_fast import api

    def run() -> int:
        return api.run(str(bench_rootfs), ["/bin/true"], network="none", root=str(bench_root))

    assert benchmark(run) == 0


def test_bench_api_run_true_read_only(benchmark: Any, bench_rootfs: Path, bench_root: Path) -> None:
    from pyctr_fast import api

    def run() -> int:
        return api.run(
            str(bench_rootfs), ["/bin/true"], network="none", read_only=True, root=str(bench_root)
        )

    assert benchmark(run) == 0


def test_bench_api_run_with_volume_and_user(
    benchmark: Any, bench_rootfs: Path, bench_root: Path, tmp_path: Path
) -> None:
    from pyctr_fast import api

    def run() -> int:
        return api.run(
            str(bench_rootfs),
            ["/bin/true"],
            network="none",
            user="0:0",
            volumes=[f"{tmp_path}:/data:ro"],
            env={"A": "1"},
            root=str(bench_root),
        )

    assert benchmark(run) == 0
