"""Draw the progress board (:mod:`vidgen_core.progress`) of running steps on the console.

On a terminal: one live tqdm bar per running step (training: step/total, loss,
clips/s and tqdm's ETA; ingest: files and frames/s). Anywhere else (a pipe, a
CI log): one plain line per step as soon as it reports, then at most one every
``line_every_s`` seconds (default 60), so a log stays short (the tiny recipe's
whole run fits in 40 lines) and still shows that training moves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, TextIO


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:  # None or NaN
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _frames_per_s(entry: dict[str, Any], elapsed_s: float) -> float:
    # Since reading started (the board's ``started``), else since the step started.
    if entry.get("started"):
        elapsed_s = time.time() - entry["started"]
    return entry.get("frames", 0) / elapsed_s if elapsed_s > 0 else 0.0


def progress_line(name: str, entry: dict[str, Any], elapsed_s: float) -> str | None:
    """One line of a step's progress (``None`` while there is nothing to say yet)."""
    if entry.get("kind") == "train" and entry.get("step") is not None:
        step, total = int(entry["step"]), entry.get("total")
        part = f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"
        eta = (total - step) * entry["step_time_s"] if total and entry.get("step_time_s") else None
        return (f"[vidgen] {name:<10} {part} · loss {entry.get('loss', float('nan')):.4g} · "
                f"{entry.get('clips_per_s', 0):.1f} clips/s · ETA {_fmt_eta(eta)}")
    if entry.get("kind") == "ingest" and entry.get("files"):
        files, total = int(entry["files"]), entry.get("files_total")
        rate = _frames_per_s(entry, elapsed_s)
        return f"[vidgen] {name:<10} files {files}/{total} · {entry.get('clips', 0):.0f} clips · {rate:.0f} frames/s"
    return None


@dataclass
class _Shown:
    bar: Any = None  # tqdm bar on a terminal
    last_line_t: float = 0.0
    last_line: str = ""


class ProgressView:
    """Turns board snapshots into bars (terminal) or throttled lines (anything else)."""

    def __init__(self, log: logging.Logger, stream: TextIO, line_every_s: float = 60.0) -> None:
        self.log = log
        self.stream = stream
        self.tty = stream.isatty()
        self.line_every_s = line_every_s
        self.shown: dict[str, _Shown] = {}

    def update(self, running: dict[str, tuple[str, float]], board: dict[str, dict[str, Any]]) -> None:
        """Draw the steps in ``running`` (run id -> (step name, start time)) from ``board``."""
        now = time.time()
        for run_id, (name, start) in running.items():
            entry = board.get(run_id)
            if not entry:
                continue
            shown = self.shown.setdefault(run_id, _Shown())  # the first line as soon as there is one
            if self.tty:
                self._draw_bar(shown, name, entry, now - start)
                continue
            line = progress_line(name, entry, now - start)
            if line and line != shown.last_line and now - shown.last_line_t >= self.line_every_s:
                shown.last_line, shown.last_line_t = line, now
                self.log.info(line)
        for run_id in [r for r in self.shown if r not in running]:
            self.finish(run_id)

    def _draw_bar(self, shown: _Shown, name: str, entry: dict[str, Any], elapsed_s: float) -> None:
        from tqdm import tqdm

        train = entry.get("kind") == "train"
        total = entry.get("total") if train else entry.get("files_total")
        done = int(entry.get("step", 0) if train else entry.get("files", 0))
        if shown.bar is None:
            shown.bar = tqdm(total=total, desc=f"{name:<10}", unit="step" if train else "file", file=self.stream,
                             leave=False, dynamic_ncols=True, position=len([s for s in self.shown.values() if s.bar]))
        if done > shown.bar.n:
            shown.bar.update(done - shown.bar.n)  # update(), not n=: tqdm's rate and ETA come from it
        if train:
            shown.bar.set_postfix_str(f"loss {entry.get('loss', float('nan')):.4g}, {entry.get('clips_per_s', 0):.1f} clips/s",
                                      refresh=False)
        else:
            rate = _frames_per_s(entry, elapsed_s)
            shown.bar.set_postfix_str(f"{rate:.0f} frames/s", refresh=False)
        shown.bar.refresh()

    def finish(self, run_id: str) -> None:
        """Remove the bar (or forget the line state) of a step that ended."""
        shown = self.shown.pop(run_id, None)
        if shown is not None and shown.bar is not None:
            shown.bar.close()

    def close(self) -> None:
        for run_id in list(self.shown):
            self.finish(run_id)
