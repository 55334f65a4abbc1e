"""Reading scene files: safe YAML with line numbers, then the typed model.

Every problem becomes one SceneError line of the form

    scenes/x.yaml:12: layers.birds.weight: expected a number from 0 to 1, got 2

Scene files are data: yaml.SafeLoader only (no Python objects), a size cap,
a cap on the nodes that aliases may expand to (YAML bombs), no duplicate keys,
no tags beyond YAML's plain types (`!!python/...` is refused with a line, not a crash), nesting at
most MAX_DEPTH deep, and no text a terminal or the tokenizer cannot hold (lone surrogates, NUL and
other control characters), wherever it sits: a value, a key, a name.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import SceneError
from .schema import Scene, bad_text

MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 20_000  # far above any real scene, far below a billion laughs

MAX_DEPTH = 32  # real scenes nest 5 deep; PyYAML's composer recurses, and 500 levels hit RecursionError

_PATH_PREFIX = re.compile(r"^([A-Za-z0-9_.\-]+): (.*)$", re.S)


class _Lines:
    """Maps key paths like ('layers', 'birds', 'weight') to 1-based line numbers."""

    def __init__(self) -> None:
        self.lines: dict[tuple, int] = {}

    def best(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def printable(text: str) -> str:
    """`text` safe to print and to send as UTF-8: lone surrogates and control characters (but newlines
    and tabs) become backslash escapes. Error messages quote what was given, and that may be anything."""
    if not bad_text(text):
        return text
    return "".join(ch if not bad_text(ch) else ascii(ch)[1:-1] for ch in text)


def key_path(path) -> str:
    """A key path as messages show it, `layers.birds.weight`: every part on one line, whatever its name
    (a key may hold a newline; `printable` keeps those, for prose)."""
    return ".".join("".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(p)) for p in path)


class _TooDeep(Exception):
    """Nesting past MAX_DEPTH, at this line."""


class _Composer(yaml.SafeLoader):
    """SafeLoader's composer with a depth limit: deep nesting is refused with its line, not a RecursionError."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Loader(yaml.SafeLoader):
    """SafeLoader whose value errors (`!!int abc`, `2001-02-30`) carry the line, like YAML's own."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            kind = _show_tag(node.tag).removeprefix("!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {describe(node.value)} as {kind} ({exc})", node.start_mark) from None


class _NoSexagesimal:
    """YAML 1.1 reads `21:30` as the number 1290 (base 60); scene files mean a time of day by it
    (`at: 21:30`), so a value with a colon is never a number here (YAML 1.2 dropped base 60 too)."""

    def __init__(self, regexp):
        self.regexp = regexp

    def match(self, value: str):
        return None if ":" in value else self.regexp.match(value)


for _cls in (_Composer, _Loader):
    _cls.yaml_implicit_resolvers = {
        first: [(tag, _NoSexagesimal(rx) if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") else rx)
                for tag, rx in resolvers]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


# YAML's own plain-data types: a fixed list, so a constructor some library registers on
# SafeLoader cannot widen what a scene file may contain.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in (
    "null", "bool", "int", "float", "str", "binary", "timestamp", "seq", "map", "set", "omap", "pairs"))
_MERGE = "tag:yaml.org,2002:merge"  # the `<<:` of `<<: *defaults`, plain YAML


def _show_tag(tag: str) -> str:
    """A resolved tag as a user would write it: !!python/name:os.system, !local, !<tag:x.org,2000:y>."""
    if tag.startswith("tag:yaml.org,2002:"):
        return "!!" + tag.removeprefix("tag:yaml.org,2002:")
    return tag if tag.startswith("!") else f"!<{tag}>"


def _check_tag(node: yaml.Node, path: tuple, fail, key: bool = False) -> None:
    """Only YAML's plain-data tags; anything else (!!python/object/apply:..., !custom) is refused."""
    if node.tag not in _PLAIN_TAGS and not (key and node.tag == _MERGE):
        tag = _show_tag(node.tag)
        fail(path, f"scene files are plain data, and tags like {tag} are not allowed; remove the {tag} tag",
             line=node.start_mark.line + 1)


def _walk(node: yaml.Node, path: tuple, lines: _Lines, budget: list[int], fail) -> None:
    """Record line numbers and reject duplicate keys, alias bombs and foreign tags, before constructing."""
    budget[0] -= 1
    if budget[0] < 0:
        fail(path, f"the file holds more than {MAX_NODES} values, where a scene needs a few dozen (an alias counts "
                   f"each time it is used); write it out plainly")
    _check_tag(node, path, fail)
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode) and bad_text(node.value):
        fail(path, bad_text(node.value), line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            _check_tag(key_node, path, fail, key=True)
            if isinstance(key, str) and bad_text(key):
                fail(path, f"a key: {bad_text(key)}", line=line)
            if key in seen:
                fail(path + (key,), f"duplicate key {key!r} (first at line {seen[key]}); "
                     f"give each key once", line=line)
            seen[key] = line
            lines.lines.setdefault(path + (key,), line)
            _walk(value_node, path + (key,), lines, budget, fail)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, budget, fail)


def describe(value: Any) -> str:
    """A value as an error message shows it: text quoted and cut at 60 characters, containers by kind."""
    if isinstance(value, str):
        return printable(f'"{value[:60]}..."' if len(value) > 60 else f'"{value}"')
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"a number of {len(str(abs(value)))} digits"
    return repr(value)


def one_line(exc: ValidationError) -> str:
    """A pydantic error as one line in the scene files' style: `key.path: what was expected, got what`."""
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    key = key_path(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if err["type"] == "missing":
        return f"{key}: this key is required"
    msg = printable(err["msg"].removeprefix("Value error, "))
    return f"{key}: {msg}, got {describe(err['input'])}" if key and err["type"] != "value_error" or \
        key and not msg.startswith(key) else msg


def _message(err: dict, model_fields_at) -> tuple[tuple, str]:
    """Turn one pydantic error into (path, 'what was expected, got what. fix')."""
    loc = tuple(err["loc"])
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    m = _PATH_PREFIX.match(msg)
    if kind == "value_error" and m and "." in m.group(1) or (m and m.group(1) in {"generation", "evolution"}):
        path = tuple(int(p) if p.isdigit() else p for p in m.group(1).split("."))
        return path, m.group(2)
    if kind == "extra_forbidden":
        known = model_fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(known)}"
        return loc, f"unknown key {loc[-1]!r}; {hint}"
    if kind == "missing":
        return loc, "this key is required; add it"
    if kind == "literal_error":
        return loc, f"expected {err['ctx']['expected']}, got {describe(err.get('input'))}"
    if kind in ("too_short", "too_long") and loc and loc[-1] == "layers":
        return loc, "expected between 1 and 16 layers, each `name: {prompt: ..., weight: ...}`"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected a mapping of keys, got {describe(err.get('input'))}"
    if kind == "list_type":
        return loc, f"expected a list, got {describe(err.get('input'))}"
    if kind == "string_type":
        return loc, f"expected text, got {describe(err.get('input'))}"
    return loc, f"{msg}, got {describe(err.get('input'))}"


def _fields_at(path: tuple) -> list[str]:
    """Names of the keys allowed at a path in the scene model (for 'did you mean')."""
    import typing

    from pydantic import BaseModel

    model: Any = Scene
    skip_key = False
    for part in path:
        if isinstance(part, int) or skip_key:  # list index, or a key of a name -> value mapping
            skip_key = False
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return []
        ann = field.annotation
        skip_key = typing.get_origin(ann) is dict
        args = typing.get_args(ann)
        candidates = [ann, *args, *[a for arg in args for a in typing.get_args(arg)]]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if model is not None else []


def _format(label: str, line: int | None, path: tuple, text: str) -> str:
    where = f"{label}:{line}" if line else label
    key = key_path(path)
    line_text = f"{where}: {key}: {text}" if key else f"{where}: {text}"
    # One line, whatever a key or value held: newlines and tabs escaped too (printable keeps those)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line_text)


def parse_scene(text: str, label: str = "<scene>") -> Scene:
    """Parse scene YAML text. Raises SceneError with one clear line."""

    def fail(path, why, line=None):
        raise SceneError(_format(label, line or lines.best(path), path, why))

    lines = _Lines()
    try:
        node = yaml.compose(text, Loader=_Composer)
    except _TooDeep as exc:
        raise SceneError(_format(label, exc.args[0], (), f"lists or mappings nested more than {MAX_DEPTH} levels "
                                                          f"deep; a scene needs at most 5")) from None
    except yaml.reader.ReaderError as exc:  # NUL or another character YAML does not allow in a file
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SceneError(_format(label, line, (), f"character U+{code:04X} is not allowed in a scene file; "
                                                  f"remove it")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = (exc.problem or "not valid YAML").strip()
        hint = "use spaces, not tabs, to indent" if "\\t" in problem or "tab" in problem else \
            "check the indentation and quoting near that line"
        raise SceneError(_format(label, line, (), f"invalid YAML: {problem}; {hint}")) from None
    except yaml.YAMLError as exc:
        raise SceneError(_format(label, None, (), f"invalid YAML: {exc}")) from None
    if node is None:
        raise SceneError(_format(label, None, (), "the file is empty; a scene needs at least `name` and `layers`"))
    _walk(node, (), lines, [MAX_NODES], fail)
    if not isinstance(node, yaml.MappingNode):
        fail((), "expected a mapping at the top (name: ..., layers: ...)")
    try:
        data = _Loader(text).get_single_data()
    except yaml.YAMLError as exc:  # a list as a key, `!!int abc`, `2001-02-30`; _walk caught the tags
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = (getattr(exc, "problem", None) or str(exc)).strip()
        if problem == "found unhashable key":
            problem = "a key must be plain text, not a list or mapping"
        raise SceneError(_format(label, mark.line + 1 if mark else None, (),
                                 f"{problem}; scene files are plain data (text, numbers, lists, "
                                 f"mappings): check the value, or quote it if it is text")) from None
    try:
        return Scene.model_validate(data)
    except ValidationError as exc:
        # An unknown key explains the 'missing' error beside it: report it first.
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        path, why = _message(err, _fields_at)
        fail(path, why)
    raise AssertionError("unreachable")


def load_scene(path: str | Path) -> Scene:
    """Read and validate a scene file. Raises SceneError naming the file."""
    path = Path(path)
    label = str(path)
    if path.is_dir():
        raise SceneError(f"{label}: is a directory; pass a scene file, or a shipped scene's name such as forest")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SceneError(f"{label}: no such file, and no shipped scene of that name; "
                         f"`soundscape scenes` lists the shipped ones") from None
    except OSError as exc:
        raise SceneError(f"{label}: cannot read the file: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SceneError(f"{label}: the file is {len(raw)} bytes; scene files are limited to "
                         f"{MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SceneError(f"{label}:{line}: the file is not UTF-8 text (byte {exc.start}); "
                         f"save it as UTF-8") from None
    return parse_scene(text, label)
