"""Request bodies of the web mixer, checked with the scene files' own types.

A value the page may send is a value a scene file may hold, and a bad one gets the same one-line
message a scene file would (`weights.birds: expected a number from 0 to 1, got 2`). The transport's
bounds (fades, the sleep timer, the wake time) are the control requests' own types and checks
(stream/control_requests.py): one rule for the socket, this mixer and the command line.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from starlette.requests import Request

from ...scene.load import one_line
from ...web_access import MAX_BODY, BadBody, read_json_body
from ...stream.control_requests import (STOP_FADE_S, LayerRef, TimerSeconds, TransportFade, WakeAt, WakeFade,
                                        timer_needs_seconds, wake_needs_time)
from ...scene import Scene
from ...scene.schema import MAX_LAYERS, Layer, Weight


# Request bodies: the scene files' own types, so a value the page may send is a value a scene may hold.
def _field_type(model: type[BaseModel], name: str):
    field = model.model_fields[name]
    return Annotated[(field.annotation, *field.metadata)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightsBody(_Body):
    weights: dict[str, Weight]

    @model_validator(mode="after")
    def _some(self):
        if not 1 <= len(self.weights) <= MAX_LAYERS:
            raise ValueError(f"weights: expected 1 to {MAX_LAYERS} layers, each `name: weight`")
        return self


class NewLayerBody(Layer):  # a scene file's layer (prompt, weight) and its name
    name: LayerRef


class PromptBody(_Body):
    prompt: _field_type(Layer, "prompt")


class VolumeBody(_Body):
    volume: Weight


class WidthBody(_Body):
    width: Weight


class TimerBody(_Body):
    action: Literal["set", "extend", "cancel"]
    seconds: TimerSeconds | None = None

    @model_validator(mode="after")
    def _needs_seconds(self):
        timer_needs_seconds(self.action, self.seconds)
        return self


class StopBody(_Body):
    fade_seconds: TransportFade = STOP_FADE_S


class PauseBody(_Body):
    action: Literal["pause", "resume", "toggle"] = "toggle"


class WakeBody(_Body):
    action: Literal["set", "cancel"] = "set"
    at: WakeAt | None = None  # "07:00" or "+8h"
    fade_seconds: WakeFade | None = None

    @model_validator(mode="after")
    def _needs_time(self):
        wake_needs_time(self.action, self.at)
        return self


class SaveBody(_Body):
    name: _field_type(Scene, "name")


class BadRequest(Exception):
    """A request the mixer refuses: 400, with this one-line message."""


async def read_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """The body as `model`: JSON only, capped, whole within a deadline (web_access.read_json_body), then the
    scene's types; BadRequest (400, one line) otherwise."""
    try:
        data = await read_json_body(request, MAX_BODY)
        return model.model_validate(data)
    except BadBody as exc:
        raise BadRequest(str(exc)) from None
    except ValidationError as exc:
        raise BadRequest(one_line(exc)) from None
