"""``ps``, ``inspect`` and ``top``: what they show, in Docker's shapes and words.

Stopped containers in every state are written by the tests (tests/fakectr.py,
per docs/lifecycle.md) so their times and exit codes are exact; running ones
are real (``run -d``, or a foreground ``run`` for a container without a
cgroup).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import ctrkit
import imagekit
import pytest
from ctrkit import Engine, assert_engine_error, assert_ok
from fakectr import Detached, FakeRoot, ago, detached, fake

pytestmark = pytest.mark.usefixtures("integration_ready")

__all__ = ["detached", "fake"]  # the fixtures

HEADER = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


def table(text: str) -> list[dict[str, str]]:
    """Rows of an aligned table, cut at the header's column starts (which also
    pins the alignment: every cell starts exactly under its title)."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    titles = re.findall(r"\S+(?: \S+)*", header)
    starts = [header.index(t) for t in titles]
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, title in enumerate(titles):
            end = starts[i + 1] if i + 1 < len(starts) else len(line)
            if i + 1 < len(starts):
                assert line[end - 1] == " ", f"cell runs into the next column: {line!r}"
            cells[title] = line[starts[i] : end].strip()
        rows.append(cells)
    return rows


def ps(engine: Engine, *args: str) -> list[dict[str, str]]:
    out = assert_ok(engine.cli_run("ps", *args))
    assert re.findall(r"\S+(?: \S+)*", out.split("\n")[0]) == HEADER, out
    return table(out)


def names(engine: Engine, *args: str) -> list[str]:
    return assert_ok(engine.cli_run("ps", *args, "--format", "{{.Names}}")).split()


def inspect(engine: Engine, *refs: str) -> list[dict[str, Any]]:
    objs = json.loads(assert_ok(engine.cli_run("inspect", *refs)))
    assert isinstance(objs, list) and len(objs) == len(refs)
    return objs


# --------------------------------------------------------------------------- ps


def test_ps_lists_running_by_default_every_state_with_a_newest_first_in_docker_columns(
    engine: Engine, fake: FakeRoot, detached: Detached
) -> None:
    fake.add("old", created=ago(7200), finished=ago(125), exit_code=3, image_name="busybox")
    fake.add("made", created=ago(600), status="created")
    fake.add("gone", created=ago(900), status="dead")
    restarter = fake.add(
        "restarter", created=ago(10), status="restarting", exit_code=1, finished=ago(1)
    )
    fake.hold_lock(restarter)  # a supervisor is alive: restarting is believed
    cid = detached.run("sleep", "100", opts=["--name", "runner"])

    running = ps(engine)
    assert [r["NAMES"] for r in running] == ["runner", "restarter"]
    row = running[0]
    assert row["CONTAINER ID"] == cid[:12]
    assert row["IMAGE"] == str(engine.rootfs)
    assert row["COMMAND"] == '"sleep 100"'
    assert re.fullmatch(r"(Less than a second|\d+ seconds?) ago", row["CREATED"]), row
    assert re.fullmatch(r"Up (Less than a second|\d+ seconds?)", row["STATUS"]), row
    assert row["PORTS"] == ""
    assert re.fullmatch(r"Restarting \(1\) \d seconds? ago", running[1]["STATUS"]), running

    every = ps(engine, "-a")
    assert [r["NAMES"] for r in every] == ["runner", "restarter", "made", "gone", "old"]
    by_name = {r["NAMES"]: r for r in every}
    assert by_name["old"]["STATUS"] == "Exited (3) 2 minutes ago"
    assert by_name["old"]["CREATED"] == "2 hours ago"
    assert by_name["old"]["IMAGE"] == "busybox"
    assert by_name["old"]["COMMAND"] == "\"sh -c 'exit 0'\""
    assert by_name["made"]["STATUS"] == "Created"
    assert by_name["made"]["CREATED"] == "10 minutes ago"
    assert by_name["gone"]["STATUS"] == "Dead"
    assert by_name["gone"]["CREATED"] == "15 minutes ago"


def test_ps_status_says_paused_for_a_frozen_container(engine: Engine, detached: Detached) -> None:
    cid = detached.run("sleep", "100")
    assert_ok(engine.cli_run("pause", cid))
    try:
        [row] = ps(engine)
        assert re.fullmatch(r"Up (Less than a second|\d+ seconds?) \(Paused\)", row["STATUS"])
        state = assert_ok(engine.cli_run("ps", "--format", "{{.State}}"))
        assert state == "paused\n"
    finally:
        assert_ok(engine.cli_run("unpause", cid))
    assert assert_ok(engine.cli_run("ps", "--format", "{{.State}}")) == "running\n"


def test_ps_command_is_quoted_and_cut_at_20_characters_unless_no_trunc(
    engine: Engine, fake: FakeRoot
) -> None:
    image = "sha256:" + "ab" * 32
    cid = fake.add(
        "long",
        args=["sh", "-c", "echo a long command line here"],
        image=image,
        image_name=image,
    )
    [row] = ps(engine, "-a")
    assert row["COMMAND"] == '"sh -c \'echo a long …"'
    assert row["IMAGE"] == "ab" * 6
    [row] = ps(engine, "-a", "--no-trunc")
    assert row["COMMAND"] == "\"sh -c 'echo a long command line here'\""
    assert row["CONTAINER ID"] == cid
    assert row["IMAGE"] == image


def test_ps_quiet_last_and_latest(engine: Engine, fake: FakeRoot, detached: Detached) -> None:
    old = fake.add("old", created=ago(300))
    mid = fake.add("mid", created=ago(200))
    new = fake.add("new", created=ago(100))
    live = detached.run("sleep", "100")
    assert assert_ok(engine.cli_run("ps", "-q")) == live[:12] + "\n"
    assert assert_ok(engine.cli_run("ps", "-aq")).split() == [c[:12] for c in (live, new, mid, old)]
    assert assert_ok(engine.cli_run("ps", "-aq", "--no-trunc")).split() == [live, new, mid, old]
    # -n and -l count every state, newest first
    assert assert_ok(engine.cli_run("ps", "-q", "-n", "3")).split() == [
        c[:12] for c in (live, new, mid)
    ]
    assert assert_ok(engine.cli_run("ps", "-q", "-l")).split() == [live[:12]]
    res = engine.cli_run("ps", "-n", "x")
    assert_engine_error(res, 125, 'invalid argument "x"')


def test_ps_filters_follow_docker(engine: Engine, fake: FakeRoot) -> None:
    web1 = fake.add("web1", created=ago(500), exit_code=0, labels={"tier": "web", "a": "1"})
    web2 = fake.add("web2", created=ago(400), exit_code=3, labels={"tier": "web"})
    fake.add("myweb", created=ago(300), status="created", labels={"tier": "db"})
    fake.add("db", created=ago(200), status="dead", exit_code=3)
    fake.add("cache", created=ago(100), exit_code=137)

    def sel(*filters: str, all_: bool = True) -> list[str]:
        args = ["-a"] if all_ else []
        for f in filters:
            args += ["-f", f]
        return names(engine, *args)

    assert sel("name=web") == ["myweb", "web2", "web1"]  # a regular expression, unanchored
    assert sel("name=^/web") == ["web2", "web1"]  # names carry Docker's leading slash
    assert sel("name=web1", "name=db") == ["db", "web1"]  # one key: any value
    assert sel("id=" + web2[:10]) == ["web2"]
    assert sel("status=exited") == ["cache", "web2", "web1"]
    assert sel("status=exited", all_=False) == ["cache", "web2", "web1"]  # status implies -a
    assert sel("status=created", "status=dead") == ["db", "myweb"]
    assert sel("exited=3") == ["db", "web2"]  # any container that ran and is not running
    assert sel("exited=0", "exited=137") == ["cache", "web1"]
    assert sel("label=tier") == ["myweb", "web2", "web1"]
    assert sel("label=tier=web") == ["web2", "web1"]
    assert sel("label=tier=web", "label=a") == ["web1"]  # labels: every one must match
    assert sel("name=web", "status=exited") == ["web2", "web1"]  # keys: all must match
    assert sel("before=myweb") == ["web2", "web1"]
    assert sel("since=web2") == ["cache", "db", "myweb"]
    assert sel("since=" + web1, "before=db") == ["myweb", "web2"]
    assert sel("health=none") == ["cache", "db", "myweb", "web2", "web1"]
    assert sel("publish=80") == []
    assert sel("status=running", all_=False) == []

    assert_engine_error(engine.cli_run("ps", "-f", "nope=1"), 1, "invalid filter 'nope'")
    assert_engine_error(engine.cli_run("ps", "-f", "status=zzz"), 1, "invalid filter 'status=zzz'")
    assert_engine_error(engine.cli_run("ps", "-f", "exited=x"), 1, 'parsing "x"')
    assert_engine_error(
        engine.cli_run("ps", "-f", "status"), 125, "bad format of filter (expected name=value)"
    )
    assert_engine_error(engine.cli_run("ps", "-f", "before=ghost"), 1, "No such container: ghost")


def test_ps_ancestor_filter_and_inspect_of_an_image(
    engine: Engine, fake: FakeRoot, tmp_path: Path
) -> None:
    archive = tmp_path / "img.tar"
    image_id = imagekit.docker_archive(
        archive, [imagekit.busybox_layer(tmp_path)], ["test/anc:1"], {"Cmd": ["/bin/sh"]}
    )
    assert_ok(engine.cli_run("load", "-i", str(archive)))
    fake.add("child", image=image_id, image_name="test/anc:1")
    fake.add("other", image="sha256:" + "0" * 64, image_name="other")
    assert names(engine, "-a", "-f", "ancestor=test/anc:1") == ["child"]
    assert names(engine, "-a", "-f", "ancestor=" + image_id[7:19]) == ["child"]
    assert names(engine, "-a", "-f", "ancestor=no/such:image") == []

    # inspect falls back to images; --type picks one kind
    [obj] = inspect(engine, "test/anc:1")
    assert obj["Id"] == image_id and obj["RepoTags"] == ["test/anc:1"]
    res = engine.cli_run("inspect", "--type", "container", "test/anc:1")
    assert res.returncode == 1 and res.stdout == "[]\n", res
    assert res.stderr == "Error: No such container: test/anc:1\n", res
    res = engine.cli_run("inspect", "--type", "image", "child")
    assert res.returncode == 1 and res.stderr == "Error: No such image: child\n", res


def test_ps_format_fields_tables_json_and_errors(engine: Engine, fake: FakeRoot) -> None:
    cid = fake.add(
        "fmt", created=ago(7200), exit_code=2, finished=ago(5 * 3600), labels={"b": "2", "a": "x"}
    )
    out = assert_ok(engine.cli_run("ps", "-a", "--format", r"{{.ID}}\t{{.Names}}"))
    assert out == f"{cid[:12]}\tfmt\n"
    out = assert_ok(engine.cli_run("ps", "-a", "--format", r"table {{.Names}}\t{{.Status}}"))
    assert out == "NAMES     STATUS\nfmt       Exited (2) 5 hours ago\n"
    out = assert_ok(
        engine.cli_run(
            "ps", "-a", "--format",
            '{{.State}}|{{.Labels}}|{{.Label "a"}}|{{.RunningFor}}|{{.Ports}}|{{.Command}}',
        )
    )  # fmt: skip
    assert out == "exited|a=x,b=2|x|2 hours ago||\"sh -c 'exit 0'\"\n"
    created = assert_ok(engine.cli_run("ps", "-a", "--format", "{{.CreatedAt}}")).strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", created), created
    row = json.loads(assert_ok(engine.cli_run("ps", "-a", "--format", "{{json .}}")))
    assert row["ID"] == cid[:12] and row["Names"] == "fmt" and row["State"] == "exited"
    assert list(row) == sorted(row)
    assert json.loads(assert_ok(engine.cli_run("ps", "-a", "--format", "json"))) == row
    # -q does not override an explicit format (Docker)
    assert assert_ok(engine.cli_run("ps", "-aq", "--format", "{{.Names}}")) == "fmt\n"
    res = engine.cli_run("ps", "-a", "--format", "{{.Names")
    assert_engine_error(res, 64, "template parsing error")
    res = engine.cli_run("ps", "-a", "--format", "{{.Nope}}")
    assert_engine_error(res, 125, "can't evaluate field Nope")


# --------------------------------------------------------------------------- inspect


INSPECT_KEYS = [
    "Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath", "HostnamePath",
    "HostsPath", "LogPath", "Name", "RestartCount", "Driver", "Platform", "MountLabel",
    "ProcessLabel", "AppArmorProfile", "ExecIDs", "HostConfig", "GraphDriver", "Mounts",
    "Config", "NetworkSettings", "Namespaces",
]  # fmt: skip
STATE_KEYS = [
    "Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
    "Error", "StartedAt", "FinishedAt",
]  # fmt: skip


def test_inspect_running_container_shape_state_namespaces_mounts_and_after_stop(
    engine: Engine, detached: Detached, tmp_path: Path
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    cid = detached.run("sleep", "100", opts=["--name", "insp", "-v", f"{vol}:/data:ro"])
    [obj] = inspect(engine, "insp")
    assert [k for k in INSPECT_KEYS if k in obj] == INSPECT_KEYS
    assert list(obj["State"]) == STATE_KEYS
    assert obj["Id"] == cid and obj["Name"] == "/insp"
    assert obj["Path"] == "sleep" and obj["Args"] == ["100"]
    state = obj["State"]
    assert state["Status"] == "running" and state["Running"] is True and state["Paused"] is False
    pid = state["Pid"]
    assert pid == detached.pid(cid) and ctrkit.host_status(pid)["Name"] == "sleep"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", state["StartedAt"])
    assert state["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert obj["Config"]["Cmd"] == ["sleep", "100"]
    assert obj["HostConfig"]["NetworkMode"] == "bridge"  # Docker's default
    assert obj["Mounts"] == [
        {
            "Type": "bind",
            "Source": str(vol),
            "Destination": "/data",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        }
    ]
    assert os.path.isfile(obj["LogPath"]) and obj["LogPath"].startswith(str(engine.root))
    assert obj["HostnamePath"].endswith(f"{cid}/hostname")
    ns = obj["Namespaces"]
    assert sorted(ns) == ["cgroup", "ipc", "mount", "network", "pid", "uts"]
    for kind, path in ns.items():
        file = {"mount": "mnt", "network": "net"}.get(kind, kind)
        assert path == f"/proc/{pid}/ns/{file}"
        assert os.stat(path).st_ino != os.stat(f"/proc/self/ns/{file}").st_ino, kind
    sandbox = obj["NetworkSettings"]["SandboxKey"]  # its namespace file on the bridge
    assert (
        sandbox.endswith(f"/netns/{cid}")
        and os.stat(sandbox).st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino
    )
    assert list(obj["NetworkSettings"]["Networks"]) == ["bridge"]
    assert obj["NetworkSettings"]["IPAddress"].count(".") == 3

    assert_ok(engine.cli_run("stop", "-t", "1", "insp"))
    [obj] = inspect(engine, cid[:8])
    state = obj["State"]
    assert state["Status"] == "exited" and state["Running"] is False and state["Pid"] == 0
    assert state["ExitCode"] == 137
    assert state["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert obj["Namespaces"] == {} and obj["NetworkSettings"]["SandboxKey"] == ""


def test_inspect_format_reads_dotted_paths_json_and_ranges(
    engine: Engine, fake: FakeRoot, detached: Detached
) -> None:
    cid = detached.run("sleep", "100", opts=["--name", "fmtrun"])
    fake.add("fmtfake", labels={"k": "v"}, binds=[("/srv/a", "/a", False), ("/srv/b", "/b", True)])
    pid = detached.pid(cid)
    res = engine.cli_run("inspect", "-f", "{{.State.Pid}}", "fmtrun")
    assert assert_ok(res) == f"{pid}\n"
    res = engine.cli_run("inspect", "--format", "{{.Name}} {{json .Args}} {{.State.Running}}",
                         "fmtrun", "fmtfake")  # fmt: skip
    assert assert_ok(res) == '/fmtrun ["100"] true\n/fmtfake ["-c","exit 0"] false\n'
    res = engine.cli_run(
        "inspect", "-f",
        '{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}{{index .Config.Labels "k"}}',
        "fmtfake",
    )  # fmt: skip
    assert assert_ok(res) == "/a=true /b=false v\n"
    res = engine.cli_run("inspect", "-f", "{{json .State}}", "fmtfake")
    assert list(json.loads(assert_ok(res))) == STATE_KEYS
    res = engine.cli_run("inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", "fmtfake")
    assert assert_ok(res) == "/nonexistent-rootfs\n"
    assert_engine_error(engine.cli_run("inspect", "-f", "{{.X", "fmtfake"), 64, "template")


def test_inspect_unknown_names_print_what_was_found_and_fail(
    engine: Engine, fake: FakeRoot
) -> None:
    fake.add("known")
    res = engine.cli_run("inspect", "nope")
    assert (res.returncode, res.stdout, res.stderr) == (1, "[]\n", "Error: No such object: nope\n")
    res = engine.cli_run("inspect", "known", "nope")
    assert res.returncode == 1 and res.stderr == "Error: No such object: nope\n", res
    assert [o["Name"] for o in json.loads(res.stdout)] == ["/known"]
    assert_engine_error(
        engine.cli_run("inspect", "--type", "volume", "known"), 125, "not a valid value for --type"
    )


# --------------------------------------------------------------------------- top


def _pidns_members(pid: int) -> set[int]:
    want = os.stat(f"/proc/{pid}/ns/pid").st_ino
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == want:
                    out.add(int(entry))
            except OSError:
                continue
    return out


def top_rows(engine: Engine, *args: str) -> tuple[list[str], list[list[str]]]:
    out = assert_ok(engine.cli_run("top", *args))
    lines = out.rstrip("\n").split("\n")
    titles = lines[0].split()
    return titles, [line.split(None, len(titles) - 1) for line in lines[1:]]


def test_top_lists_the_containers_processes_only(engine: Engine, detached: Detached) -> None:
    cid = detached.run("sh", "-c", "sleep 101 & exec sleep 102")
    pid = detached.pid(cid)
    titles, rows = top_rows(engine, cid)
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert sorted(r[-1] for r in rows) == ["sleep 101", "sleep 102"]
    pids = {int(r[1]) for r in rows}
    assert pids == _pidns_members(pid) and pid in pids and os.getpid() not in pids
    # ps options pass through; the PID column is found wherever it is
    titles, rows = top_rows(engine, cid, "-o", "comm,pid")
    assert titles == ["COMMAND", "PID"] and {int(r[1]) for r in rows} == pids
    assert_engine_error(engine.cli_run("top", cid, "-o", "comm"), 1, "Couldn't find PID field")


def test_top_without_a_cgroup_uses_the_pid_namespace(engine: Engine) -> None:
    proc = engine.popen("sh", "-c", "sleep 103 & exec sleep 104")
    init = None
    try:
        init = engine.wait_for_container("104", proc=proc)
        cid = engine.wait_for_container_dir()
        rec = engine.root / "containers" / cid
        assert not (rec / "launch.json").exists()  # a foreground run has no cgroup
        _, rows = top_rows(engine, cid)
        assert sorted(r[-1] for r in rows) == ["sleep 103", "sleep 104"]
    finally:
        if init is not None:
            ctrkit.kill_pid(init.pid)  # the namespace's init: its members go with it
        ctrkit.finish(proc)


def test_top_logs_cp_inspect_of_unknown_or_stopped_containers_fail_in_one_line(
    engine: Engine, fake: FakeRoot
) -> None:
    stopped = fake.add("stopped")
    assert_engine_error(engine.cli_run("top", "stopped"), 1, f"container {stopped} is not running")
    assert_engine_error(engine.cli_run("top", "ghost"), 1, "No such container: ghost")
    assert_engine_error(engine.cli_run("logs", "ghost"), 1, "No such container: ghost")
    assert_engine_error(engine.cli_run("cp", "ghost:/etc", "/tmp/x"), 1, "No such container: ghost")
    fake.add("twin1", cid="abc" + "1" * 61)
    fake.add("twin2", cid="abc" + "2" * 61)
    assert_engine_error(engine.cli_run("logs", "abc"), 125, "multiple containers found")
    assert_engine_error(engine.cli_run("top"), 125, '"top" requires at least 1 argument')


# --------------------------------------------------------------------------- pieces


def test_templates_follow_go_text_template() -> None:
    from pyctr_fast.errors import UserError
    from pyctr_fast.gotemplate import render

    data = {
        "A": {"B": 7, "On": True, "L": ["x", "y"], "M": {"k2": "v2", "k1": "v1"}},
        "S": "<a&b>",
        "N": None,
    }
    assert render("{{.A.B}} {{.A.On}} {{.A.L}} {{.A.M}} {{.N}} {{.Nope}}", data) == (
        "7 true [x y] map[k1:v1 k2:v2] <nil> <no value>"
    )
    assert render("{{json .S}} {{json .A.L}}", data) == '"\\u003ca\\u0026b\\u003e" ["x","y"]'
    assert render("{{range $i, $v := .A.L}}{{$i}}={{$v}},{{end}}", data) == "0=x,1=y,"
    assert render("{{range .A.M}}{{.}};{{end}}", data) == "v1;v2;"  # map values, key order
    assert render("{{if .N}}a{{else if .A.On}}b{{else}}c{{end}}", data) == "b"
    assert render("{{with .A}}{{.B}}{{end}}|{{with .N}}x{{else}}none{{end}}", data) == "7|none"
    assert render("a  {{- .A.B -}}  b", data) == "a7b"
    assert render('{{index .A.M "k1"}} {{len .A.L}} {{.S | upper}} {{join .A.L "+"}}', data) == (
        "v1 2 <A&B> x+y"
    )
    assert render('{{printf "%s-%d" .S .A.B}}{{/* a comment */}}', data) == "<a&b>-7"
    assert render("{{if eq .A.B 7}}seven{{end}}{{if ne .A.B 7}}not{{end}}", data) == "seven"
    for bad, needle in (
        ("{{.A.B", "unclosed action"),
        ("{{nope .A}}", 'function "nope" not defined'),
        ("{{.N.X}}", "nil pointer evaluating"),
        ("{{if .A}}x", "unexpected EOF"),
    ):
        with pytest.raises(UserError, match=needle):
            render(bad, data)


def test_durations_and_times_read_and_print_like_docker() -> None:
    from pyctr_fast.errors import UserError
    from pyctr_fast.timefmt import human_duration, parse_rfc3339, parse_time_arg

    expect = {
        0.5: "Less than a second",
        1: "1 second",
        59: "59 seconds",
        60: "About a minute",
        119: "About a minute",
        120: "2 minutes",
        3599: "59 minutes",
        3600: "About an hour",
        5400: "2 hours",  # Go rounds hours
        47 * 3600: "47 hours",
        48 * 3600: "2 days",
        14 * 86400: "2 weeks",
        60 * 86400: "2 months",
        800 * 86400: "2 years",
    }
    assert {s: human_duration(s) for s in expect} == expect
    assert parse_rfc3339("2023-11-14T22:13:20.5Z") == 1_700_000_000_500_000_000
    assert parse_rfc3339("2023-11-15T00:13:20+02:00") == 1_700_000_000_000_000_000
    assert parse_rfc3339("0001-01-01T00:00:00Z") is None
    now = 1_700_000_000_000_000_000
    assert parse_time_arg("1h30m", now) == now - 5400 * 10**9
    assert parse_time_arg("1.5s", now) == now - 1_500_000_000
    assert parse_time_arg("1700000000.25", now) == now + 250_000_000
    assert parse_time_arg("2023-11-14T22:13:20Z", now) == now
    assert parse_time_arg("2023-11-14T22:13Z", now) == now - 20 * 10**9
    with pytest.raises(UserError, match='failed to parse value as time or duration: "soon"'):
        parse_time_arg("soon", now)
