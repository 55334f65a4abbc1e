"""The scene file and command references, generated from the code: the schema and the parsers.

Why generated: a hand-written table of keys or flags drifts from `scene/schema.py` and the parsers the first
time either changes. A page says `<!-- reference: scene -->` or `<!-- reference: commands -->`, and `fill`
puts in the table made from `soundscape.scene.schema.Scene` (pydantic) or `build_parser()` (argparse): the
documentation site's build does it (scripts/docs_hooks.py), and so does `soundscape docs` from the installed
code. The one hand-written part is the sentence per scene key (SCENE_KEYS); a key the schema has and that
dict lacks, or the other way round, raises, so the site's build (and its test) fails and a new field cannot
ship undocumented.
"""

from __future__ import annotations

import argparse
import re
import typing

# What each scene key means, in a reader's words (the schema holds the types, limits and defaults).
SCENE_KEYS = {
    "name": "shown when playing",
    "description": "one line shown by `soundscape scenes`",
    "model": "a hub id or a local diffusers folder; `--model` wins, then this, then `$SOUNDSCAPE_MODEL`",
    "seed": "same seed, same audio; chunk k uses a seed derived from (seed, k)",
    "negative_prompt": "what to steer away from (AudioLDM 2 understands short captions of sounds)",
    "layers": "1 to 16 layers: a name of your choice, each with a prompt and a weight",
    "layers.NAME.prompt": "a short caption of the sound, as AudioLDM 2 understands it",
    "layers.NAME.weight": "its share of the blend (relative: two layers at 0.5 sound like two at 1.0)",
    "generation": "how each chunk is made",
    "generation.quality": "preset for steps, guidance interval and chunk (see Quality presets); auto: best on "
                          "a GPU, balanced on a CPU",
    "generation.chunk_seconds": "one AudioLDM 2 window; a multiple of 0.32 s",
    "generation.overlap_seconds": "how much of each chunk continues the last (at most half a chunk)",
    "generation.steps": "denoising steps per chunk; set, it also fixes play's adaptive steps",
    "generation.guidance_scale": "classifier-free guidance; 1 or less turns it off (twice as fast)",
    "generation.guidance_interval": "the part of the schedule that is guided, [start, end] from 0 to 1",
    "generation.scheduler": "the sampler",
    "generation.resample_passes": "RePaint passes for smoother joins (ddim only; slower)",
    "generation.budget": "the generator's CPU budget through the night, as steps of play time (pauses not "
                         "counted), e.g. `[{until: 20m, percent: 100}, {percent: 15}]`; `play --budget` wins",
    "generation.budget[].until": "this step lasts until this much play time (`20m`); every step but the last",
    "generation.budget[].percent": "the generator's share of the machine's CPU during the step",
    "evolution": "how the mix moves over time",
    "evolution.keyframes": "layer weights at times, eased between (seconds, or times of day: see At night)",
    "evolution.keyframes[].at": "seconds from the start (`90`, `15m`) or a time of day (`21:30`)",
    "evolution.keyframes[].weights": "layer name -> weight from 0 to 1",
    "evolution.loop_seconds": "repeat the keyframes, easing from the last to the first (not for clock scenes)",
    "evolution.drift": "a slow seeded wander of every weight",
    "evolution.drift.depth": "at most this far from the keyframes' weight",
    "evolution.drift.period_seconds": "how slowly it wanders",
    "evolution.transition_seconds": "how long a live change takes to fade in",
    "evolution.interpolation": "how prompts are blended; slerp keeps the embeddings' norms",
    "output": "what is played or written",
    "output.volume": "scales the level (the loudness target is at volume 1)",
    "output.fade_in_seconds": "fade-in at the start",
    "output.sample_rate": "play uses it if the device takes it, else the device's rate",
    "output.channels": "the model is mono; stereo comes from `width`",
    "output.loudness_lufs": "held by a slow loudness control (BS.1770), not per chunk",
    "output.width": "stereo width (0: the same signal twice); live in the mixer",
    "output.air": "air above 8 kHz (0: off; 1: 6 dB brighter than 0.5)",
    "quality_check": "the watchdog: every chunk is checked before it is played or written",
    "quality_check.enabled": "check every chunk",
    "quality_check.max_tries": "a failing chunk is made again with the chunk's next seeds, up to this many tries",
    "quality_check.silence_db": "quieter than this while the weights ask for sound: fail",
    "quality_check.clip_fraction": "share of samples at full scale allowed",
    "quality_check.dc_offset": "largest DC offset allowed",
    "quality_check.clap": "also score CLAP similarity to the blended prompts (off: random test models score noise)",
    "quality_check.min_clap": "lowest CLAP score allowed when `clap` is on",
}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _expects(field) -> str | None:
    """What a field's own check says it expects, asked of the check itself (so the page says what the code does)."""
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # `Seconds | None`: the check sits on the union's member
        metadata += list(getattr(arg, "__metadata__", ()))
    for meta in metadata:
        check = getattr(meta, "func", None)
        if check is None:
            continue
        try:
            check(object())
        except (ValueError, TypeError) as exc:
            return str(exc).removeprefix("expected ")
    return None


def _kind(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if annotation is bool:
        return "`true` or `false`"
    if typing.get_origin(annotation) is dict:
        return "a map"
    if typing.get_origin(annotation) is list:
        return "a list"
    if isinstance(annotation, type) and issubclass(annotation, tuple) or typing.get_origin(annotation) is tuple:
        return "a pair"
    return getattr(annotation, "__name__", str(annotation))


def scene_rows(model=None, prefix: str = ""):
    """(key, expects, default) for every key a scene file may hold, nested keys under their section."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    from ..scene.schema import Scene

    model = model or Scene
    for name, field in model.model_fields.items():
        key = prefix + name
        ann = field.annotation
        args = typing.get_args(ann)
        inner = None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            inner, child = ann, key + "."
        elif typing.get_origin(ann) is dict and args and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            inner, child = args[1], key + ".NAME."
        elif typing.get_origin(ann) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            inner, child = args[0], key + "[]."
        expects = "a section" if inner is not None and typing.get_origin(ann) is None else (_expects(field) or _kind(ann))
        if field.default_factory is not None:
            default = "`[]`" if typing.get_origin(ann) is list else ""
        elif field.default is PydanticUndefined:
            default = "required"
        elif isinstance(field.default, BaseModel):
            default = ""
        elif field.default is None:
            default = "none"
        elif field.default == "":
            default = "empty"
        elif isinstance(field.default, bool):
            default = f"`{str(field.default).lower()}`"
        else:
            value = field.default
            default = f"`{list(value) if isinstance(value, tuple) else value}`"
        yield key, expects, default
        if inner is not None:
            yield from scene_rows(inner, child)


def scene_reference() -> str:
    rows = list(scene_rows())
    keys = {key for key, _, _ in rows}
    missing, stale = sorted(keys - SCENE_KEYS.keys()), sorted(SCENE_KEYS.keys() - keys)
    if missing or stale:
        raise RuntimeError(f"soundscape/cli/reference.py: SCENE_KEYS is out of step with scene/schema.py: "
                         f"add {missing}, remove {stale}")
    lines = ["| key | expects | default | what it does |", "| --- | --- | --- | --- |"]
    for key, expects, default in rows:
        lines.append(f"| `{key}` | {_cell(expects)} | {_cell(default)} | {_cell(SCENE_KEYS[key])} |")
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser):
    """(name, one-line help, subparser) for every subcommand, in the order `--help` lists them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in action._choices_actions}
    for name, sub in action.choices.items():
        yield name, helps.get(name, ""), sub


def _flag_rows(sub: argparse.ArgumentParser):
    formatter = sub._get_formatter()
    for group in sub._action_groups:
        for act in group._group_actions:
            if act.help == argparse.SUPPRESS or isinstance(act, argparse._HelpAction):
                continue
            names = ", ".join(f"`{o}`" for o in act.option_strings) or f"`{act.metavar or act.dest}`"
            if act.option_strings and act.nargs != 0:
                names += f" `{formatter._format_args(act, formatter._get_default_metavar_for_optional(act))}`"
            text = formatter._expand_help(act) if act.help else ""
            if act.choices and not isinstance(act, argparse._SubParsersAction) and "{" not in names:
                text = (text + " " if text else "") + "(" + ", ".join(map(str, act.choices)) + ")"
            yield group.title, names, text


def command_names() -> list[str]:
    from . import build_parser

    return [name for name, _, _ in _subcommands(build_parser())]


def commands_reference() -> str:
    from . import build_parser

    parser = build_parser()
    out = []
    for name, summary, sub in _subcommands(parser):
        out += [f"### soundscape {name}", "", _cell(summary or ""), ""]
        if sub.description and sub.description != summary:
            out += [sub.description, ""]
        out += ["```text", sub.format_usage().strip(), "```", ""]
        rows = list(_flag_rows(sub))
        if rows:
            out += ["| argument | what it does | group |", "| --- | --- | --- |"]
            out += [f"| {_cell(names)} | {_cell(text)} | {_cell(group)} |" for group, names, text in rows]
            out.append("")
    return "\n".join(out)


GENERATORS = {"scene": scene_reference, "commands": commands_reference}
MARK = re.compile(r"<!-- reference: (\w+) -->")


def fill(markdown: str) -> str:
    """`markdown` with each reference mark replaced by its generated table."""
    return MARK.sub(lambda m: GENERATORS[m.group(1)](), markdown)
