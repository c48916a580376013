"""pyctr_fast.compact_json: ``dumps``/``loads`` give exactly what :mod:`json`
gives, without importing it on the valid path (``import json`` costs ~13 ms
of the exec and ``run -d`` start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyctr_fast import compact_json

DOCS = [
    '{"Status":"running","Pid":1234,"ExitCode":0,"OOMKilled":false,"Error":"",'
    '"StartedAt":"2026-11-28T01:02:03.123456789Z","PidStartTime":null}',
    '  {"a": [1, -2.5, 3e10, true, false, null, "\\u00e9\\n\\ud83d\\ude00"]}\n',
    '{"padded": "like a foreground run\'s final state.json"}' + " " * 40,
    "[NaN, Infinity, -Infinity]",
    '"\\ud800"',
    "12345678901234567890",
    '{"dup": 1, "dup": 2}',
]

BAD = ["", "   ", "{", '{"a" 1}', "[1,]", "{} x", "\ufeff{}", "nul", '"\x01"', "[1] [2]"]


@pytest.mark.parametrize("text", DOCS)
def test_loads_reads_what_json_loads_reads(text: str) -> None:
    got = compact_json.loads(text)
    want = json.loads(text)
    # NaN != NaN: compare the JSON text of the values instead.
    assert json.dumps(got) == json.dumps(want)
    assert json.dumps(compact_json.loads(text.encode())) == json.dumps(want)


@pytest.mark.parametrize("text", BAD)
def test_loads_fails_like_json_loads(text: str) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        compact_json.loads(text)
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


def test_loads_of_bytes_takes_utf8_and_a_bom_like_json() -> None:
    assert compact_json.loads(b'\xef\xbb\xbf{"x": "\xc3\xa9"}') == {"x": "é"}
    with pytest.raises(UnicodeDecodeError):
        compact_json.loads(b'{"x": "\xff"}')


def test_reading_state_does_not_import_json() -> None:
    package_dir = Path(compact_json.__file__).parent.parent
    code = (
        f"import sys; sys.path.insert(0, {str(package_dir)!r})\n"
        "from pyctr_fast import compact_json\n"
        "doc = compact_json.loads(compact_json.dumps({'a': [1, 2.5, None, 'x']}))\n"
        "assert doc == {'a': [1, 2.5, None, 'x']}, doc\n"
        "print('json' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0 and res.stdout == "False\n", res
