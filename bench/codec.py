"""Codec benchmark: BD-rate against libx264 on the test split, encode/decode speed, and peak memory.

Reads a trained VAE and its shard set from a `vidgen run` work directory (the
latest ``steps/train_vae-*/model`` and ``steps/ingest-*/shards``, or the ones
given), then:

1. fits the probability model and draws the RD curves exactly as the
   ``codec_eval`` step does (``vidgen_core.codec.evaluate``): one JSON line per
   rate point, BD-rate / BD-PSNR against every x264 row;
2. speed, single video-thread on both sides (torch 1 thread, x264 threads=1):
   vidgen's full path (PyAV-decoded frames -> VAE -> range coder -> bytes, and
   back) against libx264 veryslow and medium at a CRF of about the same rate,
   on the test videos; frames/s;
3. peak RSS of ``compress_file`` on a 176x144 video of N and 4N frames, each in
   a fresh child process (the issue's criterion: ratio <= 1.2).

Every line carries the 1-minute load average (a shared 2-core machine).

    .venv/bin/python bench/codec.py --workdir vidgen-work [--memory-frames 300]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _latest(pattern: str) -> str:
    hits = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not hits:
        sys.exit(f"nothing matches {pattern}: run `vidgen run` first or pass --model-dir/--shards")
    return hits[-1]


def rd(model_dir: str, shards: str, out: Path, max_videos: int) -> dict:
    from vidgen_core.codec.evaluate import fit_and_evaluate
    from vidgen_core.config import CodecConfig

    start = time.perf_counter()
    r = fit_and_evaluate(model_dir, shards, CodecConfig(max_test_videos=max_videos), str(out))
    doc = json.loads(Path(r.json).read_text())
    for p in doc["points"]:
        print(json.dumps({"point": p, "load": _load()}), flush=True)
    for label, figs in doc["bd"].items():
        print(json.dumps({"bd_vs": label, "psnr": figs["psnr"], "ssim": figs["ssim"]}), flush=True)
    print(json.dumps({"codec_summary": r.summary, "seconds": round(time.perf_counter() - start, 1),
                      "plot": r.plot, "load": _load()}), flush=True)
    return {"metrics": r.metrics, "doc": doc}


def speed(model_dir: str, shards: str, doc: dict, max_videos: int) -> dict:
    import numpy as np
    import torch

    from vidgen_core.codec.model import load_local
    from vidgen_core.codec.rd import load_test_videos
    from vidgen_core.codec.stream import compress_frames, decompress_frames, open_vgc
    from vidgen_core.codec.x264 import encode_x264

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        import shutil

        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        codec_json = Path(doc["_codec_dir"]) / "codec.json"
        shutil.copy(codec_json, tmp)
        model = load_local(tmp)
    videos = load_test_videos(shards, "test", max_videos, 96)
    frames = sum(len(v.frames) for v in videos)
    q = model.prior.default_quality
    t0 = time.perf_counter()
    blobs = []
    for v in videos:
        buf = io.BytesIO()
        compress_frames(model, iter(v.frames), buf, fps=v.fps, quality=q)
        blobs.append(buf.getvalue())
    t1 = time.perf_counter()
    for b in blobs:
        f = io.BytesIO(b)
        for _ in decompress_frames(model, open_vgc(f), f):
            pass
    t2 = time.perf_counter()
    bpp = 8 * sum(map(len, blobs)) / sum(v.frames[..., 0].size for v in videos)
    # x264 at the CRF whose rate is closest to vidgen's default quality (from the RD sweep).
    out = {"vidgen": {"quality": q, "bpp": round(bpp, 4), "encode_fps": round(frames / (t1 - t0), 1),
                      "decode_fps": round(frames / (t2 - t1), 1)}}
    for preset in ("veryslow", "medium"):
        rows = [p for p in doc["points"] if p["codec"] == f"x264 {preset} yuv420p"]
        crf = int(min(rows, key=lambda p: abs(np.log(p["bpp"] / bpp)))["setting"][3:])
        enc = dec = 0.0
        nbytes = 0
        for v in videos:
            r = encode_x264(v.frames, v.fps, crf, preset, "yuv420p")
            enc, dec, nbytes = enc + r.encode_s, dec + r.decode_s, nbytes + r.num_bytes
        out[f"x264_{preset}"] = {"crf": crf, "bpp": round(8 * nbytes / sum(v.frames[..., 0].size for v in videos), 4),
                                 "encode_fps": round(frames / enc, 1), "decode_fps": round(frames / dec, 1)}
    out.update({"frames": frames, "size": list(videos[0].frames.shape[1:3]), "threads": 1, "load": _load()})
    print(json.dumps({"speed": out}), flush=True)
    return out


CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from vidgen_core.codec.files import compress_file
from vidgen_core.codec.model import load_local
model = load_local({model!r})
r = compress_file({src!r}, {out!r}, model)
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] << 10
print(json.dumps({{"frames": r.header.frames, "bytes": r.num_bytes, "seconds": round(r.seconds, 1), "peak": peak}}))
"""


def memory(model_with_codec: str, frames_1x: int) -> dict:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from codec_fixtures import moving_square_frames

    from vidgen_core.video.encode import Mp4Writer

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = moving_square_frames(frames_1x, 144, 176)
        for scale in (1, 4):
            src = Path(tmp) / f"x{scale}.mp4"
            with Mp4Writer(src, fps=25, crf=20) as w:
                for f in np.concatenate([base] * scale):
                    w.write(f)
            code = CHILD.format(root=str(Path(__file__).resolve().parents[1]), model=model_with_codec, src=str(src),
                                out=str(Path(tmp) / f"x{scale}.vgc"))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            results[scale] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps({"memory": scale, **results[scale], "load": _load()}), flush=True)
    ratio = results[4]["peak"] / results[1]["peak"]
    return {"frames_1x": frames_1x, "peak_1x_mib": results[1]["peak"] >> 20, "peak_4x_mib": results[4]["peak"] >> 20,
            "ratio": round(ratio, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="vidgen-work")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--shards", default=None)
    ap.add_argument("--max-videos", type=int, default=16)
    ap.add_argument("--memory-frames", type=int, default=300, help="frames of the 1x video (176x144); 0 = skip")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "vidgen-bench-codec"))
    args = ap.parse_args()
    model_dir = args.model_dir or _latest(os.path.join(args.workdir, "steps", "train_vae-*", "model"))
    shards = args.shards or _latest(os.path.join(args.workdir, "steps", "ingest-*", "shards"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"model_dir": model_dir, "shards": shards, "load": _load()}), flush=True)
    r = rd(model_dir, shards, out, args.max_videos)
    r["doc"]["_codec_dir"] = str(out / "codec")
    sp = speed(model_dir, shards, r["doc"], args.max_videos)
    mem = None
    if args.memory_frames:
        import shutil

        with_codec = out / "vae_with_codec"
        shutil.copytree(model_dir, with_codec, dirs_exist_ok=True)
        shutil.copy(out / "codec" / "codec.json", with_codec)
        mem = memory(str(with_codec), args.memory_frames)
    m = r["metrics"]
    print(json.dumps({
        "summary": "codec", "bd_rate_vs_x264_veryslow_420": m["codec_bd_rate"], "bd_psnr_db": m["codec_bd_psnr"],
        "bd_rate_vs_x264_medium_420": m.get("codec_bd_rate_medium_yuv420p"),
        "bpp_range": [round(m["codec_bpp_min"], 4), round(m["codec_bpp_max"], 4)], "bpp_span": round(m["codec_bpp_span"], 1),
        "psnr_range": [round(m["codec_psnr_min"], 2), round(m["codec_psnr_max"], 2)],
        "vidgen_encode_fps": sp["vidgen"]["encode_fps"], "vidgen_decode_fps": sp["vidgen"]["decode_fps"],
        "x264_veryslow_encode_fps": sp["x264_veryslow"]["encode_fps"], "x264_veryslow_decode_fps": sp["x264_veryslow"]["decode_fps"],
        "memory_ratio_4x": mem and mem["ratio"], "goal_bd_rate": -20.0, "load": _load(),
    }), flush=True)


if __name__ == "__main__":
    main()
