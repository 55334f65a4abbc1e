"""Probe: does OpenVINO's bf16 hint spoil a sinusoidal embedding, and can Python keep nodes in f32?

    python scripts/probe_marks.py   (docs/benchmarks.md, "Where OpenVINO's bf16 UNet lost 9 dB")

A 64-frequency sin(t f) embedding of t = 500 followed by an identity MatMul, compiled with the bf16
inference hint: the max error against numpy, without marks and with each rt_info spelling a Python
caller can set for `disable_fp16_compression`, before and after save_model, and whether the mark is
in the saved XML.
"""

import tempfile

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def build():
    t = ops.parameter([], np.float32, name="t")
    f = ops.constant(np.exp(-np.log(10000) * np.arange(64) / 64).astype(np.float32))
    x = ops.multiply(ops.unsqueeze(t, 0), f)
    s = ops.sin(x)
    y = ops.matmul(ops.unsqueeze(s, 0), ops.constant(np.eye(64, dtype=np.float32)), False, False)
    return ov.Model([y], [t]), [x, s]


def main():
    ref = np.sin(500.0 * np.exp(-np.log(10000) * np.arange(64) / 64))
    core = ov.Core()
    t = np.array(500.0, np.float32)
    for key, val in [(None, None), ("disable_fp16_compression_0", ""), ("disable_fp16_compression", True)]:
        m, nodes = build()
        if key:
            for n in nodes:
                n.get_rt_info()[key] = val
        out = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})(t)[0][0]
        d = tempfile.mkdtemp()
        ov.save_model(m, d + "/m.xml")
        saved = core.compile_model(core.read_model(d + "/m.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})(t)[0][0]
        print(f"mark {key}={val!r}: max error {np.abs(out - ref).max():.3f}, after save {np.abs(saved - ref).max():.3f}, "
              f"mark in the XML: {'disable_fp16' in open(d + '/m.xml').read()}")


if __name__ == "__main__":
    main()
