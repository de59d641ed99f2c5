"""Gotenberg 9's routes: ``/forms/pdf/*`` (each stage's own route, ``pipe`` and the read
routes) and the conversion routes it shares with Gotenberg 8, beside Gotenberg 8's
``/forms/pdfengines/*``; pure, no I/O (the stages themselves are ``stages``').

Gotenberg 8 and 9 share the conversion routes' paths: there a request is Gotenberg 9's when
it sends ``stages``, and then Gotenberg 8's post-processing fields answer 400 with the
message Gotenberg 9 gives (where the field went). Gotenberg 9's renamed fields (``native*``)
are read on those routes either way. ``/forms/pdfengines/*`` keep Gotenberg 8's meaning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from appliance.api.gotenberg import fields
from appliance.api.gotenberg.fields import (
    PDF,
    Capabilities,
    Chain,
    Form,
    NotAvailable,
    Plan,
    Planner,
    invalid,
    required_inputs,
)
from appliance.api.gotenberg.stages import (
    DECRYPT,
    METADATA,
    OPS,
    UNAVAILABLE_OPS,
    Args,
    StageSpec,
    Step,
    named_files,
    parse_stages,
    run_stages,
    without,
)

# the metadata operation's names -> /forms/pdf/metadata's
METADATA_READ = {v: k for k, v in METADATA.items()} | {
    "CreateDate": "creationDate",
    "ModifyDate": "modDate",
}
# Gotenberg 9's read routes that nothing here answers
UNAVAILABLE_READS = {
    "info": "whether a PDF is encrypted, tagged, linearized or holds form fields",
    "validate": "checking a PDF against PDF/A, PDF/UA or Factur-X",
    "form": "listing a form's fields",
    "attachments": "listing a PDF's attachments",
}

# Gotenberg 8's fields that Gotenberg 9 moved into a stage, and those it renamed
ENCRYPT_V8 = (
    "userPassword", "ownerPassword", "allowPrinting", "allowCopying", "allowModifying",
    "allowAssembling", "allowAnnotating", "allowFillingForms",
)  # fmt: skip
STAMP_V8 = (
    "watermarkSource", "watermarkExpression", "watermarkPages", "watermarkOptions",
    "stampSource", "stampExpression", "stampPages", "stampOptions",
)  # fmt: skip
STAGE_OF_V8_FIELD = {
    "merge": '{"op":"merge"}',
    **dict.fromkeys(("splitMode", "splitSpan", "splitUnify"), '{"op":"split"}'),
    "metadata": '{"op":"set-metadata"}',
    "flatten": '{"op":"flatten-form"}',
    **dict.fromkeys(("rotateAngle", "rotatePages"), '{"op":"rotate"}'),
    **dict.fromkeys(ENCRYPT_V8, '{"op":"encrypt"}'),
    **dict.fromkeys(STAMP_V8, '{"op":"stamp-text"}'),
    "pdfa": '{"op":"remediate","profile":"PDF/A-2b"}',
    "pdfua": '{"op":"remediate","profile":"PDF/UA-1"}',
    "facturxConformanceLevel": '{"op":"remediate","profile":"Factur-X"}',
    "optimizeImages": '{"op":"optimize"}',
    "embeds": '{"op":"attach"}',
}
RENAMED = {
    "nativePageRanges": "nativePages",
    "generateDocumentOutline": "nativeBookmarks",
    "generateTaggedPdf": "nativeTaggedPdf",
}
# LibreOffice's PDF export options took the native prefix too
OFFICE_RENAMED = RENAMED | {
    "pdfa": "nativePdfa",
    "pdfFormat": "nativePdfa",
    "pdfua": "nativePdfua",
    "quality": "nativeQuality",
}


# -- Gotenberg 8's fields on Gotenberg 9's requests ---------------------------------------------
def refuse_v8_fields(form: Form, *, office: bool, own: frozenset[str] = frozenset()) -> None:
    """400 with Gotenberg 9's message for a Gotenberg 8 field it moved or renamed (``own``:
    the route's own fields, which Gotenberg 9 kept)."""
    renamed = OFFICE_RENAMED if office else RENAMED
    sent = [k for k, v in form.values.items() if v != ""]
    sent += [f.field for f in form.files if f.field == "embeds"]
    for name in sent:
        if name in own:
            continue
        prefix = f"form field '{name}' is unknown to this route; Gotenberg 9"
        if name in renamed:
            raise invalid(f"{prefix} renamed it '{renamed[name]}'")
        if name in STAGE_OF_V8_FIELD:
            raise invalid(f"{prefix} moved it to a stage: add {STAGE_OF_V8_FIELD[name]} to"
                          " 'stages'")  # fmt: skip
    for upload in form.files:
        if upload.field == "archives":
            raise NotAvailable("files in the 'archives' form field")


def native_names(form: Form, *, office: bool) -> Form:
    """Gotenberg 9's ``native*`` names read as Gotenberg 8's (the same value in both: fine;
    two values: 400), errors still naming the field sent."""
    renamed = OFFICE_RENAMED if office else RENAMED
    values, sent_as = dict(form.values), dict(form.sent_as)
    for old, new in renamed.items():
        if new not in values or values[new] == "":
            continue
        if values.get(old, "") not in ("", values[new]):
            raise invalid(f"form fields '{new}' and '{old}' differ; send '{new}' only")
        values[old] = values.pop(new)
        sent_as[old] = new
    return replace(form, values=values, sent_as=sent_as)


PostPlanner = Callable[..., Plan]


def converting(planner: PostPlanner, *, office: bool, screenshot: bool = False) -> Planner:
    """A conversion route that also answers Gotenberg 9: its native names, and ``stages``
    run on the conversion's PDFs instead of Gotenberg 8's fields."""

    def plan(form: Form, caps: Capabilities) -> Plan:
        raw = form.values.get("stages", "")
        if not raw:
            return planner(native_names(form, office=office), caps)
        if screenshot:
            raise invalid("form field 'stages' is unknown to this route (screenshots are images)")
        form = replace(form, v9=True)
        refuse_v8_fields(form, office=office)
        stages = parse_stages(raw)
        post = functools.partial(run_stages, form=form, stages=stages)
        converted = without(native_names(form, office=office), named_files(stages))
        return planner(converted, caps, post=post)

    return plan


# -- the /forms/pdf routes ----------------------------------------------------------------------
def _pdf_chain(
    form: Form, caps: Capabilities, own: frozenset[str], named: set[str] | None = None
) -> Chain:
    if form.text("stages") and "stages" not in own:
        raise invalid("form field 'stages' is unknown to this route; /forms/pdf/pipe runs them")
    refuse_v8_fields(form, office=False, own=own)
    fields.check_supported(form, {k: v for k, v in fields.UNSUPPORTED.items() if k not in own})
    return Chain(caps, required_inputs(without(form, named or set()), PDF))


def plan_stage(op: str, form: Form, caps: Capabilities) -> Plan:
    """``/forms/pdf/<op>``: the stage alone, its fields the form's."""
    mapping, known = OPS[op]
    named = named_files([StageSpec(1, op, form.values)])
    chain = _pdf_chain(form, caps, known or frozenset(), named)
    mapping(Step(chain, form, op), Args(form.values, "form field"))
    return _end(chain)


def plan_pipe(form: Form, caps: Capabilities) -> Plan:
    raw = form.values.get("stages", "")
    if not raw:
        raise invalid("form field 'stages' is required")
    stages = parse_stages(raw)
    chain = _pdf_chain(form, caps, frozenset({"stages"}), named_files(stages))
    run_stages(chain, form, stages)
    return _end(chain)


def _end(chain: Chain) -> Plan:
    if len(chain.heads) > 1:  # no step ran: only selections of every page
        raise NotAvailable("answering several PDFs that no stage changed")
    return chain.plan()


def plan_unavailable(op: str, form: Form, caps: Capabilities) -> Plan:
    required_inputs(form, PDF)
    raise NotAvailable(f"the '{op}' stage")


def plan_metadata(form: Form, caps: Capabilities) -> Plan:
    """``/forms/pdf/metadata``: each PDF's document information under Gotenberg 9's names
    (opened with ``password`` first when one is given)."""
    chain = _pdf_chain(form, caps, frozenset({"password"}))
    if password := form.text("password"):
        chain.step("decrypt", DECRYPT, "opening encrypted PDFs", password=password)
    chain.step("metadata", "metadata", "reading metadata")
    return chain.plan(json_result=True, per_file=metadata_v9)


def metadata_v9(found: Any) -> dict[str, Any]:
    if not isinstance(found, dict):
        return {}
    return {METADATA_READ[k]: v for k, v in found.items() if k in METADATA_READ}


def plan_read_unavailable(route: str, form: Form, caps: Capabilities) -> Plan:
    required_inputs(form, PDF)
    raise NotAvailable(f"/forms/pdf/{route}: {UNAVAILABLE_READS[route]}")


def gotenberg9(planner: Planner) -> Planner:
    """A route only Gotenberg 9 has: its requests are Gotenberg 9's."""
    return lambda form, caps: planner(replace(form, v9=True), caps)


PDF_ROUTES: Mapping[str, Planner] = {
    **{f"pdf/{op}": functools.partial(plan_stage, op) for op in OPS},
    "pdf/pipe": plan_pipe,
    "pdf/metadata": plan_metadata,
    **{f"pdf/{op}": functools.partial(plan_unavailable, op) for op in sorted(UNAVAILABLE_OPS)},
    **{f"pdf/{r}": functools.partial(plan_read_unavailable, r) for r in UNAVAILABLE_READS},
}
V9_ROUTES: Mapping[str, Planner] = {path: gotenberg9(p) for path, p in PDF_ROUTES.items()}
CONVERSIONS: Mapping[str, Planner] = {
    "chromium/convert/url": converting(fields.plan_url, office=False),
    "chromium/convert/html": converting(fields.plan_html, office=False),
    "chromium/convert/markdown": converting(fields.plan_markdown, office=False),
    "chromium/screenshot/url": converting(
        functools.partial(fields.plan_url, screenshot=True), office=False, screenshot=True
    ),
    "chromium/screenshot/html": converting(
        functools.partial(fields.plan_html, screenshot=True), office=False, screenshot=True
    ),
    "chromium/screenshot/markdown": converting(
        functools.partial(fields.plan_markdown, screenshot=True), office=False, screenshot=True
    ),
    "libreoffice/convert": converting(fields.plan_libreoffice, office=True),
}
# Every route answered under /forms/: Gotenberg 8's (pdfengines/*, with the shared conversion
# routes that also read Gotenberg 9's fields) and Gotenberg 9's pdf/*.
ROUTES: Mapping[str, Planner] = {**fields.ROUTES, **CONVERSIONS, **V9_ROUTES}
