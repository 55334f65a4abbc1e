"""`soundscape docs [TOPIC]`: the documentation's pages, printed from the installed package.

Why printed and not opened: the player often runs where no browser is at hand (a server, a bedside
machine over ssh), and the wheel carries the pages' Markdown (package data, soundscape/pages/, links to
the checkout's docs/), which reads fine in a terminal. The scene and command references are generated
here from the installed code, as the site's build does.
"""

from __future__ import annotations

import sys
from importlib import resources

from ..errors import UsageError

HELP = "print a page of the documentation (`soundscape docs` lists them; e.g. `soundscape docs at-night`)"


def add_parsers(sub) -> None:
    p = sub.add_parser("docs", help=HELP,
                       description="Print a page of the documentation, as installed with this package. Without "
                                   "TOPIC, list the pages. TOPIC is a page's name (at-night) or a word of it or "
                                   "its title (night, mixer).")
    p.add_argument("topic", nargs="?", metavar="TOPIC", help="a page's name, or a word of its name or title")


def pages() -> dict[str, str]:
    """Page name -> its Markdown, as shipped."""
    folder = resources.files("soundscape") / "pages"
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".md"):
            found[entry.name[:-3]] = entry.read_text(encoding="utf-8")
    return dict(sorted(found.items()))


def title(markdown: str) -> str:
    first = next((line for line in markdown.splitlines() if line.startswith("# ")), "")
    return first[2:].replace("`", "").strip()


def find(topic: str, found: dict[str, str]) -> str:
    """The one page `topic` names: its exact name, else the pages whose name or title contains it."""
    key = topic.strip().lower().removesuffix(".md")
    if key in found:
        return key
    hits = [name for name, text in found.items() if key and (key in name or key in title(text).lower())]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UsageError(f"docs: {topic!r} matches {', '.join(hits)}: name one of them")
    raise UsageError(f"docs: no page matches {topic!r}; the pages: {', '.join(found)}")


def cmd_docs(ns) -> int:
    from .reference import fill

    found = pages()
    if not ns.topic:
        width = max(map(len, found))
        for name, text in found.items():
            print(f"{name:<{width}}  {title(text)}")
        print("\nprint one with `soundscape docs NAME`; the same pages as a site: see the README", file=sys.stderr)
        return 0
    print(fill(found[find(ns.topic, found)]))
    return 0


COMMANDS = {"docs": cmd_docs}
