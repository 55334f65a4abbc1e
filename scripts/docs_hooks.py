"""mkdocs hook (mkdocs.yml: `hooks`): the scene file and command references, generated at every build.

The tables come from soundscape/cli/reference.py, from the schema and the parsers of the checkout this
file sits in, so the site says what the code does; `soundscape docs` fills the same marks from the
installed code. `python scripts/docs_hooks.py scene|commands` prints one table.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The checkout's package, not another installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soundscape.cli import reference  # noqa: E402


def on_page_markdown(markdown: str, **_) -> str:
    return reference.fill(markdown)


if __name__ == "__main__":
    print(reference.GENERATORS[sys.argv[1]]())
