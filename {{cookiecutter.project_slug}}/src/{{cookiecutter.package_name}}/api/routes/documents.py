"""Documents: upload (ingested by a background job), job progress, list, delete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile
from fastapi import Query as QueryParam

from ...errors import BadRequestError, PayloadTooLargeError
from ...ingest.uploads import safe_filename
from ...telemetry import current_trace_id
from ..deps import IngestCaller, ServicesDep
from ..errors import KEYED_ROUTE, problem_responses
from ..schemas import DocumentDeleted, DocumentList, DocumentOut, IngestionJobOut

router = APIRouter(prefix="/v1", tags=["documents"], responses=problem_responses(*KEYED_ROUTE))
_READ_BLOCK = 1 << 20


def _blocks(upload: UploadFile) -> Iterator[bytes]:
    while block := upload.file.read(_READ_BLOCK):
        yield block


@router.post(
    "/documents",
    status_code=202,
    response_model=IngestionJobOut,
    responses=problem_responses(400, 413, 415, 422),  # names, sizes, file types, the form
)
def upload_documents(
    services: ServicesDep,
    caller: IngestCaller,
    response: Response,
    files: Annotated[list[UploadFile], File(description="One or more documents.")],
) -> IngestionJobOut:
    """Upload documents; they are ingested by a background job, whose id this returns.
    A file of the same name as an earlier upload replaces it."""
    settings = services.settings
    if len(files) > settings.max_upload_files:
        raise PayloadTooLargeError(
            f"{len(files)} files in one upload; the limit is {settings.max_upload_files} "
            "(RAG_MAX_UPLOAD_FILES). Send them in several uploads."
        )
    names = [safe_filename(upload.filename or "") for upload in files]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BadRequestError(f"The same file name appears twice in one upload: {repeated}.")
    for name, upload in zip(names, files, strict=True):
        if upload.size is not None and upload.size > settings.max_file_bytes:
            raise PayloadTooLargeError(
                f"{name} is {upload.size:,} bytes, over the {settings.max_file_bytes:,}-byte "
                "limit per file (RAG_MAX_FILE_BYTES)."
            )
    trace = current_trace_id()
    job = services.jobs.accept_upload(
        [(name, _blocks(upload)) for name, upload in zip(names, files, strict=True)],
        tenant=caller.tenant,
        audit=lambda job_id, saved: services.audit.upload(
            caller.key_id, caller.tenant, trace, job_id, saved
        ),
    )
    response.headers["Location"] = f"/v1/ingestions/{job.id}"
    return IngestionJobOut.of(job)


@router.get(
    "/ingestions/{job_id}", response_model=IngestionJobOut, responses=problem_responses(404)
)
def ingestion_job(job_id: str, services: ServicesDep, caller: IngestCaller) -> IngestionJobOut:
    """Progress of an ingestion job and the outcome of each of its files."""
    return IngestionJobOut.of(services.jobs.get(job_id, tenant=caller.tenant))


@router.get("/documents", response_model=DocumentList)
def list_documents(
    services: ServicesDep,
    caller: IngestCaller,
    corpus: Annotated[str | None, QueryParam(description="Only this corpus.")] = None,
) -> DocumentList:
    """Every stored document of your tenant: source, hash, chunk count, when it was ingested."""
    stored = services.store.documents(tenant=caller.tenant, corpus=corpus)
    return DocumentList(documents=[DocumentOut.of(d) for d in sorted(stored, key=lambda d: d.id)])


@router.delete(
    "/documents/{document_id}",
    response_model=DocumentDeleted,
    responses=problem_responses(404, 409),  # no such document; a job is writing
)
def delete_document(
    document_id: str, services: ServicesDep, caller: IngestCaller
) -> DocumentDeleted:
    """Delete a document's chunks (and, for an upload, its file)."""
    trace = current_trace_id()
    found, outcome = services.jobs.delete_document(
        document_id,
        tenant=caller.tenant,
        audit=lambda document: services.audit.delete(
            caller.key_id, caller.tenant, trace, document_id, document.source
        ),
    )
    return DocumentDeleted(
        id=document_id,
        corpus=found.corpus,
        source=found.source,
        chunks_deleted=0 if found.alias_of else found.chunks,
        note=outcome.reason,
    )
