"""No usable sound: a stream whose model never makes a usable first chunk stops instead of covering for ever.

Why: a broken model (a vocoder that outputs zeros, a precision that makes NaN, a damaged cached conversion)
fails every chunk. Once something has played, the feeder covers a failing chunk with earlier material and the
loop retries (the right thing for a passing fault); with nothing played yet there is nothing to cover with,
and the player would sit silent for good, saying "earlier material plays".

The rule (one place, shared by `play` and each `serve` stream): until the stream's first usable chunk, a
failed try is a chunk the loop gave up on (the watchdog turned down each of its `quality_check.max_tries`
seeds, or making it raised), or a chunk made silent (below `quality_check.silence_db`) while its layers asked
for sound (what the watchdog would catch). A scene with `quality_check: {enabled: false}` asked for no such
judgement: there only errors and non-finite audio count. After NO_SOUND_TRIES
failed tries, or at a failed try NO_SOUND_S or more after the first try began, the stream gives up with
NoSoundError (exit code 7). A slow model that works is never stopped: it takes a failed try to give up. From
the first usable chunk on, the rule is off: later failures are covered as before.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import NoSoundError

NO_SOUND_TRIES = 5  # failed tries at the first chunk before the stream gives up
NO_SOUND_S = 60.0  # ... or this long after the first try began, at a failed try
WHAT_TO_CHECK = ("check the model folder (--model; a complete download?), try --dtype fp32 or --runtime torch, "
                 "and clear converted models with `soundscape cache clear`")


def silent_but_asked(audio: np.ndarray, weights: dict[str, float], silence_db: float) -> bool:
    """The audio is below `silence_db` (or not finite) while some layer asks for sound."""
    if not any(w > 0 for w in weights.values()):
        return False  # silence asked for: neither usable nor a failure
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        return True
    rms = math.sqrt(float(np.mean(x * x)))
    return 20 * math.log10(max(rms, 1e-12)) < silence_db


@dataclass
class FirstSound:
    """One stream's watch for its first usable chunk (the generator thread's; read by the owner)."""

    tries: int = NO_SOUND_TRIES
    seconds: float = NO_SOUND_S
    failures: int = 0
    sounded: bool = False  # a usable chunk was made: the rule is off
    gave_up: NoSoundError | None = None
    _started: float | None = None

    def trying(self) -> None:
        """A try at a chunk begins (the clock runs from the first)."""
        if self._started is None:
            self._started = time.monotonic()

    def failed(self, why: str) -> NoSoundError | None:
        """A try failed: the NoSoundError when this one is the last allowed, else None."""
        if self.sounded or self.gave_up is not None:
            return self.gave_up
        self.trying()
        self.failures += 1
        waited = time.monotonic() - self._started
        if self.failures >= self.tries or waited >= self.seconds:
            self.gave_up = NoSoundError(
                f"the model made no usable sound: {self.failures} tr{'y' if self.failures == 1 else 'ies'} at the "
                f"first chunk failed in {waited:.0f} s (last: {why}); {WHAT_TO_CHECK}")
        return self.gave_up

    def made(self, audio: np.ndarray, weights: dict[str, float], silence_db: float | None) -> NoSoundError | None:
        """A chunk was made: usable unless silent while asked for sound (then a failed try). `silence_db` None:
        the scene turned its quality check off, so quiet audio is what the user asked for (a model with random
        weights plays at about -180 dBFS): only errors and non-finite audio count then."""
        if self.sounded:
            return None
        if silence_db is None:
            silence_db = -math.inf
        if silent_but_asked(audio, weights, silence_db):
            return self.failed("silence")
        if any(w > 0 for w in weights.values()):
            self.sounded = True
        return None
