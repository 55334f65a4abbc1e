"""The listener's side: decode an Ogg/Opus or MP3 stream as its bytes arrive.

For tests and for checking a running server from the command line. Two things make it
incremental on a live HTTP response or socket file:
- `read(n)` on those blocks until n bytes have come; we ask for `read1(n)` where there is one,
  which returns whatever has arrived.
- The wrapper has no seek/tell, so FFmpeg treats the input as a pipe and never tries to jump to
  the end (the MP3 demuxer would, to look for a trailing tag and a duration).
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

import av
import numpy as np

from soundscape.serve.encode import FORMATS

# Small reads and a short look at the start, so the first frame comes out as soon as it is in.
READ_BYTES = 4096
OPEN_OPTIONS = {"probesize": "4096", "analyzeduration": "100000"}


class _Pipe:
    def __init__(self, fileobj: BinaryIO):
        self._read = getattr(fileobj, "read1", None) or fileobj.read

    def read(self, n: int) -> bytes:
        return self._read(n)


def decode_stream(fileobj: BinaryIO, fmt: str | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (float32 (n, channels), rate) for each decoded frame of the stream read from
    `fileobj`, until it ends. `fmt` ("opus" or "mp3"), when known, skips format probing."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"`fmt` must be None or one of {sorted(FORMATS)}, but is {fmt!r}")
    container_format = FORMATS[fmt].container if fmt else None
    with av.open(_Pipe(fileobj), mode="r", format=container_format, options=OPEN_OPTIONS,
                 buffer_size=READ_BYTES) as container:
        stream = container.streams.audio[0]
        # Packed float whatever the decoder gives (planar float for both); same rate and layout.
        to_flt = av.AudioResampler(format="flt")
        for frame in container.decode(stream):
            channels = len(frame.layout.channels)
            for out in to_flt.resample(frame):
                yield out.to_ndarray().reshape(-1, channels), out.sample_rate
