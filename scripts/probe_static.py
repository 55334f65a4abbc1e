"""Probe: OpenVINO static-shape UNet against torch bf16 (prepacked): speed, memory per compiled shape, SNR.

    PYTHONPATH=. python scripts/probe_static.py [specs...]   (docs/benchmarks.md, "OpenVINO, static shapes")

Full cvssp/audioldm2 UNet, random weights rounded to bf16, T5 of 32 tokens, 256 latent frames, one
process. Two IRs of the same weights: `scalar` takes the timestep as a scalar (its sin/cos projection
inside the IR, lowered to bf16 by the hint), `host` takes the projection computed by torch in fp32
(what soundscape converts, model/openvino_runtime.py). A spec is IR@shape[:option]: shape b2 (batch 2
static), b1 (batch 1 static; a guided step is two calls), dyn (all dynamic), dynb (only the batch
dynamic); option nopin (ENABLE_CPU_PINNING off), accuracy (EXECUTION_MODE_HINT ACCURACY). `torch` is
torch bf16 with prepacked weights (today's torch path). Calls are interleaved (median of ROUNDS after
one warm-up each); SNR is each guided output against torch fp32; RSS is read after each compile.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import psutil  # noqa: E402
import torch  # noqa: E402

from soundscape.model.architecture import _unet  # noqa: E402
from soundscape.model.openvino_runtime import _UNetCall  # noqa: E402
from soundscape.model.precision import snr_db  # noqa: E402
from soundscape.model.prepack import prepack  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", 3))


def rss():
    return psutil.Process().memory_info().rss / 2**20


class ScalarCall(torch.nn.Module):
    def __init__(self, u):
        super().__init__()
        self.u = u

    def forward(self, x, t, gpt, t5, mask):
        return self.u(x, t, encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                      encoder_attention_mask_1=mask, return_dict=False)[0]


def main():
    import openvino as ov

    specs = sys.argv[1:] or ["torch", "scalar@b2", "host@b2", "host@b1", "host@dyn"]
    g = torch.Generator().manual_seed(1)
    t = torch.tensor(500)
    x, gpt = torch.randn(2, 8, 256, 16, generator=g), torch.randn(2, 8, 768, generator=g)
    t5, mask = torch.randn(2, 32, 1024, generator=g), torch.ones(2, 32, dtype=torch.long)
    torch.manual_seed(0)
    unet = _unet().eval()
    with torch.no_grad():
        unet.to(torch.bfloat16).float()
        ref = unet(x, t, encoder_hidden_states=gpt, encoder_hidden_states_1=t5, encoder_attention_mask_1=mask,
                   return_dict=False)[0]
        t_emb = unet.time_proj(t.reshape(1).float())
        paths, tmp = {}, tempfile.mkdtemp()
        for ir in sorted({s.split("@")[0] for s in specs} - {"torch"}):
            t0 = time.perf_counter()
            if ir == "scalar":
                m = ov.convert_model(ScalarCall(unet), example_input=(x, t, gpt, t5, mask), input=[
                    ov.PartialShape([-1, 8, -1, 16]), ov.PartialShape([]), ov.PartialShape([-1, -1, 768]),
                    ov.PartialShape([-1, -1, 1024]), ov.PartialShape([-1, -1])])
            else:
                m = ov.convert_model(_UNetCall(unet), example_input=(x, t_emb, gpt, t5, mask), input=[
                    ov.PartialShape([-1, 8, -1, 16]), ov.PartialShape([1, t_emb.shape[1]]),
                    ov.PartialShape([-1, -1, 768]), ov.PartialShape([-1, -1, 1024]), ov.PartialShape([-1, -1])])
            paths[ir] = f"{tmp}/{ir}.xml"
            ov.save_model(m, paths[ir], compress_to_fp16=True)
            print(f"{ir}: convert {time.perf_counter() - t0:.1f} s", flush=True)
            del m
        torch_unet = None
        if "torch" in specs:
            torch_unet = copy.deepcopy(unet).to(torch.bfloat16)
            prepack(torch_unet)
        del unet
        gc.collect()
    core = ov.Core()
    compiled = {}
    for spec in specs:
        if spec == "torch":
            continue
        ir, rest = spec.split("@")
        shape, _, option = rest.partition(":")
        before = rss()
        m = core.read_model(paths[ir])
        if shape != "dyn":
            b = {"b2": 2, "b1": 1, "dynb": -1}[shape]
            m.reshape({0: [b, 8, 256, 16], 2: [b, 8, 768], 3: [b, 32, 1024], 4: [b, 32]})
        cfg = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if option == "nopin":
            cfg["ENABLE_CPU_PINNING"] = False
        if option == "accuracy":
            cfg["EXECUTION_MODE_HINT"] = "ACCURACY"
        t0 = time.perf_counter()
        compiled[spec] = core.compile_model(m, "CPU", cfg)
        del m
        gc.collect()
        print(f"{spec}: compile {time.perf_counter() - t0:.1f} s, RSS +{rss() - before:.0f} MiB", flush=True)

    def run(spec, rows):
        """rows 2: a guided step (two calls for b1); rows 1: an unguided step."""
        if spec == "torch":
            sl = slice(0, rows)
            return torch_unet(x[sl].bfloat16(), t, encoder_hidden_states=gpt[sl].bfloat16(),
                              encoder_hidden_states_1=t5[sl].bfloat16(), encoder_attention_mask_1=mask[sl],
                              return_dict=False)[0].float()
        ir = spec.split("@")[0]
        tin = (t.numpy() if ir == "scalar" else t_emb.numpy())
        c = compiled[spec]
        parts = [slice(k, k + 1) for k in range(rows)] if "@b1" in spec else [slice(0, rows)]
        return torch.cat([torch.from_numpy(c([x[p].numpy(), tin, gpt[p].numpy(), t5[p].numpy(), mask[p].numpy()])[0])
                          for p in parts])

    outs, times = {}, {(s, r): [] for s in specs for r in (2, 1)}
    with torch.inference_mode():
        for spec in specs:
            outs[spec] = run(spec, 2)
            if "@b2" not in spec:
                run(spec, 1)
        for _ in range(ROUNDS):
            for spec in specs:
                for rows in (2, 1):
                    if rows == 1 and "@b2" in spec:
                        continue
                    t0 = time.perf_counter()
                    run(spec, rows)
                    times[spec, rows].append(time.perf_counter() - t0)
    base = {r: statistics.median(times["torch", r]) if "torch" in specs else None for r in (2, 1)}
    for spec in specs:
        cells = []
        for rows, label in ((2, "guided"), (1, "unguided")):
            if times[spec, rows]:
                med = statistics.median(times[spec, rows])
                cells.append(f"{label} {med:6.3f} s" + (f" ({base[rows] / med:4.2f}x torch)" if base[rows] else ""))
        print(f"  {spec:18s} {'  '.join(cells):60s} SNR {snr_db(outs[spec], ref):5.1f} dB", flush=True)


if __name__ == "__main__":
    main()
