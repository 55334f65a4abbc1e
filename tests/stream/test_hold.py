"""A held stream rests (issue 32: "while paused ... the generator idles"): the slot play's transport holds
starts no chunk once the one in flight is done, a live change still makes its chunk (heard at resume),
and letting go starts it again. Real parts: the tiny model and the generation loop on its thread, its
queue emptied as fast as it fills, so only the hold can stop it."""

import json
import queue
import time

from one_stream import looped

RATE = 16000
QUICK = {"generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 2},
         "evolution": {"transition_seconds": 0}, "output": {"sample_rate": RATE, "channels": 1}}


def test_a_held_stream_starts_no_chunk_but_a_change_s_and_works_again_when_let_go(tiny_model, tmp_path):
    timeline = tmp_path / "t.jsonl"
    stream, playback, slot, live, loop = looped(tiny_model, QUICK, timeline, RATE)
    taken = []

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                taken.append(playback.fresh.get(timeout=0.01))
            except queue.Empty:
                pass
            live.tick()

    def chunk_rows():
        return [json.loads(line) for line in timeline.read_text().splitlines() if '"gen_s"' in line]

    loop.start()
    try:
        drain(0.0)
        while slot.stats.chunks < 3:
            drain(0.1)
        gen_s = max(r["gen_s"] for r in chunk_rows())
        wait = 6 * gen_s + 0.5  # six chunks' work: unheld, the generator would make about six more
        playback.hold(True)
        assert playback.status()["generator_resting"] is True
        drain(2 * gen_s + 0.2)  # the chunk in flight finishes
        held_at = slot.stats.chunks
        drain(wait)
        assert slot.stats.chunks == held_at, "a held stream made chunks"
        # A live change while held: its chunk is made (heard at resume), then the stream rests again.
        assert live.handle({"cmd": "set", "weights": {"birds": 0.0}})["ok"]
        drain(wait)
        assert slot.stats.chunks == held_at + 1
        assert chunk_rows()[-1]["weights"]["birds"] == 0.0
        playback.hold(False)
        drain(wait)
        assert slot.stats.chunks >= held_at + 3, "let go, the generator works again"
    finally:
        loop.stop.set()
        loop.join(timeout=60)
