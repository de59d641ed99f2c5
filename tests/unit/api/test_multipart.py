import asyncio

import pytest

from appliance.api.multipart import MAX_FIELD_BYTES, MAX_HEADER_BYTES, MAX_PARTS, MultipartFile
from appliance.errors import ClientError

BOUNDARY = "xyzBOUNDARYxyz"


def body(fields, filename, content):
    parts = []
    for k, v in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        )
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode()
    )
    parts.append(content + f"\r\n--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


async def chunks(data, size):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(data, size, before=lambda fields: None):
    form = MultipartFile(f"multipart/form-data; boundary={BOUNDARY}", before)

    async def run():
        return b"".join([c async for c in form.file_chunks(chunks(data, size))])

    return form, asyncio.run(run())


@pytest.mark.parametrize("size", [1, 7, 64, 100000])
def test_file_bytes_stream_through_whatever_the_chunking(size):
    content = bytes(range(256)) * 50 + b"\r\n--notboundary"
    seen = {}
    form, out = read(
        body({"expires": "1", "signature": "abc"}, "a b.png", content), size, before=seen.update
    )
    assert out == content
    assert form.filename == "a b.png"
    assert seen == {"expires": "1", "signature": "abc"}  # fields known before the file


def test_signature_check_runs_before_any_file_byte_is_read():
    def refuse(fields):
        raise ClientError("bad signature")

    seen = []
    form = MultipartFile(f"multipart/form-data; boundary={BOUNDARY}", refuse)

    async def run():
        async for chunk in form.file_chunks(chunks(body({}, "x.png", b"data" * 1000), 64)):
            seen.append(chunk)

    with pytest.raises(ClientError, match="bad signature"):
        asyncio.run(run())
    assert seen == []


def test_upload_without_a_file_part_is_rejected_naming_the_file_field():
    data = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--{BOUNDARY}--\r\n'
    )
    with pytest.raises(ClientError) as info:
        read(data.encode(), 10)
    assert info.value.code == "INVALID_DATA"
    assert info.value.errors == {"file": ["a file field is required"]}


def test_non_multipart_content_type_is_an_invalid_upload():
    with pytest.raises(ClientError) as info:
        MultipartFile("application/json", lambda f: None)
    assert info.value.code == "INVALID_UPLOAD"


def _field(name: str, value: str) -> str:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (body({}, "x.png", b"data" * 100)[:-40], "ended before the file did"),
        ("".join(_field(f"f{i}", "1") for i in range(MAX_PARTS + 1)), "more than"),
        (_field("big", "x" * (MAX_FIELD_BYTES + 1)), "field is too large"),
        (
            f"--{BOUNDARY}\r\n"
            + "".join(f"X-{i}: {'h' * (MAX_HEADER_BYTES // 6)}\r\n" for i in range(7))
            + "\r\n1\r\n",
            "bytes of headers",
        ),
        (f"--{BOUNDARY}\r\nno colon here\r\n\r\n", "Malformed multipart body"),
    ],
    ids=["truncated", "too-many-parts", "field-too-large", "headers-too-large", "malformed"],
)
def test_each_malformed_form_is_an_invalid_upload_saying_why(data, message):
    raw = data if isinstance(data, bytes) else data.encode()
    with pytest.raises(ClientError, match=message) as info:
        read(raw, 4096)
    assert info.value.code == "INVALID_UPLOAD"
