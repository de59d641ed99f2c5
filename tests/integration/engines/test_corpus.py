"""Every pair the appliance claims (its format graph, as /v2/convert/formats lists it) for every
file of the real-world corpus (corpus.py): the share that converts, and every failure with an
honest code, one the file deserves. What counts as honest is written out here, file by file
where it depends on the file.

One run of every pair of every file (some 1,500 conversions, prefix hops shared) backs all the
tests of this module; see the module docstring of corpus.py for the command that prints it.
"""

from __future__ import annotations

import pytest

from tests.integration.engines.corpus import CORPUS, Outcome, corpus_files, report, run_corpus

# The module's one run of every pair happens in the first test's set-up: minutes, not the
# suite's 300 s a test.
pytestmark = pytest.mark.timeout(2400)

# Codes that are honest for any file: the input is fine, but what was asked of it is not
# there or does not fit (a picture without words to text; a limit of the engines, named).
HONEST_ANYWHERE = {
    "NO_TEXT_FOUND": "no words to read: a picture without text or a scan without a text layer",
    "ENGINE_LIMIT": "past a limit the message names (pixels, sheet size, memory)",
}
# Files that are broken, locked or in a coding no engine here reads, and the one code each
# must get on every route that fails.
BROKEN = {
    "pandoc-corrupt.svg": "INVALID_INPUT_FILE",  # pandoc's own test of a corrupt SVG
    # encrypted with a user password: nothing can be read without it
    "pypdf-libreoffice-writer-password.pdf": "INVALID_INPUT_FILE",
    # pandoc's writer test: a picture as hex after \bin, which RTF says is raw bytes
    "pandoc-image.rtf": "INVALID_INPUT_FILE",
    # written by Apache POI's tests; LibreOffice 7.4 will not load it (`soffice --convert-to
    # pdf` says "source file could not be loaded", with the PowerPoint 97 filter named too),
    # and no other engine here reads ppt
    "tika-pictures.ppt": "INVALID_INPUT_FILE",
}
# The share that converts must not fall below what was measured: 87.7%, 1,349 of the 1,539
# pairs (`.venv/bin/python -m tests.integration.engines.corpus 2`, before svg -> rtf went back
# to its picture route, which adds one; 86.7% before doc and rtf kept the pictures docx keeps).
# The goal, 0.97, is out of reach while a picture without words fails NO_TEXT_FOUND on
# each of its 6 text targets (txt, md, gfm, rst, org, latex): 84 pairs of 14 pictures; a
# workbook of pictures on 12 (text and data formats; its docx, doc, odt, epub, rtf and html
# hold the pictures); and the four files in BROKEN fail on their 93 (93.4% of the other
# files' pairs convert).
FLOOR = 0.86


@pytest.fixture(scope="module")
def outcomes(work_root) -> list[Outcome]:
    work = work_root / "corpus"
    work.mkdir()
    return run_corpus(corpus_files(), work, threads=2)


def test_the_corpus_is_the_one_its_sources_list():
    sources = (CORPUS.parent / "SOURCES.md").read_text()
    files = corpus_files()
    assert len(files) == 66
    assert all(f"| {f.name} |" in sources for f in files)


def test_every_failure_has_an_honest_code(outcomes):
    dishonest = [
        o
        for o in outcomes
        if o.code is not None and o.code not in HONEST_ANYWHERE and BROKEN.get(o.file) != o.code
    ]
    assert not dishonest, report(dishonest)


def test_broken_files_fail_and_say_so(outcomes):
    for name, code in BROKEN.items():
        failed = [o for o in outcomes if o.file == name and o.code is not None]
        assert failed and all(o.code == code for o in failed), report(failed)


def test_no_message_shows_a_path(outcomes):
    shown = [
        o for o in outcomes if o.code is not None and ("/job" in o.message or "/tmp" in o.message)
    ]
    assert not shown, report(shown)


def test_the_share_that_converts_stays_above_the_floor(outcomes):
    converted = sum(o.code is None for o in outcomes) / len(outcomes)
    print(report(outcomes))
    assert converted >= FLOOR, report(outcomes)
