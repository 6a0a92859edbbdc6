"""The service's Prometheus metrics (prometheus-client, its own registry): the capture's counters read at scrape time,
latency histograms observed per frame, state changes, and the model as an info metric.

Names: ``edgecnn_frames_read_total``, ``edgecnn_frames_classified_total``, ``edgecnn_frames_dropped_total``,
``edgecnn_frames_corrupt_total``, ``edgecnn_reconnects_total``, ``edgecnn_state_changes_total`` (labels ``source``,
and ``state`` for the last), ``edgecnn_inference_seconds`` and ``edgecnn_end_to_end_seconds`` (histograms: from the
frame's capture to its prediction), ``edgecnn_fps``, ``edgecnn_frame_age_seconds``, ``edgecnn_state_info``
(the current state as a label), ``edgecnn_model_info`` (digest, format, precision, runtime, labels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecnn.errors import MissingDependencyError

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependencyError("prometheus-client", "serve", purpose="the /metrics page of edgecnn serve") from None
    return prometheus_client


class Metrics:
    """One registry per service. ``counters`` is called at each scrape: source -> {read, classified, dropped, corrupt,
    reconnects, fps, age_s, state}."""

    def __init__(self, counters: Callable[[], dict[str, dict[str, Any]]]) -> None:
        pc = _client()
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        self.inference = pc.Histogram(
            "edgecnn_inference_seconds", "model inference time per frame", ["source"], buckets=BUCKETS, registry=self.registry
        )
        self.end_to_end = pc.Histogram(
            "edgecnn_end_to_end_seconds",
            "from a frame's capture to its prediction",
            ["source"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.changes = pc.Counter("edgecnn_state_changes", "debounced state changes", ["source", "state"], registry=self.registry)
        self.reloads = pc.Counter("edgecnn_model_reloads", "model reloads, by outcome", ["outcome"], registry=self.registry)
        self.model = pc.Info("edgecnn_model", "the model being served", registry=self.registry)
        counters_fn = counters

        class _Capture:
            def collect(self) -> Any:
                per = counters_fn()
                for key, name, doc in (
                    ("read", "edgecnn_frames_read", "frames read from the source"),
                    ("classified", "edgecnn_frames_classified", "frames classified"),
                    ("dropped", "edgecnn_frames_dropped", "frames replaced by a newer one before they were classified"),
                    ("corrupt", "edgecnn_frames_corrupt", "frames that did not decode"),
                    ("reconnects", "edgecnn_reconnects", "reconnections to the source"),
                ):
                    fam = CounterMetricFamily(name, doc, labels=["source"])
                    for source, c in per.items():
                        fam.add_metric([source], c[key])
                    yield fam
                for key, name, doc in (
                    ("fps", "edgecnn_fps", "frames classified per second (last 2 s)"),
                    ("age_s", "edgecnn_frame_age_seconds", "seconds since the last classified frame"),
                ):
                    fam = GaugeMetricFamily(name, doc, labels=["source"])
                    for source, c in per.items():
                        fam.add_metric([source], c[key])
                    yield fam
                fam = GaugeMetricFamily(
                    "edgecnn_state_info", "the current debounced state (1 for it)", labels=["source", "state"]
                )
                for source, c in per.items():
                    fam.add_metric([source, c["state"] or ""], 1.0)
                yield fam

        self.registry.register(_Capture())

    def set_model(self, info: dict[str, str]) -> None:
        self.model.info({k: str(v) for k, v in info.items()})

    def observe(self, source: str, inference_s: float, end_to_end_s: float) -> None:
        self.inference.labels(source).observe(inference_s)
        self.end_to_end.labels(source).observe(end_to_end_s)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return self._pc.generate_latest(self.registry), self._pc.CONTENT_TYPE_LATEST
