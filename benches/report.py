"""The whole benchmark table in one command: every module's rows, one report.

    python -m benches.report [--quick] [--out docs/benchmarks.md] [--chart docs/benchmarks.png]

Runs, one after the other (each module's own functions, its own method and
clean-up): start latency (benches.compare, with udocker), the OCI runtime
(benches.runtime, hyperfine), throughput (benches.throughput), the CLI's phase
breakdown (benches.phases), start latency with networking (benches.network:
none/host/bridge beside podman's), detached containers (benches.lifecycle, into
docs/benchmarks-lifecycle.md) and pull (benches.pull, into
docs/benchmarks-pull.md).  docs/benchmarks.md gets the start-latency table and
the sections of the others between their markers, plus this run's machine
(kernel, cgroup mode, CPU) and the peers' versions; docs/benchmarks.png is a
chart of the start-latency rows (matplotlib, the ``bench`` extra).

``--quick`` (CI's smoke, under 3 minutes): few rounds of everything, every
file goes to a temporary directory (removed), and the exit status is 1 unless
every row that was not skipped has a number (ours must never be skipped).
Never compare numbers from ``--quick``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benches import compare, lifecycle, network, phases, pull, runtime, throughput
from benches.compare import Candidate, _first_line, cgroup_mode, cpu_model
from benches.runtime import markers, splice
from benches.udocker import NAME as UDOCKER

#: Peers whose version the report records: (label, argv).
PEERS = (
    ("crun", ["crun", "--version"]),
    ("runc", ["runc", "--version"]),
    ("podman", ["podman", "--version"]),
    ("conmon", ["conmon", "--version"]),
    ("hyperfine", ["hyperfine", "--version"]),
    ("skopeo", ["skopeo", "--version"]),
    ("umoci", ["umoci", "--version"]),
    ("proot (udocker P1)", ["dpkg-query", "-W", "-f=${Version}", "proot"]),
)


def log(msg: str) -> None:
    print(f"[benches.report {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def versions(cands: Sequence[Candidate]) -> list[str]:
    """``label: version`` of each peer found (udocker's from its row's set-up)."""
    out = []
    for label, argv in PEERS:
        found = shutil.which(argv[0])
        line = _first_line([found, *argv[1:]]) if found else ""
        out.append(f"{label}: {line or 'not installed'}")
    ud = next((c for c in cands if c.name == UDOCKER), None)
    out.append(f"udocker: {ud.version if ud and ud.version else 'skipped'}")
    return out


def section(name: str, lines: Sequence[str]) -> str:
    begin, end = markers(name)
    return "\n".join([begin, *lines, end])


def machine_section(vers: Sequence[str], chart: str | None, quick: bool, load: float) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## This run (`python3 -m benches.report" + (" --quick" if quick else "") + "`)",
        "",
        f"- date: {now}; 1-min load average at the start {load:.2f}",
        f"- kernel: {platform.release()}; cgroup mode: {cgroup_mode()}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores); Python {platform.python_version()}",
        "- peers: " + "; ".join(vers),
        "- detached containers (memory, `run -d`, `exec`): `docs/benchmarks-lifecycle.md`; "
        "pull + unpack: `docs/benchmarks-pull.md`",
    ]
    if chart:
        lines += ["", f"![start->exit latency, median ms]({Path(chart).name})"]
    return section("benches.report", lines)


def chart_rows(cands: Sequence[Candidate]) -> list[tuple[str, float, float]]:
    """(name, cold median, warm median) of every latency row with numbers."""
    return [
        (c.name, statistics.median(c.cold), statistics.median(c.warm))
        for c in cands
        if c.skipped is None and not c.error and c.cold and c.warm
    ]


def draw_chart(rows: Sequence[tuple[str, float, float]], path: Path) -> None:
    """Horizontal bars, cold and warm median ms of each row, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n.replace("`", "") for n, _, _ in rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [c for _, c, _ in rows], height=0.4, label="cold")
    ax.barh([y + 0.2 for y in ys], [w for _, _, w in rows], height=0.4, label="warm")
    ax.set_yticks(list(ys))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("start->exit of /bin/true, median ms (lower is better)")
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _step(name: str, fn: Callable[[], int], failed: list[str]) -> None:
    log(name)
    started = time.monotonic()
    try:
        code = fn()
    except SystemExit as err:  # a module's main may exit on a set-up problem
        if err.code == 124:  # SIGTERM (`timeout`): the module cleaned up; stop here
            raise
        code = int(err.code) if isinstance(err.code, int) else 1
    except Exception as err:  # the other modules still run; the report says it failed
        log(f"{name}: {type(err).__name__}: {err}")
        code = 1
    log(f"{name}: exit {code} after {time.monotonic() - started:.0f} s")
    if code != 0:
        failed.append(f"{name} (exit {code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.report", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke: every row has a number")
    parser.add_argument("--out", default=None, help="default docs/benchmarks.md")
    parser.add_argument("--chart", default=None, help="default docs/benchmarks.png")
    parser.add_argument("--no-cgroup-fix", action="store_true", help="skip crun if it refuses")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benches.report: containers need root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    q = args.quick
    scratch = Path(tempfile.mkdtemp(prefix="pyctr-bench-report-")) if q else None
    docs = scratch if scratch else Path("docs")
    out = Path(args.out) if args.out else docs / "benchmarks.md"
    chart = Path(args.chart) if args.chart else docs / "benchmarks.png"
    fix = ["--no-cgroup-fix"] if args.no_cgroup_fix else []
    failed: list[str] = []
    load = os.getloadavg()[0]
    try:
        # 1. start latency (with udocker), the whole file; other sections are kept
        log("start latency (benches.compare)")
        cargs = compare.parse_args([*fix, *(["--quick", "--runs", "3"] if q else [])])
        cands, text = compare.collect(cargs)
        compare.write_report(str(out), text)
        failed += [f"latency: {m}" for m in compare.missing_rows(cands) if q or "pyctr" in m]
        # 2. the OCI runtime rows: benches.runtime splices its own section
        rt_args = ["--quick", "--runs", "5"] if q else []
        _step(
            "OCI runtime (benches.runtime)",
            lambda: runtime.main([*rt_args, *fix, "--out", str(out)]),
            failed,
        )
        # 3. throughput
        log("throughput (benches.throughput)")
        reps, count, pcount = (1, 10, 4) if q else (5, throughput.COUNT, throughput.PODMAN_COUNT)
        rows, notes = throughput.run_throughput(reps, count, pcount, None, args.no_cgroup_fix)
        lines = ["## Throughput", "", *throughput.render(rows, reps, count), ""]
        lines += [f"- {n}" for n in notes]
        doc = splice(out.read_text(), section("benches.throughput", lines), "benches.throughput")
        failed += throughput.missing(rows)
        # 4. phase breakdown of the CLI
        log("phase breakdown (benches.phases)")
        cols, errors = phases_of(3 if q else 20)
        lines = ["## Where the CLI's time goes", "", *phases.render_phases(cols, 3 if q else 20)]
        lines += [f"- failed: {e}" for e in errors]
        doc = splice(doc, section("benches.phases", lines), "benches.phases")
        failed += phases.missing(cols)
        # 5. start latency with networking (pyctr-fast and podman, none/host/bridge)
        doc = network_step(doc, q, args.no_cgroup_fix, failed)
        # 6. the chart, and the machine and the peers
        rows_ms = chart_rows(cands)
        if rows_ms:
            draw_chart(rows_ms, chart)
            log(f"chart: {chart}")
        else:
            failed.append("chart: no latency row has a number")
        mach = machine_section(versions(cands), str(chart) if rows_ms else None, q, load)
        out.write_text(splice(doc, mach, "benches.report"))
        # 7. detached containers and pull: their own files
        lc = ["--quick", "--rounds", "2"] if q else []
        _step(
            "detached containers (benches.lifecycle)",
            lambda: lifecycle.main([*lc, *fix, "--out", str(docs / "benchmarks-lifecycle.md")]),
            failed,
        )
        pl = ["--quick", "--rounds", "1"] if q else []
        _step(
            "pull (benches.pull)",
            lambda: pull.main([*pl, "--out", str(docs / "benchmarks-pull.md")]),
            failed,
        )
        if q:
            print(out.read_text())
        log(f"written: {out}, {chart}" + ("" if q else ", docs/benchmarks-{lifecycle,pull}.md"))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print("benches.report: rows without a number: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def network_step(doc: str, quick: bool, no_fix: bool, failed: list[str]) -> str:
    """``doc`` with benches.network's section (its failure in ``failed``)."""
    log("start latency with networking (benches.network)")
    started = time.monotonic()
    rounds, gap = (
        (network.QUICK_ROUNDS, network.QUICK_GAP) if quick else (network.ROUNDS, network.GAP)
    )
    try:
        rows, notes = network.collect(rounds, gap, no_fix)
    except Exception as err:  # the other modules still run; the report says it failed
        log(f"benches.network: {type(err).__name__}: {err}")
        failed.append(f"network: {type(err).__name__}: {err}")
        return doc
    log(f"benches.network: {time.monotonic() - started:.0f} s")
    failed += network.missing(rows)
    text = network.section(network.render(rows, rounds, gap, notes))
    return splice(doc, text, network.SECTION)


def phases_of(runs: int) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """benches.phases on a fresh busybox tree (removed after)."""
    from benches.rootfs import build_rootfs

    cli = compare.pyctr_cli()
    if cli is None:
        return {"CLI": {}}, ["the pyctr-fast console script is not installed"]
    work = Path(tempfile.mkdtemp(prefix="pyctr-bench-ph-", dir=compare._workdir_base()[0]))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    try:
        rootfs = build_rootfs(work / "rootfs")
        return phases.run_phases(
            cli, str(work / "root"), str(rootfs), env, runs, compare.LIMIT_FLAGS
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
