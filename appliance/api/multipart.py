"""Streaming multipart/form-data reader for uploads: fields, then one file, never buffered whole.

Form fields (small; capped) are collected; the first part with a filename is the file, whose
bytes are yielded as they arrive. ``before_file(fields)`` runs when the file part starts, so
a bad signature is refused before any file byte is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import Message

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from appliance.errors import ClientError, InvalidData

MAX_FIELD_BYTES = 64 * 1024
# An upload form has a handful of fields (CloudConvert's: the signature and its expiry); the
# parts before the file, and each part's headers, are held in memory, so both are bounded.
MAX_PARTS = 32
MAX_HEADER_BYTES = 8 * 1024


class MultipartFile:
    def __init__(
        self, content_type: str | None, before_file: Callable[[dict[str, str]], None]
    ) -> None:
        ctype, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise ClientError(
                "Uploads must be multipart/form-data with a file field", code="INVALID_UPLOAD"
            )
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self._before_file = before_file
        self._headers: dict[str, str] = {}
        self._header_field = b""
        self._header_value = b""
        self._header_bytes = 0
        self._parts = 0
        self._name: str | None = None
        self._value = bytearray()
        self._in_file = False
        self._file_done = False
        self._out: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_cb,
                "on_header_value": self._header_value_cb,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    async def file_chunks(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Yield the file's bytes while feeding the request body through the parser."""
        async for chunk in body:
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise ClientError(
                    f"Malformed multipart body: {exc}", code="INVALID_UPLOAD"
                ) from exc
            while self._out:
                yield self._out.pop(0)
            if self._file_done:
                break
        if self.filename is None:
            raise InvalidData(
                "The upload has no file part", errors={"file": ["a file field is required"]}
            )
        if not self._file_done:
            raise ClientError("The upload ended before the file did", code="INVALID_UPLOAD")

    # -- parser callbacks ------------------------------------------------------------------
    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ClientError(
                f"The upload form has more than {MAX_PARTS} parts", code="INVALID_UPLOAD"
            )
        self._headers = {}
        self._header_bytes = 0
        self._name = None
        self._value = bytearray()

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]
        self._count_header(end - start)

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._count_header(end - start)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise ClientError(
                f"A part of the upload form has more than {MAX_HEADER_BYTES} bytes of headers",
                code="INVALID_UPLOAD",
            )

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode(
            "utf-8", "replace"
        )
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        msg = Message()
        msg["content-disposition"] = self._headers.get("content-disposition", "")
        self._name = msg.get_param("name", header="content-disposition")  # type: ignore[assignment]
        filename = msg.get_filename()
        if filename is not None and self.filename is None and not self._file_done:
            self.filename = filename
            self._in_file = True
            self._before_file(self.fields)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(bytes(data[start:end]))
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise ClientError("A form field is too large", code="INVALID_UPLOAD")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True
        elif self._name:
            self.fields[self._name] = self._value.decode("utf-8", "replace")
