"""Overrides that shrink the tiny recipe's side steps for tests that check plumbing, not model quality.

The judge, the probe, the codec's probability model and its x264 anchors cost
about a minute per run at the tiny recipe's sizes; tests that run the whole
workflow only to check resumption, concurrency, a tracking server or a cluster
add these (``--set`` syntax) to their own VAE/GAN sizes. Every step still runs
for real, on less data.
"""

from __future__ import annotations

PLUMBING: list[str] = [
    "judge.steps=20",
    "probe.steps=20",
    "eval.seeds=1",
    "codec.max_train_clips=16",
    "codec.max_test_videos=1",
    "codec.max_frames_per_video=16",
    "codec.crfs=[30,46]",
    "codec.presets=[veryslow]",
    "codec.pix_fmts=[yuv420p]",
]


def as_cli_args(overrides: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]`` for a ``vidgen run`` command line."""
    return [arg for item in overrides for arg in ("--set", item)]
