"""Walk a device profile's runtime chain and open the first runtime that works, saying why others did not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.atomic import is_staging
from edgecnn.devices import DeviceProfile
from edgecnn.errors import ArtifactError, EdgeCNNError, MissingDependencyError, RuntimeBackendError
from edgecnn.manifest import MANIFEST_NAME, Manifest, check_one_conversion
from edgecnn.runtime.base import RUNTIMES, open_backend


@dataclass
class Selection:
    backend: Any
    manifest: Manifest
    skipped: list[dict[str, str]] = field(default_factory=list)

    def explain(self) -> list[str]:
        lines = [f"skipped {s['candidate']}: {s['reason']}" for s in self.skipped]
        d = self.backend.describe()
        lines.append(
            f"using {d['runtime']} ({d['version']}) on {d['accelerator']} with {self.manifest.format}/{self.manifest.precision} "
            f"from {self.manifest.directory} [providers: {', '.join(d['providers'])}]"
        )
        return lines


def artifact_dirs(path: str | Path) -> list[Path]:
    """The artifact folder itself, or the artifact sub-folders of a conversion output folder."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        return [path]
    if path.is_file() and path.name != MANIFEST_NAME:
        from edgecnn.formats import sniff_model_file

        kind = sniff_model_file(path)  # a broken file is named for what it is
        raise ArtifactError(
            f"{path} is a bare model file ({kind}); classifying needs an artifact folder with its labels and preprocessing",
            hint=f"give the folder 'edgecnn convert' wrote (with {MANIFEST_NAME}); 'edgecnn profile {path}' times a bare file",
        )
    if path.is_file():
        return [path.parent]
    if not path.is_dir():
        raise ArtifactError(f"artifact folder not found: {path}")
    # hidden folders are staging folders of a conversion in progress (or killed): never an artifact to use
    subs = sorted(p.parent for p in path.glob(f"*/{MANIFEST_NAME}") if not p.parent.name.startswith("."))
    if not subs:
        staging = any(p.is_dir() and is_staging(p) for p in path.iterdir())
        raise ArtifactError(
            f"{path} holds no edgecnn artifact ({MANIFEST_NAME} not found)"
            + (" (only the staging folder of a conversion in progress, or killed)" if staging else ""),
            hint="give an artifact folder made by 'edgecnn convert'",
        )
    return subs


def load_artifact_set(path: str | Path, *, verify: bool = True) -> list[Manifest]:
    """Every artifact at ``path`` (one artifact folder or a conversion output folder), each checked (digest, and
    hashes unless ``verify`` is False), and all from one conversion of one source model."""
    manifests = [Manifest.load(d, verify=verify) for d in artifact_dirs(path)]
    check_one_conversion(manifests, path)
    return manifests


def check_runtime_request(runtime: str | None, accelerator: str | None, *, no_fallback: bool = False) -> None:
    """Refuse a --runtime/--accelerator pair no runtime offers, before anything is loaded."""
    from edgecnn.errors import ConfigError

    offered = {acc.lower(): name for name in RUNTIMES for acc in RUNTIMES.get(name).accelerators if acc != "CPU"}
    if runtime and runtime not in RUNTIMES and runtime.lower() in offered:
        owner = offered[runtime.lower()]
        proper = next(a for a in RUNTIMES.get(owner).accelerators if a.lower() == runtime.lower())
        raise ConfigError(
            f"{runtime!r} is an accelerator of {owner}, not a runtime",
            hint=f"--runtime {owner} --accelerator {proper}",
        )
    if runtime:
        RUNTIMES.get(runtime)  # an unknown name: "did you mean"
    if accelerator:
        known = sorted({a for name in RUNTIMES for a in RUNTIMES.get(name).accelerators})
        if accelerator not in known:
            close = [a for a in known if a.lower() == accelerator.lower()]
            raise ConfigError(
                f"unknown accelerator {accelerator!r} (known: {', '.join(known)})"
                + (f". Did you mean '{close[0]}'?" if close else "")
            )
        if runtime and accelerator not in RUNTIMES.get(runtime).accelerators:
            raise ConfigError(
                f"runtime '{runtime}' has no accelerator '{accelerator}' (it has: {', '.join(RUNTIMES.get(runtime).accelerators)})"
            )


def _preference(profile: DeviceProfile | None, manifest: Manifest) -> int:
    key = f"{manifest.format}/{manifest.precision}"
    order = list(profile.artifacts) if profile else []
    return order.index(key) if key in order else len(order)


def select_runtime(
    path: str | Path,
    profile: DeviceProfile | None = None,
    *,
    runtime: str | None = None,
    accelerator: str | None = None,
    threads: int | None = None,
    allow_fallback: bool = True,
    verify: bool = True,
    trust_key: str | Path | None = None,
    **options: Any,
) -> Selection:
    """Open the best (runtime, artifact) pair for ``profile``; every skipped candidate is recorded.

    With ``trust_key`` (a public key), an artifact is opened only when its signature by that key verifies."""
    manifests = load_artifact_set(path, verify=verify)
    check_runtime_request(runtime, accelerator)
    if runtime:
        chain = [(runtime, accelerator)]
    else:
        chain = profile.runtime_chain() if profile else [(name, None) for name in RUNTIMES.names()]
        if accelerator:  # every runtime that offers it, in the profile's order; the plain chain only as a fallback
            order = list(dict.fromkeys([n for n, _ in chain] + RUNTIMES.names()))
            chain = [(n, accelerator) for n in order if accelerator in RUNTIMES.get(n).accelerators] + (
                chain if allow_fallback else []
            )
    threads = threads or (profile.threads if profile else None)
    skipped: list[dict[str, str]] = []
    for name, acc in chain:
        info = RUNTIMES.get(name)
        label = f"{name}[{acc}]" if acc else name
        matching = sorted((m for m in manifests if m.format in info.formats), key=lambda m: _preference(profile, m))
        if not matching:
            skipped.append(
                {"candidate": label, "reason": f"no {'/'.join(info.formats)} artifact in {path}", "kind": "no-artifact"}
            )
            continue
        manifest = matching[0]
        if trust_key is not None:
            from edgecnn.signing import verify_signature

            verify_signature(manifest.directory, trust_key)  # a refused signature is never a reason to fall back
        try:
            backend = open_backend(
                name, manifest.file_path("model"), threads=threads, accelerator=acc, allow_fallback=False, **options
            )
        except EdgeCNNError as exc:
            kind = "missing" if isinstance(exc, MissingDependencyError) else "failed"
            skipped.append({"candidate": label, "reason": exc.message + (f" ({exc.hint})" if exc.hint else ""), "kind": kind})
            if (runtime or accelerator) and not allow_fallback:
                raise
            continue
        return Selection(backend, manifest, skipped)
    reasons = "; ".join(f"{s['candidate']}: {s['reason']}" for s in skipped)
    kinds = {s["kind"] for s in skipped}
    if kinds == {"missing"} or kinds == {"missing", "no-artifact"}:
        hint = 'install the runtime of one of these artifacts, e.g. pip install "edgecnn[litert]"'
    elif "failed" in kinds:
        hint = "the installed runtime could not open the artifact: the reasons above say why (-v lists every candidate)"
    else:
        hint = "this folder has no artifact for the runtimes the device profile lists: convert for this device"
    raise RuntimeBackendError(f"no runtime could open {path} ({reasons})", hint=hint)
