"""The uses end to end through the CLI: generate, embed, classify, similar, compare.

Tiny models (an untrained VAE is enough for the plumbing; the probe is fitted
on its latents) are registered in a real SQLite MLflow store and loaded back
through ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``. Inputs are
freshly generated MP4s, a folder of them, and a shard set.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_checks import assert_one_line_error
import torch
from click.testing import CliRunner

from workflows.cli import main
from vidgen_core.config import GANConfig, IngestConfig, ProbeConfig, SynthConfig, TrackingConfig, VAEConfig
from vidgen_core.uses.features import EMBEDDING_VERSION

pytestmark = pytest.mark.integration

INGEST = IngestConfig(clip_len=8, size=32)
CLASSES = ["circle", "square", "triangle"]


def _save_vae(root: Path, seed: int) -> tuple[str, tuple[int, ...]]:
    from vidgen_core.models.io import save_model
    from vidgen_core.models.vae import VideoVAE

    torch.manual_seed(seed)
    cfg = VAEConfig(base_channels=4, channel_mult=[1, 2], latent_channels=4)
    vae = VideoVAE(cfg)
    shape = vae.latent_shape(INGEST.clip_len, INGEST.size)
    out = root / f"vae{seed}" / "model"
    save_model(vae, "vae", cfg.model_dump(), out, extra={"clip_len": 8, "size": 32, "latent_shape": list(shape)})
    return str(out), shape


def _save_gan(root: Path, vae_dir: str, shape: tuple[int, ...], conditional: bool) -> str:
    from vidgen_core.models.gan import LatentGenerator
    from vidgen_core.models.io import save_model

    cfg = GANConfig(noise_dim=8, base_channels=4, conditional=conditional)
    gen = LatentGenerator(cfg, shape, len(CLASSES))
    out = root / ("gan_c" if conditional else "gan_u") / "model"
    extra = {"clip_len": 8, "size": 32, "latent_shape": list(shape), "num_classes": len(CLASSES),
             "label_names": CLASSES, "latent_scale": 1.0, "vae_dir": vae_dir}
    save_model(gen, "gan", cfg.model_dump(), out, extra=extra)
    return str(out)


def _clips(videos: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every clip of the class folders under ``videos``: uint8 ``(N, T, H, W, 3)`` and labels ``(N,)``."""
    from vidgen_core.uses.videos import iter_video_clips, list_videos

    inputs, names = list_videos(str(videos))
    assert names == CLASSES
    frames, labels = [], []
    for video in inputs:
        for b in iter_video_clips(video, INGEST, 16):
            frames.append(b.frames)
            labels += [video.label] * len(b.frames)
    return np.concatenate(frames), np.array(labels)


def _center_vae(vae_dir: str, videos: Path) -> None:
    """What the train_vae step does: the mean embedding of the training clips into the VAE's extra."""
    from vidgen_core.models.io import load_model, update_extra
    from vidgen_core.uses.embed import encode_clips
    from vidgen_core.uses.features import CENTER_KEY, center_doc

    vae, _ = load_model(vae_dir)
    update_extra(vae_dir, {CENTER_KEY: center_doc(encode_clips(vae, _clips(videos)[0]))})


def _save_probe(root: Path, vae_dir: str, videos: Path) -> str:
    from vidgen_core.models.io import load_model
    from vidgen_core.uses.embed import encode_clips
    from vidgen_core.uses.features import center_of
    from vidgen_core.uses.probe import fit_probe, save_probe

    vae, doc = load_model(vae_dir)
    frames, labels = _clips(videos)
    feats = encode_clips(vae, frames, center=center_of(doc["extra"]))
    probe = fit_probe(feats, labels, len(CLASSES), ProbeConfig(steps=200))
    extra = {"clip_len": 8, "size": 32, "ingest": INGEST.model_dump(mode="json"), "vae_dir": vae_dir}
    return save_probe(probe, str(root / "probe" / "model"), CLASSES, extra)


def _old_version_probe(root: Path) -> str:
    """A copy of the probe as if fitted on the first embedding (flattened latents, version 1)."""
    import shutil

    from vidgen_core.models.io import update_extra

    old = root / "oldprobe" / "model"
    shutil.copytree(root / "probe" / "model", old)
    update_extra(old, {"embedding_version": 1})
    return str(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory, synth_videos):
    """Two VAEs, a conditional and an unconditional GAN, and a probe, registered with @champion."""
    from mlflow import MlflowClient

    from vidgen_core.tracking.mlflow_setup import init_tracking
    from vidgen_core.tracking.registry import register_model
    from vidgen_core.video.synth import generate_dataset

    root = tmp_path_factory.mktemp("uses")
    uri, experiment_id = init_tracking(TrackingConfig(experiment="uses"), root / "ws")
    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id, run_name="register").info.run_id
    tags = {"ingest_config": INGEST.model_dump_json()}
    vae_dir, shape = _save_vae(root, 0)
    _center_vae(vae_dir, synth_videos)  # version 1 centres its embeddings; version 2 (no centre) does not
    other_vae_dir, _ = _save_vae(root, 1)
    reg = {}
    for name, kind, model_dir, vae in (
        ("vidgen-vae", "vae", vae_dir, None), ("vidgen-vae", "vae", other_vae_dir, None),
        ("vidgen-gan", "gan", _save_gan(root, vae_dir, shape, True), vae_dir),
        ("vidgen-ugan", "gan", _save_gan(root, vae_dir, shape, False), vae_dir),
        ("vidgen-probe", "probe", _save_probe(root, vae_dir, synth_videos), vae_dir),
        ("vidgen-oldprobe", "probe", _old_version_probe(root), vae_dir),
    ):
        r = register_model(kind, model_dir, name, tags, run_id=run_id, vae_dir=vae, tracking_uri=uri)
        reg.setdefault(name, []).append(r["version"])
    for name, versions in reg.items():
        client.set_registered_model_alias(name, "champion", versions[0])
    fresh = generate_dataset(SynthConfig(classes=["square"], videos_per_class=1, width=48, height=40, seed=7),
                             root / "fresh")[0].path
    return SimpleNamespace(root=root, uri=uri, videos=synth_videos, fresh=fresh)


def _run(world, *args: str) -> SimpleNamespace:
    result = CliRunner().invoke(main, [*args, "--tracking-uri", world.uri])
    out = SimpleNamespace(code=result.exit_code, out=result.stdout, err=result.stderr)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return out




# ---------------------------------------------------------------- generate


def test_generate_by_label_name_and_index_with_frames(world) -> None:
    out, frames = world.root / "g.mp4", world.root / "frames"
    r = _run(world, "generate", "-m", "models:/vidgen-gan@champion", "-n", "4", "--label", "square", "--seed", "3",
             "-o", str(out), "--frames-dir", str(frames))
    assert r.code == 0, r.err
    assert "labels [1]" in r.out and out.stat().st_size > 0
    assert len(list(frames.glob("frame_*.png"))) == INGEST.clip_len
    r = _run(world, "generate", "-m", "models:/vidgen-gan/1", "-n", "2", "--label", "2", "-o", str(out))
    assert r.code == 0 and "labels [2]" in r.out


def test_generate_refuses_bad_labels_and_kinds(world) -> None:
    out = world.root / "bad.mp4"
    assert_one_line_error(_run(world, "generate", "-m", "models:/vidgen-ugan@champion", "--label", "circle", "-o", str(out)),
                    "unconditional")
    assert_one_line_error(_run(world, "generate", "-m", "models:/vidgen-gan@champion", "--label", "hexagon", "-o", str(out)),
                    "unknown label 'hexagon'", "0=circle")
    assert_one_line_error(_run(world, "generate", "-m", "models:/vidgen-vae@champion", "-o", str(out)), "vae model")
    assert_one_line_error(_run(world, "generate", "-m", "models:/nope@champion", "-o", str(out)), "unknown model URI")
    assert not out.exists()
    assert _run(world, "generate", "-m", "models:/vidgen-ugan/1", "-n", "2", "-o", str(out)).code == 0


# ---------------------------------------------------------------- embed


def _read(path: Path) -> tuple[dict, list[dict]]:
    table = pq.read_table(path)
    return json.loads(table.schema.metadata[b"vidgen.embeddings"]), table.to_pylist()


def test_embed_one_fresh_file_by_version(world) -> None:
    out = world.root / "one.parquet"
    r = _run(world, "embed", world.fresh, "-m", "models:/vidgen-vae/1", "-o", str(out))
    assert r.code == 0, r.err
    meta, rows = _read(out)
    assert meta["model_version_uri"] == "models:/vidgen-vae/1" and meta["dim"] == 4 * 8 * 5  # Cz * H' * (W'//2 + 1)
    assert meta["embedding_version"] == EMBEDDING_VERSION and meta["embedding_centered"] is True
    clips = [x for x in rows if x["kind"] == "clip"]
    video = [x for x in rows if x["kind"] == "video"]
    assert len(video) == 1 and video[0]["num_clips"] == len(clips) >= 1
    assert np.allclose(np.mean([c["embedding"] for c in clips], 0), video[0]["embedding"], atol=1e-5)
    assert [c["start_frame"] for c in clips] == sorted(c["start_frame"] for c in clips)
    assert not [p for p in world.root.iterdir() if p.name.endswith(".tmp")]


def test_embed_folder_locally_by_alias_with_labels(world) -> None:
    out = world.root / "folder.parquet"
    r = _run(world, "embed", str(world.videos), "-m", "models:/vidgen-vae@champion", "-o", str(out), "--local")
    assert r.code == 0, r.err
    meta, rows = _read(out)
    video = [x for x in rows if x["kind"] == "video"]
    assert len(video) == 6 and {v["label_name"] for v in video} == set(CLASSES)
    assert meta["model_uri"] == "models:/vidgen-vae@champion"


def test_embed_errors_leave_nothing(world, tmp_path) -> None:
    out = tmp_path / "e.parquet"
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    assert_one_line_error(_run(world, "embed", str(tmp_path / "missing.mp4"), "-m", "models:/vidgen-vae/1", "-o", str(out)),
                    "does not exist")
    assert_one_line_error(_run(world, "embed", str(bad), "-m", "models:/vidgen-vae/1", "-o", str(out)), "corrupt.mp4")
    assert_one_line_error(_run(world, "embed", world.fresh, "-m", "models:/vidgen-gan@champion", "-o", str(out)),
                    "gan model", "needs a vae model")
    assert_one_line_error(_run(world, "embed", world.fresh, "-m", "models:/vidgen-vae@nope", "-o", str(out)), "unknown model URI")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mp4"]


@pytest.fixture(scope="module")
def shard_set(world, ray_cluster) -> Path:
    """The synth videos ingested with the models' clip settings (half the videos in test, for the probe)."""
    from vidgen_core.config import DataConfig
    from vidgen_core.data.ingest import ingest_videos

    out = world.root / "shards"
    cfg = INGEST.model_copy(update={"val_fraction": 0.0, "test_fraction": 0.5})
    ingest_videos(str(world.videos), str(out), cfg, DataConfig())
    return out


def test_embed_through_ray_data_folder_and_shard_set(world, shard_set, tmp_path) -> None:
    out = tmp_path / "ray.parquet"
    r = _run(world, "embed", str(world.videos), "-m", "models:/vidgen-vae/1", "-o", str(out), "--ray")
    assert r.code == 0, r.err
    _, rows = _read(out)
    video = {x["source"]: x for x in rows if x["kind"] == "video"}
    assert len(video) == 6
    out2 = tmp_path / "shards.parquet"
    r = _run(world, "embed", str(shard_set), "-m", "models:/vidgen-vae/1", "-o", str(out2))
    assert r.code == 0, r.err
    _, rows2 = _read(out2)
    video2 = {x["source"]: x for x in rows2 if x["kind"] == "video"}
    # Same clips cut the same way, whether decoded now or read from the shards.
    assert set(video2) == set(video)
    for s in video:
        assert video2[s]["num_clips"] == video[s]["num_clips"]
        assert np.allclose(video2[s]["embedding"], video[s]["embedding"], atol=1e-4)


def test_train_probe_step_work_and_registration(world, shard_set, tmp_path) -> None:
    from mlflow import MlflowClient

    from vidgen_core.uses.probe import ProbeSkipped, load_probe, train_and_evaluate
    from vidgen_core.uses.registration import register_probe

    vae_dir = str(world.root / "vae0" / "model")
    try:
        result = train_and_evaluate(str(shard_set), vae_dir, str(tmp_path), ProbeConfig(steps=50))
    except ProbeSkipped as exc:  # the split hash left a class-free split: nothing to score here
        pytest.skip(str(exc))
    m = result.metrics
    for space in ("latent", "pixel", "pixel_spectrum"):
        assert 0 <= m[f"probe_{space}_accuracy"] <= 1
        assert 0 <= m[f"retrieval_{space}_recall_at_1"] <= m[f"retrieval_{space}_recall_at_5"] <= 1
        assert 0 < m[f"retrieval_{space}_map"] <= 1
    assert (m["probe_latent_dim"], m["probe_pixel_dim"], m["probe_pixel_spectrum_dim"]) == (160, 192, 120)
    assert m["embed_clips_per_s"] > 0
    probe, doc = load_probe(result.model_dir)
    assert doc["extra"]["class_names"] == CLASSES and probe.linear.weight.shape == (3, 160)
    assert doc["extra"]["embedding_version"] == EMBEDDING_VERSION
    vae = {"name": "vidgen-vae", "version": "1"}
    outputs = {**m, "model_dir": result.model_dir, "mlflow_run_id": ""}
    reg = register_probe(outputs, "vidgen", {"ingest_config": INGEST.model_dump_json()}, vae, None, world.uri, "k1")
    tags = MlflowClient(world.uri).get_model_version("vidgen-probe", reg["version"]).tags
    assert tags["vae_model_version"] == "1" and tags["vidgen.kind"] == "probe"
    assert float(tags["probe_latent_accuracy"]) == m["probe_latent_accuracy"]


# ---------------------------------------------------------------- similar / compare / classify


def test_similar_from_the_file_and_a_fresh_video(world) -> None:
    index = world.root / "folder.parquet"
    if not index.exists():
        assert _run(world, "embed", str(world.videos), "-m", "models:/vidgen-vae@champion", "-o", str(index)).code == 0
    query = str(next(Path(world.videos, "circle").glob("*.mp4")))
    r = _run(world, "similar", query, "-i", str(index), "-k", "3")
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert len(lines) == 3 and query not in r.out
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    r = _run(world, "similar", world.fresh, "-i", str(index), "-k", "6")
    assert r.code == 0 and len(r.out.strip().splitlines()) == 6
    assert_one_line_error(_run(world, "similar", world.fresh, "-i", str(index), "-m", "models:/vidgen-vae/2"),
                    "was made by models:/vidgen-vae/1")
    # A file from before the root-spectrum embedding (no version recorded = version 1) is never mixed with new vectors.
    table = pq.read_table(index)
    meta = json.loads(table.schema.metadata[b"vidgen.embeddings"])
    meta.pop("embedding_version")
    old = world.root / "old-version.parquet"
    pq.write_table(table.replace_schema_metadata({b"vidgen.embeddings": json.dumps(meta).encode()}), old)
    assert_one_line_error(_run(world, "similar", world.fresh, "-i", str(old)), "holds embedding version 1")
    assert_one_line_error(_run(world, "similar", world.fresh, "-i", str(world.root / "nope.parquet")), "does not exist")


def test_compare_self_is_one_and_timeline(world) -> None:
    r = _run(world, "compare", world.fresh, world.fresh, "-m", "models:/vidgen-vae@champion", "--per-clip")
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert float(lines[0]) == pytest.approx(1.0, abs=1e-5)
    assert lines[1].startswith("t_a(s)") and len(lines) >= 3
    other = str(next(Path(world.videos, "circle").glob("*.mp4")))
    r = _run(world, "compare", world.fresh, other, "-m", "models:/vidgen-vae/1")
    assert r.code == 0 and -1.0 <= float(r.out) < 1.0
    assert_one_line_error(_run(world, "compare", world.fresh, "nope.mp4", "-m", "models:/vidgen-vae/1"), "nope.mp4")


def test_classify_names_the_class(world) -> None:
    circle = str(next(Path(world.videos, "circle").glob("*.mp4")))
    r = _run(world, "classify", circle, "-m", "models:/vidgen-probe@champion")
    assert r.code == 0, r.err
    assert r.out.split(": ", 1)[1].startswith("circle ")
    r = _run(world, "classify", str(world.videos / "triangle"), world.fresh, "-m", "models:/vidgen-probe/1", "--top", "2")
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert len(lines) == 3 and all(line.split(": ", 1)[1].startswith("triangle ") for line in lines[:2])
    assert_one_line_error(_run(world, "classify", circle, "-m", "models:/vidgen-vae/1"), "needs a probe model")
    assert_one_line_error(_run(world, "classify", circle, "-m", "models:/vidgen-oldprobe/1"), "reads clip embedding version 1")
