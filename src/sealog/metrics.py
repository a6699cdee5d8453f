"""GET /metrics in Prometheus's text format: what the store says of every org (its log,
checkpoints, exports, streams), read at each scrape, so that any process of a deployment
answers for all of them."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sealog.store.base import Store
from sealog.streams import manage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXPORT_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "expired")
STREAM_STATES = ("active", "paused", "failing", "disabled")


class StoreCollector:
    """Prometheus metrics of every org, read from the store when scraped."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        org, stream = ["org"], ["org", "stream", "name", "kind"]
        events = CounterMetricFamily("sealog_log_events", "Events in the org's log "
                                     "(every one ingested)", labels=org)
        signed = GaugeMetricFamily("sealog_checkpoint_tree_size", "Tree size of the org's "
                                   "latest signed checkpoint", labels=org)
        signed_at = GaugeMetricFamily("sealog_checkpoint_timestamp_seconds", "When the org's "
                                      "latest checkpoint was signed", labels=org)
        unsigned = GaugeMetricFamily("sealog_log_unsigned_events", "Events of the log no "
                                     "checkpoint covers yet", labels=org)
        exports = GaugeMetricFamily("sealog_exports", "The org's export jobs by status",
                                    labels=["org", "status"])
        lag = GaugeMetricFamily("sealog_stream_lag_events", "Events of the log the stream "
                                "has not sent yet", labels=stream)
        lag_seconds = GaugeMetricFamily("sealog_stream_lag_seconds", "How long the oldest "
                                        "event not yet sent has been in the log", labels=stream)
        delivered = CounterMetricFamily("sealog_stream_delivered_events", "Events the stream "
                                        "delivered", labels=stream)
        failures = CounterMetricFamily("sealog_stream_failures", "Failed delivery attempts "
                                       "of the stream", labels=stream)
        last = GaugeMetricFamily("sealog_stream_last_delivered_timestamp_seconds", "When the "
                                 "stream last delivered a batch", labels=stream)
        state = GaugeMetricFamily("sealog_stream_state", "1 for the stream's state, 0 for "
                                  "the others", labels=[*stream, "state"])
        for found in self.store.list_orgs():
            size = self.store.log_head(found.id).size
            events.add_metric([found.id], size)
            latest = self.store.latest_checkpoint(found.id)
            signed.add_metric([found.id], latest.size if latest else 0)
            if latest is not None:
                signed_at.add_metric([found.id], latest.created_at / 1_000_000)
            unsigned.add_metric([found.id], size - (latest.size if latest else 0))
            counts = dict.fromkeys(EXPORT_STATUSES, 0)
            for job in self.store.list_exports(found.id):
                counts[job.status] = counts.get(job.status, 0) + 1
            for status, count in counts.items():
                exports.add_metric([found.id, status], count)
            for row in self.store.list_streams(found.id):
                labels = [found.id, row.id, row.name, row.kind]
                lag.add_metric(labels, max(0, size - row.next_index))
                lag_seconds.add_metric(labels, manage.lag_seconds(self.store, row, size))
                delivered.add_metric(labels, row.delivered)
                failures.add_metric(labels, row.failures)
                if row.last_delivered_at is not None:
                    last.add_metric(labels, row.last_delivered_at / 1_000_000)
                for name in STREAM_STATES:
                    state.add_metric([*labels, name], 1 if row.state == name else 0)
        yield from (events, signed, signed_at, unsigned, exports, lag, lag_seconds, delivered,
                    failures, last, state)


def render(store: Store) -> bytes:
    """The metrics of every org, in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))  # type: ignore[arg-type]
    return generate_latest(registry)
