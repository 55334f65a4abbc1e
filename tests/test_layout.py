"""The package layout's import rules (each package's __init__.py says them in words).

Data flows one way: scene -> controller -> conditioning -> generator -> output chain -> buffer ->
output, and the folders show it: the command folders (play/, render/, serve/) sit over the shared
core (stream/), which sits over the blocks (generator/, model/, audio/, scene/) and the ground
modules. This test reads every module's imports (top-level and inside functions) with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import soundscape

PACKAGE = Path(soundscape.__file__).parent
COMMANDS = {"play", "render", "serve"}
GROUND = {"errors", "units", "memory", "periodic", "web_access", "interrupts", "caches"}
TOOLS = {"cli", "bench", "soak", "__main__", "__init__"}  # the top: may import anything
TOP_MODULES = GROUND | TOOLS - {"cli", "bench"}  # folders: argparse in, typed options out; measure and report
# What each part may import, besides itself and the ground modules.
ALLOWED = {
    "scene": {"model.geometry"},
    "model": set(),
    "generator": {"model"},
    "audio": set(),
    "stream": {"generator", "model", "audio", "scene"},
    **{c: {"stream", "generator", "model", "audio", "scene"} for c in COMMANDS},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, text: str | None = None) -> set[str]:
    """Every soundscape module `path` imports (or `text`, as if at `path`), as dotted names in the package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("soundscape")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("soundscape"):
                continue
            # `from . import x` names a module; `from .m import f` names m.
            found |= {f"{target}.{a.name}" for a in node.names} if not node.module else {target}
    return {f.removeprefix("soundscape.").removeprefix("soundscape") for f in found}


def _part(dotted: str) -> str:
    """The part of the package a module belongs to: its first folder, or the top-level module's name."""
    return dotted.split(".")[0] if dotted else "__init__"


def _allowed(source_part: str, target: str) -> bool:
    target_part = _part(target)
    if target_part in (source_part, *GROUND) or source_part in TOOLS:
        return True
    if source_part in GROUND:
        return False
    return any(target == a or target.startswith(a + ".") or target_part == a for a in ALLOWED[source_part])


def test_every_import_follows_the_layout():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path).removeprefix("soundscape").removeprefix(".")
        part = _part(source)
        for target in sorted(_imports(path)):
            if not _allowed(part, target):
                broken.append(f"{path.relative_to(PACKAGE.parent)} imports soundscape.{target}")
    assert not broken, "imports against the layout (see soundscape/__init__.py):\n" + "\n".join(broken)


def test_the_rule_reader_sees_relative_and_function_level_imports():
    # The checker must see an import inside a function, in every form, or the rules mean nothing.
    text = ("def f():\n    from ..scene import Scene\n    from ..play import engine\n"
            "    from .. import serve\n    import soundscape.render.plain\n")
    found = _imports(PACKAGE / "audio" / "probe.py", text)
    assert found == {"scene", "play", "serve", "render.plain"}
    assert not _allowed("audio", "scene") and not _allowed("stream", "play.engine")
    assert not _allowed("play", "serve.hub") and _allowed("serve", "stream.scene_stream")
    assert _allowed("scene", "model.geometry") and not _allowed("scene", "model.loading")


def test_the_top_of_the_package_holds_no_command_code():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert top == TOP_MODULES, f"modules at the top beyond the tools and ground: {sorted(top - TOP_MODULES)}"
    assert folders == {"scene", "model", "generator", "audio", "stream", "play", "render", "serve", "cli", "bench"}
    for folder in folders:  # each package says what it owns and what it may import
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"soundscape/{folder}/__init__.py: no import rule in its docstring"


def test_no_two_classes_share_a_name():
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where = str(path.relative_to(PACKAGE.parent))
                if node.name in seen and seen[node.name] != where:
                    clashes.append(f"{node.name}: {seen[node.name]} and {where}")
                seen.setdefault(node.name, where)
    assert not clashes, clashes


def _below_cli() -> list[Path]:
    """Every module under the command boundary: all but the tools at the top (cli/, bench, soak)."""
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if _part(_module_name(p).removeprefix("soundscape").removeprefix(".")) not in TOOLS]


def _reads_a_namespace(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and (getattr(node, "id", None) == "Namespace"
                                                             or getattr(node, "attr", None) == "Namespace"):
            found.append(f"line {node.lineno}: Namespace")
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and node.args
              and getattr(node.args[0], "id", None) in ("args", "ns")):
            found.append(f"line {node.lineno}: getattr({node.args[0].id}, ...)")
        elif isinstance(node, ast.arg) and node.arg in ("args", "ns") and node.annotation is None:
            found.append(f"line {node.lineno}: a parameter named {node.arg}")
    return found


def test_nothing_below_cli_reads_an_argparse_namespace():
    """cli turns the flags into frozen options dataclasses; below it, typed options only (style guide, Wiring)."""
    broken = [f"{p.relative_to(PACKAGE.parent)} {hit}" for p in _below_cli()
              for hit in _reads_a_namespace(ast.parse(p.read_text(encoding="utf-8")))]
    assert not broken, "\n".join(broken)
    probe = ast.parse("def f(args):\n    return getattr(args, 'x', None)\n")
    assert len(_reads_a_namespace(probe)) == 2  # the checker sees both forms


def _private_imports(path: Path, tree: ast.AST) -> list[str]:
    """`from soundscape.<other part> import _name`: a private name taken across folders."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    here = _part(name.removeprefix("soundscape").removeprefix("."))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + [node.module])
        else:
            target = node.module
        if not target.startswith("soundscape") or _part(target.removeprefix("soundscape").removeprefix(".")) == here:
            continue
        found += [f"{a.name} from {target}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_is_imported_across_folders():
    broken = [f"{p.relative_to(PACKAGE.parent)} imports {hit}" for p in sorted(PACKAGE.rglob("*.py"))
              for hit in _private_imports(p, ast.parse(p.read_text(encoding="utf-8")))]
    assert not broken, "a private name used by another folder should be public (or stay home):\n" + "\n".join(broken)
    probe = "from ..model.source import _check_folder\nfrom .geometry import _x\n"
    assert _private_imports(PACKAGE / "scene" / "probe.py", ast.parse(probe)) == ["_check_folder from soundscape.model.source"]
