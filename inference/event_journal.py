"""Append-only local journal for events the bus could not take (pure module, no Django).

Layout: one folder, JSON-lines segment files. Each process appends to its own
``active-<pid>-<token>.jsonl`` (fsync per batch) and holds an exclusive ``flock``
on it while it lives. To replay, the owner seals its active file by renaming it
to ``sealed-<ns>-<pid>.jsonl`` (older segments sort first), sends the records
and deletes the file only after the bus acknowledged them. An ``active`` file
whose lock nobody holds belongs to a dead process and is replayed like a sealed
one, which is how a restart (or another worker) picks up what a crash left.
Several API worker processes may share the folder: a segment is only ever
replayed by whoever holds its lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

Record = dict[str, object]


@dataclass(frozen=True)
class ReplayResult:
    segments: int
    records: int
    corrupt_lines: int


class EventJournal:
    """Spill and replay. Thread-safe within a process; safe across processes by flock."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._pid = os.getpid()

    # --- writing ---------------------------------------------------------------

    def append(self, records: list[Record]) -> None:
        """Append records durably (one write and one fsync for the whole batch)."""
        if not records:
            return
        payload = b"".join(
            orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY, default=str) + b"\n" for r in records
        )
        with self._lock:
            handle = self._open_active()
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())

    def _open_active(self) -> IO[bytes]:
        if self._pid != os.getpid():
            # Forked child (e.g. a pre-fork server): the parent's handle and lock are not ours.
            self._active, self._active_path, self._pid = None, None, os.getpid()
        if self._active is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            # Locked under a name replay ignores, then renamed (the lock stays with the
            # open file): an ``active`` file is never seen unlocked, which a replay
            # (another thread or process) would take for a dead process's and claim.
            creating = self.directory / f"creating-{name}.tmp"
            handle = creating.open("ab")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / f"active-{name}.jsonl"
            os.rename(creating, path)
            self._active, self._active_path = handle, path
        return self._active

    def seal(self) -> None:
        """Close our active segment so it can be replayed; new spills start a new one."""
        with self._lock:
            if self._active is None or self._active_path is None:
                return
            if self._active.tell() > 0:
                sealed = self.directory / f"sealed-{time.time_ns():020d}-{os.getpid()}.jsonl"
                os.rename(self._active_path, sealed)
            else:
                self._active_path.unlink(missing_ok=True)
            self._active.close()  # releases the flock
            self._active, self._active_path = None, None

    # --- reading ---------------------------------------------------------------

    def pending_segments(self) -> list[Path]:
        """Segments waiting for replay, oldest first (excluding our own active file)."""
        if not self.directory.is_dir():
            return []
        own = self._active_path
        sealed = sorted(self.directory.glob("sealed-*.jsonl"))
        orphans = sorted(
            (p for p in self.directory.glob("active-*.jsonl") if p != own),
            key=lambda p: p.stat().st_mtime_ns if p.exists() else 0,
        )
        # Orphans come from processes that died before sealing; they are older than
        # anything this process sealed since it started.
        return orphans + sealed

    def has_pending(self) -> bool:
        with self._lock:
            active_bytes = self._active.tell() if self._active is not None else 0
        return active_bytes > 0 or bool(self.pending_segments())

    def size_bytes(self) -> int:
        if not self.directory.is_dir():
            return 0
        total = 0
        for path in self.directory.glob("*.jsonl"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # replayed by another process meanwhile
                continue
        return total

    def replay(
        self, send: Callable[[list[Record]], None], *, batch_size: int = 500
    ) -> ReplayResult:
        """Seal our segment, then send every pending segment in order.

        ``send`` must return only once the bus acknowledged the batch and raise on
        failure; a segment is deleted only after all its batches were acknowledged.
        On failure the exception propagates and the remaining segments stay on disk
        (records of a half-sent segment are sent again later: consumers dedupe by
        event id). A line torn by a crash mid-write is skipped and counted.
        """
        self.seal()
        segments = records = corrupt = 0
        for path in self.pending_segments():
            with self._locked(path) as handle:
                if handle is None:
                    continue  # its owner is alive, or another process is replaying it
                batch: list[Record] = []
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        batch.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        corrupt += 1
                        continue
                    if len(batch) >= batch_size:
                        send(batch)
                        records += len(batch)
                        batch = []
                if batch:
                    send(batch)
                    records += len(batch)
                path.unlink(missing_ok=True)
                segments += 1
        return ReplayResult(segments=segments, records=records, corrupt_lines=corrupt)

    @contextmanager
    def _locked(self, path: Path) -> Iterator[IO[bytes] | None]:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if not path.exists():  # replayed and deleted between listing and locking
                yield None
                return
            yield handle
        finally:
            handle.close()

    def close(self) -> None:
        self.seal()
