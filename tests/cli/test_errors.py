"""The catalogue of bad inputs and faults (docs/errors.md, :mod:`systolix.cli.errors`): one test a
case. Each ends with one line on standard error, its exit status, no traceback, nothing left
behind and nothing of what was there changed.

The cases that need a bitstream build share one real build of the iCEBreaker (about a minute on
two cores, made once per run and shared by the pytest-xdist workers: the ``shared`` fixture of
``conftest.py``): they are ``toolchain`` tests. ``systolix errors`` runs the same catalogue and prints the counts.
"""

import re
from pathlib import Path

import pytest

from systolix.cli.errors import CASES, run_case, summary

ROOT = Path(__file__).resolve().parents[2]


def _marks(case):
    return [pytest.mark.toolchain] if "build" in case.needs else []


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=_marks(case))
                                  for case in CASES])
def test_case(case, shared, tmp_path):
    resources = {name: shared(name) for name in case.needs}
    folder = tmp_path / "case"
    folder.mkdir()
    outcome = run_case(case, folder, resources)
    if outcome.verdict == "skipped":
        pytest.skip(outcome.detail)
    assert outcome.verdict == "ok", (
        f"{case.name}: {outcome.verdict} (exit status {outcome.code}, expected {case.code}); "
        f"stderr: {outcome.lines!r}; {outcome.detail}")


def test_the_catalogue_is_documented():
    """docs/errors.md lists every case, by name, and at least 40 kinds."""
    text = (ROOT / "docs" / "errors.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.MULTILINE))
    assert documented == {case.name for case in CASES}
    assert len(CASES) >= 40 and len({case.name for case in CASES}) == len(CASES)


def test_summary_counts():
    from systolix.cli.errors import Outcome
    outcomes = [Outcome(CASES[0], "ok"), Outcome(CASES[1], "traceback"),
                Outcome(CASES[2], "skipped"), Outcome(CASES[3], "partial")]
    assert summary(outcomes) == ("3 cases run (1 skipped): 1 tracebacks, 0 silent "
                                 "acceptances, 1 partial artifacts; 0 overwritten, 0 hung, 0 "
                                 "wrong messages or exit codes; 1 ok")


def test_the_catalogue_page_counts_every_case():
    """docs/errors.md shows the summary line of a whole run: its count is the catalogue's."""
    counts = re.findall(r"^(\d+) cases run", (ROOT / "docs" / "errors.md").read_text(), re.M)
    assert counts == [str(len(CASES))]
