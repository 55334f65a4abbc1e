"""Probe: where the bf16 full model's resident memory goes, stage by stage, freed heap handed back each time.

Used for docs/benchmarks.md ("Memory"): RSS after building, after prepacking (before and after the
freed plain weights are handed back), then after each network's first call on each shape it sees:
    OMP_WAIT_POLICY=PASSIVE python scripts/probe_memory.py
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 OMP_WAIT_POLICY=PASSIVE python scripts/probe_memory.py
"""

import psutil
import torch

from soundscape.generator.denoise import latents_to_mel, mel_to_audio
from soundscape.memory import give_back_heap
from soundscape.model.architecture import build_random_audioldm2
from soundscape.model.prepack import prepack

proc = psutil.Process()


def report(what: str) -> None:
    print(f"{what:40s} RSS {proc.memory_info().rss >> 20} MiB", flush=True)


model = build_random_audioldm2(dtype=torch.bfloat16)
give_back_heap(collect=True)
report("built (bf16)")
for module in (model.pipe.unet, model.pipe.vae, model.pipe.vocoder):
    prepack(module)
report("prepacked")
give_back_heap(collect=True)
report("prepacked, freed heap handed back")
latents = torch.randn(2, 8, 256, 16, dtype=torch.bfloat16)
gpt = torch.randn(2, 8, 768, dtype=torch.bfloat16)
t5 = torch.randn(2, 32, 1024, dtype=torch.bfloat16)
mask = torch.ones(2, 32, dtype=torch.long)
with torch.inference_mode():
    model.pipe.encode_prompt(["birds in a forest"], "cpu", 1, True, negative_prompt=["low quality"])
    give_back_heap()
    report("prompt encoded")
    for batch in (2, 1):
        model.pipe.unet(latents[:batch], torch.tensor(500), encoder_hidden_states=gpt[:batch],
                        encoder_hidden_states_1=t5[:batch], encoder_attention_mask_1=mask[:batch], return_dict=False)
        give_back_heap()
        report(f"UNet, first call at batch {batch}")
    for frames in (256, 212):  # chunk 0's decode window, then every later chunk's
        mel = latents_to_mel(model, latents[:1, :, :frames])
        give_back_heap()
        report(f"VAE, first call on {frames} frames")
        mel_to_audio(model, mel)
        give_back_heap()
        report(f"vocoder, first call on {frames * 4} mel frames")
