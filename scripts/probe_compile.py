"""Probe: torch.compile (inductor) against eager for the UNet (guided batch) and the VAE decode (212 frames), bf16, full architecture with random weights.

    python scripts/probe_compile.py     (docs/benchmarks.md, "torch.compile on the full architecture")
"""
import time, torch, sys, json
from soundscape.model.architecture import build_random_audioldm2
m = build_random_audioldm2(dtype=torch.bfloat16)
pipe = m.pipe
lat2 = torch.randn(2, 8, 256, 16, dtype=torch.bfloat16)
gpt = torch.randn(2, 8, 768, dtype=torch.bfloat16); t5 = torch.randn(2, 32, 1024, dtype=torch.bfloat16); mask = torch.ones(2, 32, dtype=torch.long)
latd = torch.randn(1, 8, 212, 16, dtype=torch.bfloat16)
mel = torch.randn(1, 848, 64, dtype=torch.bfloat16)
def unet(u): return lambda: u(lat2, torch.tensor(500), encoder_hidden_states=gpt, encoder_hidden_states_1=t5, encoder_attention_mask_1=mask, return_dict=False)[0]
def vae(v): return lambda: v.decode(latd).sample
def voc(v): return lambda: v(mel)
out = {}
for name, mod, mk in (("unet", pipe.unet, unet), ("vae", pipe.vae, vae)):
    with torch.inference_mode():
        f = mk(mod); f()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
        eager = sum(ts) / len(ts)
        c = torch.compile(mod)
        g = mk(c)
        t0 = time.perf_counter(); g(); first = time.perf_counter() - t0
        ts = []
        for _ in range(3):
            t0 = time.perf_counter(); g(); ts.append(time.perf_counter() - t0)
        comp = sum(ts) / len(ts)
    out[name] = {"eager_s": round(eager, 3), "compile_first_call_s": round(first, 1), "compiled_s": round(comp, 3), "speedup": round(eager / comp, 3)}
    print(name, out[name], flush=True)
print(json.dumps(out))
