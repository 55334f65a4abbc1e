"""Probe: OpenVINO against torch for the vocoder and the UNet (bf16 hint), full architecture, random weights.

    pip install openvino && python scripts/probe_openvino.py     (docs/benchmarks.md, "OpenVINO")
"""

import time

import torch

from soundscape.model.architecture import _unet, _vocoder


def timed(f, n=3):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n


def main():
    import openvino as ov

    core = ov.Core()
    torch.manual_seed(0)
    mel = torch.randn(1, 848, 64)  # a later chunk's decode window: 212 latent frames
    vocoder = _vocoder().eval()
    latents = torch.randn(2, 8, 256, 16)
    gpt, t5, mask = torch.randn(2, 8, 768), torch.randn(2, 32, 1024), torch.ones(2, 32, dtype=torch.long)
    unet = _unet().eval()

    class UNetCall(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, x, gpt, t5, mask):
            return self.u(x, torch.tensor(500), encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                          encoder_attention_mask_1=mask, return_dict=False)[0]

    for name, module, args in (("vocoder", vocoder, (mel,)), ("unet", UNetCall(unet), (latents, gpt, t5, mask))):
        with torch.no_grad():  # not inference_mode: OpenVINO traces the module afterwards
            bf16 = module.to(torch.bfloat16)
            targs = tuple(a.to(torch.bfloat16) if a.is_floating_point() else a for a in args)
            torch_s = timed(lambda: bf16(*targs))
            module.float()
        t0 = time.perf_counter()
        with torch.no_grad():
            model = ov.convert_model(module, example_input=args)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
        convert_s = time.perf_counter() - t0
        inputs = [a.numpy() for a in args]
        ov_s = timed(lambda: compiled(inputs))
        print(f"{name}: torch bf16 {torch_s:.3f} s, OpenVINO bf16 {ov_s:.3f} s, speedup {torch_s / ov_s:.2f}x, "
              f"convert+compile {convert_s:.1f} s", flush=True)


if __name__ == "__main__":
    main()
