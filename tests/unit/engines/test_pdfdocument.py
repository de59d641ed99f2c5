"""The drawing finder of pdf -> documents on boxes and characters given by hand."""

from __future__ import annotations

from appliance.engines.pdfdocument import Box, Char, find_drawings, labelled, text_between


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
    chars = line("Shaded words on a box", 60, 510) + line("and a second line", 60, 490)
    assert find_drawings([Box(50, 480, 250, 530)], chars) == []
    # the same lines beside a drawing leave it one
    assert find_drawings([Box(300, 480, 500, 530)], chars) == [Box(300, 480, 500, 530)]


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
    texts = text_between(chars, [r.top for r in regions], drawn)
    assert texts == ["Above\r\n", "Below the chart\r\n"]


def test_a_line_mostly_outside_stays_text():
    chart = Box(100, 100, 200, 250)
    caption = line("A caption that runs on", 180, 92)  # its first 3 characters near the chart
    regions, drawn = labelled([chart], caption)
    assert regions == [Box(99, 99, 201, 251)] and not drawn
    assert text_between(caption, [251], drawn) == ["", "A caption that runs on\r\n"]
