"""Control requests, checked with the scene files' own types before anything changes.

Every door hands `LiveControl.handle` a JSON object: play's control socket (`soundscape set`, `status`),
the web mixer and serve's `POST /listeners/ID/set`. `parse_request` turns it into one of the models
below or raises ValueError with one line in the scene files' style (`weights.birds: expected a number
from 0 to 1, got 2`). A value a request may carry is a value a scene file may hold: the same number
ranges, the same text rules (no lone surrogates, no control characters), so no request can put the
player in a state a scene could not describe.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..scene.load import describe, one_line
from ..scene.schema import MAX_LAYERS, Prompt, Seconds, Weight, bad_text

STOP_FADE_S = 5.0  # "fade out and stop"
PAUSE_FADE_S = 1.0  # pause fades out, and resume fades in, over about a second (no click at either edge)


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
    seconds: Seconds | None = None


class StopRequest(_Req):
    cmd: Literal["stop"]
    fade_s: Seconds = STOP_FADE_S


class SceneRequest(_Req):
    cmd: Literal["scene"]


class PauseRequest(_Req):
    cmd: Literal["pause", "resume", "toggle"]
    fade_s: Seconds = PAUSE_FADE_S


def _wake_text(v):
    if not isinstance(v, str) or bad_text(v) or not 1 <= len(v) <= 40:
        raise ValueError("expected a local time like \"07:00\" or a delay like \"+8h\"")
    return v


class WakeRequest(_Req):
    cmd: Literal["wake"]
    action: Literal["set", "cancel"] = "set"
    at: Annotated[str, BeforeValidator(_wake_text)] | None = None
    fade_s: Seconds | None = None


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
