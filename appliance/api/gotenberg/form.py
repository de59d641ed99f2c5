"""Reads a Gotenberg multipart form as it streams: values are kept (small, capped), each file
part goes to a spool of its own (sealed for its owner when encryption at rest is on, as an
upload's is), never held whole in memory.

The whole form is read before the job is made: Gotenberg's clients may send the fields that
decide the job after the files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import Message

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from appliance.api.gotenberg.fields import Form, GotenbergError, Upload
from appliance.conversions.files import Spool, safe_filename
from appliance.errors import FileTooLarge

MAX_FILES = 64  # input files (and assets) of one request
MAX_VALUES_BYTES = 1 << 20  # all form values together
MAX_HEADER_BYTES = 8 * 1024  # the headers of one part
MAX_TEXT_BYTES = 1 << 20  # header.html and footer.html, kept as text for Chromium
TEXT_FILES = ("header.html", "footer.html")


def too_large() -> GotenbergError:
    return GotenbergError(
        413, "The request body exceeds the configured size limit. Send a smaller request."
    )


class FormReader:
    """Feed it the body with ``read``; then ``form`` and ``spools`` (one per file, in the
    order of ``form.files``) are there. ``close`` deletes the spools."""

    def __init__(self, content_type: str | None, new_spool: Callable[[], Spool]) -> None:
        ctype, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data":
            raise GotenbergError(
                415, "Invalid 'Content-Type' header value: want 'multipart/form-data'"
            )
        if not boundary:
            raise GotenbergError(415, "Invalid 'Content-Type' header value: no boundary")
        self.form = Form({}, [])
        self.spools: list[Spool] = []
        self._new_spool = new_spool
        self._values_bytes = 0
        self._part_headers: dict[str, str] = {}
        self._header_field = self._header_value = b""
        self._header_bytes = 0
        self._name = ""
        self._value = bytearray()
        self._text: bytearray | None = None
        self._file: Spool | None = None
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    async def read(self, body: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in body:
                self._parser.write(chunk)
        except MultipartParseError as exc:
            raise malformed() from exc
        except FileTooLarge as exc:
            raise too_large() from exc
        if not self._ended:
            raise malformed()

    def close(self) -> None:
        for spool in self.spools:
            spool.close()

    # -- parser callbacks ----------------------------------------------------------------
    def _part_begin(self) -> None:
        self._part_headers = {}
        self._header_bytes = 0
        self._name = ""
        self._value = bytearray()
        self._text = None
        self._file = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]
        self._count_header(end - start)

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._count_header(end - start)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise malformed()

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").lower()
        self._part_headers[name] = self._header_value.decode("utf-8", "replace")
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        msg = Message()
        msg["content-disposition"] = self._part_headers.get("content-disposition", "")
        self._name = str(msg.get_param("name", "", header="content-disposition"))
        filename = msg.get_filename()
        if filename is None:
            return
        if len(self.spools) >= MAX_FILES:
            raise GotenbergError(400, f"Invalid form data: more than {MAX_FILES} files")
        name = safe_filename(filename)
        self._file = self._new_spool()
        self.spools.append(self._file)
        self.form.files.append(Upload(name, self._name))
        self._text = bytearray() if name in TEXT_FILES else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = bytes(data[start:end])
        if self._file is not None:
            self._file.write(chunk)
            if self._text is not None and len(self._text) + len(chunk) <= MAX_TEXT_BYTES:
                self._text += chunk
            return
        self._values_bytes += len(chunk)
        if self._values_bytes > MAX_VALUES_BYTES:
            raise too_large()
        self._value += chunk

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.finish()
            if self._text is not None:
                name = self.form.files[-1].name
                self.form.texts[name] = self._text.decode("utf-8", "replace")
        elif self._name:
            self.form.values.setdefault(self._name, self._value.decode("utf-8", "replace"))

    def _end(self) -> None:
        self._ended = True


def malformed() -> GotenbergError:
    return GotenbergError(
        400, "Malformed body: it does not match the 'Content-Type' header boundaries"
    )
