"""Giving freed heap memory back to the system (glibc keeps it otherwise, and RSS stays high)."""

from __future__ import annotations

import gc


def give_back_heap(collect: bool = False) -> None:
    """malloc_trim(0): return every free page of every glibc arena; `collect` runs the GC first.

    Used where large buffers were just freed: after weights are replaced at load (prepacking,
    OpenVINO taking over) and when a `serve` listener leaves. Not a fixed M_MMAP_THRESHOLD, which
    also keeps RSS flat but makes every large tensor a fresh mmap: 320k page faults per UNet call,
    1.55x slower generation (docs/benchmarks.md, "Prepacked weights").
    """
    if collect:
        gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to give back
