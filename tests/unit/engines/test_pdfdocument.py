"""The drawing finder of pdf -> documents on boxes and characters given by hand."""

from __future__ import annotations

from appliance.engines.pdfdocument import (
    Box,
    Char,
    columns,
    find_drawings,
    labelled,
    text_around,
)


def line(text: str, left: float, bottom: float, size: float = 8.0) -> list[Char]:
    """A line of ``text`` from ``left`` on the baseline ``bottom``, each character ``size``
    wide and tall, ending in a line end PDFium makes."""
    chars = [
        Char(
            c,
            None
            if c == " "
            else Box(left + n * size, bottom, left + (n + 1) * size, bottom + size),
        )
        for n, c in enumerate(text)
    ]
    return [*chars, Char("\r", None), Char("\n", None)]


WHOLE = [(0.0, 612.0)]


def test_shapes_that_touch_are_one_drawing_and_far_ones_another():
    bars = [Box(100, 100, 140, 200), Box(145, 100, 185, 250), Box(190, 100, 230, 150)]
    logo = Box(400, 600, 460, 660)
    dot = Box(500, 100, 510, 110)  # too small for a drawing
    found = find_drawings([*bars, logo, dot], [])
    assert sorted(found, key=lambda b: b.left) == [Box(100, 100, 230, 250), logo]


def test_joining_goes_through_chains_of_shapes():
    chain = [Box(x, 100, x + 10, 150) for x in range(0, 300, 15)]  # 5 points apart each
    assert find_drawings(list(reversed(chain)), []) == [Box(0, 100, 295, 150)]


def test_a_box_mostly_covered_by_text_lines_is_a_background():
    lines = [Box(60, 510, 228, 518), Box(60, 490, 196, 498)]
    assert find_drawings([Box(50, 480, 250, 530)], lines) == []
    # the same lines beside a drawing leave it one
    assert find_drawings([Box(300, 480, 500, 530)], lines) == [Box(300, 480, 500, 530)]


def test_labels_near_a_drawing_go_with_it_and_leave_the_text():
    chart = Box(100, 100, 300, 250)
    chars = (
        line("Above", 100, 300)
        + line("Q1 Q2", 120, 92)  # 8 points tall, its top 2 points below the chart
        + line("Legend", 200, 230)  # inside
        + line("Below the chart", 100, 50)
    )
    regions, drawn = labelled([chart], chars)
    assert regions == [Box(99, 91, 301, 251)]  # the labels' line and a point of margin
    assert text_around(chars, regions, drawn, WHOLE) == [
        ("Above\r\n", 0),
        ("Below the chart\r\n", None),
    ]


def test_a_line_mostly_outside_stays_text():
    chart = Box(100, 100, 200, 250)
    caption = line("A caption that runs on", 180, 92)  # its first 3 characters near the chart
    regions, drawn = labelled([chart], caption)
    assert regions == [Box(99, 99, 201, 251)] and not drawn
    assert text_around(caption, regions, drawn, WHOLE) == [
        ("", 0),
        ("A caption that runs on\r\n", None),
    ]


def two_columns(rows: int) -> list[Char]:
    """A page of two columns of ``rows`` lines each, the left one read first."""
    left = [c for n in range(rows) for c in line(f"left {n}", 72, 700 - 12 * n)]
    right = [c for n in range(rows) for c in line(f"right {n}", 320, 700 - 12 * n)]
    return left + right


def test_two_columns_are_found_by_their_gutter_and_one_column_is_one():
    lines = [Box(72, y, 120, y + 8) for y in range(460, 710, 12)]  # 21 lines a column
    lines += [Box(320, y, 376, y + 8) for y in range(460, 710, 12)]
    (_, gutter), _ = columns(lines, 612.0)
    assert 183 < gutter < 320  # in the free run between the columns, within 30-70% across
    # a title across both is let through; a third of the lines across is no gutter
    assert len(columns([*lines, Box(72, 720, 540, 736)], 612.0)) == 2
    assert columns([*lines, *[Box(72, y, 540, y + 8) for y in range(0, 240, 12)]], 612.0) == WHOLE
    assert columns(lines[:21], 612.0) == WHOLE  # nothing on the right


def test_a_figure_in_the_right_column_sits_in_its_text():
    chars = two_columns(20)
    figure = Box(320, 560, 540, 640)  # in the right column, between its lines 5 and 6
    pieces = text_around(chars, [figure], set(), [(0.0, 300.0), (300.0, 612.0)])
    (before, k), (after, end) = pieces
    assert k == 0 and end is None
    assert before.endswith("right 5\r\n") and "left 19" in before
    assert after.startswith("right 6")
    # on a page of one column the same figure comes before the first line below it
    (before, _), _ = text_around(chars, [figure], set(), WHOLE)
    assert before.endswith("left 5\r\n")
