"""Uploaded documents: a content-addressed blob store and the Document rows that point into it.

Jincheng art. 14 and 16 make written explanations, rectification and fault reports the
conditions for reconnection, and art. 17 / Jilin art. 36 want them archived so that handling
is traceable. So a file is stored under its SHA-256 and never written again: the same content
uploaded twice is one blob, and nothing can replace a blob's bytes. The type is decided by the
file's magic bytes, never by its name or the client's Content-Type.

Duplicates: the same content with the same kind on the same case is refused (Conflict naming
the existing document); the same content as another kind or on another case is a second row
pointing at the same blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import Conflict, NotFound, ValidationFailed
from core.models import Case, Document
from core.settings import Settings
from core.timeutil import utcnow

# Kinds every case accepts whatever its policy requires (Jincheng art. 16 fault reports, the
# city's confirmation of a rectification, anything else the operator wants on file).
GENERAL_KINDS = ("fault_report", "confirmation", "other")

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PNG = "image/png"
JPEG = "image/jpeg"
EXTENSIONS = {PDF: ".pdf", DOCX: ".docx", PNG: ".png", JPEG: ".jpg"}


class DocumentTooLarge(ValidationFailed):
    """The upload is over ``document_max_bytes`` (the API answers 413)."""


class UnsupportedType(ValidationFailed):
    """The bytes are not a PDF, DOCX, PNG or JPEG (the API answers 415)."""


def sniff(data: bytes) -> str | None:
    """The content type the bytes really are, or None when it is not one we accept.

    A DOCX is a ZIP, so a ZIP counts only when it holds ``word/document.xml``."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, ValueError):
            return None
        if "word/document.xml" in names and "[Content_Types].xml" in names:
            return DOCX
    return None


def check_upload(data: bytes, *, max_bytes: int) -> str:
    """The sniffed content type; raises with a reason a person can act on."""
    if len(data) > max_bytes:
        raise DocumentTooLarge(
            f"the file is larger than the limit of {max_bytes} bytes "
            "(EDGEWARDEN_DOCUMENT_MAX_BYTES); split or compress it"
        )
    if not data:
        raise UnsupportedType("the file is empty")
    kind = sniff(data)
    if kind is None:
        raise UnsupportedType(
            "the file is not a PDF, DOCX, PNG or JPEG (checked by its content, not its name)"
        )
    return kind


@dataclass(frozen=True)
class BlobStore:
    """Files named by their SHA-256 under ``root/ab/cd/<sha256>``; written once, atomically."""

    root: Path

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValidationFailed(f"not a SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store ``data``; an existing blob is checked, never rewritten."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.path_of(sha)
        if path.exists():
            if _file_sha256(path) == sha:
                return sha, path
            # A damaged blob: keep it for inspection, store the good bytes beside it.
            path.rename(path.with_name(f"{sha}.damaged-{utcnow():%Y%m%dT%H%M%S%f}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o440)
            # fails if another writer won: its bytes are the same
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
        return sha, path

    def read(self, sha256: str) -> bytes:
        """The blob's bytes, checked against its name (a changed file is an error, not data)."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"the stored file {sha256} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise Conflict(f"the stored file {sha256} was altered on disk; it is not served")
        return data


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def store_for(settings: Settings) -> BlobStore:
    return BlobStore(Path(settings.documents_dir))


def add_document(
    session: Session,
    *,
    case: Case,
    kind: str,
    filename: str,
    data: bytes,
    actor: str,
    settings: Settings,
    allowed_kinds: tuple[str, ...] | list[str],
    note: str = "",
) -> Document:
    """Check, store and record one upload on ``case``, with its audit entry.

    ``allowed_kinds`` comes from the case's policy (the caller knows the policy; core does
    not). Nothing is written when any check fails."""
    if kind not in allowed_kinds:
        raise ValidationFailed(
            f"unknown document kind {kind!r} for case {case.id}",
            [f"allowed kinds: {', '.join(allowed_kinds)}"],
        )
    content_type = check_upload(data, max_bytes=settings.document_max_bytes)
    sha = hashlib.sha256(data).hexdigest()
    existing = session.scalar(
        select(Document).where(
            Document.case_id == case.id, Document.kind == kind, Document.sha256 == sha
        )
    )
    if existing is not None:
        raise Conflict(
            f"this file is already on case {case.id} as {kind} (document {existing.id}); "
            "a document is never replaced: upload a corrected file instead"
        )
    sha, path = store_for(settings).put(data)
    name = Path(filename or "upload").name[:200] or "upload"
    doc = Document(
        case_id=case.id,
        kind=kind,
        filename=name,
        content_type=content_type,
        size=len(data),
        sha256=sha,
        storage_path=str(path),
        note=note,
        uploaded_by=actor,
        uploaded_at=utcnow(),
    )
    session.add(doc)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="document.uploaded",
        object_type="document",
        object_id=doc.id,
        reason=f"{kind} for case {case.id}",
        data={
            "case": case.id,
            "kind": kind,
            "sha256": sha,
            "size": len(data),
            "content_type": content_type,
            "filename": name,
        },
    )
    return doc


def read_document(doc: Document, settings: Settings) -> bytes:
    """The document's bytes from the store, verified against its SHA-256."""
    return store_for(settings).read(doc.sha256)
