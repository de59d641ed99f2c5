"""The PDF tasks that rewrite a PDF (extract pages, PDF/A, encrypt, decrypt, flatten, embed
files, write metadata), run in sandboxed helpers on made and real PDFs. Every output is opened by an
independent reader: poppler (pdftotext, pdfinfo, pdffonts) and pikepdf reading the objects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pikepdf
import pytest

from appliance.engines.pdfedit import (
    DecryptEngine,
    DecryptOptions,
    EmbedEngine,
    EmbedOptions,
    EncryptEngine,
    EncryptOptions,
    ExtractPagesEngine,
    ExtractPagesOptions,
    FlattenEngine,
    FlattenOptions,
    MetadataWriteEngine,
    MetadataWriteOptions,
    PdfAEngine,
    PdfAOptions,
)
from appliance.engines.sandbox import SandboxedEngine
from appliance.engines.watermark import WatermarkEngine, WatermarkOptions
from appliance.errors import PermanentError
from tests.integration.engines.pdfa import pdfa_problems

CORPUS = Path(__file__).parents[4] / "shared" / "corpus" / "real"
LOCKED = CORPUS / "pypdf-libreoffice-writer-password.pdf"  # opens with "openpassword"
LOCKED_PASSWORD = "openpassword"
THREE_PAGES = CORPUS / "gotenberg-pages_3.pdf"  # "Page 1" .. "Page 3", Arial embedded
FORM = CORPUS / "pypdf-pdflatex-forms.pdf"  # a text field (Name), a check box, a button


def _run(pool, engine, src, dst, options):
    SandboxedEngine(engine, pool).convert(src, dst, "pdf", "pdf", options, lambda f: None)
    return dst


def _text(path, *password_args):
    out = subprocess.run(
        ["pdftotext", *password_args, str(path), "-"], capture_output=True, text=True, check=True
    )
    return [page.split() for page in out.stdout.split("\f")[:-1]]


def _info(path, *password_args):
    out = subprocess.run(["pdfinfo", *password_args, str(path)], capture_output=True, text=True)
    return out.returncode, dict(
        line.split(":", 1) for line in out.stdout.splitlines() if ":" in line
    )


# -- pdf/extract-pages ---------------------------------------------------------------------------
def test_extract_pages_keeps_the_pages_given_in_their_order(pool, tmp_path):
    dst = _run(pool, ExtractPagesEngine(), THREE_PAGES, tmp_path / "out.pdf",
               ExtractPagesOptions(pages="3,1-2"))  # fmt: skip
    assert _text(dst) == [["Page", "3"], ["Page", "1"], ["Page", "2"]]


def test_extract_pages_beyond_the_document_is_invalid_options(pool, tmp_path):
    with pytest.raises(PermanentError) as info:
        _run(pool, ExtractPagesEngine(), THREE_PAGES, tmp_path / "out.pdf",
             ExtractPagesOptions(pages="2-4"))  # fmt: skip
    assert info.value.code == "INVALID_OPTIONS"
    assert "1-3" in info.value.message


# -- pdf/flatten ---------------------------------------------------------------------------------
def _form_parts(path):
    """(whether the document has an AcroForm, the annotations on each page)."""
    with pikepdf.open(path) as pdf:
        return "/AcroForm" in pdf.Root, [len(page.get("/Annots", [])) for page in pdf.pages]


def test_flatten_draws_a_filled_field_into_the_page_and_leaves_nothing_to_fill(pool, tmp_path):
    filled = tmp_path / "filled.pdf"
    with pikepdf.open(FORM) as pdf:  # a value set as a form filler without appearances does
        name = next(f for f in pdf.Root.AcroForm.Fields if str(f.T) == "Name")
        name.V = pikepdf.String("Ada Lovelace")
        pdf.Root.AcroForm.NeedAppearances = True
        pdf.save(filled)
    assert _form_parts(filled) == (True, [3])  # control: three fields to fill
    dst = _run(pool, FlattenEngine(), filled, tmp_path / "out.pdf", FlattenOptions())
    assert _form_parts(dst) == (False, [0])
    # with no field or annotation left, the value read is the one drawn into the page
    (words,) = _text(dst)
    assert words[:3] == ["Name", "Ada", "Lovelace"]


def test_flatten_of_an_encrypted_pdf_asks_to_decrypt_first(pool, tmp_path):
    with pytest.raises(PermanentError) as info:
        _run(pool, FlattenEngine(), LOCKED, tmp_path / "out.pdf", FlattenOptions())
    assert info.value.code == "INVALID_INPUT_FILE"


# -- pdf/embed -----------------------------------------------------------------------------------
def test_embed_attaches_each_file_under_its_name_as_poppler_lists_it(pool, tmp_path):
    note, table = tmp_path / "n", tmp_path / "t"
    note.write_bytes(b"a note\n")
    table.write_bytes(b"\x00\x01binary\xff" * 1000)
    dst = tmp_path / "out.pdf"
    SandboxedEngine(EmbedEngine(), pool).combine(
        [THREE_PAGES, note, table], dst, "pdf", EmbedOptions(names=["note.txt", "data.bin"]),
        lambda f: None,
    )  # fmt: skip
    listed = subprocess.run(["pdfdetach", "-list", str(dst)], capture_output=True, text=True)
    numbers = dict(line.split(": ")[::-1] for line in listed.stdout.splitlines()[1:])
    assert sorted(numbers) == ["data.bin", "note.txt"]  # the name tree is sorted
    for name, path in (("note.txt", note), ("data.bin", table)):
        saved = tmp_path / f"saved-{name}"
        detach = ["pdfdetach", "-save", numbers[name], "-o", str(saved), str(dst)]
        subprocess.run(detach, check=True)
        assert saved.read_bytes() == path.read_bytes()
    assert _text(dst) == [["Page", "1"], ["Page", "2"], ["Page", "3"]]


def test_embed_refuses_a_name_the_pdf_has_already(pool, tmp_path):
    note = tmp_path / "n"
    note.write_bytes(b"x")
    once = tmp_path / "once.pdf"
    engine = SandboxedEngine(EmbedEngine(), pool)
    engine.combine([THREE_PAGES, note], once, "pdf", EmbedOptions(names=["a.txt"]), lambda f: None)
    with pytest.raises(PermanentError) as info:
        engine.combine(
            [once, note], tmp_path / "twice.pdf", "pdf", EmbedOptions(names=["a.txt"]),
            lambda f: None,
        )  # fmt: skip
    assert info.value.code == "INVALID_OPTIONS" and "'a.txt'" in info.value.message


# -- pdf/a -------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["1b", "2b", "3b"])
def test_pdf_a_meets_the_rules_of_its_part(pool, tmp_path, level):
    assert pdfa_problems(THREE_PAGES, int(level[0]))  # control: the input is no PDF/A
    dst = _run(pool, PdfAEngine(), THREE_PAGES, tmp_path / "out.pdf",
               PdfAOptions(conformance_level=level))  # fmt: skip
    assert pdfa_problems(dst, int(level[0])) == []
    assert _text(dst) == [["Page", "1"], ["Page", "2"], ["Page", "3"]]


def test_pdf_a_1b_of_a_translucent_watermark_has_no_transparency_left(pool, tmp_path):
    marked = tmp_path / "marked.pdf"
    SandboxedEngine(WatermarkEngine(), pool).convert(
        THREE_PAGES, marked, "pdf", "pdf", WatermarkOptions(text="DRAFT", opacity=50),
        lambda f: None,
    )  # fmt: skip
    assert "alpha /ca 0.5" in pdfa_problems(marked, 1)  # control: the stamp is translucent
    dst = _run(
        pool, PdfAEngine(), marked, tmp_path / "out.pdf", PdfAOptions(conformance_level="1b")
    )
    assert pdfa_problems(dst, 1) == []
    # Ghostscript flattens such pages to pictures: they look the same, their text is gone
    assert _text(dst) == [[], [], []]


def test_pdf_a_of_an_encrypted_pdf_asks_to_decrypt_first(pool, tmp_path):
    with pytest.raises(PermanentError) as info:
        _run(pool, PdfAEngine(), LOCKED, tmp_path / "out.pdf", PdfAOptions())
    assert info.value.code == "INVALID_INPUT_FILE"


# -- pdf/encrypt, pdf/decrypt ---------------------------------------------------------------------
def test_encrypt_needs_the_password_to_open_and_keeps_the_permissions(pool, tmp_path):
    dst = _run(pool, EncryptEngine(), THREE_PAGES, tmp_path / "out.pdf",
               EncryptOptions(set_password="open sesame", set_owner_password="the owner",
                              allow_print=False, allow_copy=False))  # fmt: skip
    code, _ = _info(dst)
    assert code != 0  # poppler cannot open it without a password
    code, info = _info(dst, "-upw", "open sesame")
    assert code == 0
    assert info["Encrypted"].split() == [
        "yes", "(print:no", "copy:no", "change:yes", "addNotes:yes", "algorithm:AES-256)"
    ]  # fmt: skip
    assert _text(dst, "-upw", "open sesame") == [["Page", "1"], ["Page", "2"], ["Page", "3"]]
    with pikepdf.open(dst, password="the owner") as pdf:
        assert pdf.owner_password_matched


def test_encrypt_with_an_owner_password_only_opens_without_one(pool, tmp_path):
    dst = _run(pool, EncryptEngine(), THREE_PAGES, tmp_path / "out.pdf",
               EncryptOptions(set_owner_password="the owner", allow_modify=False))  # fmt: skip
    code, info = _info(dst)
    assert code == 0 and "change:no" in info["Encrypted"]
    with pikepdf.open(dst) as pdf:
        assert pdf.is_encrypted and not pdf.owner_password_matched


def test_decrypt_a_real_locked_pdf_with_its_password(pool, tmp_path):
    assert _info(LOCKED)[0] != 0  # control: poppler needs the password
    dst = _run(pool, DecryptEngine(), LOCKED, tmp_path / "out.pdf",
               DecryptOptions(password=LOCKED_PASSWORD))  # fmt: skip
    code, info = _info(dst)
    assert code == 0 and info["Encrypted"].strip() == "no"
    assert _text(dst) == _text(LOCKED, "-upw", LOCKED_PASSWORD)


@pytest.mark.parametrize("password", [None, "wrong"])
def test_decrypt_without_the_right_password_is_invalid_password(pool, tmp_path, password):
    with pytest.raises(PermanentError) as info:
        _run(pool, DecryptEngine(), LOCKED, tmp_path / "out.pdf",
             DecryptOptions(password=password))  # fmt: skip
    assert info.value.code == "INVALID_PASSWORD"


def test_encrypt_then_decrypt_gives_the_text_back(pool, tmp_path):
    locked = _run(pool, EncryptEngine(), THREE_PAGES, tmp_path / "locked.pdf",
                  EncryptOptions(set_password="pw"))  # fmt: skip
    dst = _run(pool, DecryptEngine(), locked, tmp_path / "out.pdf", DecryptOptions(password="pw"))
    assert _info(dst)[1]["Encrypted"].strip() == "no"
    assert _text(dst) == _text(THREE_PAGES)


# -- metadata/write -------------------------------------------------------------------------------
def test_metadata_write_sets_and_removes_document_information(pool, tmp_path):
    src = tmp_path / "in.pdf"
    with pikepdf.open(THREE_PAGES) as pdf:
        pdf.docinfo["/Subject"] = "to be removed"
        pdf.save(src)
    options = MetadataWriteOptions(
        metadata={
            "Title": "Annual report",
            "author": "Finance",
            "Keywords": ["q3", "revenue"],
            "CreationDate": "D:20261001090000Z",
            "ModDate": "2026-10-02T11:30:00+02:00",  # ISO 8601, as Gotenberg's clients send
            "Trapped": False,
            "Subject": None,
        }
    )
    dst = _run(pool, MetadataWriteEngine(), src, tmp_path / "out.pdf", options)
    info = {k: v.strip() for k, v in _info(dst, "-isodates")[1].items()}
    assert (info["Title"], info["Author"], info["Keywords"]) == (
        "Annual report",
        "Finance",
        "q3, revenue",
    )
    assert "Subject" not in info
    assert info["CreationDate"] == "2026-10-01T09:00:00Z"
    assert info["ModDate"] == "2026-10-02T11:30:00+02"
    with pikepdf.open(dst) as pdf:
        assert pdf.docinfo["/Trapped"] == pikepdf.Name("/False")
    assert _text(dst) == _text(THREE_PAGES)


def test_metadata_write_brings_the_xmp_in_line(pool, tmp_path):
    src = CORPUS / "pypdf-crazyones-pdfa.pdf"  # has an XMP packet
    options = MetadataWriteOptions(metadata={"Title": "Crazy ones", "Author": "Apple"})
    dst = _run(pool, MetadataWriteEngine(), src, tmp_path / "out.pdf", options)
    with pikepdf.open(dst) as pdf:
        xmp = pdf.open_metadata()
        assert xmp["dc:title"] == "Crazy ones"
        assert xmp["dc:creator"] == ["Apple"]
