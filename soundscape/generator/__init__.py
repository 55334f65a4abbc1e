"""The code that runs the networks: prompt encoding and blending (conditioning), denoising with
latent continuation, decoding to 16 kHz audio. (The watchdog's CLAP score in stream/ also calls the
pipeline's CLAP model.)

May import: model/, ground modules. Never audio/, scene/, stream/ or a command folder.
"""
