"""`GET /metrics`: the hub's state as Prometheus text (prometheus_client), read when scraped.

A collector reads the live objects at scrape time, so nothing is counted twice and a listener
who leaves takes its series with it. Every counter only ever rises over the process's life (what
Prometheus's rate() and increase() assume): totals are kept by the hub and the loop, never summed
over the listeners connected now. Per-listener series are labelled with the listener's number,
never its id (the id is the key to its controls).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import admission

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector:
    def __init__(self, hub):
        self.hub = hub

    def collect(self):
        hub = self.hub
        listeners = list(hub.listeners.values())
        costs = list(hub.loop.costs)
        yield GaugeMetricFamily("soundscape_listeners", "Listeners connected now", value=len(listeners))
        yield GaugeMetricFamily("soundscape_listeners_in_memory",
                                "Listeners whose stream or buffers are in memory: the connected ones and any "
                                "gone one not yet freed (above soundscape_listeners for long: a leak)",
                                value=hub.in_memory())
        yield GaugeMetricFamily("soundscape_listener_capacity",
                                "Listeners the measured batches keep in real time (admission limit)",
                                value=hub.capacity())
        yield CounterMetricFamily("soundscape_listeners_joined", "Listeners admitted since start", value=hub.joined)
        yield CounterMetricFamily("soundscape_listeners_refused", "Listeners refused with 503", value=hub.refused)
        yield CounterMetricFamily("soundscape_batches", "Generator batches made", value=hub.loop.batches)
        yield CounterMetricFamily("soundscape_chunks", "Chunks generated for listeners since start",
                                  value=hub.loop.chunks)
        yield GaugeMetricFamily("soundscape_batch_size", "Streams in the last batch",
                                value=costs[-1].streams if costs else 0)
        yield GaugeMetricFamily("soundscape_batch_seconds", "Wall time of the last batch",
                                value=costs[-1].seconds if costs else 0)
        yield GaugeMetricFamily("soundscape_generator_rtf",
                                "New audio per wall second for each stream, recent batches (1 = real time)",
                                value=admission.per_stream_rtf(costs))
        per = [("soundscape_listener_coverups", "Cover-ups (earlier material while generation was late)",
                lambda x: x.playback.feeder.coverups),
               ("soundscape_listener_underruns", "Blocks the listener's clock found the buffer short",
                lambda x: x.playback.player.underruns),
               ("soundscape_listener_chunks", "Chunks generated for the listener", lambda x: x.gen.stats.chunks),
               ("soundscape_listener_seconds", "Audio sent to the listener", lambda x: x.playback.played_s())]
        for name, doc, value in per:
            family = CounterMetricFamily(name, doc, labels=["listener", "scene"])
            for x in listeners:
                family.add_metric([str(x.number), x.scene_name], value(x))
            yield family


def registry_for(hub) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
