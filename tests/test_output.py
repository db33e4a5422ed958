"""How lines are packed for a terminal: fields kept whole, nothing past the width that could fit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from latkit.cli.output import pack, wrap

FIELDS = st.lists(st.text(alphabet="abc:-x0123456789", min_size=1, max_size=40), max_size=12)


@given(FIELDS, st.integers(20, 120), st.integers(0, 8))
def test_pack_keeps_fields_whole_and_lines_within_the_width(fields, width, indent):
    lines = pack(fields, width, indent=indent)
    assert [f for line in lines for f in line.strip().split("  ") if f] == fields
    for line in lines:  # past the width only as one unindented field longer than a line
        assert len(line) <= width or (line == line.lstrip() and "  " not in line)


def test_a_field_too_long_for_its_indent_starts_the_line():
    key = "expanded_conv-input:32x32x16-output:16x16x24-expand:6-kernel:3-stride:2-idskip:0"
    head = "ops still unstable after every retry:"
    assert pack([head, key], width=80, indent=2) == [head, key]
    assert pack([head, key[:70]], width=80, indent=2) == [head, "  " + key[:70]]


def test_wrap_keeps_a_number_with_its_unit():
    assert wrap("took 12.5 ms in all", width=9) == ["took", "  12.5 ms", "  in all"]
