"""The benchmark suite's pure parts: the trace -> phase table (benches.phases),
throughput's batches and table (benches.throughput), the report's sections and
chart (benches.report), and the sections benches.compare keeps (no containers,
no wall-clock assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benches import phases, report, runtime, throughput
from benches.compare import Candidate

TRACE = """\
pyctr-trace     1.000 ms  (+  1.000)  python: cli imported
pyctr-trace     5.000 ms  (+  4.000)  python: spec built
pyctr-trace     6.000 ms  (+  1.000)  python: container registered
pyctr-trace     7.000 ms  (+  7.000)  engine: spawn
pyctr-trace     8.000 ms  (+  1.000)  engine: clone3 returned
pyctr-trace     8.500 ms  (+  0.500)  init: request received
pyctr-trace     8.600 ms  (+  0.100)  init: hostname, loopback
pyctr-trace     9.100 ms  (+  0.500)  init: spec mounts
pyctr-trace     9.400 ms  (+  0.300)  init: pivot_root
pyctr-trace     9.500 ms  (+  0.100)  init: process set up (rlimits, tty, user, caps, cwd)
pyctr-trace     9.700 ms  (+  0.200)  engine: program exec'd (socket closed)
pyctr-trace    10.500 ms  (+  3.500)  python: container exited
pyctr-trace    10.600 ms  (+  0.100)  python: container dir removed
some other stderr line
"""


def test_trace_lines_are_parsed_in_time_order() -> None:
    marks = phases.parse_trace("pyctr-trace     2.500 ms  (+  1.000)  b\n" + TRACE)
    assert marks[0] == ("python: cli imported", 1.0)
    assert ("b", 2.5) in marks
    assert [t for _, t in marks] == sorted(t for _, t in marks)
    assert phases.parse_trace("nothing here\n") == []


def test_intervals_are_charged_to_the_phase_of_the_mark_ending_them() -> None:
    split = phases.split_phases(phases.parse_trace(TRACE), end_ms=12.0)
    assert split["Python start-up + imports"] == pytest.approx(1.0)
    assert split["spec building + state files"] == pytest.approx(5.0)
    assert split["clone (spawn, clone3, child ready)"] == pytest.approx(2.5)
    assert split["network setup (hostname, loopback)"] == pytest.approx(0.1)
    assert split["mounts (rootfs, spec mounts, /dev, masks, pivot_root)"] == pytest.approx(0.8)
    assert split["exec (process set-up, hooks, execve)"] == pytest.approx(0.3)
    assert split["the program runs + wait"] == pytest.approx(0.8)
    assert split["teardown (dir removed, CLI exit)"] == pytest.approx(1.5)
    assert split["cgroup setup"] == 0.0
    assert sum(split.values()) == pytest.approx(12.0)


def test_cgroup_marks_and_unknown_marks() -> None:
    assert phases.phase_of("python: cgroup made") == "cgroup setup"
    assert phases.phase_of("engine: cgroups joined (7 v1 by the child)") == "cgroup setup"
    assert phases.phase_of("something new") == phases.OTHER


def test_phase_table_has_medians_and_hides_an_empty_other() -> None:
    col = {p: [1.0, 3.0, 2.0] for p in phases.PHASES if p != phases.OTHER}
    col[phases.OTHER] = [0.0]
    col["total"] = [10.0, 12.0, 11.0]
    lines = phases.render_phases({"CLI": col, "broken": {}}, 3)
    assert "| Python start-up + imports | 2.00 | - |" in lines
    assert "| **total (spawn to reap)** | 11.00 | - |" in lines
    assert not any(line.startswith("| other") for line in lines)
    assert phases.missing({"CLI": col, "broken": {}}) == ["phases of broken"]


def test_batches_run_every_index_once_and_report_failures() -> None:
    for workers in (1, 2):
        seen: list[int] = []
        throughput.batch(seen.append, 7, workers)
        assert sorted(seen) == list(range(7))

    def fail(i: int) -> None:
        raise OSError("boom")

    with pytest.raises(RuntimeError, match="OSError: boom"):
        throughput.batch(fail, 3, 2)


def _row(name: str, seq: list[float], par: list[float], count: int = 100) -> throughput.Row:
    row = throughput.Row(name, lambda i: None, count)
    row.totals = {"sequential": seq, "2 in parallel": par}
    return row


def test_throughput_table_ratios_scaling_and_skips() -> None:
    rows = [
        _row("`pyctr_fast.api.run(...)` (in-process)", [0.5, 0.6, 0.7], [0.3, 0.3, 0.3]),
        _row(throughput.REFERENCE, [1.0, 1.0, 1.0], [0.6, 0.6, 0.6]),
        _row("`podman run --rm`", [14.0, 15.0, 16.0], [8.0, 8.0, 8.0], count=20),
        throughput.Row("`pyctr-fast run` (CLI)", lambda i: None, 100, skipped="no CLI"),
    ]
    lines = throughput.render(rows, 3, 100)
    assert "| `pyctr_fast.api.run(...)` (in-process) |  | 0.60 | 0.60x | 0.30 | 0.50x |" in lines
    assert any("(20 per batch, scaled x5)" in line and "15.00x" in line for line in lines)
    assert "| `pyctr-fast run` (CLI) |  | skipped: no CLI | | | |" in lines
    assert throughput.missing(rows) == ["throughput `pyctr-fast run` (CLI)"]
    rows[1].totals["2 in parallel"] = []
    assert throughput.missing(rows[:2]) == [f"throughput {throughput.REFERENCE} 2 in parallel"]


def test_every_module_section_survives_a_compare_rewrite(tmp_path: Path) -> None:
    doc = "# old\n"
    for name in runtime.KEPT_SECTIONS:
        doc = runtime.splice(doc, report.section(name, [f"{name} body"]), name)
    path = tmp_path / "benchmarks.md"
    path.write_text(doc)
    new = runtime.keep_section(path, "# new report\n")
    assert new.startswith("# new report\n")
    for name in runtime.KEPT_SECTIONS:
        assert runtime.section_of(new, name) == report.section(name, [f"{name} body"])
    # A section the new text already has is not doubled.
    fresh = report.section("benches.phases", ["fresh"])
    assert runtime.keep_section(path, "# n\n\n" + fresh).count("benches.phases:begin") == 1


def test_machine_section_and_chart(tmp_path: Path) -> None:
    cands = [
        Candidate("`crun run`", lambda: 0.0, cold=[10.0, 12.0], warm=[8.0, 9.0]),
        Candidate("`udocker`", lambda: 0.0, skipped="not installed"),
        Candidate("`runc run`", lambda: 0.0, cold=[1.0], warm=[], error="boom"),
    ]
    rows = report.chart_rows(cands)
    assert rows == [("`crun run`", 11.0, 8.5)]
    text = report.machine_section(["crun: crun version 1.8"], "docs/benchmarks.png", True, 0.5)
    assert text.startswith("<!-- benches.report:begin -->")
    assert "crun: crun version 1.8" in text and "(benchmarks.png)" in text
    pytest.importorskip("matplotlib")
    png = tmp_path / "chart.png"
    report.draw_chart(rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
