"""soundscape: endless, seamless AI soundscapes streamed from scene files.

Data flows one way:
  scene (scene/) -> controller -> conditioning -> generator/ -> audio/crossfade
  -> audio/ring buffer -> audio/output (sound card) or audio/files (render)
`stream.py` chains the first steps into output audio; `engine.py` runs the threads for `play`.
"""

__version__ = "0.1.0"
