"""Host side: ``edgecnn qat RUN --out DIR``: the QAT Keras model alone, fine-tuned, with its labels and preprocessing.

The folder holds ``model.keras`` (the fake-quantising model: load it with ``edgecnn.host.convert.qat.layers`` imported,
or ``keras.saving.load_model(..., safe_mode=True)`` after that import), ``labels.txt``, ``preprocess.json`` and
``qat.json`` (epochs, time, data, validation accuracy before and after, the equalised layer pairs). It is written in
a staging folder and appears whole; an existing folder is refused without ``force``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError


def make_qat_model(
    model: str | Path,
    out: str | Path,
    *,
    epochs: int = 5,
    data: str | None = None,
    learning_rate: float | None = None,
    force: bool = False,
    trust: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (a run folder or .keras file) with fake quantisation into ``out``; the qat.json record."""
    from edgecnn.atomic import staged_directory
    from edgecnn.host.convert.output import locate_source
    from edgecnn.host.convert.qat.finetune import QATOptions, fine_tune, require_data
    from edgecnn.host.convert.qat.rewrite import check_supported
    from edgecnn.host.convert.source import load_source

    opts = QATOptions(epochs=epochs, data=data, learning_rate=learning_rate)
    opts.check()
    out = Path(out)
    located = locate_source(model)
    if out.resolve() == located.path.parent.resolve() or out.resolve() in located.path.resolve().parents:
        raise ConfigError(f"--out {out} would replace the model it reads ({located.path})", hint="choose another folder")
    if out.exists() and not force:
        raise ConfigError(f"output folder already exists: {out}", hint="use --force to replace it")
    source = load_source(model, trust=trust, located=located)
    check_supported(source.model)
    require_data(source, opts)
    result = fine_tune(source, opts, say=progress)
    record = result.to_dict() | {"source_model": {"path": str(source.path), "sha256": source.sha256}}
    with staged_directory(out, force=force) as tmp:
        result.model.save(tmp / "model.keras")
        (tmp / "labels.txt").write_text("\n".join(source.labels) + "\n", encoding="utf-8")
        source.spec.save(tmp / "preprocess.json")
        (tmp / "qat.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
