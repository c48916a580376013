"""benches.runtime's pure parts: hyperfine JSON -> rows, the markdown section
that benches.compare keeps, and the command lines (no containers, no clocks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benches import runtime as bench

# The shape of `hyperfine --export-json` (1.15), times in seconds.
DOC: dict[str, Any] = {
    "results": [
        {
            "command": "pyctr-fast-runtime",
            "mean": 0.0121,
            "stddev": 0.0015,
            "median": 0.012,
            "user": 0.002,
            "system": 0.005,
            "min": 0.0101,
            "max": 0.0202,
            "times": [0.0101, 0.012, 0.0202],
            "exit_codes": [0, 0, 0],
        },
        {
            "command": "crun",
            "mean": 0.0245,
            "stddev": None,
            "median": 0.024,
            "user": 0.002,
            "system": 0.005,
            "min": 0.02,
            "max": 0.03,
            "times": [0.02, 0.024, 0.03],
            "exit_codes": [0, 0, 0],
        },
    ]
}


def test_parse_hyperfine_gives_milliseconds_in_command_order() -> None:
    ours, crun = bench.parse_hyperfine(DOC)
    assert ours.runs == 3
    assert ours.median == pytest.approx(12.0)
    assert ours.mean == pytest.approx(12.1)
    assert ours.sd == pytest.approx(1.5)
    assert (ours.min, ours.max) == (pytest.approx(10.1), pytest.approx(20.2))
    assert crun.sd is None


def test_parse_hyperfine_refuses_failed_runs() -> None:
    doc = {"results": [dict(DOC["results"][0], exit_codes=[0, 1, 0])]}
    with pytest.raises(ValueError, match="exit codes"):
        bench.parse_hyperfine(doc)


def test_cells_and_ratio_to_the_reference() -> None:
    ours, crun = bench.parse_hyperfine(DOC)
    assert bench.fmt_stats(ours, crun) == ["12.0", "10.1-20.2", "12.1 ± 1.5", "0.50x"]
    assert bench.fmt_stats(crun, crun)[2:] == ["24.5", "1.00x"]
    assert bench.fmt_stats(ours, None)[3] == "-"
    assert bench.fmt_stats(None, crun) == ["-", "-", "-", "-"]


def test_section_is_replaced_appended_and_kept(tmp_path: Path) -> None:
    one = f"{bench.SECTION_BEGIN}\nfirst\n{bench.SECTION_END}"
    two = f"{bench.SECTION_BEGIN}\nsecond\n{bench.SECTION_END}"
    doc = bench.splice("# title\n\ntable\n", one)
    assert doc == f"# title\n\ntable\n\n{one}\n"
    assert bench.splice(doc, two) == f"# title\n\ntable\n\n{two}\n"
    assert bench.splice("", one) == one + "\n"
    # benches.compare rewrites the whole file: the section survives.
    path = tmp_path / "benchmarks.md"
    path.write_text(doc)
    assert bench.section_of(bench.keep_section(path, "# new report\n")) == one
    assert bench.keep_section(tmp_path / "absent.md", "# new\n") == "# new\n"


def test_the_command_line_is_the_same_for_every_runtime(tmp_path: Path) -> None:
    lines = []
    for name in ("pyctr-fast-runtime", "crun"):
        rt = bench.Runtime(name, f"/bin/{name}", tmp_path / name, tmp_path / f"{name}.pid", "c1")
        line = rt.csd_line(tmp_path / "bundle")
        steps = [" create --bundle ", " start c1 ", " pidwait -F ", " delete c1;"]
        assert [line.index(s) for s in steps] == sorted(line.index(s) for s in steps)
        lines.append(line.replace(name, "RT"))
        argv = bench.hyperfine_argv(
            "hyperfine", "run", "cold", [rt], tmp_path / "bundle", 100, 10, tmp_path / "x.json"
        )
        assert argv[argv.index("--runs") + 1] == "100" and "-N" in argv
        assert argv[argv.index("--prepare") + 1] == bench.COLD_PREPARE
    assert lines[0] == lines[1]
