"""The chromium engine's options and its place in the format graph."""

from __future__ import annotations

import msgspec
import pytest

from appliance.conversions import graph
from appliance.engines.chromium import ChromiumOptions, pdf_arguments
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import InvalidData

REGISTRY = Registry(enabled_engines())


def engines(src: str, dst: str) -> str:
    hops = REGISTRY.route(src, dst)
    assert hops is not None
    return "+".join(h.engine.descriptor.id for h in hops)


@pytest.mark.parametrize(
    ("src", "dst", "route"),
    [
        ("html", "pdf", "chromium"),
        ("html", "png", "chromium"),  # a screenshot, not a PDF page
        ("html", "webp", "chromium"),
        ("md", "pdf", "pandoc+chromium"),  # markdown: pandoc's html, then the browser
        ("rst", "pdf", "pandoc+chromium"),
        # documents whose pictures and math pandoc's html would lose keep their routes
        ("docx", "pdf", "libreoffice"),
        ("odt", "pdf", "libreoffice"),
        ("docx", "png", "libreoffice+pdfium"),
        ("docx", "webp", "libreoffice+pdfium+vips"),
        ("txt", "pdf", "libreoffice"),
        ("epub", "pdf", "calibre"),
    ],
)
def test_chromium_takes_html_and_text_markup_and_nothing_else(src, dst, route):
    assert engines(src, dst) == route


def test_pdf_arguments_carry_cloudconverts_units():
    args = pdf_arguments(
        ChromiumOptions(
            page_format="letter",
            page_orientation="landscape",
            margin_top=5,
            zoom=0.5,
            pages="1-2, 4",
            display_header_footer=True,
            footer_template="<span class=pageNumber></span>",
        )
    )
    assert (args["width"], args["height"], args["landscape"]) == ("21.59cm", "27.94cm", True)
    assert args["margin"]["top"] == "5mm" and args["scale"] == 0.5
    assert args["page_ranges"] == "1-2,4" and "header_template" not in args
    custom = pdf_arguments(ChromiumOptions(page_width=10, page_height=12.5))
    assert (custom["width"], custom["height"]) == ("10cm", "12.5cm")
    assert custom["print_background"] is True  # CloudConvert's default


@pytest.mark.parametrize(
    "bad",
    [{"zoom": 3}, {"pages": "1-"}, {"page_format": "b5"}, {"wait_until": "never"}, {"x": 1}],
)
def test_bad_options_are_refused(bad):
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(bad, ChromiumOptions)


def plan(tasks):
    return graph.plan(tasks, REGISTRY, lambda ref: None)


def test_capture_website_plans_on_the_office_queue_with_its_output_format():
    planned = plan(
        {
            "cap": {
                "operation": "capture-website",
                "url": "https://example.com/",
                "output_format": "pdf",
                "page_format": "a4",
                "wait_until": "networkidle0",
            },
            "out": {"operation": "export/url", "input": "cap"},
        }
    )
    cap = next(t for t in planned if t.name == "cap")
    assert (cap.queue, cap.output_format) == ("office", "pdf")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "file:///etc/passwd", "output_format": "pdf"}, "url"),
        ({"url": "https://example.com/", "output_format": "docx"}, "output_format"),
        ({"url": "https://example.com/", "output_format": "pdf", "zoom": 9}, "zoom"),
        ({"url": "https://example.com/", "output_format": "pdf", "nope": 1}, "cap"),
    ],
)
def test_capture_website_refuses_what_it_cannot_do(payload, field):
    with pytest.raises(InvalidData) as info:
        plan({"cap": {"operation": "capture-website", **payload}})
    assert any(field in key for key in info.value.errors), info.value.errors
