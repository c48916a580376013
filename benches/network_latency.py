"""What ``--network bridge`` adds to a container's start, against ``none``.

    python -m benches.network_latency [--runs N]

For the CLI (``pyctr-fast run --rm --rootfs R [--network M] true``) it gives
the median *start latency* (the CLI spawned -> the container's program
exec'd, from the ``PYCTR_TRACE`` marks) and the median wall time (the
bridge's teardown after the program ends is in the wall time only); for
the in-process API (``api.run``) the median wall time; and the median cost
of each step of one endpoint's set-up and teardown.  Runs alternate
between the modes.  Uses its own data root and run directory; removes the
bridge and the nft table at the end if it made them.  benches.network
measures the same beside podman for the report (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches.rootfs import build_rootfs

EXEC_MARK = re.compile(r"^pyctr-trace +(\d+\.\d+) ms .*engine: program exec'd", re.M)
MARK = re.compile(r"^pyctr-trace +(\d+\.\d+) ms +\(\+ *\d+\.\d+\) +(.+)$", re.M)
#: The bridge's own phases in the CLI, between two trace marks.
PHASES = {
    "CLI endpoint set-up": ("python: container registered", "python: network attached"),
    "CLI endpoint teardown": ("python: container exited", "python: network detached"),
}
PHASE_TIMES: dict[str, list[float]] = {k: [] for k in PHASES}


def _cli_once(rootfs: Path, mode: str, env: dict[str, str]) -> tuple[float, float]:
    env = dict(env, PYCTR_TRACE="1", PYCTR_TRACE_T0=str(time.monotonic_ns()))
    start = time.monotonic()
    done = subprocess.run(
        ["pyctr-fast", "run", "--rm", "--network", mode, "--rootfs", str(rootfs), "true"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = (time.monotonic() - start) * 1000
    found = EXEC_MARK.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"run failed: {done.returncode} {done.stderr}")
    marks = {name: float(ms) for ms, name in MARK.findall(done.stderr)}
    for phase, (first, last) in PHASES.items():
        if first in marks and last in marks:
            PHASE_TIMES[phase].append(marks[last] - marks[first])
    return float(found.group(1)), wall


def _api_once(rootfs: Path, mode: str) -> float:
    from pyctr_fast import api

    start = time.monotonic()
    status = api.run(str(rootfs), ["true"], network=mode)
    if status != 0:
        raise SystemExit(f"api.run exited {status}")
    return (time.monotonic() - start) * 1000


def _steps(runs: int, rundir: str) -> dict[str, float]:
    """One endpoint's steps, timed separately (medians, ms)."""
    from pyctr_fast import _native, network
    from pyctr_fast.ipam import Ipam

    times: dict[str, list[float]] = {}

    def timed(name: str, fn: object, *args: object, **kw: object) -> object:
        t = time.perf_counter()
        out = fn(*args, **kw)  # type: ignore[operator]
        times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return out

    subnet, gateway = network._choose_subnet(rundir, None)
    ipam = Ipam(rundir, network.NETWORK, subnet, gateway)
    for i in range(runs):
        cid = f"{os.getpid():08x}{i:056x}"
        path = os.path.join(rundir, "netns", cid)
        address = timed("lease", ipam.allocate, cid)
        timed("netns create", _native.net_netns_create, path)
        timed(
            "veth attach",
            _native.net_veth_attach,
            network.BRIDGE,
            f"veth{cid[-11:]}",
            path,
            addr_cidr=ipam.cidr(str(address)),
            gateway=ipam.gateway,
        )
        timed("veth delete", _native.net_link_delete, f"veth{cid[-11:]}")
        timed("netns remove", _native.net_netns_remove, path)
        timed("release", ipam.release, cid)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="seconds to sleep before each run (lets the kernel finish the "
        "previous run's asynchronous namespace clean-up)",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    bridge_before = os.path.exists("/sys/class/net/pyctr0")
    table_before = (
        subprocess.run(["nft", "list", "table", "ip", "pyctr"], capture_output=True).returncode == 0
    )
    with tempfile.TemporaryDirectory(prefix="pyctr-netbench-") as tmp:
        rootfs = build_rootfs(Path(tmp) / "rootfs")
        os.environ["PYCTR_ROOT"] = os.path.join(tmp, "root")
        os.environ["PYCTR_RUN_DIR"] = os.path.join(tmp, "run")
        env = dict(os.environ)
        try:
            for mode in ("none", "bridge"):  # warm-up (and the bridge's set-up)
                _cli_once(rootfs, mode, env)
                _api_once(rootfs, mode)
            cli: dict[str, list[tuple[float, float]]] = {"none": [], "bridge": []}
            api: dict[str, list[float]] = {"none": [], "bridge": []}
            for _ in range(args.runs):
                for mode in ("none", "bridge"):
                    time.sleep(args.gap)
                    cli[mode].append(_cli_once(rootfs, mode, env))
                    time.sleep(args.gap)
                    api[mode].append(_api_once(rootfs, mode))
            print(f"median of {args.runs} runs, ms      none   bridge   added")
            rows = {
                "CLI start (spawn -> exec)": {m: [s for s, _ in cli[m]] for m in cli},
                "CLI run --rm true (wall)": {m: [w for _, w in cli[m]] for m in cli},
                "api.run true (wall)": api,
            }
            for label, by_mode in rows.items():
                none, bridge = (statistics.median(by_mode[m]) for m in ("none", "bridge"))
                print(f"{label:28} {none:7.2f} {bridge:8.2f} {bridge - none:+7.2f}")
            for phase, values in PHASE_TIMES.items():
                if values:
                    print(f"{phase:28} {statistics.median(values):7.2f} (bridge only)")
            print("endpoint steps (median, ms):")
            for step, ms in _steps(args.runs, os.environ["PYCTR_RUN_DIR"]).items():
                print(f"  {step:14} {ms:6.2f}")
        finally:
            if not bridge_before:
                subprocess.run(["ip", "link", "del", "pyctr0"], capture_output=True)
            if not table_before:
                subprocess.run(["nft", "delete", "table", "ip", "pyctr"], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
