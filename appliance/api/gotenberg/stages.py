"""Gotenberg 9's stages and ``/forms/pdf/*`` routes -> a job of the appliance's task
operations, beside Gotenberg 8's mapping (``fields``): pure, no I/O.

A stage is one operation on PDFs (``{"op": "rotate", "angle": 90}``); a ``stages`` list runs
in its order on ``/forms/pdf/pipe`` and after a conversion (Chromium's and LibreOffice's
convert routes), and each stage also has a route of its own, ``/forms/pdf/<op>``, whose form
fields are the stage's fields. Stage ops this appliance has no operation for, and options it
cannot honour, answer 501 naming them (``NotAvailable``); malformed stages answer 400.

The routes themselves, and Gotenberg 8's fields on Gotenberg 9's requests, are ``v9``'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from appliance.api.gotenberg import fields
from appliance.api.gotenberg.fields import (
    FALSE,
    FLATTEN,
    PDF_A,
    PDF_ENCRYPT,
    TRUE,
    WRITE_METADATA,
    Chain,
    Form,
    NotAvailable,
    invalid,
)

EXTRACT = fields.EXTRACT
ROTATE = "pdf/rotate-pages"
SPLIT = "pdf/split-pages"
DECRYPT = "pdf/decrypt"
WATERMARK = "watermark"
OPTIMIZE = "optimize"
EMBED = fields.EMBED
PAGES = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
STAMP_IMAGES = frozenset({"png", "jpg", "jpeg"})
# Gotenberg 9's 14 standard fonts -> the watermark engine's names (Symbol and ZapfDingbats,
# which draw text as symbols, have none)
FONTS = {
    "Helvetica": "Helvetica",
    "Helvetica-Bold": "Helvetica Bold",
    "Helvetica-Oblique": "Helvetica Oblique",
    "Helvetica-BoldOblique": "Helvetica BoldOblique",
    "Times-Roman": "Times New Roman",
    "Times-Bold": "Times New Roman Bold",
    "Times-Italic": "Times New Roman Italic",
    "Times-BoldItalic": "Times New Roman Bold Italic",
    "Courier": "Courier New",
    "Courier-Bold": "Courier New Bold",
    "Courier-Oblique": "Courier New Italic",
    "Courier-BoldOblique": "Courier New Bold Italic",
}
# encrypt's permissions -> pdf/encrypt's (whose modify also covers assembling and whose
# annotate covers filling forms, and print both qualities: one refused refuses its group)
PERMISSIONS = {
    "print": "allow_print",
    "printHighQuality": "allow_print",
    "extractText": "allow_copy",
    "modifyContent": "allow_modify",
    "assemble": "allow_modify",
    "modifyAnnotations": "allow_annotate",
    "fillForms": "allow_annotate",
}
METADATA = {
    "title": "Title",
    "author": "Author",
    "subject": "Subject",
    "keywords": "Keywords",
    "creator": "Creator",
    "producer": "Producer",
    "creationDate": "CreationDate",
    "modDate": "ModDate",
}
# Gotenberg 9's stage ops that no operation here gives
UNAVAILABLE_OPS = frozenset(
    {
        "sign", "timestamp", "redact", "autotag", "set-form", "set-bookmarks", "compose",
        "stamp-pdf", "clear-metadata", "extract-text", "extract-attachments",
    }
)  # fmt: skip


# -- reading a stage's fields, from JSON or from a form ---------------------------------------
def shown(value: Any) -> str:
    """A value in an error as Gotenberg 9 shows one: a string in single quotes ('A9'), other
    JSON as written (45, true)."""
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Args:
    """A stage's fields: typed values from ``stages``' JSON, or strings from a route's form;
    ``where`` names them in errors ("stage 2 ('rotate') field" or "form field")."""

    values: Mapping[str, Any]
    where: str

    def bad(self, name: str, why: str) -> fields.GotenbergError:
        """400 for a field's value; ``why`` is Gotenberg 9's "got 'x', want y"."""
        return invalid(f"{self.where} '{name}' is invalid ({why})")

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value in (None, "") else value

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None and required:
            raise invalid(f"{self.where} '{name}' is required")
        if value is not None and not isinstance(value, str):
            raise self.bad(name, f"got {shown(value)}, want a string")
        return value

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise invalid(f"{self.where} '{name}' is required")
            return None
        if isinstance(value, bool):
            raise self.bad(name, f"got {shown(value)}, want a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise self.bad(name, f"got {shown(value)}, want a number") from None

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if value in TRUE or value in FALSE:
            return value in TRUE
        raise self.bad(name, f"got {shown(value)}, want a boolean")

    def data(self, name: str) -> Any:
        """A list or an object: JSON text in a form, the value itself in a stage."""
        value = self.raw(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise self.bad(name, str(exc)) from None
        return value


@dataclass
class Step:
    """Where a stage adds its task: the chain, the form (for the files a stage names) and
    the task's name."""

    chain: Chain
    form: Form
    name: str


def _pages(args: Args, name: str = "pages", *, required: bool = False) -> str | None:
    """A page selection as the operations take it ("1-3,5"); None: every page."""
    raw = args.text(name, required=required)
    if raw is None:
        return None
    value = raw.replace(" ", "")
    if value == "all":
        return None
    if PAGES.fullmatch(value):
        return value
    if value in ("odd", "even", "last") or "!" in value or value.endswith("-"):
        raise NotAvailable(f"the page selection '{raw}'")
    raise args.bad(name, f"got '{raw}', want pages such as 1-3,5")


def _point(args: Args, name: str) -> int:
    value = args.number(name) or 0.0
    if value < 0:
        raise args.bad(name, f"got {value:g}, want 0 or more points")
    return round(value)


def _opacity_percent(args: Args) -> int:
    value = args.number("opacity")
    if value is None or value == 0:  # Gotenberg: unset, or 0, is opaque
        return 100
    if not 0 < value <= 1:
        raise args.bad("opacity", f"got {value:g}, want 0 to 1")
    return round(value * 100)


def _upright(args: Args, op: str) -> None:
    if args.number("rotation"):
        raise NotAvailable(f"{op}'s 'rotation' (stamps are drawn upright)")


def _with_pages(args: Args) -> dict[str, Any]:
    pages = _pages(args)
    return {"pages": pages} if pages else {}


# -- the stages -------------------------------------------------------------------------------
def _merge(step: Step, args: Args) -> None:
    step.chain.step(step.name, "merge", "the merge stage", output_format="pdf")


def _split(step: Step, args: Args) -> None:
    every, ranges = args.number("every"), args.data("ranges")
    if (every is None) == (ranges is None):
        raise invalid(f"{args.where} 'every' or 'ranges' is required, not both")
    if every is not None:
        if every != int(every) or every < 1:
            raise args.bad("every", f"got {every:g}, want a whole number of at least 1")
        if every > 1:
            raise NotAvailable("splitting every more than one page")
        step.chain.step(step.name, SPLIT, "the split stage")
        return
    if not isinstance(ranges, list) or not ranges or not all(isinstance(r, str) for r in ranges):
        raise args.bad("ranges", 'want a list of page selections such as ["1","2-3"]')
    if len(ranges) > 1:
        raise NotAvailable("splitting into several ranges")
    pages = _pages(Args({"ranges": ranges[0]}, args.where), "ranges")
    if pages is not None:
        step.chain.step(step.name, EXTRACT, "the split stage", pages=pages)


def _select(step: Step, args: Args) -> None:
    pages = _pages(args, required=True)
    if pages is not None:
        step.chain.step(step.name, EXTRACT, "the select stage", pages=pages)
    elif len(step.chain.heads) > 1:
        raise NotAvailable("selecting all pages of several PDFs")


def _rotate(step: Step, args: Args) -> None:
    angle = args.number("angle", required=True)
    assert angle is not None
    if angle != int(angle) or int(angle) % 90:
        raise args.bad("angle", f"got {angle:g}, want a multiple of 90")
    step.chain.step(
        step.name, ROTATE, "the rotate stage", rotation=int(angle) % 360, absolute=True,
        **_with_pages(args),
    )  # fmt: skip


def _stamp_text(step: Step, args: Args) -> None:
    text = args.text("text", required=True)
    assert text is not None
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        raise NotAvailable("stamping text outside Western European (cp1252)") from None
    font = args.text("font") or "Helvetica"
    if font not in FONTS:
        if font in ("Symbol", "ZapfDingbats"):
            raise NotAvailable(f"the '{font}' font")
        raise args.bad("font", f"got '{font}', want one of the 14 standard PDF fonts")
    color = args.text("color") or "#000000"
    if not COLOR.fullmatch(color):
        raise args.bad("color", f"got '{color}', want #rrggbb")
    size = args.number("fontSize")
    if size is not None and size <= 0:
        raise args.bad("fontSize", f"got {size:g}, want more than 0")
    _upright(args, "stamp-text")
    step.chain.step(
        step.name, WATERMARK, "the stamp-text stage", text=text, font_name=FONTS[font],
        font_size=max(1, round(size or 12)), font_color=color, **_anchored(args),
        **_with_pages(args),
    )  # fmt: skip


def _anchored(args: Args) -> dict[str, Any]:
    """Gotenberg's x and y (points from the bottom-left corner) as the watermark's place."""
    return {
        "position_horizontal": "left",
        "position_vertical": "bottom",
        "margin_horizontal": _point(args, "x"),
        "margin_vertical": _point(args, "y"),
        "opacity": _opacity_percent(args),
        "layer": "above",
    }


def _named_upload(step: Step, args: Args, field: str) -> fields.Upload:
    name = args.text(field, required=True)
    upload = next((f for f in step.form.files if f.name == name), None)
    if upload is None:
        raise args.bad(field, f"no uploaded file is named '{name}'")
    return upload


def _stamp_image(step: Step, args: Args) -> None:
    upload = _named_upload(step, args, "image")
    name = upload.name
    if fields.extension(upload.name) not in STAMP_IMAGES:
        raise args.bad("image", f"'{name}' is not a .png, .jpg or .jpeg image")
    size = {}
    for field_name, key in (("width", "image_width"), ("height", "image_height")):
        if (value := args.number(field_name)) is not None:
            if value <= 0:
                raise args.bad(field_name, f"got {value:g}, want more than 0 points")
            size[key] = max(1, round(value))
    _upright(args, "stamp-image")
    image = step.chain.attach(upload)
    step.chain.step(
        step.name, WATERMARK, "the stamp-image stage", image=image, **size, **_anchored(args),
        **_with_pages(args),
    )  # fmt: skip


def _attach(step: Step, args: Args) -> None:
    """The file attached under its own name, by pdf/embed (which neither renames it, types
    it otherwise than by its name, nor makes it a PDF/A-3 associated file)."""
    upload = _named_upload(step, args, "file")
    if args.text("name") not in (None, upload.name):
        raise NotAvailable("attach's 'name' (a file is attached under its own name)")
    for option in ("mimeType", "relationship"):
        if args.raw(option) is not None:
            raise NotAvailable(f"attach's '{option}'")
    attachment = step.chain.attach(upload)
    step.chain.step(step.name, EMBED, "the attach stage", attachments=[attachment])


def _encrypt(step: Step, args: Args) -> None:
    secret: dict[str, Any] = {}
    if user := args.text("userPassword"):
        secret["set_password"] = user
    if owner := args.text("ownerPassword"):
        secret["set_owner_password"] = owner
    if not secret:
        raise invalid(f"{args.where} 'userPassword' or 'ownerPassword' is required")
    algorithm = args.text("algorithm") or "aes256"
    if algorithm != "aes256":
        if algorithm in ("aes128", "rc4-128", "rc4-40"):
            raise NotAvailable(f"encrypting with {algorithm} (AES-256 only)")
        raise args.bad("algorithm", f"got '{algorithm}', want aes256, aes128, rc4-128 or rc4-40")
    permissions = args.data("permissions") or {}
    if not isinstance(permissions, dict):
        raise args.bad("permissions", "want an object of booleans")
    for key, allowed in permissions.items():
        if key not in PERMISSIONS or not isinstance(allowed, bool):
            raise args.bad("permissions", f"'{key}' is not a permission, or not a boolean")
        if not allowed:
            secret[PERMISSIONS[key]] = False
    step.chain.step(step.name, PDF_ENCRYPT, "the encrypt stage", **secret)


def _decrypt(step: Step, args: Args) -> None:
    password = args.text("password")
    extra = {"password": password} if password else {}
    step.chain.step(step.name, DECRYPT, "the decrypt stage", **extra)


def _set_metadata(step: Step, args: Args) -> None:
    metadata = {entry: value for key, entry in METADATA.items()
                if (value := args.text(key)) is not None}  # fmt: skip
    if not metadata:
        raise invalid(f"{args.where} set-metadata needs one of: {', '.join(METADATA)}")
    step.chain.step(step.name, WRITE_METADATA, "the set-metadata stage", metadata=metadata)


def _optimize(step: Step, args: Args) -> None:
    """Lossless, as Gotenberg 9's: objects packed into compressed streams (the ``archive``
    profile recompresses no image, so its flags that turn work off are honoured as is)."""
    for name in args.values:
        if name != "op":
            args.flag(name, True)
    step.chain.step(step.name, OPTIMIZE, "the optimize stage", profile="archive")


def _flatten_form(step: Step, args: Args) -> None:
    step.chain.step(step.name, FLATTEN, "the flatten-form stage")


REMEDIATE_FIELDS = frozenset({"op", "profile", "aggressive"})
# Gotenberg 9's remediate reports on its answer the fixes it undid to keep pages, text and
# images as they were (this header) and the violations its own check still finds
# (Gotenberg-Remediation-Residual). pdf/a (Ghostscript) undoes none: always 0. It does not
# check its result, so the residual, a count it cannot know, is not sent.
ROLLED_BACK = "Gotenberg-Remediation-Rolled-Back"


def _remediate(step: Step, args: Args) -> None:
    """PDF/A-1b, 2b and 3b by the pdf/a operation; other profiles, and the options that act
    on what pdf/a does not write (language, alternate text, Factur-X), are not available."""
    profile = args.raw("profile")
    if isinstance(profile, str) and profile.lstrip().startswith("["):  # a list, in a form
        profile = args.data("profile")
    if profile is None:
        raise invalid(f"{args.where} 'profile' is required")
    profiles = profile if isinstance(profile, list) else [profile]
    if not profiles or not all(isinstance(p, str) for p in profiles):
        raise args.bad("profile", "want a profile or a list of profiles")
    if len(profiles) > 1:
        raise NotAvailable(f"remediating to {' and '.join(profiles)} together")
    level = re.fullmatch(r"PDF/A-([123]b)", profiles[0])
    if level is None:
        raise NotAvailable(f"remediating to {profiles[0]}")
    for name in args.values:
        if name not in REMEDIATE_FIELDS and args.raw(name) is not None:
            raise NotAvailable(f"remediate's '{name}'")
    args.flag("aggressive", False)
    step.chain.step(step.name, PDF_A, f"remediating to {profiles[0]}",
                    conformance_level=level.group(1).lower())  # fmt: skip
    step.chain.headers[ROLLED_BACK] = "0"


Stage = Callable[[Step, Args], None]
# op -> (its mapping, its fields; None: the mapping checks them)
OPS: Mapping[str, tuple[Stage, frozenset[str] | None]] = {
    "merge": (_merge, frozenset()),
    "split": (_split, frozenset({"every", "ranges"})),
    "select": (_select, frozenset({"pages"})),
    "rotate": (_rotate, frozenset({"angle", "pages"})),
    "stamp-text": (
        _stamp_text,
        frozenset({"text", "pages", "x", "y", "fontSize", "font", "color", "opacity", "rotation"}),
    ),
    "stamp-image": (
        _stamp_image,
        frozenset({"image", "pages", "x", "y", "width", "height", "opacity", "rotation"}),
    ),
    "encrypt": (_encrypt, frozenset({"userPassword", "ownerPassword", "algorithm", "permissions"})),
    "decrypt": (_decrypt, frozenset({"password"})),
    "set-metadata": (_set_metadata, frozenset(METADATA)),
    "optimize": (_optimize, None),
    "flatten-form": (_flatten_form, frozenset()),
    "attach": (_attach, frozenset({"file", "name", "mimeType", "relationship"})),
    "remediate": (_remediate, None),
}


@dataclass(frozen=True)
class StageSpec:
    """One parsed stage: its op and its fields, and its place in the list (from 1)."""

    index: int
    op: str
    values: Mapping[str, Any]

    def args(self) -> Args:
        return Args(self.values, f"stage {self.index} ('{self.op}') field")


def parse_stages(raw: str) -> list[StageSpec]:
    """``stages``' JSON, every stage checked before any runs: 400 for a malformed list, a
    stage without an op, an op Gotenberg 9 does not have or a field its op does not take."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise invalid(f"form field 'stages' is invalid ({exc})") from None
    if not isinstance(data, list) or not data:
        raise invalid("form field 'stages' is invalid (want a non-empty JSON list of stages)")
    out = []
    for index, item in enumerate(data, start=1):
        op = item.get("op") if isinstance(item, dict) else None
        if not isinstance(op, str) or not op:
            raise invalid(f"form field 'stages' is invalid (stage {index} has no 'op')")
        if op not in OPS and op not in UNAVAILABLE_OPS:
            raise invalid(f"form field 'stages' is invalid (stage {index}: unknown op '{op}')")
        known = OPS[op][1] if op in OPS else None
        extra = sorted(set(item) - {"op"} - known) if known is not None else []
        if extra:
            raise invalid(f"form field 'stages' is invalid (stage {index} ('{op}') has no"
                          f" field '{extra[0]}')")  # fmt: skip
        out.append(StageSpec(index, op, item))
    return out


def named_files(stages: list[StageSpec]) -> set[str]:
    """The files the stages name (a stamp's image, an attachment): not inputs to convert or
    process."""
    named = {"stamp-image": "image", "attach": "file"}
    return {str(s.values[named[s.op]]) for s in stages
            if s.op in named and s.values.get(named[s.op])}  # fmt: skip


def without(form: Form, names: set[str]) -> Form:
    return replace(form, files=[f for f in form.files if f.name not in names])


def run_stages(chain: Chain, form: Form, stages: list[StageSpec]) -> None:
    for stage in stages:
        if stage.op in UNAVAILABLE_OPS:
            raise NotAvailable(f"the '{stage.op}' stage")
        mapping, _ = OPS[stage.op]
        mapping(Step(chain, form, f"stage-{stage.index}"), stage.args())
