"""The reliability drills' table: each drill records what it injected, what it checked and what it measured.

A test asks for the ``drill`` fixture, calls it once per case with the drill's
name, kind (``bad input``, ``fault``, ``load``, ``security``), what was injected
and what was checked, and sets ``case.figure`` to what it measured
("files accounted 23/23"). The test's outcome is the case's pass/fail. At the
end of the session the rows go into ``bench/RESULTS.md`` between two markers:
a drill that ran replaces its row, the others keep theirs, so running one
drill file updates only its rows. ``VIDGEN_DRILL_TABLE`` names another file.

Cases that share a name make one row ("3/3 cases: ..."), so a parametrized test is one drill.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

BEGIN = "<!-- reliability-drills:begin (written by tests/drills.py at the end of a test session; do not edit) -->"
END = "<!-- reliability-drills:end -->"
KINDS = ("bad input", "fault", "load", "security")
HEADER = ["kind", "drill", "injected", "checked", "figure", "result"]
# Secrets put in the environment of the e2e tiny run; tests/e2e/test_secrets.py looks for them in its output.
SECRETS = {"AWS_SECRET_ACCESS_KEY": "drill-aws-secret-5e1f0c", "HF_TOKEN": "hf_drillToken93b7a2"}
_DEFAULT_TABLE = Path(__file__).resolve().parents[1] / "bench" / "RESULTS.md"


@dataclass
class DrillCase:
    name: str
    kind: str
    injected: str
    checked: str
    figure: str = ""
    outcome: str = "not run"


_CASES: list[DrillCase] = []


@pytest.fixture
def drill(request):
    """``drill(name, kind, injected, checked) -> DrillCase``; set ``.figure`` on what it returns."""

    def record(name: str, kind: str, injected: str, checked: str) -> DrillCase:
        if kind not in KINDS:
            raise ValueError(f"drill kind {kind!r} is not one of {KINDS}")
        case = DrillCase(name, kind, injected, checked)
        request.node.__dict__.setdefault("_drill_cases", []).append(case)
        _CASES.append(case)
        return case

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    for case in item.__dict__.get("_drill_cases", []):
        if report.failed:
            case.outcome = "FAIL"
        elif report.when == "call" and case.outcome != "FAIL":
            case.outcome = "pass" if report.passed else "skipped"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _rows_of(cases: list[DrillCase]) -> dict[str, list[str]]:
    by_name: dict[str, list[DrillCase]] = {}
    for c in cases:
        by_name.setdefault(c.name, []).append(c)
    rows = {}
    for name, group in by_name.items():
        first = group[0]
        figures = "; ".join(dict.fromkeys(c.figure for c in group if c.figure))
        if len(group) > 1:
            passed = sum(c.outcome == "pass" for c in group)
            figures = f"{passed}/{len(group)} cases passed" + (f": {figures}" if figures else "")
        outcomes = {c.outcome for c in group}
        result = "FAIL" if "FAIL" in outcomes else ("pass" if outcomes == {"pass"} else "/".join(sorted(outcomes)))
        rows[name] = [first.kind, name, first.injected, first.checked, figures, result]
    return rows


def _parse(block: str) -> dict[str, list[str]]:
    rows = {}
    for line in block.splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| kind "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == len(HEADER):
            rows[cells[1]] = cells
    return rows


def write_table(cases: list[DrillCase], path: Path) -> None:
    """Merge the rows of ``cases`` into the table between the markers of ``path`` (made if missing)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        block, tail = rest.split(END, 1)
    else:
        head = text.rstrip("\n") + "\n\n## Reliability drills (`tests/reliability`, written by the suite)\n\n"
        block, tail = "", "\n"
    rows = {**_parse(block), **_rows_of(cases)}
    ordered = sorted(rows.values(), key=lambda r: (KINDS.index(r[0]) if r[0] in KINDS else len(KINDS), r[1]))
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in ordered]
    path.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)


def pytest_sessionfinish(session, exitstatus):
    if _CASES:
        write_table(_CASES, Path(os.environ.get("VIDGEN_DRILL_TABLE", _DEFAULT_TABLE)))
