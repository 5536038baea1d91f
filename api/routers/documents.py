"""Documents filed on a case: upload (multipart), list, metadata, download.

The type is decided by the file's magic bytes (PDF, DOCX, PNG, JPEG), never by its name;
over ``document_max_bytes`` is 413, another type 415, an unknown kind 422. A document is
never replaced: the same file again as the same kind on the same case is 409 naming the
existing document (so a retried upload is harmless); see core/documents.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.auth import SessionDep
from api.deps import IdPath, Page, PageDep, ReaderDep, WriterDep, in_scope, may_act_on, page_by_id
from api.problems import Problem
from api.reports.context import allowed_document_kinds
from core.documents import DocumentTooLarge, UnsupportedType, add_document, read_document
from core.models import Case, Document
from core.settings import get_settings

router = APIRouter(tags=["documents"])

_MULTIPART_OVERHEAD = 64 * 1024


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    case_id: int | None
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    note: str
    uploaded_by: str
    uploaded_at: datetime


def scoped_case(session: SessionDep, actor: ReaderDep, case_id: IdPath) -> Case:
    """The case if the caller's counties hold its institution; 404 otherwise."""
    case: Case | None = session.scalar(
        select(Case).where(Case.id == case_id, in_scope(Case.institution_id, actor))
    )
    if case is None:
        raise Problem(404, f"no case {case_id} in your counties")
    return case


def _scoped_document(session: SessionDep, actor: ReaderDep, document_id: IdPath) -> Document:
    doc: Document | None = session.scalar(
        select(Document)
        .join(Case, Case.id == Document.case_id)
        .where(Document.id == document_id, in_scope(Case.institution_id, actor))
    )
    if doc is None:
        raise Problem(404, f"no document {document_id} in your counties")
    return doc


@router.post("/cases/{case_id}/documents", status_code=201, response_model=DocumentOut)
def upload_document(
    case_id: IdPath,
    request: Request,
    session: SessionDep,
    actor: WriterDep,
    file: Annotated[UploadFile, File(description="PDF, DOCX, PNG or JPEG")],
    kind: Annotated[str, Form(max_length=64, description="e.g. rectification_report")],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Document:
    settings = get_settings()
    case = scoped_case(session, actor, case_id)
    may_act_on(session, actor, case.institution_id)
    limit = settings.document_max_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + _MULTIPART_OVERHEAD:
        raise Problem(413, f"the upload is larger than the limit of {limit} bytes")
    data = file.file.read(limit + 1)
    try:
        return add_document(
            session,
            case=case,
            kind=kind,
            filename=file.filename or "upload",
            data=data,
            actor=actor.name,
            settings=settings,
            allowed_kinds=allowed_document_kinds(case),
            note=note,
        )
    except DocumentTooLarge as exc:
        raise Problem(413, str(exc)) from None
    except UnsupportedType as exc:
        raise Problem(
            415, str(exc), accepted=["application/pdf", "image/png", "image/jpeg", "docx"]
        ) from None


@router.get("/cases/{case_id}/documents", response_model=Page[DocumentOut])
def list_documents(
    case_id: IdPath, session: SessionDep, actor: ReaderDep, page: PageDep
) -> Page[DocumentOut]:
    case = scoped_case(session, actor, case_id)
    rows, cursor = page_by_id(
        session,
        select(Document).where(Document.case_id == case.id),
        Document.id,
        page,
        descending=False,
    )
    return Page[DocumentOut](
        items=[DocumentOut.model_validate(r) for r in rows], next_cursor=cursor
    )


@router.get("/documents/{document_id}", response_model=DocumentOut)
def get_document(document_id: IdPath, session: SessionDep, actor: ReaderDep) -> Document:
    return _scoped_document(session, actor, document_id)


@router.get("/documents/{document_id}/content", response_class=Response)
def download_document(document_id: IdPath, session: SessionDep, actor: ReaderDep) -> Response:
    doc = _scoped_document(session, actor, document_id)
    data = read_document(doc, get_settings())
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in doc.filename)
    return Response(
        data,
        media_type=doc.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "X-Content-SHA256": doc.sha256,
            "X-Content-Type-Options": "nosniff",
        },
    )
