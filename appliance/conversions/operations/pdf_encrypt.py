"""``pdf/encrypt``: each input PDF encrypted (AES-256) with ``set_password`` to open it and
``set_owner_password`` to change it (the open password when not given), and what a reader
lets others do (``allow_print``, ``allow_copy``, ``allow_modify``, ``allow_annotate``); by
the sandboxed ``pdf-encrypt`` engine. The passwords are sealed while the task waits and
dropped when it ends: its JSON never shows them."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class PdfEncrypt(PerInputOperation):
    name = "pdf/encrypt"
    formats = Formats(("pdf",), ("pdf",), "pdf-encrypt")
    input_format = "pdf"
    secret_fields = frozenset({"set_password", "set_owner_password"})
