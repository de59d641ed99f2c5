"""UNO client for the warm LibreOffice listener; runs under the system Python (python3-uno).

Started by the office engine inside the sandboxed helper, next to its soffice. Reads one JSON
request per line: {"src", "dst", "filter", "filter_options"?, "filter_data"?, "import_filter"?,
"import_options"?}; answers {"ok": true} or {"error": message}. Documents are loaded hidden,
read-only, with macros never executed and links never updated.

Only the standard library and uno: this file is not imported by the appliance package.
"""

import json
import sys
import time

import uno  # type: ignore[import-not-found]
from com.sun.star.beans import PropertyValue  # type: ignore[import-not-found]

NEVER_EXECUTE = 0  # com.sun.star.document.MacroExecMode.NEVER_EXECUTE
NO_UPDATE = 0  # com.sun.star.document.UpdateDocMode.NO_UPDATE


def prop(name, value):
    p = PropertyValue()
    p.Name = name
    p.Value = value
    return p


def connect(url, timeout):
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            ctx = resolver.resolve(url)
            return ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def convert(desktop, req):
    load = [
        prop("Hidden", True),
        prop("ReadOnly", True),
        prop("MacroExecutionMode", NEVER_EXECUTE),
        prop("UpdateDocMode", NO_UPDATE),
    ]
    if req.get("import_filter"):
        load.append(prop("FilterName", req["import_filter"]))
    if req.get("import_options"):
        load.append(prop("FilterOptions", req["import_options"]))
    doc = desktop.loadComponentFromURL(
        uno.systemPathToFileUrl(req["src"]), "_blank", 0, tuple(load)
    )
    if doc is None:
        raise RuntimeError("LibreOffice could not open the document")
    try:
        store = [prop("FilterName", req["filter"]), prop("Overwrite", True)]
        if req.get("filter_options"):
            store.append(prop("FilterOptions", req["filter_options"]))
        if req.get("filter_data"):
            data = tuple(prop(k, v) for k, v in req["filter_data"].items())
            store.append(prop("FilterData", uno.Any("[]com.sun.star.beans.PropertyValue", data)))
        doc.storeToURL(uno.systemPathToFileUrl(req["dst"]), tuple(store))
    finally:
        doc.close(True)


def main():
    desktop = connect(sys.argv[1], float(sys.argv[2]))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            convert(desktop, json.loads(line))
            reply = {"ok": True}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {getattr(exc, 'Message', '') or exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
