"""The only code that touches diffusers' models: denoising with latent continuation, decoding."""
