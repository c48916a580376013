"""The benchmark suite's pure parts: the trace -> phase table (benches.phases),
throughput's batches and table (benches.throughput), the networking rows' table
and the host clean-up's nft commands (benches.network, benches.network_host),
the report's sections and chart (benches.report), and the sections
benches.compare keeps (no containers, no wall-clock assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benches import network, network_host, phases, report, runtime, throughput
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


BRIDGE_TRACE = """\
pyctr-trace     4.000 ms  (+  4.000)  python: container registered
pyctr-trace     5.000 ms  (+  1.000)  python: network: address leased
pyctr-trace     6.000 ms  (+  1.000)  python: network: namespace made
pyctr-trace     7.500 ms  (+  1.500)  python: network attached
pyctr-trace     9.000 ms  (+  9.000)  engine: spawn
pyctr-trace    10.000 ms  (+  1.000)  engine: program exec'd (socket closed)
pyctr-trace    11.000 ms  (+  1.000)  python: container exited
pyctr-trace    30.000 ms  (+ 19.000)  python: network detached
"""


def _net_row(engine: str, mode: str, wall: list[float], start: list[float] | None = None,
             trace: str = TRACE) -> network.Row:  # fmt: skip
    row = network.Row(f"`{engine} {mode}`", engine, mode, [], wall=wall)
    if start is not None:
        row.start = start
        row.marks = [network.trace_marks(trace) for _ in start]
    return row


def test_trace_marks_count_from_the_spawn_and_name_the_exec() -> None:
    marks = network.trace_marks(TRACE)
    assert marks["spawn"] == 0.0 and marks["exec"] == pytest.approx(9.7)
    assert marks["python: container registered"] == pytest.approx(6.0)
    assert "some other stderr line" not in marks


def test_network_table_ratios_added_cost_phases_and_skips() -> None:
    ours, pod = network.OURS, network.PODMAN
    rows = [
        _net_row(ours, "none", [20.0, 30.0, 40.0], [10.0, 10.0, 12.0]),
        _net_row(ours, "bridge", [50.0, 60.0, 80.0], [13.0, 14.0, 16.0], BRIDGE_TRACE),
        network.Row("`pyctr-fast host`", ours, "host", [], skipped="no host"),
        _net_row(pod, "none", [100.0, 100.0, 100.0]),
        _net_row(pod, "bridge", [300.0, 250.0, 400.0]),
    ]
    lines = network.render(rows, 3, 0.2, ["a note"])
    text = "\n".join(lines)
    assert "| `pyctr-fast none` |  | 30.0 | 20.0-40.0 | 1.00x | 0.30x | 10.0 | 10.0-12.0 |" in lines
    # bridge / none per round: 2.5, 2.0, 2.0; / podman's default: 1/6, 0.24, 0.2
    assert (
        "| `pyctr-fast bridge` |  | 60.0 | 50.0-80.0 | 2.00x | 0.20x | 14.0 | 13.0-16.0 |" in lines
    )
    assert "| `pyctr-fast host` |  | skipped: no host | | | | | |" in lines
    assert "| `podman bridge` |  | 300.0 | 250.0-400.0 | 3.00x | - | - | - |" in lines
    # added over none, paired: start 3/4/4, start->exit 30/30/40, podman 200/150/300
    assert "| bridge (podman: default) | +4.0 | +30.0 | +200.0 |" in lines
    assert "| `--network host` | - | - | - |" in lines
    assert "bridge adds <= 5 ms to our start: +4.0 ms in this run (met)" in text
    assert "| **bridge: endpoint set-up, total** | - | 3.50 | 3.5-3.5 |" in lines
    assert "| spawn, init, exec (after the set-up) | 3.70 | 2.50 | 2.5-2.5 |" in lines
    assert "| bridge: teardown after the exit (start->exit only) | - | 19.00 | 19.0-19.0 |" in lines
    assert lines[-1] == "- a note"
    assert network.missing(rows) == ["network `pyctr-fast host` (skipped: no host)"]
    rows[3].skipped = "podman not installed"  # a peer may be skipped
    rows[4].error = "exited 125"  # but not fail once measured
    assert network.missing(rows[3:]) == ["network `podman bridge` (exited 125)"]
    rows[1].marks = [network.trace_marks(TRACE)]  # no bridge marks
    assert network.missing(rows[1:2]) == ["network: the bridge's set-up marks"]
    section = network.section(lines)
    assert section.startswith("<!-- benches.network:begin -->")
    assert "benches.network" in runtime.KEPT_SECTIONS


def _nft(*entities: tuple[str, dict[str, object]]) -> list[dict[str, object]]:
    return [{kind: body} for kind, body in entities]


def test_firewall_cleanup_removes_only_what_podman_added() -> None:
    def chain(table: str, name: str, hook: bool = False) -> tuple[str, dict[str, object]]:
        body: dict[str, object] = {"family": "ip", "table": table, "name": name}
        return ("chain", {**body, "hook": "forward"} if hook else body)

    def rule(table: str, chain: str, handle: int, jump: str = "") -> tuple[str, dict[str, object]]:
        expr = [{"counter": None}, {"jump": {"target": jump}}] if jump else [{"accept": None}]
        return ("rule", {"family": "ip", "table": table, "chain": chain, "handle": handle,
                         "expr": expr})  # fmt: skip

    before = _nft(
        ("table", {"family": "ip", "name": "pyctr"}),
        chain("pyctr", "postrouting", hook=True),
        rule("pyctr", "postrouting", 3, "masq-pyctr0"),
    )
    now = before + _nft(
        rule("pyctr", "postrouting", 9, "masq-other"),  # somebody else's: kept
        ("table", {"family": "ip", "name": "filter"}),
        chain("filter", "FORWARD", hook=True),
        chain("filter", "CNI-FORWARD"),
        chain("filter", "CNI-ADMIN"),
        rule("filter", "FORWARD", 5, "CNI-FORWARD"),
        rule("filter", "FORWARD", 6),  # not podman's: kept
        rule("filter", "CNI-FORWARD", 7, "CNI-ADMIN"),
    )
    assert network_host.firewall_cleanup(before, now) == [
        ["delete", "rule", "ip", "filter", "FORWARD", "handle", "5"],
        ["flush", "chain", "ip", "filter", "CNI-FORWARD"],
        ["flush", "chain", "ip", "filter", "CNI-ADMIN"],
        ["delete", "chain", "ip", "filter", "CNI-FORWARD"],
        ["delete", "chain", "ip", "filter", "CNI-ADMIN"],
    ]
    # A new iptables-nft table goes only once nothing but empty base chains is left.
    assert network_host.empty_new_tables(before, now) == []
    filter_table = ("table", {"family": "ip", "name": "filter"})
    after = before + _nft(filter_table, chain("filter", "FORWARD", hook=True))
    assert network_host.empty_new_tables(before, after) == [["delete", "table", "ip", "filter"]]
    assert network_host.firewall_cleanup(before, before) == []
