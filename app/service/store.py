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
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import and_, delete, exists
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from app.service.tables import Blob, Checkpoint, StateBuffer
from app.settings import Settings

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# The directory store's sweep spares files younger than this: a worker writes an artifact's bytes before the
# transaction that commits the row naming them.
SWEEP_GRACE_S = 3600.0


class ArtifactStore(Protocol):
    def put(self, session: Session, sha256: str, data: bytes) -> None: ...

    def get(self, session: Session, sha256: str) -> bytes: ...

    def collect(self, session: Session, sha256s: Collection[str]) -> int:
        """Remove those of ``sha256s`` no row references any more, in the caller's transaction if the store has one;
        returns how many were removed.
        """
        ...

    def sweep(self, session: Session) -> int:
        """Remove every artifact no row references; returns how many."""
        ...


def unreferenced(sha256: Any) -> Any:
    """No checkpoint or state buffer (states or actions) names ``sha256``: a SQL condition."""
    return and_(
        ~exists().where(col(Checkpoint.sha256) == sha256),
        ~exists().where(col(StateBuffer.sha256) == sha256),
        ~exists().where(col(StateBuffer.actions_sha256) == sha256),
    )


def referenced_hashes(session: Session) -> set[str]:
    """Every artifact hash a row names."""
    checkpoints = session.exec(select(Checkpoint.sha256)).all()
    states = session.exec(select(StateBuffer.sha256, StateBuffer.actions_sha256)).all()
    return {*checkpoints, *(sha256 for row in states for sha256 in row if sha256 is not None)}


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

    def collect(self, session: Session, sha256s: Collection[str]) -> int:
        if not sha256s:
            return 0
        removed = session.exec(delete(Blob).where(col(Blob.sha256).in_(sha256s), unreferenced(Blob.sha256)))
        return int(removed.rowcount)

    def sweep(self, session: Session) -> int:
        return int(session.exec(delete(Blob).where(unreferenced(Blob.sha256))).rowcount)


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

    def collect(self, session: Session, sha256s: Collection[str]) -> int:
        return 0  # files are outside the transaction: removed by the sweep, once old enough to be safe

    def sweep(self, session: Session) -> int:
        referenced, old_before, removed = referenced_hashes(session), time.time() - SWEEP_GRACE_S, 0
        for path in self.root.glob("??/*"):
            if SHA256_PATTERN.match(path.name) and path.name not in referenced and path.stat().st_mtime < old_before:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def get_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "dir":
        return DirectoryStore(settings.resolved_artifact_dir)
    return DatabaseStore()
