"""Count the FLOPs of one balanced chunk on the full architecture (meta tensors: nothing is computed).

Used for docs/benchmarks.md ("The ceiling of this CPU"):  python scripts/count_flops.py
"""

import torch
from torch.utils.flop_counter import FlopCounterMode

from soundscape.model.architecture import _unet, _vae, _vocoder

with torch.device("meta"):
    unet, vae, vocoder = _unet().eval(), _vae().eval(), _vocoder().eval()


def flops(f) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        f()
    return counter.get_total_flops()


def unet_call(batch: int, frames: int = 256, t5: int = 32):
    def call():
        unet(torch.randn(batch, 8, frames, 16, device="meta"), torch.tensor(500),
             encoder_hidden_states=torch.randn(batch, 8, 768, device="meta"),
             encoder_hidden_states_1=torch.randn(batch, t5, 1024, device="meta"),
             encoder_attention_mask_1=torch.ones(batch, t5, dtype=torch.long, device="meta"), return_dict=False)
    return call


guided, single = flops(unet_call(2)), flops(unet_call(1))
vae_f = flops(lambda: vae.decode(torch.randn(1, 8, 212, 16, device="meta")))
voc_f = flops(lambda: vocoder(torch.randn(1, 848, 64, device="meta")))
chunk = 5 * guided + 5 * single + vae_f + voc_f
print(f"UNet guided call (batch 2, 256 latent frames): {guided / 1e12:.3f} TFLOP")
print(f"UNet single call: {single / 1e12:.3f} TFLOP")
print(f"VAE decode, 212 latent frames: {vae_f / 1e12:.3f} TFLOP")
print(f"vocoder, 848 mel frames: {voc_f / 1e12:.3f} TFLOP")
print(f"balanced chunk (10 steps, 5 guided, later-chunk decode window): {chunk / 1e12:.2f} TFLOP "
      f"for 7.68 s of new audio; real time needs {chunk / 7.68 / 1e12:.3f} TFLOP/s sustained")
