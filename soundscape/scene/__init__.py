"""Scene files: the typed model (schema), the YAML reader (load), quality presets.

May import: ground modules and model/geometry. Never generator/, audio/, stream/ or a command folder.
"""

from .load import load_scene, parse_scene
from .schema import Scene

__all__ = ["Scene", "load_scene", "parse_scene"]
