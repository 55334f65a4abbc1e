"""Control requests, checked with the scene files' own types before anything changes.

Every door hands `LiveControl.handle` a JSON object: play's control socket (`soundscape set`, `status`),
the web mixer and serve's `POST /listeners/ID/set`. `parse_request` turns it into one of the models
below or raises ValueError with one line in the scene files' style (`weights.birds: expected a number
from 0 to 1, got 2`). A value a request may carry is a value a scene file may hold: the same number
ranges, the same text rules (no lone surrogates, no control characters), so no request can put the
player in a state a scene could not describe.

The one rule for every door: a request is checked whole here, every value against the bounds below
(the command line's --wake/--wake-fade/--sleep, the web mixer's bodies and these models all use these
types and functions), then against the player's state by its owner (`LiveControl.handle`: nothing is
applied until every check has passed), and only then applied. A refused request changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import UsageError
from ..scene.load import describe, one_line
from ..scene.schema import MAX_LAYERS, Prompt, Seconds, Weight, bad_text
from ..units import DAY_S, parse_duration, parse_time_of_day

STOP_FADE_S = 5.0  # "fade out and stop"
PAUSE_FADE_S = 1.0  # pause fades out, and resume fades in, over about a second (no click at either edge)
MAX_TRANSPORT_FADE_S = 60.0  # the longest pause, resume or stop fade
MAX_TIMER_S = DAY_S  # the longest sleep timer (set, or what an extend adds)
MAX_WAKE_FADE_S = 3 * 3600.0  # the longest wake-up rise
MAX_WAKE_DELAY_S = DAY_S  # `+8h`: a nap of at most a day


# The bounds (each a check that raises ValueError, and the type that applies it) --------------------------
def _within(lo: float, hi: float, words: str):
    """A check that seconds are in (lo, hi] (lo < 0: [0, hi])."""
    def check(v: float) -> float:
        if not (v > lo if lo >= 0 else v >= 0) or v > hi:
            raise ValueError(f"expected {words}")
        return v
    return check


check_transport_fade = _within(-1, MAX_TRANSPORT_FADE_S, "at most 60 seconds")
check_timer = _within(0, MAX_TIMER_S, "more than 0 and at most 24 hours")
check_wake_fade = _within(0, MAX_WAKE_FADE_S, "more than 0 and at most 3 hours")
TransportFade = Annotated[Seconds, AfterValidator(check_transport_fade)]
TimerSeconds = Annotated[Seconds, AfterValidator(check_timer)]
WakeFade = Annotated[Seconds, AfterValidator(check_wake_fade)]


def parse_wake(text: str, what: str = "--wake") -> tuple[str, float]:
    """("at", seconds after midnight) for `07:00` / `06:45:30`, or ("in", seconds) for `+8h` / `+20m` (at most
    a day); UsageError naming `what` otherwise. The command line, the socket and the web mixer take the same."""
    text = str(text).strip()
    if text.startswith("+"):
        delay = parse_duration(text[1:], what=what)
        if delay > MAX_WAKE_DELAY_S:
            raise UsageError(f"{what}: expected a delay of at most 24 hours, got {text!r}")
        return "in", delay
    tod = parse_time_of_day(text)
    if tod is None:
        raise UsageError(f"{what}: expected a local time like 07:00 or 06:45:30 (24-hour), or a delay like "
                         f"+8h or +20m, got {text!r}")
    return "at", tod


def _wake_at(v):
    if not isinstance(v, str) or bad_text(v) or not 1 <= len(v) <= 40:
        raise ValueError("expected a local time like \"07:00\" or a delay like \"+8h\"")
    try:
        parse_wake(v, "at")
    except UsageError as exc:
        raise ValueError(str(exc).removeprefix("at: ").rsplit(", got ", 1)[0]) from None  # one_line adds the value
    return v


WakeAt = Annotated[str, BeforeValidator(_wake_at)]


def timer_needs_seconds(action: str, seconds, key: str = "seconds") -> None:
    if action != "cancel" and seconds is None:
        raise ValueError(f"{key}: expected a duration above 0 for {action!r}, like 1200 or 20m")


def wake_needs_time(action: str, at) -> None:
    if action == "set" and at is None:
        raise ValueError("at: give a time, e.g. \"07:00\" or \"+8h\"")


def _layer_ref(v):
    """A layer named in a request: text a scene key may hold. Whether such a layer may exist is the
    scene's check (scene/schema.py), so an `add` of "owls at night" gets the scene file's message."""
    if not isinstance(v, str):
        raise ValueError("expected a layer name in quotes")
    why = bad_text(v)
    if why:
        raise ValueError(why)
    if not 1 <= len(v) <= 200:
        raise ValueError("expected a layer name of 1 to 64 letters, digits, '-' or '_'")
    return v


LayerRef = Annotated[str, BeforeValidator(_layer_ref)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusRequest(_Req):
    cmd: Literal["status"]


class SetRequest(_Req):
    cmd: Literal["set"]
    weights: dict[LayerRef, Weight] = Field(min_length=1, max_length=MAX_LAYERS)


class PromptRequest(_Req):
    cmd: Literal["prompt"]
    layer: LayerRef
    prompt: Prompt


class AddRequest(_Req):
    cmd: Literal["add"]
    layer: LayerRef
    prompt: Prompt
    weight: Weight = 1.0


class RemoveRequest(_Req):
    cmd: Literal["remove"]
    layer: LayerRef


class VolumeRequest(_Req):
    cmd: Literal["volume"]
    volume: Weight


class WidthRequest(_Req):
    cmd: Literal["width"]
    width: Weight


class TimerRequest(_Req):
    cmd: Literal["timer"]
    action: Literal["set", "extend", "cancel"]
    seconds: TimerSeconds | None = None

    @model_validator(mode="after")
    def _seconds(self):
        timer_needs_seconds(self.action, self.seconds)
        return self


class StopRequest(_Req):
    cmd: Literal["stop"]
    fade_s: TransportFade = STOP_FADE_S


class SceneRequest(_Req):
    cmd: Literal["scene"]


class PauseRequest(_Req):
    cmd: Literal["pause", "resume", "toggle"]
    fade_s: TransportFade = PAUSE_FADE_S


class WakeRequest(_Req):
    cmd: Literal["wake"]
    action: Literal["set", "cancel"] = "set"
    at: WakeAt | None = None
    fade_s: WakeFade | None = None

    @model_validator(mode="after")
    def _time(self):
        wake_needs_time(self.action, self.at)
        return self


REQUESTS: dict[str, type[_Req]] = {
    "status": StatusRequest, "set": SetRequest, "prompt": PromptRequest, "add": AddRequest,
    "remove": RemoveRequest, "volume": VolumeRequest, "width": WidthRequest, "timer": TimerRequest,
    "stop": StopRequest, "scene": SceneRequest, "pause": PauseRequest, "resume": PauseRequest,
    "toggle": PauseRequest, "wake": WakeRequest,
}


def parse_request(request) -> _Req:
    """The request as its typed model; ValueError with one line saying what is wrong."""
    if not isinstance(request, dict):
        raise ValueError(f"expected a JSON object like {{\"cmd\": \"status\"}}, got {describe(request)}")
    cmd = request.get("cmd")
    model = REQUESTS.get(cmd) if isinstance(cmd, str) else None
    if model is None:
        raise ValueError(f"unknown command {describe(cmd) if not isinstance(cmd, str) else repr(cmd)}; expected "
                         f"status, set, prompt, add, remove, volume, width, timer, stop, scene, pause, resume, toggle or wake")
    try:
        return model.model_validate(request)
    except ValidationError as exc:
        raise ValueError(one_line(exc)) from None
    except RecursionError:  # a value nested thousands deep, from a door that does not limit depth itself
        raise ValueError("the request is nested too deeply") from None
