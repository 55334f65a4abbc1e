"""`soundscape play`, `set`, `status`, `pause`/`resume`/`toggle`: PlayOptions (options.py), the session's
wiring (session.py), the engine (threads, sound card), the transport (transport.py: pause, sleep timer,
stop, volume, the wake alarm of wake.py), the control socket, the web mixer (web/), the terminal's keys
(keys.py) and the desktop's media controls (mpris.py).

May import: stream/ and everything below it. Never render/ or serve/.
"""
