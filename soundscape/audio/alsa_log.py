"""ALSA's own error lines, kept off the terminal: an xrun is counted instead of printed.

alsa-lib prints "ALSA lib pcm.c:NNNN:(snd_pcm_recover) underrun occurred" on stderr each time the
device ran dry, under our status line and beside a figure that said 0 underruns. A handler set with
`snd_lib_error_set_handler` receives each message instead: `snd_pcm_recover`'s "occurred" is an xrun
(it calls `on_xrun`, on the audio thread that recovers the device); other lines (device probing noise)
are dropped. Where libasound is absent (macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...): the
# variadic tail is never read, so a fixed-argument callback takes the first five.
_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_char_p)
_installed = None  # the C callback: kept referenced for as long as ALSA may call it
_on_xrun = None


def _handler(file, line, function, err, fmt) -> None:
    # SNDERR("%s occurred", "underrun") in snd_pcm_recover (err is 0 there; the word is in the variadic tail)
    if function == b"snd_pcm_recover" and fmt == b"%s occurred" and _on_xrun is not None:
        _on_xrun()


def capture(on_xrun) -> bool:
    """Route ALSA's error lines to us from now on; `on_xrun()` for each underrun. False where there is no ALSA."""
    global _installed, _on_xrun
    _on_xrun = on_xrun
    if _installed is not None:
        return True
    name = ctypes.util.find_library("asound")
    if not name:
        return False
    try:
        lib = ctypes.CDLL(name)
        handler = _HANDLER_TYPE(_handler)
        lib.snd_lib_error_set_handler(handler)
    except (OSError, AttributeError):
        return False
    _installed = handler
    return True
