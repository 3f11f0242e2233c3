"""`vidgen classify`: top classes of whole videos with a registered latent probe."""

from __future__ import annotations

import numpy as np

from vidgen_core.uses.loading import ingest_config_of, load_for_use
from vidgen_core.uses.videos import iter_video_clips, list_videos


def classify(
    sources: list[str], model_uri: str, *, top: int = 3, tracking_uri: str | None = None, batch_size: int = 16,
) -> list[tuple[str, list[tuple[str, float]]]]:
    """Per video (files, or the videos of folders): the ``top`` classes with probabilities, best first.

    A video's probabilities are the mean of its clips' (the clips cut as the probe's
    training clips were), so a long video is judged on all of it.

    Raises:
        UserError: unknown URI, a non-probe model, a missing/corrupt video.
    """
    model = load_for_use(model_uri, "probe", "classify", tracking_uri=tracking_uri)
    cfg = ingest_config_of(model)
    names = list(model.python_model.class_names)
    out = []
    for src in sources:
        for video in list_videos(src)[0]:
            total, n = np.zeros(len(names), np.float64), 0
            for batch in iter_video_clips(video, cfg, batch_size):
                probs = np.asarray(model.pyfunc.predict(batch.frames, params={"batch_size": batch_size}))
                total += probs.sum(0)
                n += len(probs)
            mean = total / max(n, 1)
            order = np.argsort(-mean, kind="stable")[:top]
            out.append((video.source, [(names[i], float(mean[i])) for i in order]))
    return out
