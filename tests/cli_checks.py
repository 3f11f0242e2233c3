"""Shared assertion for CLI tests: a user error is one line on stderr and exit code 2."""

from __future__ import annotations

from types import SimpleNamespace


def assert_one_line_error(r: SimpleNamespace, *words: str) -> None:
    """``r`` has ``code``, ``out``, ``err``: exit 2, one ``vidgen: error:`` line holding every word."""
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidgen: error:"), r.err
    for w in words:
        assert w in lines[0], lines[0]
