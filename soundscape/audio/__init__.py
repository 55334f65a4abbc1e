"""Audio after the model, numbers in and samples out: the output chain (join, resample, air, width,
loudness, fade), ring buffer, feeder, mixer taps, sound card, files, and `enhance` (a file through the chain).

May import: ground modules (errors, units, memory, periodic) and itself; never scene/, model/,
generator/, stream/ or a command folder. Settings arrive as plain numbers.
"""
