"""What Gotenberg's routes answer with, for the API (at once) and the webhook senders (later):
a job's output files as one file or a zip made as it is sent, a failed job's status and
message, and Gotenberg's webhooks sent from the appliance's outbox.

Webhooks: a job made by a Gotenberg route with ``Gotenberg-Webhook-Url`` carries the
delivery's request (URLs, methods, extra headers, output name, trace), sealed with its
owner's key, in its tag (``HOOK_TAG``), and the success URL as its ``webhook_url``. When it
ends Postgres writes the outbox row it writes for any job's webhook_url; the sender that
finds the tag (``hook_in``) sends what Gotenberg sends instead of CloudConvert's JSON:

- the job finished: the output file (a zip of several) as the body, with ``Content-Type``,
  ``Content-Disposition``, ``Gotenberg-Trace``, ``Gotenberg-Version`` and the extra headers,
  to the webhook URL, with its method;
- the job failed: ``{"status", "message"}`` as JSON to the error URL, with its method;
- then, with ``Gotenberg-Webhook-Events-Url``, an event (``webhook.success`` or
  ``webhook.error``) as JSON to that URL: once per delivery, after its last attempt; a
  failure to send it is logged and changes nothing else. A request may name the events URL
  and no error URL: a failure's event is then the delivery itself, retried as one.

Both go through ``fetch.open_pinned`` (the address guard) and are retried as the outbox
retries (``webhook_delivery``): an ended job's delivery is not lost to a crash.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import msgspec

from appliance.conversions.files import unique_names

HOOK_TAG = "gotenberg-webhook:"  # a job tag that starts so holds a sealed Hook
HOOK_COLUMN = "gotenberg_webhook"  # the sealing context of that tag (security.sealing)
TRACE_HEADER = "Gotenberg-Trace"
# What /version says, and Gotenberg-Version (VERSION_HEADER) on the answers of requests whose
# key passed and on webhook deliveries, as Gotenberg sends it since 8.39: the newest Gotenberg
# major whose routes are answered (9: /forms/pdf/* beside 8's /forms/pdfengines/*), then this
# appliance's, as Gotenberg's own variants print "{semver}-live-demo-snapshot". Clients that
# read it (GotenbergSharpApiClient 4 picks the API by the major) then speak Gotenberg 9.
VERSION = "9.0.0-appliance"
VERSION_HEADER = "Gotenberg-Version"
METHODS = ("POST", "PATCH", "PUT")
# Task error codes that are the request's fault (400); other failures are the server's (500).
CLIENT_CODES = frozenset(
    {
        "INVALID_INPUT_FILE",
        "INVALID_CONVERSION_TYPE",
        "INVALID_URL",
        "URL_NOT_ALLOWED",
        "UNSUPPORTED_FORMAT",
        "NO_INPUT_FILES",
        "NO_TEXT_FOUND",
        "FILE_INFECTED",
        "INVALID_PASSWORD",
        "PASSWORD_REQUIRED",
        "ENGINE_LIMIT",
    }
)
STATUS_OF_CODE = {"FILE_TOO_LARGE": 413, "ENGINE_TIMEOUT": 503, "TIMEOUT": 503}
PASSED_ALONG = frozenset({"INPUT_TASK_FAILED", "CANCELLED"})  # failures of a task's inputs


class Hook(msgspec.Struct, kw_only=True):
    """What Gotenberg's webhook headers asked for."""

    url: str
    error_url: str = ""  # none: a failure goes to the events URL only
    events_url: str = ""  # Gotenberg-Webhook-Events-Url: an event after each delivery
    method: str = "POST"
    error_method: str = "POST"
    extra_headers: dict[str, str] = {}
    output_filename: str | None = None
    trace: str = ""
    last: str = ""  # the name of the job's task whose files are sent


@dataclass(frozen=True)
class Output:
    """A file a task made."""

    sha256: str
    filename: str
    size: int


class TaskState(msgspec.Struct):
    id: uuid.UUID
    name: str
    status: str
    code: str | None = None
    message: str | None = None
    result: dict[str, object] | None = None


class JobState(msgspec.Struct):
    id: uuid.UUID
    status: str
    tag: str | None = None
    tasks: list[TaskState] = []

    def task(self, name: str) -> TaskState:
        return next(t for t in self.tasks if t.name == name)


class _Event(msgspec.Struct):
    event: str
    job: JobState


def job_state(doc: str) -> JobState:
    return msgspec.json.decode(doc, type=JobState)


def failure(job: JobState) -> tuple[int, str]:
    """Gotenberg's status and message for a failed job: its first task that failed of
    itself (not because an input did)."""
    failed = [t for t in job.tasks if t.status == "error"]
    own = [t for t in failed if t.code not in PASSED_ALONG] or failed
    if not own:
        return 500, "Internal Server Error"
    code = own[0].code or "ERROR"
    status = STATUS_OF_CODE.get(code, 400 if code in CLIENT_CODES else 500)
    return status, f"{own[0].message or 'The conversion failed'} ({code})"


# -- output files ---------------------------------------------------------------------------
def answer_name(files: list[Output], wanted: str | None) -> str:
    """The answer's file name: ``Gotenberg-Output-Filename`` with the answer's extension,
    else the one output's own name, else a UUID for a zip (as Gotenberg names it)."""
    ext = ".zip" if len(files) > 1 else _ext(files[0].filename)
    if wanted:
        return f"{wanted}{ext}"
    return files[0].filename if len(files) == 1 else f"{uuid.uuid4()}.zip"


def _ext(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return f".{ext}" if dot and stem else ""


def content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def disposition(name: str) -> str:
    """``attachment`` with the name quoted as Gotenberg quotes it, and in RFC 5987 form for
    names that are not plain ASCII."""
    plain = name.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "_")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name)}"


class _Sink:
    """A write-only stream for zipfile (no seek: entries get data descriptors), from which
    the bytes written so far are taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> list[bytes]:
        parts, self.parts = self.parts, []
        return parts


def body_of(files: list[Output], read: Callable[[str], Iterator[bytes]]) -> Iterator[bytes]:
    """The answer's bytes: the one file's, or a zip of all made as it is sent (memory holds
    a chunk, whatever the sizes); ``read(sha256)`` opens a stored file. Blocking."""
    if len(files) == 1:
        yield from read(files[0].sha256)
        return
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        names = unique_names([f.filename for f in files])
        for name, f in zip(names, files, strict=True):
            with archive.open(name, "w", force_zip64=True) as entry:
                for chunk in read(f.sha256):
                    entry.write(chunk)
                    yield from sink.take()
            yield from sink.take()
    yield from sink.take()


# -- webhooks -------------------------------------------------------------------------------
def tag_of(hook: Hook, seal: Callable[[str], str]) -> str:
    return HOOK_TAG + seal(msgspec.json.encode(hook).decode())


def hook_in(body: str, open_sealed: Callable[[str], str]) -> Hook | None:
    """The Hook a delivery's body (``{"event", "job"}``) carries in its job's tag, opened
    with ``open_sealed``; None for any other delivery."""
    if HOOK_TAG not in body:
        return None
    tag = msgspec.json.decode(body, type=_Event).job.tag or ""
    if not tag.startswith(HOOK_TAG):
        return None
    return msgspec.json.decode(open_sealed(tag[len(HOOK_TAG) :]), type=Hook)


@dataclass(frozen=True)
class HookRequest:
    """One webhook request: where (none: nothing to send there), how, and its body (the
    job's files, or bytes); ``failure``: the (status, message) an error callback carries."""

    method: str
    url: str
    headers: dict[str, str]
    files: list[Output]
    body: bytes = b""
    failure: tuple[int, str] | None = None

    def chunks(self, read: Callable[[str], Iterator[bytes]]) -> Iterable[bytes]:
        return body_of(self.files, read) if self.files else [self.body]


def hook_request(
    hook: Hook, body: str, outputs: Callable[[uuid.UUID], list[Output]]
) -> HookRequest:
    """What a Gotenberg webhook sends for the event in ``body``; ``outputs(task_id)`` lists
    the files of a task."""
    event = msgspec.json.decode(body, type=_Event)
    trace = {TRACE_HEADER: hook.trace, VERSION_HEADER: VERSION}
    if event.event == "job.finished":
        files = outputs(event.job.task(hook.last).id)
        if files:
            name = answer_name(files, hook.output_filename)
            headers = {"Content-Type": content_type(name), **trace}
            if len(files) == 1:
                headers["Content-Length"] = str(files[0].size)
            if not any(k.lower() == "content-disposition" for k in hook.extra_headers):
                headers["Content-Disposition"] = disposition(name)
            return HookRequest(hook.method, hook.url, headers | hook.extra_headers, files)
        status, message = 500, "The job made no file"
    else:
        status, message = failure(event.job)
    error = json.dumps({"status": status, "message": message}).encode()
    headers = {"Content-Type": "application/json", **trace} | hook.extra_headers
    return HookRequest(
        hook.error_method, hook.error_url, headers, [], error, failure=(status, message)
    )


def event_request(hook: Hook, failure: tuple[int, str] | None, now: datetime) -> HookRequest:
    """The event sent to ``Gotenberg-Webhook-Events-Url`` once a delivery is over:
    ``webhook.success``, or ``webhook.error`` with the failure's status and message; its
    ``correlationId`` is the request's trace."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    event: dict[str, object] = {
        "event": "webhook.error" if failure else "webhook.success",
        "correlationId": hook.trace,
        "timestamp": stamp,
    }
    if failure:
        event["error"] = {"status": failure[0], "message": failure[1]}
    headers = hook.extra_headers | {
        "Content-Type": "application/json",
        TRACE_HEADER: hook.trace,
        VERSION_HEADER: VERSION,
    }
    return HookRequest("POST", hook.events_url, headers, [], json.dumps(event).encode())
