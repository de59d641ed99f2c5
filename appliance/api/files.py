"""The upload form target (POST /v2/upload/{task_id}) and signed local-disk downloads."""

from __future__ import annotations

import asyncio
import mimetypes
import uuid
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.response import Stream

from appliance.api import responses
from appliance.api.deps import request_address, services
from appliance.api.multipart import MultipartFile
from appliance.api.schemas import TaskData, answers, downloaded
from appliance.errors import NotFound


@post(
    "/v2/upload/{task_id:uuid}",
    status_code=201,
    tags=["uploads"],
    summary="Upload the file of an import/upload task (the task's result.form)",
    opt={responses.FILE_BODY: True},
    responses=answers(201, TaskData, (400, 404, 413, 422)),
)
async def upload(request: Request[Any, Any, Any], task_id: uuid.UUID) -> Response[bytes]:
    jobs = services(request).jobs

    def check_signature(fields: dict[str, str]) -> None:
        query = request.query_params
        jobs.verify_upload(
            task_id,
            fields.get("expires") or query.get("expires") or "",
            fields.get("signature") or query.get("signature") or "",
        )

    form = MultipartFile(request.headers.get("content-type"), check_signature)
    chunks = form.file_chunks(request.stream())
    doc = await jobs.accept_upload(task_id, lambda: form.filename or "file", chunks)
    return responses.data(doc, 201)


@get(
    "/v2/files/{key:path}",
    tags=["downloads"],
    summary="Download an exported file (local storage backend; the URL is signed and expires)",
    responses=downloaded(),
)
async def download(
    request: Request[Any, Any, Any], key: str, expires: int, signature: str
) -> Stream:
    storage = services(request).jobs.storage
    key = key.lstrip("/")
    object_key, _, filename = key.rpartition("/")
    verify = getattr(storage, "verify_download", None)
    if verify is None or not verify(object_key, filename, expires, signature):
        raise NotFound("The download URL is invalid or has expired", code="INVALID_SIGNATURE")
    # A thread's: on S3 this is a round trip (a ranged read of the sealed header), and inside
    # the event loop it held every request of the process while it lasted.
    size = await asyncio.to_thread(storage.plain_size, object_key)
    if size is None:
        raise NotFound("The file no longer exists")
    await services(request).jobs.audit_download(object_key, filename, request_address(request))
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Stream(
        storage.iter_bytes(object_key),  # each chunk read in a thread (Litestar's Stream)
        media_type=ctype,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
            "Content-Length": str(size),
        },
    )
