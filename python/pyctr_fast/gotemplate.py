"""A small subset of Go's text/template, for ``--format``/``-f`` as Docker has it.

Supported: text and ``{{ }}`` actions with ``{{-``/``-}}`` trimming and
``{{/* comments */}}``; fields and chains (``.``, ``.State.Pid``,
``$.Name``, ``$v.Key``), method-style calls (``.Label "k"`` when the field is
callable), string/number/bool literals, pipelines (``.Names | upper``),
parenthesised sub-pipelines, ``if``/``else if``/``else``, ``range`` (with
``$v :=`` or ``$k, $v :=``), ``with``; and Docker's functions ``json``,
``upper``, ``lower``, ``title``, ``split``, ``join``, ``pad``, ``truncate``
plus Go's ``index``, ``len``, ``print``, ``printf``, ``println``, ``eq``,
``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``and``, ``or``, ``not``.

Values print as Go's ``%v`` does: maps as ``map[k:v]``, lists as ``[a b]``,
``None`` as ``<nil>`` and a missing map key as ``<no value>``.  Errors are
:class:`~pyctr_fast.errors.UserError` starting ``template:``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from .errors import UserError

__all__ = ["Template", "go_json", "go_str", "render"]


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<decl>:=)
    | (?P<punct>[|(),])
    )""",
    re.X,
)


def _error(msg: str) -> UserError:
    return UserError(f"template: {msg}")


# --------------------------------------------------------------------------- printing


def go_str(value: Any) -> str:
    """``fmt.Sprint(value)`` as Go prints decoded JSON."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _jsonable(value: Any) -> Any:
    method = getattr(value, "__json__", None)
    if method is None:
        raise TypeError(f"{type(value).__name__} cannot be shown as JSON")
    return method()


def go_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact, ``<``, ``>`` and ``&`` escaped."""
    if value is MISSING:
        value = None
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _truth(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


# --------------------------------------------------------------------------- functions


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, MISSING)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(item):
                raise _error(f"error calling index: index out of range: {key}")
            item = item[key]
        else:
            raise _error(f"error calling index: cannot index {go_str(item)}")
    return item


def _printf(fmt: str, *args: Any) -> str:
    out = []
    it = iter(args)
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%" or i + 1 >= len(fmt):
            out.append(c)
            i += 1
            continue
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        arg = next(it, MISSING)
        if verb == "q":
            out.append(json.dumps(go_str(arg)))
        elif verb == "d" and isinstance(arg, (int, float)):
            out.append(str(int(arg)))
        else:
            out.append(go_str(arg))
    return "".join(out)


def _cmp(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *rest: Any) -> bool:
        if not rest:
            raise _error(f"error calling {name}: missing argument for comparison")
        try:
            if name == "eq":
                return any(op(a, b) for b in rest)
            return op(a, rest[0])
        except TypeError:
            raise _error(f"error calling {name}: incompatible types for comparison") from None

    return compare


def _truncate(value: Any, n: int) -> str:
    text = go_str(value)
    return text[:n] if len(text) > n else text


FUNCS: dict[str, Callable[..., Any]] = {
    "json": go_json,
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "split": lambda s, sep: go_str(s).split(sep),
    "join": lambda items, sep: sep.join(go_str(x) for x in items),
    "pad": lambda s, left, right: " " * left + go_str(s) + " " * right,
    "truncate": _truncate,
    "index": _index,
    "len": lambda x: len(x) if x is not MISSING and x is not None else 0,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _printf,
    "eq": _cmp("eq", lambda a, b: a == b),
    "ne": _cmp("ne", lambda a, b: a != b),
    "lt": _cmp("lt", lambda a, b: a < b),
    "le": _cmp("le", lambda a, b: a <= b),
    "gt": _cmp("gt", lambda a, b: a > b),
    "ge": _cmp("ge", lambda a, b: a >= b),
    "not": lambda x: not _truth(x),
}


# --------------------------------------------------------------------------- parsing

# Node kinds: ("text", str) | ("action", pipe) | ("if"|"with"|"range", pipe, body, else, vars)
Node = tuple[Any, ...]


def _lex_action(src: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            raise _error(f"unexpected {src[pos:].strip()[:10]!r} in command")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _split_actions(text: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", src)] with ``{{-``/``-}}`` trimming applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            parts.append(("text", text[pos:]))
            return parts
        chunk = text[pos:start]
        body_start = start + 2
        if text.startswith("{{- ", start) or text.startswith("{{-\t", start):
            chunk = chunk.rstrip()
            body_start += 1
        end = text.find("}}", body_start)
        if end < 0:
            raise _error("unclosed action")
        body = text[body_start:end]
        after = end + 2
        if body.endswith((" -", "\t-")):
            body = body[:-1]
            rest = text[after:]
            after += len(rest) - len(rest.lstrip())
        parts.append(("text", chunk))
        stripped = body.strip()
        if not (stripped.startswith("/*") and stripped.endswith("*/")):
            parts.append(("action", body))
        pos = after


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _split_actions(text)
        self.pos = 0

    def parse(self) -> list[Node]:
        nodes, stop = self._list()
        if stop is not None:
            raise _error(f"unexpected {{{{{stop}}}}}")
        return nodes

    def _list(self) -> tuple[list[Node], str | None]:
        nodes: list[Node] = []
        while self.pos < len(self.items):
            kind, src = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                if src:
                    nodes.append(("text", src))
                continue
            tokens = _lex_action(src)
            if not tokens:
                raise _error("missing value for command")
            head = tokens[0]
            if head == ("ident", "end"):
                return nodes, "end"
            if head == ("ident", "else"):
                return nodes, "else" + src.strip()[4:]
            if head[0] == "ident" and head[1] in ("if", "with", "range"):
                nodes.append(self._block(head[1], tokens[1:]))
                continue
            nodes.append(("action", self._pipe(tokens)[0], ()))
        return nodes, None

    def _block(self, keyword: str, tokens: list[tuple[str, str]]) -> Node:
        variables: tuple[str, ...] = ()
        if keyword == "range":
            decl = [i for i, t in enumerate(tokens) if t[0] == "decl"]
            if decl:
                names = [t[1] for t in tokens[: decl[0]] if t[0] == "var"]
                variables = tuple(names)
                tokens = tokens[decl[0] + 1 :]
        pipe, _ = self._pipe(tokens)
        body, stop = self._list()
        else_body: list[Node] = []
        if stop is not None and stop.startswith("else"):
            rest = stop[4:].strip()
            if rest.startswith("if ") and keyword == "if":
                else_body = [self._block("if", _lex_action(rest[3:]))]
                return (keyword, pipe, body, else_body, variables)
            else_body, stop = self._list()
        if stop != "end":
            raise _error(f"unexpected EOF in {keyword}")
        return (keyword, pipe, body, else_body, variables)

    def _pipe(self, tokens: list[tuple[str, str]], i: int = 0) -> tuple[list[list[Any]], int]:
        commands: list[list[Any]] = [[]]
        while i < len(tokens):
            kind, value = tokens[i]
            if value == ")" and kind == "punct":
                break
            if value == "|" and kind == "punct":
                commands.append([])
            elif value == "(" and kind == "punct":
                sub, i = self._pipe(tokens, i + 1)
                if i >= len(tokens) or tokens[i][1] != ")":
                    raise _error("unclosed left paren")
                commands[-1].append(("pipe", sub))
            else:
                commands[-1].append(_operand(kind, value))
            i += 1
        if any(not c for c in commands):
            raise _error("missing command in pipeline")
        return commands, i


def _operand(kind: str, value: str) -> tuple[str, Any]:
    if kind == "str":
        return ("lit", json.loads(value))
    if kind == "raw":
        return ("lit", value[1:-1])
    if kind == "num":
        return ("lit", float(value) if "." in value else int(value))
    if kind == "field":
        return ("field", [] if value == "." else value[1:].split("."))
    if kind == "var":
        name, _, chain = value.partition(".")
        return ("var", (name, chain.split(".") if chain else []))
    if kind == "ident":
        if value in ("true", "false"):
            return ("lit", value == "true")
        if value == "nil":
            return ("lit", None)
        if value not in FUNCS:
            raise _error(f'function "{value}" not defined')
        return ("func", value)
    raise _error(f"unexpected {value!r} in command")


# --------------------------------------------------------------------------- execution


def _field(base: Any, chain: list[str], args: list[Any], shown: str) -> Any:
    value = base
    for i, name in enumerate(chain):
        if value is MISSING or value is None:
            raise _error(f"executing at <{shown}>: nil pointer evaluating interface {{}}.{name}")
        if isinstance(value, dict):
            value = value.get(name, MISSING)
        else:
            attr = getattr(value, name, MISSING)
            if attr is MISSING or name.startswith("_"):
                raise _error(f"executing at <{shown}>: can't evaluate field {name}")
            value = attr
        last = i == len(chain) - 1
        if callable(value) and not isinstance(value, type):
            value = value(*args) if last else value()
    return value


class Template:
    """A parsed template; :meth:`execute` renders it for one value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = _Parser(text).parse()

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, {"$": data}, out)
        return "".join(out)

    def _run(self, nodes: list[Node], dot: Any, env: dict[str, Any], out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                out.append(go_str(self._pipe(node[1], dot, env)))
            elif kind in ("if", "with"):
                value = self._pipe(node[1], dot, env)
                if _truth(value):
                    self._run(node[2], value if kind == "with" else dot, env, out)
                else:
                    self._run(node[3], dot, env, out)
            else:
                self._range(node, dot, env, out)

    def _range(self, node: Node, dot: Any, env: dict[str, Any], out: list[str]) -> None:
        value = self._pipe(node[1], dot, env)
        items: list[tuple[Any, Any]]
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif value is None or value is MISSING:
            items = []
        elif isinstance(value, int):
            items = [(i, i) for i in range(value)]
        else:
            raise _error(f"range can't iterate over {go_str(value)}")
        if not items:
            self._run(node[3], dot, env, out)
            return
        names = node[4]
        for key, item in items:
            scope = dict(env)
            if len(names) == 1:
                scope[names[0]] = item
            elif len(names) >= 2:
                scope[names[0]], scope[names[1]] = key, item
            self._run(node[2], item, scope, out)

    def _pipe(self, commands: list[list[Any]], dot: Any, env: dict[str, Any]) -> Any:
        result: Any = MISSING
        for n, command in enumerate(commands):
            extra = [result] if n else []
            result = self._command(command, dot, env, extra)
        return result

    def _command(self, command: list[Any], dot: Any, env: dict[str, Any], extra: list[Any]) -> Any:
        head, rest = command[0], command[1:]
        if head[0] == "func":
            args = [self._arg(a, dot, env) for a in rest] + extra
            try:
                return FUNCS[head[1]](*args)
            except UserError:
                raise
            except (TypeError, ValueError, AttributeError) as err:
                raise _error(f"error calling {head[1]}: {err}") from None
        args = [self._arg(a, dot, env) for a in rest] + extra
        if head[0] == "field":
            return _field(dot, head[1], args, "." + ".".join(head[1]))
        if head[0] == "var":
            name, chain = head[1]
            if name not in env:
                raise _error(f"undefined variable: {name}")
            return _field(env[name], chain, args, name + "".join("." + c for c in chain))
        if args:
            raise _error("can't give argument to non-function")
        return self._arg(head, dot, env)

    def _arg(self, operand: tuple[str, Any], dot: Any, env: dict[str, Any]) -> Any:
        kind, value = operand
        if kind == "lit":
            return value
        if kind == "pipe":
            return self._pipe(value, dot, env)
        return self._command([operand], dot, env, [])


def render(text: str, data: Any) -> str:
    """Parse and execute ``text`` once."""
    return Template(text).execute(data)
