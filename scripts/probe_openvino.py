"""Probe: OpenVINO against torch bf16, module by module, full architecture, random weights, one process.

    pip install openvino && PYTHONPATH=. python scripts/probe_openvino.py [unet vocoder vae]
    (docs/benchmarks.md, "OpenVINO")

For each module: torch fp32 (the reference output), torch bf16, and OpenVINO with the bf16 hint from
two IRs of the same (bf16-rounded) weights, fp32 weights and fp16-compressed weights (what the
runtime caches for a half-precision model). Calls are interleaved (A B C A B C ...) after one warm-up
each, so a load change on a shared machine hits every variant alike; each figure is the median of
ROUNDS calls. SNR is each output against torch fp32 on the same inputs. torch runs with
OMP_WAIT_POLICY=PASSIVE, as the `soundscape` command sets it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the soundscape command runs torch (set before torch loads)

import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from soundscape.model.architecture import _unet, _vae, _vocoder  # noqa: E402
from soundscape.model.precision import snr_db  # noqa: E402

ROUNDS = 5


class UNetCall(torch.nn.Module):
    def __init__(self, u):
        super().__init__()
        self.u = u

    def forward(self, x, t, gpt, t5, mask):
        return self.u(x, t, encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                      encoder_attention_mask_1=mask, return_dict=False)[0]


class VAEDecode(torch.nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, z):
        return self.v.decode(z).sample


def cases(wanted):
    g = torch.Generator().manual_seed(1)
    t = torch.tensor(500)
    gpt, t5, mask = torch.randn(2, 8, 768, generator=g), torch.randn(2, 32, 1024, generator=g), torch.ones(2, 32, dtype=torch.long)
    x = torch.randn(2, 8, 256, 16, generator=g)
    if "unet" in wanted:
        torch.manual_seed(0)
        unet = UNetCall(_unet().eval())
        yield "unet guided (batch 2)", unet, (x, t, gpt, t5, mask)
        yield "unet unguided (batch 1)", unet, (x[:1], t, gpt[:1], t5[:1], mask[:1])
    if "vocoder" in wanted:
        torch.manual_seed(0)
        yield "vocoder (848 mel frames)", _vocoder().eval(), (torch.randn(1, 848, 64, generator=g),)
    if "vae" in wanted:
        torch.manual_seed(0)
        yield "VAE decode (212 frames)", VAEDecode(_vae().eval()), (torch.randn(1, 8, 212, 16, generator=g),)


def main():
    import openvino as ov

    wanted = sys.argv[1:] or ["unet", "vocoder", "vae"]
    core = ov.Core()
    converted = {}
    tmp = tempfile.mkdtemp()
    for name, module, args in cases(wanted):
        with torch.no_grad():
            module.to(torch.bfloat16).float()  # every variant gets the same bf16-valued weights
            ref = module(*args).float()
            bf16 = __import__("copy").deepcopy(module).to(torch.bfloat16)
            bargs = tuple(a.to(torch.bfloat16) if a.is_floating_point() else a for a in args)
            key = id(module)
            if key not in converted:  # one IR per module, any input shape (dynamic)
                t0 = time.perf_counter()
                shapes = [ov.PartialShape.dynamic(a.dim()) if a.dim() else ov.PartialShape([]) for a in args]
                model = ov.convert_model(module, example_input=args, input=shapes)
                convert_s = time.perf_counter() - t0
                paths = {}
                for compress in (False, True):
                    paths[compress] = f"{tmp}/{key}-{int(compress)}.xml"
                    ov.save_model(model, paths[compress], compress_to_fp16=compress)
                del model
                converted[key] = (convert_s, {c: core.compile_model(p, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
                                              for c, p in paths.items()})
            convert_s, compiled = converted[key]
        inputs = [a.numpy() for a in args]
        variants = {
            "torch bf16": lambda: bf16(*bargs).float(),
            "OpenVINO, fp32 IR": lambda: torch.from_numpy(compiled[False](inputs)[0]),
            "OpenVINO, fp16 IR": lambda: torch.from_numpy(compiled[True](inputs)[0]),
        }
        times = {v: [] for v in variants}
        outs = {}
        with torch.inference_mode():
            for v, f in variants.items():
                outs[v] = f().clone()  # warm-up (and the output for the SNR)
            for _ in range(ROUNDS):
                for v, f in variants.items():
                    t0 = time.perf_counter()
                    f()
                    times[v].append(time.perf_counter() - t0)
        base = statistics.median(times["torch bf16"])
        print(f"{name} (convert {convert_s:.1f} s):", flush=True)
        for v in variants:
            med = statistics.median(times[v])
            print(f"  {v:18s} {med:6.3f} s  speedup {base / med:4.2f}x  SNR vs torch fp32 "
                  f"{snr_db(outs[v], ref):5.1f} dB", flush=True)
        del bf16


if __name__ == "__main__":
    main()
