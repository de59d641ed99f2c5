"""The v2 API as the client uses it: jobs, tasks, formats, uploads and downloads, over httpx.

Every failure becomes an ``ApiError`` with the server's stable code and message (or
``UNREACHABLE`` when no answer came), so the commands map it to an exit code."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

Progress = Callable[[int], None]  # told how many more bytes went or came
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
CHUNK = 256 * 1024
# A creating request is sent again after these pauses (seconds) when no answer came (0), its
# key's first request was still in progress (409) or the appliance was unavailable (502-504).
RESENT_ON = frozenset({0, 409, 502, 503, 504})
RESEND_PAUSES = (1.0, 2.0, 4.0)


class ApiError(Exception):
    """The API refused (``status`` its HTTP status) or could not be reached (``status`` 0)."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class ApiClient:
    def __init__(self, server: str, key: str | None, transport: Any = None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.server = server
        self._http = httpx.Client(
            base_url=server, headers=headers, timeout=TIMEOUT, transport=transport
        )
        # Upload forms and download URLs may point elsewhere (S3): no key goes there.
        self._bare = httpx.Client(timeout=TIMEOUT, transport=transport)

    def close(self) -> None:
        self._http.close()
        self._bare.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's ``data`` (or the whole body when it has none; None for 204)."""
        response = self._send(self._http, method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        body = response.json()
        return body.get("data", body) if isinstance(body, dict) else body

    def _send(self, http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError("UNREACHABLE", f"{self.server} did not answer: {exc}") from exc
        if response.status_code >= 400:
            raise error_of(response)
        return response

    def create_job(self, tasks: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"tasks": tasks} | ({"tag": tag} if tag else {})
        return self.create("/v2/jobs", body)  # type: ignore[no-any-return]

    def create(self, path: str, body: dict[str, Any]) -> Any:
        """POST a creating request with a new Idempotency-Key, sent again with that key when
        no answer came or the answer says to come back (``RESENT_ON``): the server makes one
        job of all the tries and answers each with it."""
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        for pause in (*RESEND_PAUSES, None):
            try:
                return self.call("POST", path, json=body, headers=headers)
            except ApiError as exc:
                if pause is None or exc.status not in RESENT_ON:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")  # the last try returned or raised

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v2/jobs/{job_id}")  # type: ignore[no-any-return]

    def jobs(self, status: str | None, per_page: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"per_page": per_page, "include": "tasks"}
        if status:
            params["filter[status]"] = status
        return self.call("GET", "/v2/jobs", params=params)  # type: ignore[no-any-return]

    def delete_job(self, job_id: str) -> None:
        self.call("DELETE", f"/v2/jobs/{job_id}")

    def cancel_task(self, task_id: str) -> None:
        self.call("POST", f"/v2/tasks/{task_id}/cancel")

    def formats(self, input_format: str | None, output_format: str | None) -> Any:
        params = {
            k: v
            for k, v in (
                ("filter[input_format]", input_format),
                ("filter[output_format]", output_format),
            )
            if v
        }
        return self.call("GET", "/v2/convert/formats", params=params)

    def me(self) -> dict[str, Any]:
        return self.call("GET", "/v2/users/me")  # type: ignore[no-any-return]

    def upload(self, form: dict[str, Any], path: Path, progress: Progress) -> None:
        """POST the file to the task's form (the API's or the storage's), telling ``progress``
        as its bytes leave."""
        with open(path, "rb") as fh:
            counted = CountingReader(fh, progress)
            files = {"file": (path.name, counted, "application/octet-stream")}
            self._send(
                self._bare, "POST", form["url"], data=form.get("parameters", {}), files=files
            )

    def download(self, url: str, dest: Path, progress: Progress) -> None:
        """Stream ``url`` to ``dest`` (through a temporary name, renamed once complete)."""
        part = dest.with_name(dest.name + ".part")
        try:
            with self._bare.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                with open(part, "wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        out.write(chunk)
                        progress(len(chunk))
            os.replace(part, dest)
        except httpx.HTTPError as exc:
            raise ApiError("UNREACHABLE", f"download of {dest.name} failed: {exc}") from exc
        finally:
            part.unlink(missing_ok=True)


class CountingReader:
    """A file httpx streams from, telling ``progress`` of each chunk read."""

    def __init__(self, fh: BinaryIO, progress: Progress) -> None:
        self._fh, self._progress = fh, progress

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self._progress(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def fileno(self) -> int:  # lets httpx learn the length (Content-Length, no chunking)
        return self._fh.fileno()

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)


def error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        code, message = str(body.get("code", "ERROR")), str(body.get("message", ""))
        for name, problems in (body.get("errors") or {}).items():  # which field, and why
            message += f" {name}: {'; '.join(map(str, problems))}."
    except (ValueError, AttributeError):
        code, message = "ERROR", response.text[:200]
    return ApiError(code, message or response.reason_phrase, response.status_code)
