"""Training batches mix videos: the shuffle that replaced file order."""

from __future__ import annotations

import torch

from vidgen_core.train.loop import shuffled_batches


def _clips_in_file_order(videos: int = 12, clips_per_video: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    # Shards list clips video by video; the "label" here is the video id.
    video_id = torch.arange(videos).repeat_interleave(clips_per_video)
    frames = video_id.view(-1, 1, 1, 1, 1).expand(-1, 2, 2, 2, 3).to(torch.uint8).contiguous()
    return frames, video_id


def test_a_batch_spans_many_videos():
    frames, video = _clips_in_file_order()
    file_order = [len(set(video[i : i + 8].tolist())) for i in range(0, len(video), 8)]
    assert max(file_order) == 1  # what training used to see: one video per batch
    spans = [len(set(v.tolist())) for _, v in shuffled_batches(frames, video, 8, seed=3)]
    assert len(spans) == len(video) // 8
    assert sum(spans) / len(spans) >= 5  # 8 draws from 12 videos: ~5.6 distinct on average


def test_epochs_differ_and_ranks_agree():
    frames, video = _clips_in_file_order()
    epoch0 = [v.tolist() for _, v in shuffled_batches(frames, video, 8, seed=10)]
    epoch1 = [v.tolist() for _, v in shuffled_batches(frames, video, 8, seed=11)]
    again = [v.tolist() for _, v in shuffled_batches(frames, video, 8, seed=10)]
    assert epoch0 != epoch1 and epoch0 == again  # a new order each epoch; the same on every rank
    seen = sorted(x for batch in epoch0 for x in batch)
    assert seen == sorted(video.tolist())  # every clip once per epoch (96 = 12 full batches)
