"""One virtualenv per peer server, made from the package registry with pinned versions.

Never the project's .venv: a peer must not see Phoenix's packages, nor Phoenix the
peer's. A venv is reused when it was built from exactly the same requirement list
(kept beside it), and rebuilt otherwise. Every peer gets the CPU ``onnxruntime`` wheel
of the project's onnxruntime version (the project installs ``onnxruntime-gpu`` on
Linux; both run the CPU execution provider here).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .children import ChildProcesses

# The servers on top of onnxruntime==<project version> and numpy. Bump deliberately:
# a result is only comparable with others made from the same pins.
PEER_REQUIREMENTS: dict[str, list[str]] = {
    "fastapi": [
        "fastapi==0.165.0",
        "pydantic==2.14.4",
        "uvicorn==0.54.0",
        "httptools==0.9.0",
        "uvloop==0.23.0",
    ],
    "kserve": ["kserve==0.21.0"],
}
NUMPY_PIN = "numpy==2.4.6"
MARKER = "bench-requirements.txt"
PIP_TIMEOUT_S = 1800


def requirements_for(peer: str, onnxruntime_version: str) -> list[str]:
    return [*PEER_REQUIREMENTS[peer], NUMPY_PIN, f"onnxruntime=={onnxruntime_version}"]


def ensure_venv(
    children: ChildProcesses,
    *,
    peer: str,
    root: Path,
    onnxruntime_version: str,
    project_venv: Path,
    cwd: Path,
    env: dict[str, str],
) -> tuple[Path, list[str]]:
    """The peer's python, creating or refreshing its venv first; and its ``pip freeze``.

    Raises RuntimeError when pip fails (the half-built venv is removed).
    """
    venv = (root / peer).resolve()
    if venv == project_venv.resolve() or project_venv.resolve() in venv.parents:
        raise RuntimeError(f"refusing to install {peer} into the project's venv ({venv})")
    wanted = "\n".join(requirements_for(peer, onnxruntime_version)) + "\n"
    python = venv / "bin" / "python"
    marker = venv / MARKER
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        print(f"[venv] {peer}: creating {venv} from the registry (may take minutes)", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        children.run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=cwd, timeout_s=300)
        pending = venv / "requirements.pending.txt"
        pending.write_text(wanted)
        try:
            children.run(
                [*(str(python), "-m", "pip", "install", "--quiet"), "-r", str(pending)],
                env=env,
                cwd=cwd,
                timeout_s=PIP_TIMEOUT_S,
            )
        except RuntimeError:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        pending.rename(marker)
    frozen = children.run(
        [str(python), "-m", "pip", "freeze"],
        env=env,
        cwd=cwd,
        timeout_s=120,
    )
    return python, frozen.split()
