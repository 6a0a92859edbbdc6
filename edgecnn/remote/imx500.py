"""Device side: on a Pi with the AI Camera, ``imx500-package`` turns an imx500 artifact's ``packerOut.zip`` into the
``network.rpk`` the sensor loads.

``deploy`` runs this on the board (``release.verify_release``) for every ``imx500`` artifact of a release, after the
release verified. The artifact folder is signed over exactly what it holds, so the package goes beside the
releases, content-addressed by the hash of ``packerOut.zip``: ``TO/imx500/<sha256[:16]>/network.rpk`` with the
network intrinsics (``intrinsics.json``: classification, labels, softmax) next to it; ``rpk_for`` finds it again
from the artifact folder (the ``picamera2-imx500:`` source). Without ``imx500-package`` the release is refused with
one line naming the apt package (``imx500-tools``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgecnn.errors import ArtifactError

TOOL = "imx500-package"
APT_PACKAGE = "imx500-tools"


def _store(artifact: Path) -> tuple[Path, str]:
    """``TO`` of the release the artifact belongs to (``TO/releases/NAME/ARTIFACT``), and packerOut.zip's digest."""
    from edgecnn.manifest import Manifest

    m = Manifest.load(artifact)
    digest = str(m.files.get("model", {}).get("sha256", ""))[:16]
    if not digest:
        raise ArtifactError(f"{artifact}: its manifest has no sha256 for packerOut.zip")
    folder = artifact.resolve()
    to = folder.parents[2] if folder.parent.parent.name == "releases" else folder.parent
    return to / "imx500" / digest, digest


def rpk_for(artifact: Path) -> Path:
    """Where ``package`` put the artifact's network.rpk (it may not exist yet)."""
    return _store(artifact)[0] / "network.rpk"


def package(artifact: str | Path, *, tool: str = TOOL, timeout: float = 300) -> dict[str, Any]:
    """Make ``network.rpk`` from the artifact's packerOut.zip with ``imx500-package`` (once per digest)."""
    artifact = Path(artifact)
    exe = shutil.which(tool)
    if exe is None:
        raise ArtifactError(
            f"{artifact.name}: {tool} is not installed on this board: it makes the sensor's network.rpk",
            hint=f"sudo apt install {APT_PACKAGE}",
        )
    store, digest = _store(artifact)
    rpk = store / "network.rpk"
    if not rpk.is_file():
        store.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".imx500-", dir=store.parent) as tmp:
            proc = subprocess.run([exe, "-i", str(artifact / "packerOut.zip"), "-o", tmp], capture_output=True, text=True,
                                  timeout=timeout)  # fmt: skip
            made = next(Path(tmp).rglob("*.rpk"), None)
            if proc.returncode != 0 or made is None:
                last = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-1:] or ["no output"]
                raise ArtifactError(f"{artifact.name}: {tool} failed (exit {proc.returncode}): {last[0][:200]}")
            staged = Path(tmp) / "out"
            staged.mkdir()
            shutil.copyfile(made, staged / "network.rpk")
            shutil.copyfile(artifact / "intrinsics.json", staged / "intrinsics.json")
            staged.rename(store)  # whole, or not at all
    return {"rpk": str(rpk), "digest": digest}
