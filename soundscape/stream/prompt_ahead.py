"""New prompts encoded while the chunk in flight runs (issue 32): a live change hands its prompts here first.

Why: a change of prompt (a new layer, an edited prompt, a scene file saved, the wake scene) used to be
encoded by the generator thread when it applied the change, after abandoning the chunk in flight; with
the text encoders released between uses (model/text_encoders.py), that meant loading them from disk
while nothing else happened. Here the prompts are encoded on a thread of their own as the request
arrives, while the generator goes on with its chunk; only when the embeddings are in the encoder's
cache is the change requested (`StreamSlot.request`), which abandons the chunk in flight then. The
stream's own `encode_all` then finds every prompt cached.

Order: changes reach the generator in the order they were asked for. A change needing no new prompt
(a weight, the width) goes straight to the slot, unless one that does is still encoding: then it waits
behind it, so that a `set` after an `add` never lands before the layer exists.

Threads: the encoder thread runs torch (the T5 and GPT-2 encoders) beside the generator's UNet. On
2 cores the two share them for the encoding's length (tens of milliseconds on the tiny model, about a
second on the full one once the encoders are loaded): the load from disk, the longer part, is mostly
I/O, which the UNet's work overlaps. The thread exists only while there is something to encode.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque


class PromptAhead:
    def __init__(self, slot, encoder):
        """`slot`: the stream's StreamSlot (its `request` and timeline); `encoder`: the stream's PromptEncoder."""
        self.slot, self.encoder = slot, encoder
        self._jobs: deque = deque()  # (prompts, change, epoch) not yet handed to the slot, in order
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """Changes asked for but not yet handed to the slot (the epoch of a new one counts them)."""
        return len(self._jobs)

    def submit(self, change, prompts=(), epoch: int = 0) -> None:
        """Hand `change(stream)` to the generator once `prompts` are encoded (at once when they are cached)."""
        prompts = [p for p in dict.fromkeys(prompts) if not self.encoder.has(p)]
        with self._lock:
            if not prompts and not self._jobs:
                self.slot.request(change)
                return
            self._jobs.append((prompts, change, epoch))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="soundscape-encode", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._worker = None
                    return
                prompts, change, epoch = self._jobs[0]
            if prompts:
                started = time.perf_counter()
                try:
                    self.encoder.encode_all(prompts)
                except Exception as exc:  # noqa: BLE001 - the stream reports it when the change is applied
                    print(f"\nsoundscape: encoding a new prompt failed ({type(exc).__name__}: {exc}); the generator "
                          f"tries again as it applies the change", file=sys.stderr)
                self.slot.log({"event": "encoded", "epoch": epoch, "prompts": len(prompts),
                               "encode_s": round(time.perf_counter() - started, 4), "t_s": self.slot.now()})
            with self._lock:
                self._jobs.popleft()
                self.slot.request(change)
