"""Run-directory reports: metrics.json (scikit-learn), history.csv and PNG plots (matplotlib)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else None,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist() if len(y_true) else [],
    }


def write_run_reports(folder: Path, model: Any, data: Any, history: list[dict], seconds: float) -> dict[str, Any]:
    split = "test" if len(data.x_test) else "validation"
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    metrics: dict[str, Any] = {
        "split": split,
        "n": int(len(y)),
        "train_seconds": round(seconds, 2),
        "train_images": int(len(data.x_train)),
        "classes": data.class_names,
        "skipped_files": [{"file": f, "why": why} for f, why in getattr(data, "skipped", [])],
    }
    if len(y):
        pred = model.predict(x, verbose=0, batch_size=256).argmax(axis=1)
        metrics |= classification_metrics(y, pred, data.class_names)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    keys = sorted({k for row in history for k in row} - {"stage", "epoch"})
    with open(folder / "history.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["stage", "epoch", *keys])
        w.writeheader()
        w.writerows(history)
    _plots(folder, history, metrics)
    return metrics


def _plots(folder: Path, history: list[dict], metrics: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, len(history) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(steps, [h.get(key, np.nan) for h in history], label=f"train {key}")
        ax.plot(steps, [h.get(f"val_{key}", np.nan) for h in history], label=f"validation {key}")
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "learning_curves.png", dpi=100)
    plt.close(fig)
    cm = np.array(metrics.get("confusion_matrix") or [[0]])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(cm, cmap="Blues")
    names = metrics.get("classes", [])
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({metrics.get('split')}, accuracy {metrics.get('accuracy') or 0:.3f})")
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=100)
    plt.close(fig)
