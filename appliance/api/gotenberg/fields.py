"""Gotenberg's form fields -> a job of the appliance's task operations: the whole mapping.

Each route's ``plan_*`` reads a parsed ``Form`` (values and file names, Gotenberg v8's
fields and the v7 names that differ) and returns the job's tasks: one ``import/upload`` per
input file, the operations in Gotenberg's order (convert, merge, split, rotate, flatten,
PDF/A, metadata, embeds, encryption) and an ``export/url``. Pure: no I/O.

An operation this appliance does not have enabled is refused with a 501 that names it
(``NotAvailable``), never answered with an output that lacks what was asked; so are the
fields whose effect nothing here can give (``UNSUPPORTED``). Purely cosmetic PDF-viewer and
export-tuning fields (LibreOffice's ``quality``, ``initialView``, ...) are accepted and have
no effect, as Gotenberg's own PDF engines ignore what they do not know.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Operation names, CloudConvert's (the ones not on every install today are built elsewhere
# and light the routes up once enabled in ``conversions/operations/enabled.py``).
CAPTURE = "capture-website"
PDF_A = "pdf/a"
PDF_ENCRYPT = "pdf/encrypt"
EXTRACT = "pdf/extract-pages"
WRITE_METADATA = "metadata/write"
FLATTEN = "pdf/flatten"  # the appliance's own, not CloudConvert's
EMBED = "pdf/embed"  # the appliance's own, not CloudConvert's
CHROMIUM = "chromium"  # the Chromium engine's id (html and markdown -> pdf, png, jpg, webp)
LIBREOFFICE = "libreoffice"

INCH_CM = 2.54
UNIT_INCHES = {"in": 1.0, "pt": 1 / 72, "px": 1 / 96, "pc": 1 / 6, "mm": 1 / 25.4, "cm": 1 / 2.54}
TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")
DURATION_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
SCREENSHOT_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}

# Fields whose effect nothing here gives: refused when set to anything but their default.
UNSUPPORTED = {
    "nativeWatermarkText": "",
    "nativeTiledWatermarkText": "",
    "pdfua": "false",
    "bookmarks": "",
    "autoIndexBookmarks": "false",
    "titleBookmarks": "false",
    "optimizeImages": "false",
    "facturxConformanceLevel": "",
    "watermarkSource": "",
    "stampSource": "",
    "downloadFrom": "",
    "cookies": "",
    "singlePage": "false",
    "generateDocumentOutline": "false",
    "generateTaggedPdf": "false",
}
# LibreOffice's own (Chromium's landscape is capture-website's page_orientation)
OFFICE_UNSUPPORTED = {"password": "", "landscape": "false"}
EMBEDS = "embeds"  # the form field of files to attach (Gotenberg 8)
NO_FILE_FIELDS = (EMBEDS, "watermark", "stamp", "facturxXml")  # form files that are no input


class GotenbergError(Exception):
    """Answered as Gotenberg answers errors: the status and a plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(message: str) -> GotenbergError:
    return GotenbergError(400, f"Invalid form data: {message}")


class NotAvailable(GotenbergError):
    """What the request needs is not enabled on this appliance (501: asking again will
    not help until an operator enables it)."""

    def __init__(self, what: str) -> None:
        super().__init__(501, f"Not available on this appliance: {what}")


@dataclass(frozen=True)
class Upload:
    """A file part of the form."""

    name: str  # its file name, sanitised
    field: str  # the form field it came in


@dataclass
class Form:
    values: dict[str, str]  # the first value of each field
    files: list[Upload]  # in the order they came
    texts: dict[str, str] = field(default_factory=dict)  # header.html and footer.html
    # A Gotenberg 9 request (``stages``, or a /forms/pdf route): errors in Gotenberg 9's words
    v9: bool = False
    # the names sent for fields read under Gotenberg 8's (nativePageRanges: nativePages)
    sent_as: dict[str, str] = field(default_factory=dict)

    def bad(self, name: str, value: str, want: str, v8: str = "") -> GotenbergError:
        """400 for a field's value, named as it was sent: Gotenberg 9's "(got 'x', want y)"
        on its requests, else this appliance's take on Gotenberg 8's ("(got 'x'" + ``v8``;
        Gotenberg 8 adds its Go parser's error)."""
        sent = self.sent_as.get(name, name)
        why = f", want {want}" if self.v9 else v8
        return invalid(f"form field '{sent}' is invalid (got '{value}'{why})")

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value else None

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name, "")
        if value == "":
            return default
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        raise self.bad(name, value, "a boolean", ", expected a boolean")

    def number(self, name: str) -> float | None:
        value = self.values.get(name, "")
        if value == "":
            return None
        try:
            return float(value)
        except ValueError:
            raise self.bad(name, value, "a number", ", not a number") from None

    def inputs(self, extensions: frozenset[str] | None) -> list[Upload]:
        """The input files (not embeds, watermarks, ...) whose extension is one of
        ``extensions`` (None: any), sorted as Gotenberg sorts them (``alphanumeric``)."""
        found = [
            f
            for f in self.files
            if f.field not in NO_FILE_FIELDS
            and (extensions is None or extension(f.name) in extensions)
        ]
        return sorted(found, key=functools.cmp_to_key(_by_name))


def _by_name(a: Upload, b: Upload) -> int:
    return alphanumeric(a.name, b.name)


@dataclass(frozen=True)
class Capabilities:
    """What this appliance can run: enabled operations and engines, and what LibreOffice
    converts to PDF."""

    operations: frozenset[str]
    engines: frozenset[str]
    office_sources: frozenset[str]


@dataclass
class Plan:
    """A job's tasks, the import task of each uploaded file, and the task whose files are
    the answer (``json``: answer with each file's metadata instead, through ``per_file``
    when a route reshapes it; ``headers``: what the answer says besides, such as a stage's
    report)."""

    tasks: dict[str, dict[str, Any]]
    uploads: list[tuple[str, Upload]]
    last: str
    json: bool = False
    per_file: Callable[[Any], Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


# What runs on a conversion's PDFs instead of Gotenberg 8's fields (Gotenberg 9's stages).
Post = Callable[["Chain"], None]


class Chain:
    """Builds a plan step by step: each step takes every file the step before made."""

    def __init__(self, caps: Capabilities, uploads: list[Upload]) -> None:
        self.caps = caps
        self.tasks: dict[str, dict[str, Any]] = {}
        self.uploads: list[tuple[str, Upload]] = []
        for i, upload in enumerate(uploads):
            name = f"file-{i}"
            self.tasks[name] = {"operation": "import/upload", "filename": upload.name}
            self.uploads.append((name, upload))
        self.heads = [name for name, _ in self.uploads]
        self.headers: dict[str, str] = {}  # the answer's, besides the file (a stage's report)

    def need(self, operation: str, what: str) -> None:
        if operation not in self.caps.operations:
            raise NotAvailable(f"{what} needs the {operation} operation, which is not enabled")

    def step(self, name: str, operation: str, what: str, **fields: Any) -> None:
        self.need(operation, what)
        self.tasks[name] = {"operation": operation, "input": list(self.heads), **fields}
        self.heads = [name]

    def attach(self, upload: Upload) -> str:
        """An import for a file a step names (a stamp's image), not an input of the chain."""
        for name, known in self.uploads:
            if known == upload:
                return name
        name = f"file-{len(self.uploads)}"
        self.tasks[name] = {"operation": "import/upload", "filename": upload.name}
        self.uploads.append((name, upload))
        return name

    def plan(
        self, *, json_result: bool = False, per_file: Callable[[Any], Any] | None = None
    ) -> Plan:
        assert len(self.heads) == 1, "a plan ends with one step"
        last = self.heads[0]
        if not json_result:  # a result without files has nothing to export
            self.tasks["export"] = {"operation": "export/url", "input": [last]}
        return Plan(self.tasks, self.uploads, last, json_result, per_file, dict(self.headers))


# -- shared pieces --------------------------------------------------------------------------
def extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def check_supported(form: Form, more: Mapping[str, str] | None = None) -> None:
    for name, default in (UNSUPPORTED | dict(more or {})).items():
        value = form.values.get(name, "")
        if value not in ("", default):
            raise NotAvailable(f"the '{name}' form field")
    for upload in form.files:
        if upload.field in NO_FILE_FIELDS and upload.field != EMBEDS:
            raise NotAvailable(f"files in the '{upload.field}' form field")


def required_inputs(form: Form, extensions: frozenset[str]) -> list[Upload]:
    found = form.inputs(extensions)
    if not found:
        listed = " ".join(f".{e}" for e in sorted(extensions))
        raise invalid(f"no form file found for extensions: [{listed}]")
    return found


def pdf_a_level(form: Form) -> str | None:
    """``pdfa`` (v8; v7 also ``pdfFormat``, ``nativePdfFormat``, ``nativePdfA1aFormat``) as
    CloudConvert's conformance level: "PDF/A-2b" -> "2b"."""
    value = form.text("pdfa") or form.text("pdfFormat") or form.text("nativePdfFormat")
    if value is None and form.flag("nativePdfA1aFormat"):
        value = "PDF/A-1a"
    if value is None:
        return None
    match = re.fullmatch(r"PDF/A-([123][abu])", value.strip(), re.IGNORECASE)
    if match is None:
        raise GotenbergError(
            400,
            f"The PDF format '{value}' is not supported. Valid formats include PDF/A-1b,"
            " PDF/A-2b, PDF/A-3b, and PDF/UA.",
        )
    return match.group(1).lower()


def metadata_field(form: Form, *, required: bool) -> dict[str, Any] | None:
    raw = form.text("metadata")
    if raw is None:
        if required:
            raise invalid("form field 'metadata' is required")
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise invalid(f"form field 'metadata' is invalid (unmarshal metadata: {exc})") from None
    if not isinstance(data, dict):
        raise invalid("form field 'metadata' is invalid (expected a JSON object)")
    return data


def passwords(form: Form) -> dict[str, Any]:
    """``userPassword``, ``ownerPassword`` and the permissions as pdf/encrypt's fields
    (empty: no encryption asked for). pdf/encrypt's annotate also covers filling forms, and
    its modify assembling: either Gotenberg field set false refuses both."""
    out: dict[str, Any] = {}
    if user := form.text("userPassword"):
        out["set_password"] = user
    if owner := form.text("ownerPassword"):
        out["set_owner_password"] = owner
    permissions = {
        "allow_print": ("allowPrinting",),
        "allow_copy": ("allowCopying",),
        "allow_modify": ("allowModifying", "allowAssembling"),
        "allow_annotate": ("allowAnnotating", "allowFillingForms"),
    }
    for key, names in permissions.items():
        if not all(form.flag(n, True) for n in names):
            out[key] = False
    if out and not ({"set_password", "set_owner_password"} & set(out)):
        raise invalid("permission restrictions require a 'userPassword' or 'ownerPassword'")
    return out


def split_steps(chain: Chain, form: Form, *, required: bool) -> None:
    """``splitMode`` and ``splitSpan``: intervals of one page are pdf/split-pages; a page
    selection is pdf/extract-pages (one file with ``splitUnify``, else one per page)."""
    mode, span = form.text("splitMode"), (form.text("splitSpan") or "").replace(" ", "")
    if mode is None:
        if required:
            raise invalid("form field 'splitMode' is required")
        return
    if mode not in ("intervals", "pages"):
        raise invalid("form field 'splitMode' is invalid (wrong value, expected either"
                      " 'intervals' or 'pages')")  # fmt: skip
    if not span:
        raise invalid("form field 'splitSpan' is required")
    unify = form.flag("splitUnify")
    if mode == "intervals":
        if unify:
            raise invalid("form field 'splitUnify' is invalid (unify is not available for"
                          " split mode 'intervals')")  # fmt: skip
        if not span.isdigit() or int(span) < 1:
            raise invalid(f"form field 'splitSpan' is invalid (got '{span}')")
        if int(span) != 1:
            raise NotAvailable("splitting into intervals of more than one page")
        chain.step("split", "pdf/split-pages", "splitting")
        return
    chain.step("extract", EXTRACT, "splitting by pages", pages=span)
    if not unify:
        chain.step("split", "pdf/split-pages", "splitting by pages")


def post_steps(chain: Chain, form: Form, *, pdf_a_done: bool = False) -> None:
    """What Gotenberg does to PDFs after its main step, in its order."""
    angle = form.text("rotateAngle")
    if angle is not None:
        if angle not in ("90", "180", "270"):
            raise invalid("form field 'rotateAngle' is invalid (wrong value, expected 90, 180,"
                          " or 270)")  # fmt: skip
        pages = {"pages": p} if (p := form.text("rotatePages")) else {}
        chain.step("rotate", "pdf/rotate-pages", "rotating", rotation=int(angle), **pages)
    if form.flag("flatten"):
        chain.step("flatten", FLATTEN, "flattening")
    level = pdf_a_level(form)
    if level is not None and not pdf_a_done:
        chain.step("pdfa", PDF_A, f"PDF/A-{level}", conformance_level=level)
    metadata = metadata_field(form, required=False)
    if metadata:
        chain.step("metadata", WRITE_METADATA, "writing metadata", metadata=metadata)
    embed_step(chain, form, required=False)
    secret = passwords(form)
    if secret:
        if level is not None and "set_password" in secret:
            raise invalid("PDF/A format is incompatible with encryption")
        chain.step("encrypt", PDF_ENCRYPT, "encryption", **secret)


# -- LibreOffice ----------------------------------------------------------------------------
def plan_libreoffice(form: Form, caps: Capabilities, post: Post | None = None) -> Plan:
    """Gotenberg 8's fields after the conversion; with ``post`` (Gotenberg 9's stages) only
    the conversion's own (page ranges, PDF/A), then ``post``."""
    check_supported(form, OFFICE_UNSUPPORTED)
    inputs = required_inputs(form, caps.office_sources)
    chain = Chain(caps, inputs)
    level = pdf_a_level(form)
    later = _post_work(form) if post is None else False
    native = form.flag("nativePdfFormats", True) and level == "2b" and not later
    options: dict[str, Any] = {"output_format": "pdf", "engine": LIBREOFFICE}
    if pages := form.text("nativePageRanges"):
        if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", pages.replace(" ", "")):
            raise form.bad("nativePageRanges", pages, "pages such as 1-3,5")
        options["pages"] = pages.replace(" ", "")
    if native:  # LibreOffice writes PDF/A-2b itself
        options["pdf_a"] = True
    chain.step("convert", "convert", "converting with LibreOffice", **options)
    if post is not None:
        if level is not None and not native:
            chain.step("pdfa", PDF_A, f"PDF/A-{level}", conformance_level=level)
        post(chain)
        return chain.plan()
    if form.flag("merge") and len(inputs) > 1:
        chain.step("merge", "merge", "merging", output_format="pdf")
    split_steps(chain, form, required=False)
    post_steps(chain, form, pdf_a_done=native)
    return chain.plan()


def _post_work(form: Form) -> bool:
    """Whether PDFs are changed after LibreOffice made them (then PDF/A comes last)."""
    return any(form.text(f) for f in ("splitMode", "metadata", "rotateAngle")) or form.flag(
        "flatten"
    )


# -- PDF engines ----------------------------------------------------------------------------
PDF = frozenset({"pdf"})


def plan_merge(form: Form, caps: Capabilities) -> Plan:
    check_supported(form)
    chain = Chain(caps, required_inputs(form, PDF))
    chain.step("merge", "merge", "merging", output_format="pdf")
    post_steps(chain, form)
    return chain.plan()


def plan_split(form: Form, caps: Capabilities) -> Plan:
    check_supported(form)
    chain = Chain(caps, required_inputs(form, PDF))
    split_steps(chain, form, required=True)
    post_steps(chain, form)
    return chain.plan()


def plan_flatten(form: Form, caps: Capabilities) -> Plan:
    chain = Chain(caps, required_inputs(form, PDF))
    chain.step("flatten", FLATTEN, "flattening")
    return chain.plan()


def plan_pdf_convert(form: Form, caps: Capabilities) -> Plan:
    chain = Chain(caps, required_inputs(form, PDF))
    level = pdf_a_level(form)
    if form.flag("pdfua"):
        raise NotAvailable("PDF/UA")
    if level is None:
        raise invalid("either 'pdfa' or 'pdfua' form fields must be provided")
    chain.step("pdfa", PDF_A, f"PDF/A-{level}", conformance_level=level)
    return chain.plan()


def plan_metadata_read(form: Form, caps: Capabilities) -> Plan:
    chain = Chain(caps, required_inputs(form, PDF))
    chain.step("metadata", "metadata", "reading metadata")
    return chain.plan(json_result=True)


def plan_metadata_write(form: Form, caps: Capabilities) -> Plan:
    metadata = metadata_field(form, required=True)
    chain = Chain(caps, required_inputs(form, PDF))
    chain.step("metadata", WRITE_METADATA, "writing metadata", metadata=metadata)
    return chain.plan()


def plan_encrypt(form: Form, caps: Capabilities) -> Plan:
    chain = Chain(caps, required_inputs(form, PDF))
    secret = passwords(form)
    if not secret:
        raise invalid("a 'userPassword' or 'ownerPassword' is required")
    chain.step("encrypt", PDF_ENCRYPT, "encryption", **secret)
    return chain.plan()


def embed_step(chain: Chain, form: Form, *, required: bool) -> None:
    """The files of the ``embeds`` field attached to each PDF, under their own names."""
    embeds = [f for f in form.files if f.field == EMBEDS]
    if not embeds:
        if required:
            raise invalid("no form file found in the 'embeds' form field")
        return
    attachments = [chain.attach(f) for f in embeds]
    chain.step("embed", EMBED, "embedding files", attachments=attachments)


def plan_embed(form: Form, caps: Capabilities) -> Plan:
    chain = Chain(caps, required_inputs(form, PDF))
    embed_step(chain, form, required=True)
    return chain.plan()


# -- Chromium -------------------------------------------------------------------------------
def inches(form: Form, name: str) -> float | None:
    """A Gotenberg length (``8.5``, ``8.5in``, ``210mm``, ``72pt``, ...) in inches."""
    value = form.values.get(name, "").strip()
    if not value:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(in|pt|px|pc|mm|cm)?", value)
    if match is None:
        raise form.bad(name, value, "a length such as 8.5, 8.5in, 210mm or 72pt")
    return float(match.group(1)) * UNIT_INCHES[match.group(2) or "in"]


def duration_ms(form: Form, name: str) -> int | None:
    value = form.values.get(name, "").strip()
    if not value:
        return None
    match = DURATION.fullmatch(value)
    if match is None:
        raise form.bad(name, value, "a duration such as 500ms or 2s", ", not a duration")
    return round(float(match.group(1)) * DURATION_MS[match.group(2)])


def headers_field(form: Form) -> dict[str, str]:
    raw = form.text("extraHttpHeaders")
    headers: dict[str, str] = {}
    if raw is not None:
        try:
            headers = json.loads(raw)
        except ValueError as exc:
            raise invalid(f"form field 'extraHttpHeaders' is invalid ({exc})") from None
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise invalid("form field 'extraHttpHeaders' is invalid (expected an object of"
                          " strings)")  # fmt: skip
    if agent := form.text("userAgent"):  # v7
        headers["User-Agent"] = agent
    return headers


def page_options(form: Form) -> dict[str, Any]:
    """Chromium's page and wait fields as the chromium engine's options, CloudConvert's names
    (page sizes in cm, margins in mm, waits in ms)."""
    out: dict[str, Any] = {}
    # Gotenberg's paper is US Letter unless said (the engine's own default is A4)
    for name, key, default in (
        ("paperWidth", "page_width", 8.5),
        ("paperHeight", "page_height", 11),
    ):
        size = inches(form, name)
        out[key] = round((default if size is None else size) * INCH_CM, 3)
    for side in ("Top", "Bottom", "Left", "Right"):
        if (size := inches(form, f"margin{side}")) is not None:
            out[f"margin_{side.lower()}"] = round(size * INCH_CM * 10, 2)
    if form.flag("landscape"):
        out["page_orientation"] = "landscape"
    out["print_background"] = form.flag("printBackground")  # Gotenberg's default: false
    if form.flag("preferCssPageSize"):
        out["prefer_css_page_size"] = True
    if (scale := form.number("scale")) is not None:
        out["zoom"] = scale
    if pages := form.text("nativePageRanges"):
        out["pages"] = pages
    if (header := form.texts.get("header.html")) is not None:
        out["header_template"] = header
    if (footer := form.texts.get("footer.html")) is not None:
        out["footer_template"] = footer
    if "header_template" in out or "footer_template" in out:
        out["display_header_footer"] = True
    return out | wait_options(form)


def wait_options(form: Form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (wait := duration_ms(form, "waitDelay")) is not None:
        out["wait_time"] = wait
    if selector := form.text("waitForSelector"):
        out["wait_for_element"] = selector
    if expression := form.text("waitForExpression"):
        out["wait_for_expression"] = expression
    if not form.flag("skipNetworkIdleEvent", True):
        out["wait_until"] = "networkidle0"
    if form.flag("omitBackground"):
        out["omit_background"] = True
    if media := form.text("emulatedMediaType"):
        if media not in ("screen", "print"):
            raise form.bad("emulatedMediaType", media, "screen or print")
        out["css_media_type"] = media
    return out


def screenshot_options(form: Form) -> dict[str, Any]:
    fmt = form.values.get("format") or "png"
    if fmt not in SCREENSHOT_FORMATS:
        raise form.bad("format", fmt, "png, jpeg or webp", ", expected png, jpeg or webp")
    out: dict[str, Any] = {"output_format": SCREENSHOT_FORMATS[fmt]}
    # Gotenberg's 800 x 600 device; without ``clip`` the whole page is taken
    out["screenshot_width"] = int(form.number("width") or 800)
    if form.flag("clip"):
        out["screenshot_height"] = int(form.number("height") or 600)
    if (quality := form.number("quality")) is not None and fmt != "png":
        out["quality"] = int(quality)
    return out | wait_options(form)


def _url(form: Form) -> str:
    url = form.text("url")
    if url is None:
        raise invalid("form field 'url' is required")
    return url


def plan_url(
    form: Form, caps: Capabilities, post: Post | None = None, *, screenshot: bool = False
) -> Plan:
    check_supported(form)
    chain = Chain(caps, [])
    options = screenshot_options(form) if screenshot else page_options(form)
    options.setdefault("output_format", "pdf")
    if headers := headers_field(form):
        options["headers"] = headers
    chain.need(CAPTURE, "capturing a web page")
    chain.tasks["capture"] = {"operation": CAPTURE, "url": _url(form), **options}
    chain.heads = ["capture"]
    _after_chromium(chain, form, post, screenshot=screenshot)
    return chain.plan()


def _after_chromium(chain: Chain, form: Form, post: Post | None, *, screenshot: bool) -> None:
    if post is not None:
        post(chain)
    elif not screenshot:
        post_steps(chain, form)


def _chromium_input(form: Form, caps: Capabilities, what: str) -> Upload:
    if CHROMIUM not in caps.engines:
        raise NotAvailable(f"{what} needs the Chromium engine, which is not enabled")
    index = next((f for f in form.files if f.name == "index.html"), None)
    if index is None:
        raise invalid("form file 'index.html' is required")
    return index


def _assets(form: Form, keep: set[str]) -> None:
    extra = [f.name for f in form.files if f.name not in keep]
    if extra:
        raise NotAvailable(f"files beside index.html ({', '.join(sorted(extra))}); the"
                           " page is rendered alone, without network or assets")  # fmt: skip


def plan_html(
    form: Form, caps: Capabilities, post: Post | None = None, *, screenshot: bool = False
) -> Plan:
    check_supported(form)
    index = _chromium_input(form, caps, "rendering HTML")
    _assets(form, {"index.html", "header.html", "footer.html"})
    chain = Chain(caps, [index])
    options = screenshot_options(form) if screenshot else page_options(form)
    options.setdefault("output_format", "pdf")
    chain.step("convert", "convert", "rendering HTML", engine=CHROMIUM, **options)
    _after_chromium(chain, form, post, screenshot=screenshot)
    return chain.plan()


def plan_markdown(
    form: Form, caps: Capabilities, post: Post | None = None, *, screenshot: bool = False
) -> Plan:
    """The markdown file is rendered on its own: index.html's template around it is not
    applied (the Chromium engine renders markdown to HTML itself)."""
    check_supported(form)
    _chromium_input(form, caps, "rendering markdown")
    documents = form.inputs(frozenset({"md"}))
    if len(documents) != 1:
        raise NotAvailable("rendering other than one markdown file")
    _assets(form, {"index.html", "header.html", "footer.html", documents[0].name})
    chain = Chain(caps, documents)
    options = screenshot_options(form) if screenshot else page_options(form)
    options.setdefault("output_format", "pdf")
    chain.step("convert", "convert", "rendering markdown", engine=CHROMIUM, **options)
    _after_chromium(chain, form, post, screenshot=screenshot)
    return chain.plan()


Planner = Callable[[Form, Capabilities], Plan]

# Route (under /forms/) -> its planner. v7's paths are v8's; v7's field names that differ
# (pdfFormat, nativePdfFormat, nativePdfA1aFormat, userAgent) are read beside v8's.
ROUTES: Mapping[str, Planner] = {
    "chromium/convert/url": plan_url,
    "chromium/convert/html": plan_html,
    "chromium/convert/markdown": plan_markdown,
    "chromium/screenshot/url": functools.partial(plan_url, screenshot=True),
    "chromium/screenshot/html": functools.partial(plan_html, screenshot=True),
    "chromium/screenshot/markdown": functools.partial(plan_markdown, screenshot=True),
    "libreoffice/convert": plan_libreoffice,
    "pdfengines/merge": plan_merge,
    "pdfengines/split": plan_split,
    "pdfengines/flatten": plan_flatten,
    "pdfengines/convert": plan_pdf_convert,
    "pdfengines/metadata/read": plan_metadata_read,
    "pdfengines/metadata/write": plan_metadata_write,
    "pdfengines/encrypt": plan_encrypt,
    "pdfengines/embed": plan_embed,
}


# -- Gotenberg's file order -----------------------------------------------------------------
_PREFIX = re.compile(r"^(\d+)(.*)$")
_BEFORE_EXT = re.compile(r"^(.*?)(\d+)(\.[^.]*)$")
_TRAILING = re.compile(r"^(.*?)(\d+)$")


def _number(name: str) -> tuple[int, str, bool] | None:
    """(number, the rest, whether it was a prefix), or None when the name has none."""
    if m := _PREFIX.match(name):
        return int(m.group(1)), m.group(2), True
    if m := _BEFORE_EXT.match(name):
        return int(m.group(2)), m.group(1) + m.group(3), False
    if m := _TRAILING.match(name):
        return int(m.group(2)), m.group(1), False
    return None


def alphanumeric(a: str, b: str) -> int:
    """Gotenberg's order of input files (merge order): by a numeric prefix, else by the name
    and then a number before the extension; named files with a number come first."""
    na, nb = _number(a), _number(b)
    if na is None or nb is None:
        if na is not None or nb is not None:
            return -1 if na is not None else 1
        return (a > b) - (a < b)
    (ia, ra, pa), (ib, rb, pb) = na, nb
    if pa and pb:
        return (ia > ib) - (ia < ib) or (ra > rb) - (ra < rb)
    if ra != rb:
        return (ra > rb) - (ra < rb)
    if pa != pb:
        return -1 if pa else 1
    return (ia > ib) - (ia < ib) or (a > b) - (a < b)
