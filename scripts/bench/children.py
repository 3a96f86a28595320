"""Child processes of a benchmark run: each in its own process group, all stopped at the end.

A server under test forks workers; stopping only the process we started would leave
them serving (and burning the cores of the next contender). So every child gets its own
session, and stopping it signals the whole group: SIGTERM, a grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Helpers that multiprocessing starts beside the real workers: not servers.
_HELPERS = ("multiprocessing.resource_tracker", "semaphore_tracker", "forkserver")


class ChildProcesses:
    """Starts children in new process groups and remembers them until they are stopped."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with stdout and stderr to ``log`` (or discarded)."""
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") if log is not None else open(os.devnull, "wb") as out:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._running.append(process)
        return process

    def run(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, timeout_s: float) -> str:
        """Run ``argv`` to the end and return its stdout.

        Raises RuntimeError (with the end of its output) when it fails or outlives
        ``timeout_s``; it is stopped then.
        """
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._running.append(process)
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.stop(process)
            raise RuntimeError(f"{argv[0]} ... ran past {timeout_s:.0f} s") from exc
        finally:
            if process.poll() is None:
                self.stop(process)
            self._forget(process)
        if process.returncode != 0:
            tail = (out + err).decode("utf-8", "replace")[-3000:]
            raise RuntimeError(f"{' '.join(argv[:4])} ... exited {process.returncode}:\n{tail}")
        return out.decode("utf-8", "replace")

    def stop(self, process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
        """SIGTERM the process's whole group, then SIGKILL what is left after ``grace_s``."""
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
        # Workers may outlive their parent for a moment: the group goes either way.
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        self._forget(process)

    def stop_all(self) -> None:
        for process in list(reversed(self._running)):
            self.stop(process, grace_s=10.0)

    def _forget(self, process: subprocess.Popen[bytes]) -> None:
        if process in self._running:
            self._running.remove(process)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
    return parents


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(leader: int) -> list[int]:
    """The processes that serve: the leader's children, or the leader when it has none."""
    parents = _parents()
    children = [
        pid
        for pid, parent in sorted(parents.items())
        if parent == leader and not any(h in _cmdline(pid) for h in _HELPERS)
    ]
    return children or [leader]


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` (VmRSS in KiB), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def log_count(log: Path, needle: str) -> int:
    try:
        return log.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def log_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def http_status(host: str, port: int, path: str) -> int | None:
    """Status of ``GET path``, or None when nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=3)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def wait_ready(
    process: subprocess.Popen[bytes],
    *,
    host: str,
    port: int,
    path: str,
    log: Path,
    workers: int,
    timeout_s: float,
) -> str | None:
    """Wait for ``GET path`` to answer 200, then for every worker to have started.

    Workers are counted by uvicorn's "Application startup complete" lines in ``log``:
    the socket is shared, so the first worker up answers before the others can.
    Returns a warning when the workers could not be counted; raises RuntimeError when
    the server exits or does not answer 200 in time.
    """
    deadline = time.monotonic() + timeout_s
    while http_status(host, port, path) != 200:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} not 200 after {timeout_s:.0f} s:\n{log_tail(log)}")
        time.sleep(0.25)
    if workers <= 1:
        return None
    count_deadline = min(deadline, time.monotonic() + 60)
    while log_count(log, "Application startup complete") < workers:
        if time.monotonic() > count_deadline:
            return (
                f"saw {log_count(log, 'Application startup complete')} of {workers} "
                "workers' start-up lines; measured anyway"
            )
        time.sleep(0.25)
    return None
