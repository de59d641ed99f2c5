import asyncio

import pytest

from appliance.api.multipart import MultipartFile
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

    with pytest.raises(ClientError, match="bad signature"):
        read(body({}, "x.png", b"data" * 1000), 64, before=refuse)


def test_upload_without_a_file_part_is_rejected():
    data = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--{BOUNDARY}--\r\n'
    )
    with pytest.raises(ClientError):
        read(data.encode(), 10)


def test_non_multipart_content_type_is_rejected():
    with pytest.raises(ClientError):
        MultipartFile("application/json", lambda f: None)
