"""Walk a device profile's runtime chain and open the first runtime that works, saying why others did not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.devices import DeviceProfile
from edgecnn.errors import EdgeCNNError, MissingDependencyError, RuntimeBackendError
from edgecnn.formats import runtime_for
from edgecnn.manifest import Manifest, artifact_dirs, check_one_conversion
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


def load_artifact_set(path: str | Path, *, verify: bool = True) -> list[Manifest]:
    """Every artifact at ``path`` (one artifact folder or a conversion output folder), each checked (digest, and
    hashes unless ``verify`` is False), and all from one conversion of one source model."""
    manifests = [Manifest.load(d, verify=verify) for d in artifact_dirs(path)]
    check_one_conversion(manifests, path)
    return manifests


def _verify_trusted(path: str | Path, trust_key: str | Path | None) -> None:
    """With a trust key: the whole folder (the set and every artifact) before any runtime opens a file."""
    if trust_key is None:
        return
    from edgecnn.signing import verify_folder

    verify_folder(path if Path(path).is_dir() else Path(path).parent, trust_key)


def check_runtime_request(runtime: str | None, accelerator: str | None, *, no_fallback: bool = False) -> None:
    """Refuse a --runtime/--accelerator pair no runtime offers, before anything is loaded."""
    if runtime:
        _check_runtime(runtime)
    if accelerator:
        _check_accelerator(runtime, accelerator)


def _check_runtime(runtime: str) -> None:
    from edgecnn.errors import ConfigError

    if runtime in RUNTIMES:
        return
    owner = next((n for n in RUNTIMES for a in RUNTIMES.get(n).accelerators if a != "CPU" and a.lower() == runtime.lower()), None)
    if owner:
        proper = next(a for a in RUNTIMES.get(owner).accelerators if a.lower() == runtime.lower())
        raise ConfigError(
            f"{runtime!r} is an accelerator of {owner}, not a runtime", hint=f"--runtime {owner} --accelerator {proper}"
        )
    RUNTIMES.get(runtime)  # an unknown name: "did you mean"


def _check_accelerator(runtime: str | None, accelerator: str) -> None:
    from edgecnn.errors import ConfigError

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


def _chain(profile: DeviceProfile | None, runtime: str | None, accelerator: str | None, allow_fallback: bool) -> list:
    """The (runtime, accelerator) candidates in order: the one forced, or the profile's chain (every runtime that
    offers a requested accelerator first; the plain chain after them only when falling back is allowed)."""
    if runtime:
        return [(runtime, accelerator)]
    chain = profile.runtime_chain() if profile else [(name, None) for name in RUNTIMES.names()]
    if not accelerator:
        return chain
    order = list(dict.fromkeys([n for n, _ in chain] + RUNTIMES.names()))
    offering = [(n, accelerator) for n in order if accelerator in RUNTIMES.get(n).accelerators]
    return offering + (chain if allow_fallback else [])


def _skip(label: str, reason: str, kind: str) -> dict[str, str]:
    return {"candidate": label, "reason": reason, "kind": kind}


def _none_opened(path: str | Path, skipped: list[dict[str, str]]) -> RuntimeBackendError:
    """Why no candidate opened, with the hint that fits: install one, read the reasons, or convert for this device."""
    reasons = "; ".join(f"{s['candidate']}: {s['reason']}" for s in skipped)
    kinds = {s["kind"] for s in skipped}
    if kinds <= {"missing", "no-artifact"} and "missing" in kinds:
        hint = 'install the runtime of one of these artifacts, e.g. pip install "edgecnn[litert]"'
    elif "failed" in kinds:
        hint = "the installed runtime could not open the artifact: the reasons above say why (-v lists every candidate)"
    else:
        hint = "this folder has no artifact for the runtimes the device profile lists: convert for this device"
    return RuntimeBackendError(f"no runtime could open {path} ({reasons})", hint=hint)


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

    With ``trust_key`` (a public key), an artifact is opened only when its signature by that key verifies; a refused
    signature is never a reason to fall back. ``options`` go to the backend (e.g. ``trt_cache_dir``)."""
    manifests = load_artifact_set(path, verify=verify)
    check_runtime_request(runtime, accelerator)
    _verify_trusted(path, trust_key)
    threads = threads or (profile.threads if profile else None)
    skipped: list[dict[str, str]] = []
    for name, acc in _chain(profile, runtime, accelerator, allow_fallback):
        info, label = RUNTIMES.get(name), f"{name}[{acc}]" if acc else name
        matching = sorted((m for m in manifests if runtime_for(m.format) == name), key=lambda m: _preference(profile, m))
        if not matching:
            skipped.append(_skip(label, f"no {'/'.join(info.formats)} artifact in {path}", "no-artifact"))
            continue
        try:
            backend = open_backend(name, matching[0].file_path("model"), threads=threads, accelerator=acc, **options)
        except EdgeCNNError as exc:
            kind = "missing" if isinstance(exc, MissingDependencyError) else "failed"
            skipped.append(_skip(label, exc.message + (f" ({exc.hint})" if exc.hint else ""), kind))
            if (runtime or accelerator) and not allow_fallback:
                raise
            continue
        return Selection(backend, matching[0], skipped)
    raise _none_opened(path, skipped)
