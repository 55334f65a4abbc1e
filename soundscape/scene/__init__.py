"""Scene files: the typed model (schema) and the YAML reader (load)."""

from .load import load_scene, parse_scene
from .schema import Scene

__all__ = ["Scene", "load_scene", "parse_scene"]
