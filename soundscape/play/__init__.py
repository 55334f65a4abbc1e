"""`soundscape play`, `set`, `status`, `pause`/`resume`/`toggle`: the engine (threads, ring buffer, sound
card), the control socket, the web mixer (web/), the wake alarm (wake.py), the terminal's keys (keys.py)
and the desktop's media controls (mpris.py).

May import: stream/ and everything below it. Never render/ or serve/.
"""
