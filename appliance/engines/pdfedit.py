"""CloudConvert's PDF tasks that rewrite one PDF into another, in the sandboxed helper: pages
extracted (``pdf/extract-pages``), PDF/A 1b, 2b or 3b (``pdf/a``), encrypted and decrypted
(``pdf/encrypt``, ``pdf/decrypt``), form fields and annotations flattened (``pdf/flatten``),
files attached (``pdf/embed``) and the document information written (``metadata/write``).

pikepdf (qpdf, MPL-2.0) does the work, Ghostscript (a separate program, never imported) the
PDF/A rewrite. Like the split and merge engines these serve task operations, not format pairs:
the registry finds them by id.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.pdf import page_numbers
from appliance.engines.pdftools import PagesSpec, open_pdf, open_unlocked, to_pdfa
from appliance.engines.tools import tool_version
from appliance.errors import PermanentError

ENGINE_REVISION = "1"  # bump when output for the same input and options changes
# qpdf takes passwords of any length; PDF readers truncate the older handlers' to 32 bytes and
# AES-256's to 127 UTF-8 bytes, so a longer one would not open what it locked.
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=127)]


def _version() -> str:
    import pikepdf

    return f"pikepdf-{pikepdf.__version__}+qpdf-{pikepdf.__libqpdf_version__}+{ENGINE_REVISION}"


def _gs_version() -> str:
    return f"{_version()}+gs-{tool_version('gs')}"


def save(pdf: Any, dst: Path, **options: Any) -> None:
    """The document written compactly (object streams, compressed), as the PDF engines do."""
    import pikepdf

    pdf.remove_unreferenced_resources()
    pdf.save(
        dst,
        compress_streams=True,
        object_stream_mode=pikepdf.ObjectStreamMode.generate,
        **options,
    )


def _pdf_descriptor(engine_id: str, options: type[msgspec.Struct]) -> Descriptor:
    return Descriptor(
        id=engine_id,
        conversions=frozenset(),
        options=options,
        queue="light",
        version=_version,
        family="pdf",
    )


# -- pdf/extract-pages ---------------------------------------------------------------------------
class ExtractPagesOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: PagesSpec  # the pages to keep, in this order ("1-3,5"; 1-based)


class ExtractPagesEngine:
    """A PDF of the ``pages`` given, in the order given (the ``pdf/extract-pages`` operation)."""

    descriptor = _pdf_descriptor("pdf-extract", ExtractPagesOptions)

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: ExtractPagesOptions,
        progress: Progress,
    ) -> None:
        import pikepdf

        with open_pdf(src) as pdf:
            kept = pikepdf.new()
            for index in page_numbers(options.pages, len(pdf.pages)):
                kept.pages.append(pdf.pages[index])
            kept.docinfo = kept.copy_foreign(pdf.docinfo)  # type: ignore[assignment]
            save(kept, dst)
        progress(1.0)


# -- pdf/a ---------------------------------------------------------------------------------------
class PdfAOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # PDF/A part and level: 1b (ISO 19005-1, PDF 1.4), 2b and 3b (PDF 1.7; 3 allows embedded
    # files). Level a (tagged structure) needs a structure the input rarely has: not offered.
    conformance_level: Literal["1b", "2b", "3b"] = "2b"


class PdfAEngine:
    """The PDF rewritten as PDF/A by Ghostscript (the ``pdf/a`` operation): fonts embedded,
    colours as sRGB with its output intent, XMP that claims the part and level."""

    descriptor = Descriptor(
        id="pdf-a",
        conversions=frozenset(),
        options=PdfAOptions,
        queue="light",
        version=_gs_version,
        family="pdf",
        requires=("gs",),
        packages=("ghostscript",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: PdfAOptions,
        progress: Progress,
    ) -> None:
        with open_unlocked(src):  # a damaged or locked input fails here, not in Ghostscript
            pass
        to_pdfa(src, dst, part=int(options.conformance_level[0]))
        progress(1.0)


# -- pdf/encrypt, pdf/decrypt --------------------------------------------------------------------
class EncryptOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    set_password: Password | None = None  # needed to open the document
    set_owner_password: Password | None = None  # needed to change it; default: set_password
    # what a reader lets someone with only the open password do
    allow_print: bool = True
    allow_copy: bool = True  # copy text and images out
    allow_modify: bool = True  # edit pages, forms, assemble
    allow_annotate: bool = True  # add comments, fill in forms

    def __post_init__(self) -> None:
        if self.set_password is None and self.set_owner_password is None:
            raise ValueError("set_password or set_owner_password is required")


class EncryptEngine:
    """The PDF encrypted with AES-256 (the ``pdf/encrypt`` operation). A document that is
    already encrypted must be opened by its owner only password, if any; one that needs a
    password to open is refused (decrypt it first)."""

    descriptor = _pdf_descriptor("pdf-encrypt", EncryptOptions)

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: EncryptOptions,
        progress: Progress,
    ) -> None:
        import pikepdf

        allow = pikepdf.Permissions(
            accessibility=True,  # screen readers may always read it (PDF 2.0 ignores the bit)
            extract=options.allow_copy,
            modify_annotation=options.allow_annotate,
            modify_assembly=options.allow_modify,
            modify_form=options.allow_annotate or options.allow_modify,
            modify_other=options.allow_modify,
            print_lowres=options.allow_print,
            print_highres=options.allow_print,
        )
        user = options.set_password or ""
        owner = options.set_owner_password or user
        with open_pdf(src) as pdf:
            save(pdf, dst, encryption=pikepdf.Encryption(owner=owner, user=user, R=6, allow=allow))
        progress(1.0)


class DecryptOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # the open (user) or owner password; none for a document locked by an owner password only
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class DecryptEngine:
    """The PDF without its encryption (the ``pdf/decrypt`` operation)."""

    descriptor = _pdf_descriptor("pdf-decrypt", DecryptOptions)

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: DecryptOptions,
        progress: Progress,
    ) -> None:
        import pikepdf

        try:
            pdf = pikepdf.open(src, password=options.password or "")
        except pikepdf.PasswordError as exc:
            raise PermanentError(
                "The password does not open the PDF"
                if options.password
                else "The PDF needs a password to open: give it as password",
                code="INVALID_PASSWORD",
            ) from exc
        except (pikepdf.PdfError, ValueError) as exc:
            raise PermanentError(
                f"The PDF could not be opened: {exc}", code="INVALID_INPUT_FILE"
            ) from exc
        with pdf:
            save(pdf, dst, encryption=False)
        progress(1.0)


# -- pdf/flatten ---------------------------------------------------------------------------------
class FlattenOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class FlattenEngine:
    """The PDF with its form fields and annotations drawn into the pages' content and
    removed (the ``pdf/flatten`` operation): what they showed stays, nothing is left to fill
    or edit. A field without an appearance of its own (a value set, ``NeedAppearances``)
    gets one drawn first, as a reader would show it."""

    descriptor = _pdf_descriptor("pdf-flatten", FlattenOptions)

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: FlattenOptions,
        progress: Progress,
    ) -> None:
        with open_unlocked(src) as pdf:
            pdf.generate_appearance_streams()
            pdf.flatten_annotations("all")
            save(pdf, dst)
        progress(1.0)


# -- pdf/embed -----------------------------------------------------------------------------------
AttachmentName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class EmbedOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The attachments' file names, one per file after the PDF, in order: set by the
    # operation from the files' own names (the sandbox sees input-1.txt, ...), never asked of
    # a client.
    names: list[AttachmentName] = []


class EmbedEngine:
    """The PDF with files attached (embedded files, as a reader's attachments pane lists
    them): the first input is the PDF, the others the files, named ``options.names``."""

    descriptor = _pdf_descriptor("pdf-embed", EmbedOptions)

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: EmbedOptions,
        progress: Progress,
    ) -> None:
        self.combine([src], dst, dst_format, options, progress)

    def combine(
        self,
        srcs: list[Path],
        dst: Path,
        dst_format: str,
        options: EmbedOptions,
        progress: Progress,
    ) -> None:
        import pikepdf

        files = srcs[1:]
        if not files or len(files) != len(options.names):
            raise PermanentError(
                f"{len(files)} files to attach and {len(options.names)} names for them",
                code="INVALID_OPTIONS",
            )
        with open_unlocked(srcs[0]) as pdf:
            for i, (path, name) in enumerate(zip(files, options.names, strict=True)):
                if name in pdf.attachments:
                    raise PermanentError(
                        f"The PDF has an attachment named {name!r} already", code="INVALID_OPTIONS"
                    )
                pdf.attachments[name] = pikepdf.AttachedFileSpec(
                    pdf, path.read_bytes(), filename=name
                )
                progress((i + 1) / (len(files) + 1))
            save(pdf, dst)
        progress(1.0)


# -- metadata/write ------------------------------------------------------------------------------
# CloudConvert's (exiftool's) names of the document information entries -> the PDF Info key.
INFO_KEYS = {
    "title": "/Title",
    "author": "/Author",
    "subject": "/Subject",
    "keywords": "/Keywords",
    "creator": "/Creator",
    "producer": "/Producer",
    "creationdate": "/CreationDate",
    "createdate": "/CreationDate",  # exiftool's name
    "moddate": "/ModDate",
    "modifydate": "/ModDate",  # exiftool's name
    "trapped": "/Trapped",
}
# a PDF date (D:YYYYMMDDHHmmSS with an optional zone), as the Info dictionary stores dates
PDF_DATE = r"^D:\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2})?)?)?)?)?([Zz]|[+-]\d{2}'?(\d{2}'?)?)?$"
TRAPPED = ("true", "false", "unknown")
Text = Annotated[str, msgspec.Meta(max_length=4096)]
# a list only for Keywords (joined by ", "); a boolean only for Trapped
MetadataValue = Text | int | float | bool | list[Text] | None
ALLOWED = "Title, Author, Subject, Keywords, Creator, Producer, CreationDate, ModDate, Trapped"


class MetadataWriteOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # entry name (any case) -> its value; null removes the entry. Dates as PDF dates
    # (D:20260101120000Z) or ISO 8601 (2026-01-01T12:00:00Z); Keywords also as a list.
    metadata: dict[str, MetadataValue]

    def __post_init__(self) -> None:
        if not self.metadata:
            raise ValueError("metadata must name at least one entry")
        for name, value in self.metadata.items():
            info_entry(name, value)


def info_entry(name: str, value: MetadataValue) -> tuple[str, str | None]:
    """The Info dictionary's key for entry ``name`` and its value as the PDF stores it (None:
    remove it); ValueError naming the entry when either is not one the PDF can hold."""
    key = INFO_KEYS.get(name.lower())
    if key is None:
        raise ValueError(f"metadata entry {name!r} is unknown; allowed: {ALLOWED}")
    if value is None:
        return key, None
    if key == "/Trapped":
        if str(value).lower() not in TRAPPED:
            raise ValueError("metadata Trapped must be one of True, False, Unknown")
        return key, str(value).capitalize()
    if isinstance(value, list) and key == "/Keywords":
        return key, ", ".join(value)
    if isinstance(value, list | bool):
        raise ValueError(f"metadata {name} must be a string or a number")
    if key.endswith("Date"):
        return key, _pdf_date(name, str(value))
    return key, str(value)


def _pdf_date(name: str, value: str) -> str:
    """A PDF date, from one or from ISO 8601 (a time without a zone is taken as UTC)."""
    if re.fullmatch(PDF_DATE, value):
        return value
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"metadata {name} must be a date: D:20260101120000Z or 2026-01-01T12:00:00Z"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    zone = (
        "Z"
        if minutes == 0
        else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}'{abs(minutes) % 60:02d}'"
    )
    return when.strftime("D:%Y%m%d%H%M%S") + zone


class MetadataWriteEngine:
    """The PDF with its document information entries set or removed (the ``metadata/write``
    operation); an XMP packet the document has is brought in line, so readers that prefer
    it show the same."""

    descriptor = _pdf_descriptor("pdf-metadata-write", MetadataWriteOptions)

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: MetadataWriteOptions,
        progress: Progress,
    ) -> None:
        import pikepdf

        with open_unlocked(src) as pdf:
            for name, value in options.metadata.items():
                key, stored = info_entry(name, value)
                if stored is None:
                    if key in pdf.docinfo:
                        del pdf.docinfo[key]
                elif key == "/Trapped":
                    pdf.docinfo[key] = pikepdf.Name("/" + stored)
                else:
                    pdf.docinfo[key] = stored
            if "/Metadata" in pdf.Root:
                with pdf.open_metadata(set_pikepdf_as_editor=False) as xmp:
                    xmp.load_from_docinfo(pdf.docinfo, delete_missing=True)
            save(pdf, dst)
        progress(1.0)
