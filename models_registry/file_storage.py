"""The registry's stored files: model and reference files in Django's storage.

Writes are tied to the database transaction they belong to: a file written inside a
failed transaction is removed (``removed_unless_committed``), and a file whose rows
were deleted goes only once the deletion committed (``files_delete_on_commit``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from django.core.files import File
from django.core.files.storage import Storage
from django.db import transaction
from django.db.models import FileField

from .models import ModelVersion


def version_storage() -> Storage:
    field = ModelVersion._meta.get_field("file")
    assert isinstance(field, FileField)
    return field.storage


@contextmanager
def removed_unless_committed() -> Iterator[list[str]]:
    """Collects storage names written inside the block and deletes them if it fails.

    Used around ``transaction.atomic``: when the block raises, the rows are rolled back
    and the files go too, so a failed write leaves no orphan.
    """
    saved: list[str] = []
    try:
        yield saved
    except BaseException:
        storage = version_storage()
        for name in saved:
            with suppress(Exception):
                storage.delete(name)
        raise


def file_store(storage: Storage, name: str, path: Path, saved: list[str]) -> str:
    """Save ``path`` as ``name``; content-addressed names that already exist are reused."""
    if storage.exists(name):
        return name
    with path.open("rb") as handle:
        stored = storage.save(name, File(handle))
    saved.append(stored)
    return stored


def _folder_delete(storage: Storage, folder: str) -> None:
    with suppress(FileNotFoundError, NotImplementedError):
        directories, files = storage.listdir(folder)
        for sub in directories:
            _folder_delete(storage, posixpath.join(folder, sub))
        for name in files:
            storage.delete(posixpath.join(folder, name))


def files_delete_on_commit(names: list[str], folders: Sequence[str] = ()) -> None:
    def delete() -> None:
        storage = version_storage()
        for name in names:
            if name:
                with suppress(Exception):
                    storage.delete(name)
        for folder in folders:
            _folder_delete(storage, folder)

    transaction.on_commit(delete)
