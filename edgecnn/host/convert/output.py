"""Where a conversion writes: one output folder holds one conversion of one source model, replaced whole.

Every artifact of a conversion is built in a hidden staging folder beside the output folder, with the summary,
(and the signatures, with ``--sign-key``); only then does the staging folder take the output folder's place, in
one step (``atomic.publish``). A kill at any moment leaves the old set or the new one, never a mix.

Converting some precisions again into the folder of the *same* source model (``--force --precision ...``) keeps
that folder's other artifacts: they are carried into the new set (hard links) with the same conversion id, so
the folder still holds one conversion of one model. A folder of another model is replaced whole.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.atomic import check_can_create, crash_point, is_staging, new_staging_folder, publish
from edgecnn.errors import ArtifactError, ConfigError, DiskFullError, EdgeCNNError
from edgecnn.manifest import MANIFEST_NAME, RUN_INDEX, Manifest, sha256_file, verify_run


@dataclass(frozen=True)
class SourceFile:
    """The model file to convert and the run folder it belongs to (None for a bare .keras file)."""

    path: Path
    run_dir: Path | None
    sha256: str
    name: str


def locate_source(model: str | Path) -> SourceFile:
    """Find the model file without loading Keras: its hash and its name (from the archive's config.json)."""
    from edgecnn.host.models.io import check_keras_file

    path, run_dir = Path(model), None
    if path.is_dir():
        run_dir, path = path, path / "model.keras"
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not an edgecnn run directory (no model.keras)")
        if not (run_dir / RUN_INDEX).is_file():
            raise ConfigError(
                f"{run_dir} has no {RUN_INDEX}: not a complete edgecnn run (interrupted, edited, or made by hand)",
                hint=f"convert the model file itself: edgecnn convert {path} (labels.txt and preprocess.json beside it)",
            )
        verify_run(run_dir)  # a run whose labels or preprocessing were edited must not become an artifact
    check_keras_file(path)
    return SourceFile(path, run_dir, sha256_file(path), _keras_name(path))


def _keras_name(path: Path) -> str:
    """The model's name as Keras saved it (what ``model.name`` gives after loading), else the file's stem."""
    try:
        with zipfile.ZipFile(path) as z:
            name = json.loads(z.read("config.json"))["config"]["name"]
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return path.stem
    return name if isinstance(name, str) and name else path.stem


def check_out_path(source: SourceFile, out: Path) -> None:
    """Refuse an output folder that is, or is inside, the input (the run folder or the .keras file's folder when
    --force would replace it), or that contains it."""
    out = out.resolve()
    inputs = [source.run_dir.resolve()] if source.run_dir else [source.path.resolve()]
    for inp in inputs:
        if out == inp or inp in out.parents:
            raise ConfigError(
                f"--out {out} is inside the input {inp}: the artifacts would be written into the model's own folder",
                hint="choose an output folder outside it (default: out/<model>-<device>)",
            )
        if out in inp.parents:
            raise ConfigError(
                f"--out {out} contains the input {inp}: replacing the output folder would delete the model",
                hint="choose an output folder that does not hold the model",
            )


@dataclass
class OutputPlan:
    """What a conversion will do to its output folder: which conversion id it writes, what it keeps."""

    final: Path
    conversion_id: str
    keep: list[Path] = field(default_factory=list)  # artifacts of the same source carried into the new set
    kept_rows: list[dict[str, Any]] = field(default_factory=list)  # their rows of the old summary
    replaces: str | None = None  # the old set, in words, when it is replaced whole

    def carry_over(self, staging: Path) -> None:
        """Put the kept artifacts of the same model into the new set (hard links: nothing is copied)."""
        for d in self.keep:
            shutil.copytree(d, staging / d.name, copy_function=_link_or_copy)

    @classmethod
    def make(cls, final: Path, *, force: bool, source: SourceFile, targets: list[str]) -> OutputPlan:
        """Decide before any work: refuse an existing folder without --force, merge or replace with it."""
        if final.exists() and not final.is_dir():
            raise ConfigError(f"--out {final} exists and is not a folder")
        check_can_create(final)
        entries = [p for p in final.iterdir() if not p.name.startswith(".")] if final.is_dir() else []
        old = _old_set(final) if entries else []
        _refuse_existing(final, entries, old, force=force, source=source)
        if _same_source(old, source):
            keep = [m.directory for m in old if m.directory.name not in targets]
            rows = _old_rows(final, {d.name for d in keep})
            return cls(final, old[0].conversion_id, keep, rows)
        return cls(final, uuid.uuid4().hex, replaces=_replaces(entries, old))


def _refuse_existing(final: Path, entries: list[Path], old: list[Manifest], *, force: bool, source: SourceFile) -> None:
    """An existing folder without --force; with --force, a folder holding anything no conversion wrote."""
    foreign = _foreign(final, old) if final.is_dir() else []
    if foreign and force:  # --force replaces a conversion output whole: never a folder with anything else in it
        raise ArtifactError(
            f"--out {final} holds what no edgecnn conversion wrote: {', '.join(foreign[:5])}"
            + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            + "; --force replaces only a previous edgecnn conversion output, so nothing was touched",
            hint="choose another --out, or move those files away first",
        )
    if entries and not force:
        raise ArtifactError(
            f"output folder already exists: {final} (it holds {_holds(old, source)})",
            hint="use --force to replace it (the set is replaced whole; for the same model, precisions you do not "
            "convert again are kept), or choose another --out",
        )


# what a conversion writes beside its artifact folders (library.log: the libraries' messages, kept with the set)
_SET_FILES = frozenset({"summary.json", "summary.md", "edgecnn.sig", "library.log"})


def _foreign(final: Path, old: list[Manifest]) -> list[str]:
    """The entries of ``final`` that are not part of an edgecnn conversion output (hidden ones included)."""
    ours = _SET_FILES | {m.directory.name for m in old}
    return sorted(p.name + ("/" if p.is_dir() else "") for p in final.iterdir() if p.name not in ours and not is_staging(p))


def _holds(old: list[Manifest], source: SourceFile) -> str:
    """What an existing --out folder holds, in words, for the refusal."""
    if not old:
        return "other files"
    same = " (the same model)" if _same_source(old, source) else f" (another model than {source.name})"
    return f"artifacts of {old[0].source_model.get('name', '?')}{same}"


def _replaces(entries: list[Path], old: list[Manifest]) -> str | None:
    """What --force is about to replace, for the summary; None for an empty or new folder."""
    if old:
        return f"the artifacts of {old[0].source_model.get('name', '?')} (conversion {old[0].conversion_id[:8]})"
    return f"{len(entries)} entries" if entries else None


def _old_set(final: Path) -> list[Manifest]:
    """The old folder's artifacts, read without hashing; [] where they cannot be read as one conversion."""
    from edgecnn.runtime.select import artifact_dirs

    try:
        manifests = [Manifest.load(d, verify=False) for d in artifact_dirs(final)]
    except EdgeCNNError:
        return []
    ids = {(m.conversion_id, m.source_model.get("sha256")) for m in manifests}
    return manifests if len(ids) == 1 else []


def _same_source(old: list[Manifest], source: SourceFile) -> bool:
    return bool(old) and old[0].source_model.get("sha256") == source.sha256


def _old_rows(final: Path, names: set[str]) -> list[dict[str, Any]]:
    try:
        rows = json.loads((final / "summary.json").read_text())["artifacts"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [r | {"carried_over": True} for r in rows if f"{r.get('format')}-{r.get('precision')}" in names]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def staged_set(plan: OutputPlan) -> Iterator[Path]:
    """Yield the staging folder; when the body finishes (having called ``plan.carry_over``), publish the whole set.

    On a full disk the artifacts finished so far are published when there was no old set to keep (each one is
    complete and verified); otherwise, and on any other failure or interrupt, the old set stays as it was."""
    staging = new_staging_folder(plan.final)
    try:
        yield staging
        crash_point("set:staged")  # every artifact written and verified, nothing published yet
        publish(staging, plan.final)
        crash_point("set:published")
    except DiskFullError as exc:
        exc.message = exc.message.replace(str(staging), str(plan.final))  # name the folder the user gave
        finished = [p for p in staging.iterdir() if (p / MANIFEST_NAME).is_file()]
        if finished and not plan.final.exists():
            publish(staging, plan.final)
        else:
            shutil.rmtree(staging, ignore_errors=True)
            cleanup.forget(staging)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        cleanup.forget(staging)
        raise
