"""Audio after the model, numbers in and samples out: the output chain (join, loudness, resample,
fades, channels), ring buffer, feeder, mixer taps, sound card, files.

May import: ground modules (errors, units, memory, periodic) and itself; never scene/, model/,
generator/, stream/ or a command folder. Settings arrive as plain numbers.
"""
