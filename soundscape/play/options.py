"""`PlayOptions`: what `soundscape play` was asked, typed and checked once (cli/play.py makes it).

Values that would fail only once the model is loaded are refused when the options are made: exit 2,
one line each, before anything slow starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..scene import Scene
from ..stream.options import ModelOptions

SHORT_RUN_S = 60.0
MAX_BUFFER_S = 600.0  # 10 minutes of 48 kHz stereo float32 is 220 MB: past that, a typo (`1000h`)


@dataclass(frozen=True)
class WebOptions:
    """`--web` and what implies it: the mixer's port (0: a free one), browser, save folder."""

    port: int = 0
    open: bool = False
    save_dir: str | None = None  # --web-save-dir DIR; "" beside the scene; None: "Save as scene" downloads


@dataclass(frozen=True)
class WakeOptions:
    at: str  # --wake: 07:00, or +8h
    fade_s: float | None = None
    scene: Scene | None = None  # --wake-scene, loaded and checked
    scene_path: str | None = None


@dataclass(frozen=True)
class PlayOptions:
    scene: Scene
    scene_path: str
    model: ModelOptions = ModelOptions()
    audio_device: str | None = None
    duration: float | None = None
    sleep: float | None = None
    fade_out: float | None = None
    buffer: float | None = None
    prefill: float | None = None
    timeline: str | None = None
    control: str | None = None
    quiet: bool = False
    mpris: bool = True
    wake: WakeOptions | None = None
    web: WebOptions | None = None
    budget: float | None = None  # --budget: the generator's share of wall time, in percent (stream/budget.py);
    # None: the scene's generation.budget schedule, else 100

    def __post_init__(self):
        from ..stream.timeline import check_timeline_path
        from .control_socket import check_socket_path

        for flag, value in (("--buffer", self.buffer), ("--prefill", self.prefill)):
            if value is not None and value > MAX_BUFFER_S:
                raise UsageError(f"{flag}: expected at most {MAX_BUFFER_S:g} s (10m), got {value:g} s")
        check_timeline_path(self.timeline)
        check_socket_path(self.control)
        if self.sleep is not None:  # the socket's bound for the sleep timer, before the model loads
            from ..stream.control_requests import check_timer

            try:
                check_timer(self.sleep)
            except ValueError as exc:
                raise UsageError(f"--sleep: {exc}, got {self.sleep:g} s") from None
        if self.wake is not None:
            import time

            from .wake import WakeTime, check_fade

            WakeTime.from_text(self.wake.at, time.time())  # the socket's bounds, before the model loads
            if self.wake.fade_s is not None:
                check_fade(self.wake.fade_s, "--wake-fade")

    @property
    def night_start(self) -> bool:
        """--wake without --sleep: quiet and idle from the start, until the wake time."""
        return self.wake is not None and self.sleep is None

    @property
    def prefill_s(self) -> float | None:
        """--prefill, or a --duration run that fits in a minute, generated whole before it starts (it never
        needs a cover-up)."""
        if self.prefill is not None:
            return self.prefill
        return self.duration if self.duration is not None and self.duration <= SHORT_RUN_S else None
