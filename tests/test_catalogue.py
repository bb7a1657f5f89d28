"""The bad-input catalogue (tests/catalogue.py), entry by entry."""

from __future__ import annotations

import pytest

from tests.catalogue import CATALOGUE, run_case


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_bad_input_is_refused_cleanly(case):
    run_case(case)


def test_the_catalogue_covers_every_surface():
    surfaces = {c.surface for c in CATALOGUE}
    assert surfaces == {"api", "trace", "cli", "map", "tunable", "snapshot", "pagelayer",
                        "files"}
    assert len(CATALOGUE) >= 30
    assert len({c.name for c in CATALOGUE}) == len(CATALOGUE)
