"""The model's time geometry, in one place: AudioLDM 2 makes 16 kHz mono audio, and its VAE turns
every 4 mel frames of 160 samples into one latent frame.

  MODEL_RATE          16 000 samples a second
  SAMPLES_PER_FRAME   640 samples = 4 mel frames x 160 (the vocoder's hop)
  FRAME_S             0.04 s, one latent frame (25 a second)
  FRAME_QUANTUM       8 latent frames: the UNet downsamples time 8x, so a chunk is a multiple of 8
"""

MODEL_RATE = 16000
SAMPLES_PER_FRAME = 640
FRAME_S = SAMPLES_PER_FRAME / MODEL_RATE
FRAME_QUANTUM = 8
CHUNK_QUANTUM_S = FRAME_QUANTUM * FRAME_S
