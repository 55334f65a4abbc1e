"""Typed scene model: what a scene file may say, with defaults and limits.

Pure data. Every model forbids unknown keys, so a misspelled key fails loudly.
Number checks raise messages of the form "expected a number from 0 to 1";
`scene.load` adds the file, line, key path and the value that was given.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..units import DAY_S, format_time_of_day, parse_duration, parse_time_of_day
from ..errors import UsageError

from ..model.geometry import CHUNK_QUANTUM_S, FRAME_S as LATENT_FRAME_S
MAX_PROMPT_CHARS = 1000
MAX_LAYERS = 16
MAX_KEYFRAMES = 1000
MAX_NAME_CHARS = 64  # a layer's name
# Why a bound on whole numbers: a 400-digit integer is valid YAML and JSON, but float() of it raises
# OverflowError, which no check expects. Nothing in a scene is anywhere near 10**18.
MAX_MAGNITUDE = 10**18


def finite(v) -> float | None:
    """`v` as a finite float, or None: a bool, a non-number, inf, nan or a number too large to hold."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int) and abs(v) > MAX_MAGNITUDE:
        return None
    return float(v) if math.isfinite(v) else None


def _number(lo: float | None, hi: float | None, *, integer: bool = False, lo_open: bool = False):
    """An annotated number type whose error says the whole expected range."""
    kind = "a whole number" if integer else "a number"
    show = (lambda x: str(int(x))) if integer else (lambda x: f"{x:g}")
    if lo is not None and hi is not None:
        expect = f"{kind} from {show(lo)} to {show(hi)}"
    elif lo is not None:
        expect = f"{kind} greater than {show(lo)}" if lo_open else f"{kind} of at least {show(lo)}"
    else:
        expect = kind

    def check(v):
        # Finite first: int() of inf raises OverflowError, and float() of a huge integer too.
        if finite(v) is None:
            raise ValueError(f"expected {expect}")
        if integer and float(v) != int(v):
            raise ValueError(f"expected {expect}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise ValueError(f"expected {expect}")
        if hi is not None and v > hi:
            raise ValueError(f"expected {expect}")
        return int(v) if integer else float(v)

    return Annotated[int if integer else float, BeforeValidator(check)]


def _seconds(v):
    """Seconds as a number (`90`) or a duration string (`"1m30s"`)."""
    if isinstance(v, bool):
        raise ValueError("expected seconds as a number or a duration like 90s or 5m")
    if isinstance(v, (int, float)):
        if finite(v) is None or v < 0:
            raise ValueError("expected seconds of at least 0")
        return float(v)
    if isinstance(v, str):
        if bad_text(v) or len(v) > 100:
            raise ValueError("expected seconds as a number or a duration like 90s or 5m")
        try:
            return parse_duration(v)
        except UsageError:
            raise ValueError("expected seconds as a number or a duration like 90s or 5m") from None
    raise ValueError("expected seconds as a number or a duration like 90s or 5m")


def bad_text(v: str) -> str | None:
    """Why `v` cannot be a prompt or a name, or None: text the tokenizer, a terminal and a UTF-8 file can
    all hold. A lone surrogate (`"\\ud800"` in JSON or YAML, or a Latin-1 byte that Python decoded with
    surrogateescape) passed every check once and then failed every chunk in the tokenizer."""
    for i, ch in enumerate(v):
        kind = unicodedata.category(ch)
        if kind == "Cs":
            return f"expected UTF-8 text, got a lone surrogate (U+{ord(ch):04X}) at character {i + 1}"
        if kind == "Cc" and not ch.isspace():
            return f"expected text without control characters, got U+{ord(ch):04X} at character {i + 1}"
    return None


def _text(max_chars: int, *, allow_empty: bool):
    def check(v):
        if not isinstance(v, str):
            raise ValueError("expected text in quotes")
        why = bad_text(v)
        if why:
            raise ValueError(why)
        v = " ".join(v.split())
        if not v and not allow_empty:
            raise ValueError("expected a non-empty description of the sound")
        if len(v) > max_chars:
            raise ValueError(f"expected at most {max_chars} characters ({len(v)} given)")
        return v

    return Annotated[str, BeforeValidator(check)]


def _layer_name(v):
    if not isinstance(v, str):
        raise ValueError("expected a layer name in quotes")
    if not v.replace("_", "").replace("-", "").isalnum() or not v.isprintable():
        raise ValueError("expected a layer name of letters, digits, '-' or '_'")
    if len(v) > MAX_NAME_CHARS:
        raise ValueError(f"expected a layer name of at most {MAX_NAME_CHARS} characters")
    return v


Weight = _number(0, 1)
LayerName = Annotated[str, BeforeValidator(_layer_name)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
Prompt = _text(MAX_PROMPT_CHARS, allow_empty=False)
OptionalText = _text(MAX_PROMPT_CHARS, allow_empty=True)


def _model_source(v):
    """A hub id or a folder: any text a file name may hold, but not a surrogate or control character."""
    if v is None:
        return v
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a hub id or a folder, in quotes")
    why = bad_text(v)
    if why or "\n" in v:
        raise ValueError(why or "expected a hub id or a folder on one line")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Strict):
    prompt: Prompt
    weight: Weight = 1.0


def _interval(v):
    """[start, end] as fractions of the denoising schedule (0 = the noisiest step, 1 = the last)."""
    expect = "expected [start, end] with 0 <= start < end <= 1, e.g. [0, 0.5]"
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError(expect)
    if any(finite(x) is None for x in v):
        raise ValueError(expect)
    lo, hi = float(v[0]), float(v[1])
    if not 0 <= lo < hi <= 1:
        raise ValueError(expect)
    return (lo, hi)


Interval = Annotated[tuple[float, float], BeforeValidator(_interval)]
QUALITIES = ("auto", "eco", "balanced", "best")


class BudgetStep(_Strict):
    """One step of a budget schedule: `percent` of the machine's CPU for the generator until `until` of play
    time (pauses not counted); the last step has no `until` and lasts the rest of the night."""

    until: Seconds | None = None
    percent: _number(1, 100)


class Generation(_Strict):
    # A preset for steps, guidance_interval and chunk_seconds (scene/quality.py); values set here win.
    quality: Literal["auto", "eco", "balanced", "best"] = "auto"
    chunk_seconds: _number(CHUNK_QUANTUM_S, 20.48) = 10.24
    overlap_seconds: _number(LATENT_FRAME_S, 10.0) = 2.56
    steps: _number(1, 500, integer=True) = 25
    guidance_scale: _number(0, 20) = 3.5
    guidance_interval: Interval = (0.0, 1.0)
    scheduler: Literal["dpmsolver++", "ddim"] = "dpmsolver++"
    resample_passes: _number(0, 10, integer=True) = 0
    # The generator's CPU budget through the night (stream/budget.py): e.g. [{until: 20m, percent: 100},
    # {percent: 15}]; `play --budget` wins. Empty: 100 % (or --budget).
    budget: list[BudgetStep] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _budget_steps(self):
        steps = self.budget
        if not steps:
            return self
        for i, step in enumerate(steps[:-1]):
            if step.until is None:
                raise ValueError(f"generation.budget.{i}.until: expected a play time (like 20m) on every step "
                                 f"but the last")
        if steps[-1].until is not None:
            raise ValueError(f"generation.budget.{len(steps) - 1}.until: expected no until on the last step "
                             f"(it lasts the rest of the night), got {steps[-1].until:g}")
        untils = [step.until for step in steps[:-1]]
        for i in range(1, len(untils)):
            if untils[i] <= untils[i - 1]:
                raise ValueError(f"generation.budget.{i}.until: expected a later time than the step before "
                                 f"({untils[i - 1]:g} s), got {untils[i]:g} s")
        return self

    def budget_schedule(self) -> tuple[tuple[float | None, float], ...]:
        """The schedule as (until play second or None, percent) pairs (stream/budget.py's form)."""
        return tuple((step.until, step.percent) for step in self.budget)

    @model_validator(mode="after")
    def _geometry(self):
        chunk_frames = self.chunk_seconds / LATENT_FRAME_S
        if abs(chunk_frames - round(chunk_frames / 8) * 8) > 1e-6:
            raise ValueError(
                f"generation.chunk_seconds: expected a multiple of {CHUNK_QUANTUM_S} s "
                f"(e.g. 5.12 or 10.24), got {self.chunk_seconds:g}"
            )
        overlap_frames = self.overlap_seconds / LATENT_FRAME_S
        if abs(overlap_frames - round(overlap_frames)) > 1e-6:
            raise ValueError(
                f"generation.overlap_seconds: expected a multiple of {LATENT_FRAME_S} s "
                f"(e.g. 2.56), got {self.overlap_seconds:g}"
            )
        if self.overlap_seconds > self.chunk_seconds / 2:
            raise ValueError(
                f"generation.overlap_seconds: expected at most half of chunk_seconds "
                f"({self.chunk_seconds / 2:g}), got {self.overlap_seconds:g}"
            )
        return self

    @property
    def chunk_frames(self) -> int:
        return int(round(self.chunk_seconds / LATENT_FRAME_S))

    @property
    def overlap_frames(self) -> int:
        return int(round(self.overlap_seconds / LATENT_FRAME_S))

    @property
    def hop_seconds(self) -> float:
        """The new audio each chunk adds (the scene's own geometry; a quality preset may change it)."""
        return (self.chunk_frames - self.overlap_frames) * LATENT_FRAME_S


class Drift(_Strict):
    depth: _number(0, 1) = 0.15
    period_seconds: _number(1, None, lo_open=False) = 180.0


def _keyframe_at(v):
    """When a keyframe applies: seconds from the start (`90`, `"5m"`), or a local time of day (`"21:30"`),
    kept as `HH:MM[:SS]` text so a saved mix writes it back as it was."""
    if isinstance(v, str) and ":" in v:
        seconds = parse_time_of_day(v) if not bad_text(v) and len(v) <= 20 else None
        if seconds is None:
            raise ValueError('expected a time of day from "00:00" to "23:59" (or "HH:MM:SS"), '
                             'or seconds from the start like 90 or 5m')
        return format_time_of_day(seconds)
    return _seconds(v)


class Keyframe(_Strict):
    at: Annotated[float | str, BeforeValidator(_keyframe_at)]
    weights: dict[str, Weight]

    @property
    def clock(self) -> bool:
        """A time of day (`at: "21:30"`), not seconds from the start."""
        return isinstance(self.at, str)

    @property
    def seconds(self) -> float:
        """Seconds from the start, or, for a time of day, seconds after local midnight."""
        return parse_time_of_day(self.at) if isinstance(self.at, str) else float(self.at)


class Evolution(_Strict):
    keyframes: list[Keyframe] = Field(default_factory=list, max_length=MAX_KEYFRAMES)
    loop_seconds: Seconds | None = None
    drift: Drift = Drift()
    transition_seconds: Seconds = 8.0
    interpolation: Literal["linear", "slerp"] = "linear"

    @property
    def follows_clock(self) -> bool:
        """The keyframes give times of day: the scene follows the local clock, wrapping at midnight."""
        return bool(self.keyframes) and self.keyframes[0].clock

    @model_validator(mode="after")
    def _order(self):
        if self.keyframes and any(k.clock != self.keyframes[0].clock for k in self.keyframes):
            first = self.keyframes[0]
            i, odd = next((i, k) for i, k in enumerate(self.keyframes) if k.clock != first.clock)
            want = 'a time of day like "21:30", as keyframe 0 has' if first.clock else \
                "seconds from the start, as keyframe 0 has"
            shown = f'"{odd.at}"' if odd.clock else f"{odd.at:g}"
            raise ValueError(
                f"evolution.keyframes.{i}.at: expected {want} (one scene's keyframes are all times of day "
                f"or all seconds from the start), got {shown}"
            )
        if self.follows_clock:
            seen: dict[float, int] = {}
            for i, k in enumerate(self.keyframes):
                if k.seconds in seen:
                    raise ValueError(f"evolution.keyframes.{i}.at: expected a time of day no other keyframe has, "
                                     f"got \"{k.at}\" (keyframe {seen[k.seconds]} has it too)")
                seen[k.seconds] = i
            if self.loop_seconds is not None:
                raise ValueError("evolution.loop_seconds: a scene whose keyframes are times of day repeats every "
                                 f"day ({DAY_S:g} s) by itself; remove loop_seconds")
            return self
        times = [k.at for k in self.keyframes]
        for i in range(1, len(times)):
            if times[i] <= times[i - 1]:
                raise ValueError(
                    f"evolution.keyframes.{i}.at: expected times in ascending order, "
                    f"got {times[i]:g} after {times[i - 1]:g}"
                )
        if self.loop_seconds is not None:
            if self.loop_seconds <= 0:
                raise ValueError("evolution.loop_seconds: expected a positive duration or null")
            if times and times[-1] >= self.loop_seconds:
                raise ValueError(
                    f"evolution.loop_seconds: expected a loop longer than the last keyframe "
                    f"({times[-1]:g} s), got {self.loop_seconds:g}"
                )
        return self


class Output(_Strict):
    volume: _number(0, 1) = 0.8
    fade_in_seconds: _number(0, 600) = 3.0
    sample_rate: Literal[16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000] = 48000
    channels: Literal[1, 2] = 2
    # EBU R128's programme level: quiet enough for background listening, with headroom for thunder.
    loudness_lufs: _number(-40, -10) = -23.0
    # Stereo width (audio/width.py), 0 = the same signal in both channels. 0.5 measured an L/R coherence
    # of 0.42-0.48 over 0.5-8 kHz on rain, a stream, wind, fire and birds (the middle of a recording's 0.2-0.6)
    # with the bass below 150 Hz at >= 0.94: wide, yet a source in the middle stays there.
    width: _number(0, 1) = 0.5
    # Air above 8 kHz (audio/air.py), 0 = off. 0.5 is the level the extension estimates: rain, a stream,
    # wind and fire came within 5 dB of their full-band originals in every third octave from 8 to 16 kHz.
    air: _number(0, 1) = 0.5

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "target_level_db" in data:
            raise ValueError(
                "output.target_level_db: replaced by output.loudness_lufs, a slow loudness control in LUFS "
                "(per-chunk levelling is gone); write e.g. `loudness_lufs: -23` instead")
        return data


class QualityCheck(_Strict):
    """The watchdog (stream/watchdog.py): checks every chunk before it is played; a failing one is made again."""

    enabled: bool = True
    max_tries: _number(1, 10, integer=True) = 3  # tries per chunk, the first included
    silence_db: _number(-120, 0) = -60.0  # quieter than this while the weights ask for sound: fail
    clip_fraction: _number(0, 1) = 0.001  # share of samples at full scale allowed
    dc_offset: _number(0, 1) = 0.05
    # CLAP similarity to the blended prompts: off by default (random test models score noise)
    clap: bool = False
    min_clap: _number(-1, 1) = 0.1


class Scene(_Strict):
    name: _text(200, allow_empty=False)
    description: OptionalText = ""
    model: Annotated[str | None, BeforeValidator(_model_source)] = None
    seed: _number(0, 2**32 - 1, integer=True) = 0
    negative_prompt: OptionalText = "low quality, distorted, music, speech"
    layers: dict[str, Layer] = Field(min_length=1, max_length=MAX_LAYERS)
    generation: Generation = Generation()
    evolution: Evolution = Evolution()
    output: Output = Output()
    quality_check: QualityCheck = QualityCheck()

    @model_validator(mode="after")
    def _keyframes_name_layers(self):
        for i, key in enumerate(self.evolution.keyframes):
            for name in key.weights:
                if name not in self.layers:
                    known = ", ".join(self.layers)
                    raise ValueError(
                        f"evolution.keyframes.{i}.weights.{name}: expected one of the layers ({known}), "
                        f"got {name!r}"
                    )
        for name in self.layers:
            try:
                _layer_name(name)
            except ValueError as exc:
                raise ValueError(f"layers.{name}: {exc}, got {name!r}") from None
        return self
