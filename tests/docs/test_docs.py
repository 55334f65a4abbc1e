"""The documentation: the site builds with warnings as errors, its references say what the code does, the
README stays short and its set-up commands stay CI's, and `soundscape docs` prints the installed pages.

The site is built by the real mkdocs with mkdocs.yml's own hook (no stand-in), into a temporary folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("mkdocs", reason="the dev extra's mkdocs builds the site")
pytest.importorskip("material", reason="the dev extra's mkdocs-material is the site's theme")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    # Not --quiet: it raises the log level past WARNING, and --strict then counts no warnings at all.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(site)], capture_output=True, text=True, timeout=120, cwd=config.parent,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = _build(ROOT / "mkdocs.yml", out)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    return out


def _text(html_file: Path) -> str:
    return re.sub(r"<[^>]+>", "", html_file.read_text())


def test_the_scene_reference_lists_every_key_of_the_schema_with_its_limits(site):
    from soundscape.cli.reference import scene_rows
    from soundscape.scene.schema import Output

    page = _text(site / "scenes" / "index.html")
    keys = [key for key, _, _ in scene_rows()]
    assert len(keys) > 40
    missing = [key for key in keys if key not in page]
    assert not missing, missing
    # Limits come from the schema's own checks: output.width's range, read back from the code.
    with pytest.raises(ValueError, match="from 0 to 1"):
        Output(width=2)
    assert re.search(r"output\.width\s*a number from 0 to 1\s*0\.5", page)


def test_the_command_reference_lists_every_subcommand_and_every_flag(site):
    from soundscape.cli import build_parser

    page = _text(site / "commands" / "index.html")
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"play", "render", "serve", "bench", "docs", "validate"} <= set(subs)
    for name, sub in subs.items():
        assert f"usage: soundscape {name}" in page, name
        flags = [o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
        missing = [flag for flag in flags if flag not in page]
        assert not missing, (name, missing)


def test_a_schema_key_without_a_description_stops_the_build(monkeypatch):
    from soundscape.cli import reference

    keys = dict(reference.SCENE_KEYS)
    del keys["output.air"]
    keys["output.loudness"] = "a key the schema does not have"
    monkeypatch.setattr(reference, "SCENE_KEYS", keys)
    with pytest.raises(RuntimeError, match=r"add \['output\.air'\], remove \['output\.loudness'\]"):
        reference.scene_reference()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    # The same config and pages, one page given a link to a page that does not exist.
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "docs_hooks.py", tmp_path / "scripts" / "docs_hooks.py")
    page = tmp_path / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md).\n")
    run = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert run.returncode != 0
    assert "no-such-page.md" in run.stdout + run.stderr


def test_every_page_of_the_site_is_installed_for_soundscape_docs():
    import yaml

    def files(nav):
        for item in nav:
            for value in item.values():
                yield from files(value) if isinstance(value, list) else [value]

    # mkdocs.yml has no tags for plain yaml to trip on.
    nav = set(files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    shipped = {p.name for p in (ROOT / "soundscape" / "pages").glob("*.md")}
    assert nav == shipped
    on_disk = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert nav == on_disk, on_disk ^ nav  # a new page goes in the nav (and in pages/), or the build warns
    for name in shipped:  # each is a link into docs/ that resolves, so the wheel carries the page itself
        assert (ROOT / "soundscape" / "pages" / name).resolve() == (ROOT / "docs" / name).resolve()


def _soundscape(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soundscape", *args], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


def test_soundscape_docs_lists_finds_and_prints_pages_with_their_references_filled():
    listing = _soundscape("docs")
    assert listing.returncode == 0 and re.search(r"^at-night\s+At night$", listing.stdout, re.M), listing.stdout
    night = _soundscape("docs", "night")  # a word of the name
    assert night.returncode == 0 and night.stdout.startswith("# At night") and "--wake-fade" in night.stdout
    scenes = _soundscape("docs", "scenes")
    assert "<!-- reference" not in scenes.stdout and "| `quality_check.min_clap` |" in scenes.stdout
    unknown = _soundscape("docs", "nonsense")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and "no page matches 'nonsense'" in unknown.stderr, unknown.stderr
    vague = _soundscape("docs", "serv")
    assert vague.returncode == 2 and "serve, serving" in vague.stderr, vague.stderr


def test_help_names_the_installed_pages_it_points_to():
    from soundscape.cli import build_parser
    from soundscape.cli.docs import pages

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    texts = [parser.format_help()] + [sub.format_help() for sub in subs.values()]
    # argparse wraps lines at hyphens too ("files-" / "and-loops"): join them back.
    flat = [re.sub(r"-\s+", "-", re.sub(r"\s+", " ", text)) for text in texts]
    named = {m for text in flat for m in re.findall(r"soundscape docs ([a-z-]+)", text)}
    assert {"at-night", "files-and-loops", "serving", "benchmarks"} <= named
    assert named <= set(pages()), named - set(pages())


def test_the_readme_is_short_and_its_set_up_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"^apt-get update && apt-get install -y (.+?) && (pip install .+)$", readme, re.M)
    assert install, "the README's set-up command"
    # Every package the README installs, CI installs; the pip line is CI's two pip lines in one.
    ci_apt = set(re.search(r"apt-get install -y -qq ([^>]+)", ci.replace("\\\n", " ")).group(1).split())
    assert set(install.group(1).split()) <= ci_apt, set(install.group(1).split()) - ci_apt
    assert install.group(2) == 'pip install "torch==2.13.0" -e ".[dev,ray,openvino]"'
    assert 'pip install -q "torch==2.13.0"' in ci and "pip install -q -e '.[dev,ray,openvino]'" in ci
    assert "\npython -m pytest -q\n" in readme and "\npython -m pytest -q\n" in ci
    assert "soundscape play forest" in readme and "CC-BY-NC-SA-4.0" in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_the_readmes_commands_parse_and_its_scene_validates(tmp_path):
    import shlex

    from soundscape.cli import build_parser
    from soundscape.scene import load_scene

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = [line.split("#")[0] for block in blocks for line in block.splitlines()
                if line.startswith("soundscape ")]
    assert len(commands) >= 6
    for command in commands:
        for part in command.split("&&"):  # `validate x && play x`
            build_parser().parse_args(shlex.split(part)[1:])  # a bad flag or value exits 2 here
    scene = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "study.yaml").write_text(scene)
    assert load_scene(tmp_path / "study.yaml").layers["rain"].weight == 0.8
