"""Artifact bytes by content hash, behind one small interface.

``db`` (default) keeps blobs in the same database, written in the same
transaction as the row that names them: no row without its bytes, no orphan
bytes, and every worker machine reaches it. ``dir`` writes files named by
their sha256 under ``RECOMB_ARTIFACT_DIR``; nothing a user sends becomes a path.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.service.tables import Blob
from app.settings import Settings

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore(Protocol):
    def put(self, session: Session, sha256: str, data: bytes) -> None: ...

    def get(self, session: Session, sha256: str) -> bytes: ...


class DatabaseStore:
    def put(self, session: Session, sha256: str, data: bytes) -> None:
        # Two requests storing the same bytes at once both insert: the second must be a no-op, not a unique violation.
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.exec(
            insert(Blob)
            .values(sha256=sha256, size_bytes=len(data), data=data)
            .on_conflict_do_nothing(index_elements=["sha256"])
        )

    def get(self, session: Session, sha256: str) -> bytes:
        blob = session.get(Blob, sha256)
        if blob is None:
            raise FileNotFoundError(f"artifact {sha256} is missing")
        return blob.data


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not SHA256_PATTERN.match(sha256):
            raise ValueError("artifact keys are sha256 hex digests")
        return self.root / sha256[:2] / sha256

    def put(self, session: Session, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: readers never see a partial file.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, path)

    def get(self, session: Session, sha256: str) -> bytes:
        path = self._path(sha256)
        if not path.exists():
            raise FileNotFoundError(f"artifact {sha256} is missing")
        return path.read_bytes()


def get_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "dir":
        return DirectoryStore(settings.resolved_artifact_dir)
    return DatabaseStore()
