"""Audio after the model: the crossfade/level joiner, resampling, files, ring buffer, sound card."""
