"""`soundscape play`, `set`, `status`: the engine (threads, ring buffer, sound card), the control
socket, and the web mixer (web/).

May import: stream/ and everything below it. Never render/ or serve/.
"""
