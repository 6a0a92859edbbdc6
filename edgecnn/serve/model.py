"""The served model, shared by every source's loop and ``POST /classify``, and replaced whole on reload.

A reload opens the artifact again (a deploy may have switched its ``current`` link), runs the new model's self-check,
and only then swaps it in under the lock: frames keep flowing through the old model meanwhile, and a model that fails
its self-check (or does not open) is refused with the reason while the old one keeps running. Two threads never run
one runtime at once (the classifier's buffers are its own): ``classify`` holds the lock for one inference.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError
from edgecnn.serve.config import ServeConfig


@dataclass
class ReloadOutcome:
    ok: bool
    why: str = ""
    digest: str = ""
    seconds: float = 0.0
    time: float = field(default_factory=time.time)

    def line(self) -> str:
        if self.ok:
            return f"model reloaded: {self.digest[:12]} (self-check passed, {self.seconds:.2f} s)"
        return f"model reload refused, the previous model keeps running: {self.why}"


def _open(cfg: ServeConfig) -> tuple[Any, dict[str, Any]]:
    """Open and self-check the artifact of ``cfg``: (classifier, self-check record). Raises on failure."""
    from edgecnn.devices import detect, load_profile
    from edgecnn.runtime import Classifier, selfcheck
    from edgecnn.signing import trust_key_from

    profile = load_profile(cfg.device or detect()[0])
    clf = Classifier(
        cfg.artifact,
        profile=profile,
        runtime=cfg.runtime,
        accelerator=cfg.accelerator,
        threads=cfg.threads,
        top_k=cfg.top_k,
        trust_key=trust_key_from(cfg.trust_key),
    )
    try:
        checked = selfcheck.require(clf, skip=cfg.skip_self_check)
    except BaseException:
        clf.close()
        raise
    return clf, checked


def digest_of(clf: Any) -> str:
    return str(clf.manifest.to_dict()["integrity"]["digest"])


class Model:
    """The classifier in use (``classify`` is thread-safe), its description and digest, and ``reload``."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self.clf, self.self_check = _open(cfg)
        self.target = self._resolve()
        self._describe()

    def _resolve(self) -> str:
        """Where the artifact path leads now (deploy's ``current`` link is switched atomically)."""
        return os.path.realpath(self.cfg.artifact)

    def _describe(self) -> None:
        d = self.clf.describe()
        self.digest = digest_of(self.clf)
        self.labels = list(self.clf.labels)
        self.info = {
            "digest": self.digest,
            "format": str(d.get("format", "")),
            "precision": str(d.get("precision", "")),
            "runtime": f"{d.get('runtime', '')} {d.get('version', '')}".strip(),
            "artifact": self.target,
            "labels": ",".join(self.labels),
        }

    def classify(self, image: np.ndarray, *, source_order: str = "BGR") -> Any:
        with self._lock:
            return self.clf.classify(image, source_order=source_order)

    def changed_on_disk(self) -> bool:
        """Whether the artifact path now leads somewhere else (a deploy switched ``current``)."""
        try:
            return self._resolve() != self.target
        except OSError:
            return False

    def reload(self) -> ReloadOutcome:
        """Open the artifact again; swap it in only when it opens and passes its self-check."""
        with self._reload_lock:
            t0 = time.perf_counter()
            target = self._resolve()
            try:
                clf, checked = _open(self.cfg)
            except EdgeCNNError as exc:
                self.target = target  # judged: not retried until the link moves again or SIGHUP
                return ReloadOutcome(False, exc.message)
            with self._lock:
                old, self.clf, self.self_check, self.target = self.clf, clf, checked, target
            old.close()
            self._describe()
            return ReloadOutcome(True, digest=self.digest, seconds=time.perf_counter() - t0)

    def close(self) -> None:
        with self._lock:
            self.clf.close()
