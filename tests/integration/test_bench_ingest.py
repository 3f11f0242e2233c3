"""bench/ingest.py splits vidgen's CPU by process role; the split must find Ray's read workers by the
titles Ray gives them, or it would quietly charge the decode work to "Ray's other processes"."""

from __future__ import annotations

import pytest

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data.ingest import ingest_videos

pytestmark = pytest.mark.integration


@pytest.fixture
def bench_ingest(import_bench):
    return import_bench("ingest")


class _Proc:
    def __init__(self, pid: int, title: list[str]) -> None:
        self.pid, self._title = pid, title

    def cmdline(self) -> list[str]:
        return self._title


def test_roles_follow_the_process_titles(bench_ingest):
    role = bench_ingest._role
    assert role(_Proc(7, ["python", "bench/ingest.py"]), me=7) == "driver"
    assert role(_Proc(8, ["ray::IDLE"]), me=7) == "read_workers"
    assert role(_Proc(9, ["ray::ReadVideoClips"]), me=7) == "read_workers"
    assert role(_Proc(10, ["ray::_StatsActor"]), me=7) == "ray_other"
    assert role(_Proc(11, ["/venv/lib/ray/core/src/ray/raylet/raylet", "--node_id=x"]), me=7) == "ray_other"
    before = {7: ("driver", 1.0), 8: ("read_workers", 2.0)}
    after = {7: ("driver", 1.5), 8: ("read_workers", 5.0), 12: ("ray_other", 0.25)}  # 12 started in between
    assert bench_ingest.cpu_by_role(before, after) == {"driver": 0.5, "read_workers": 3.0, "ray_other": 0.25}


def test_a_real_ingest_charges_the_decoding_to_the_read_workers(bench_ingest, ray_cluster, synth_videos, tmp_path):
    before = bench_ingest.tree_cpu()
    ingest_videos(str(synth_videos), str(tmp_path / "shards"), IngestConfig(clip_len=8, size=16), DataConfig())
    after = bench_ingest.tree_cpu()
    assert any(role == "read_workers" for role, _ in after.values()), sorted({r for r, _ in after.values()})
    used = bench_ingest.cpu_by_role(before, after)
    assert used["read_workers"] > 0, used


def test_a_bad_repeats_stops_the_bench_before_it_makes_data(bench_ingest, monkeypatch, capsys, tmp_path):
    data = tmp_path / "bench-data"
    monkeypatch.setattr("sys.argv", ["ingest.py", "--repeats", "0", "--data", str(data)])
    with pytest.raises(SystemExit) as stop:
        bench_ingest.main()
    assert stop.value.code == 2
    assert "argument --repeats: must be at least 1 (got 0)" in capsys.readouterr().err
    assert not data.exists()  # refused before any video was generated
