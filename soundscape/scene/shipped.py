"""The scenes that ship inside the package, and finding a scene by name or path.

`soundscape play forest` plays the shipped forest scene wherever soundscape is installed; a path
that exists always wins, so a user's own `forest.yaml` beside them is never shadowed.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "scenes"


def shipped_scenes() -> dict[str, Path]:
    """name -> path of every shipped scene (the file name without .yaml)."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def find_scene(arg: str | Path) -> Path:
    """A scene argument as a path: the file if it exists, else the shipped scene of that name."""
    path = Path(arg).expanduser()
    if path.exists():
        return path
    if len(path.parts) == 1 and path.suffix in ("", ".yaml", ".yml"):
        found = shipped_scenes().get(path.stem)
        if found is not None:
            return found
    return path  # load_scene says it is missing, and how to list the shipped ones
