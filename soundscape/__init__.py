"""soundscape: endless, seamless AI soundscapes streamed from scene files.

Data flows one way, and the folders show it:
  scene/      the file format                         (imports: ground modules)
  model/      weights, precision, runtimes            (imports: ground modules)
  generator/  prompt -> conditioning -> latents -> 16 kHz audio
  audio/      after the model: the output chain, ring buffer, feeder, device, files
  stream/     one scene as endless finished audio, and the one generation loop (shared core)
  play/ render/ serve/   one folder per command, over stream/; they never import each other
  cli/ (argparse in, typed options out; exit codes), bench/ and soak.py (tools); errors, units,
  memory, periodic, web_access, interrupts, caches (ground)
tests/test_layout.py checks these import rules.
"""

__version__ = "0.1.0"
