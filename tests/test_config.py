"""Engine configuration (python/pyctr_fast/config.py): daemon.json's
insecure registries and mirrors, used by ``pull`` against real registries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import ctrkit
import pytest
from conftest_registry import Pushed
from pyctr_fast.config import load_config
from pyctr_fast.errors import UserError
from pyctr_fast.reference import parse

pytestmark = [pytest.mark.usefixtures("integration_ready"), pytest.mark.timeout(300)]


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_missing_config_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(str(tmp_path / "absent.json"))
    assert cfg.insecure_registries == () and cfg.mirrors == {}
    ref = parse("busybox")
    assert cfg.sources(ref) == [ref]


def test_docker_hub_mirrors_come_before_docker_hub_in_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "registry-mirrors": ["https://m1.example/", "http://127.0.0.1:5001"],
            "mirrors": {"quay.io": ["https://q.example"]},
            "insecure-registries": ["reg.local:5000"],
        },
    )
    cfg = load_config(str(path))
    sources = cfg.sources(parse("redis"))
    assert [s.registry_host for s in sources] == [
        "m1.example",
        "127.0.0.1:5001",
        "registry-1.docker.io",
    ]
    assert all(s.path == "library/redis" for s in sources)
    assert [s.registry_host for s in cfg.sources(parse("quay.io/a/b"))] == ["q.example", "quay.io"]
    client = cfg.client()
    assert client.is_insecure("reg.local:5000") and client.is_insecure("127.0.0.1:5001")
    assert not client.is_insecure("m1.example")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "invalid JSON"),
        ('{"registry-mirrors": "https://x"}', "list of strings"),
        ('{"registry-mirrors": ["ftp://x"]}', "invalid mirror"),
        ('{"mirrors": ["x"]}', "'mirrors' must map"),
    ],
)
def test_bad_config_is_a_one_line_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle) as err:
        load_config(str(_write(tmp_path, text)))
    assert "\n" not in str(err.value)


def test_pull_goes_through_a_docker_hub_mirror_skipping_a_dead_one(
    engine: ctrkit.Engine, pushed: Pushed, tmp_path: Path
) -> None:
    host = pushed.registry.host
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{host}/test/busybox:oci",
            f"docker://{host}/library/mirrored:latest",
        ],
        check=True,
        timeout=120,
    )
    # Port 1 on loopback: nothing listens, the mirror fails at once.
    config = _write(tmp_path, {"registry-mirrors": ["http://127.0.0.1:1", f"http://{host}"]})
    env = {**engine.base_env(), "PYCTR_CONFIG": str(config)}
    # PYCTR_LOOPBACK_ONLY (set for every test) guarantees Docker Hub itself is
    # never contacted: success means the mirror served the image.
    out = ctrkit.assert_ok(engine.cli_run("pull", "mirrored", env=env, timeout=120))
    assert "Status: Downloaded newer image for mirrored:latest" in out
    res = engine.cli_run(
        "run", "--rm", "--pull", "never", "mirrored", "/bin/busybox", "cat", "/hello.txt", env=env
    )
    assert ctrkit.assert_ok(res) == "hello from layer 2\n"
