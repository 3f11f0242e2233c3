"""`vidgen compress` / `vidgen decompress` through a real (SQLite) MLflow registry.

Two registered versions of a tiny VAE, each with its codec.json beside its
weights, as the register step stores them; a third version without one.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from cli_checks import assert_one_line_error
from codec_fixtures import moving_square_frames, save_codec_model, tiny_codec, write_video

from workflows.cli import main

pytestmark = pytest.mark.integration  # a real SQLite MLflow store (about 10 s)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vidgen_core.config import TrackingConfig
    from vidgen_core.models.io import save_model
    from vidgen_core.tracking.mlflow_setup import init_tracking
    from vidgen_core.tracking.registry import register_model

    root = tmp_path_factory.mktemp("codec-cli")
    uri, _ = init_tracking(TrackingConfig(experiment="codec"), root / "ws")
    models = [tiny_codec(seed=s) for s in (0, 1)]
    for i, m in enumerate(models):
        register_model("vae", str(save_codec_model(m, root / f"m{i}")), "vidgen-vae", {}, tracking_uri=uri)
    bare = root / "bare"  # a VAE registered without a probability model
    save_model(models[0].vae, "vae", models[0].vae.cfg.model_dump(), bare, extra={"clip_len": 8, "size": 32})
    register_model("vae", str(bare), "vidgen-vae", {}, tracking_uri=uri)
    video = write_video(root / "in.mkv", moving_square_frames(19, 27, 41))
    return SimpleNamespace(root=root, uri=uri, video=video, models=models)


def _run(world, *args: str) -> SimpleNamespace:
    result = CliRunner().invoke(main, [*args, "--tracking-uri", world.uri])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(code=result.exit_code, out=result.stdout, err=result.stderr)




def test_compress_then_decompress_with_the_model_named_in_the_file(world) -> None:
    from vidgen_core.codec.files import read_vgc_header
    from vidgen_core.video.decode import probe

    vgc, mp4, png = world.root / "a.vgc", world.root / "a.mp4", world.root / "png"
    r = _run(world, "compress", str(world.video), "-m", "models:/vidgen-vae/1", "-o", str(vgc), "--quality", "3")
    assert r.code == 0, r.err
    assert "19 frames 41x27, quality 3" in r.out and "model models:/vidgen-vae/1" in r.out
    size = vgc.stat().st_size
    assert f"{size} bytes = {8 * size / (19 * 27 * 41):.4f} bpp" in r.out
    assert read_vgc_header(str(vgc)).model_uri == "models:/vidgen-vae/1"
    r = _run(world, "decompress", str(vgc), "-o", str(mp4), "--frames-dir", str(png))
    assert r.code == 0, r.err
    assert probe(str(mp4)).num_frames == 19 and len(list(png.glob("*.png"))) == 19


def test_wrong_model_and_bad_files_are_one_line_and_leave_nothing(world) -> None:
    vgc, out = world.root / "b.vgc", world.root / "b.mp4"
    assert _run(world, "compress", str(world.video), "-m", "models:/vidgen-vae/1", "-o", str(vgc)).code == 0
    assert_one_line_error(_run(world, "decompress", str(vgc), "-o", str(out), "-m", "models:/vidgen-vae/2"),
                    "made by models:/vidgen-vae/1", "cannot decode it")
    truncated = world.root / "t.vgc"
    truncated.write_bytes(vgc.read_bytes()[:-5])
    assert_one_line_error(_run(world, "decompress", str(truncated), "-o", str(out)), "truncated")
    assert_one_line_error(_run(world, "decompress", str(world.video), "-o", str(out)), "not a vidgen .vgc file")
    assert_one_line_error(_run(world, "compress", str(world.video), "-m", "models:/vidgen-vae/3", "-o", str(vgc)),
                    "no codec probability model")
    assert_one_line_error(_run(world, "compress", str(world.video), "-m", "models:/nope@champion", "-o", str(vgc)),
                    "unknown model URI")
    assert_one_line_error(_run(world, "compress", str(world.root / "missing.mp4"), "-m", "models:/vidgen-vae/1", "-o", str(vgc)),
                    "does not exist")
    assert_one_line_error(_run(world, "compress", str(world.video), "-m", "models:/vidgen-vae/1", "-o", "/no/dir/x.vgc"),
                    "does not exist")
    assert not out.exists() and not list(world.root.glob(".*.tmp"))
