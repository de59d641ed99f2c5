"""Zip containers (docx, xlsx, pptx, odt, ods, odp, epub, zip) are checked before an engine
opens them: a zip bomb inflates a few megabytes into gigabytes inside the engine.

The check runs inside the sandboxed helper. It inflates every member as a stream, counting
bytes, and refuses the file once the total passes the limit; the declared sizes are checked
first (cheap), and a member that inflates to something other than its declared size or CRC is
refused as malformed, so headers that understate a member's size do not get through either.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from appliance.engines.formats import GROUPS, normalize
from appliance.errors import PermanentError

MAX_MEMBERS = 20_000
CHUNK = 1 << 20


def _too_big(limit: int) -> PermanentError:
    return PermanentError(
        f"The document's zip container inflates to more than {limit >> 20} MB",
        code="ENGINE_LIMIT",
    )


def check_container(path: Path, fmt: str, limit: int) -> None:
    """Raise ENGINE_LIMIT if the zip container ``path`` (of format ``fmt``) inflates past
    ``limit`` bytes, INVALID_INPUT_FILE if it is not a sound zip file. Other formats pass."""
    if GROUPS.get(normalize(fmt)) != "zip":
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise PermanentError(
                    f"The zip container has more than {MAX_MEMBERS} members", code="ENGINE_LIMIT"
                )
            if sum(m.file_size for m in members) > limit:
                raise _too_big(limit)
            total = 0
            for member in members:
                with archive.open(member) as stream:
                    while chunk := stream.read(CHUNK):
                        total += len(chunk)
                        if total > limit:
                            raise _too_big(limit)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
        raise PermanentError(
            f"The file is not a sound zip container: {exc}", code="INVALID_INPUT_FILE"
        ) from exc
