"""Drills: registry artifacts never unpickle, tampered weights and .vgc headers are refused, secrets stay out of params.

A crafted pickle here *would* leave a marker file if anything unpickled it, so
"refused" is checked both ways: one-line UserError, and no marker.
"""

from __future__ import annotations

import json
import ast
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from codec_fixtures import tiny_vae

from vidgen_core.codec import bitstream
from vidgen_core.codec.files import read_vgc_header
from vidgen_core.config import PipelineConfig, VAEConfig
from vidgen_core.errors import UserError
from vidgen_core.models.io import save_model
from vidgen_core.tracking.artifact_safety import check_logged_model

pytestmark = pytest.mark.reliability

MLMODEL = """flavors:
  python_function:
    loader_module: mlflow.pyfunc.loaders.code_model
    model_code_path: /somewhere/pyfunc_vae.py
"""


class _Payload:
    """Unpickling this touches ``marker``: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def logged_model(tmp_path: Path) -> Path:
    """What vidgen's loader downloads: MLmodel (models from code) + artifacts/model/{weights, config}."""
    root = tmp_path / "model"
    save_model(tiny_vae(), "vae", VAEConfig(base_channels=4, channel_mult=[1, 2], latent_channels=4).model_dump(),
               root / "artifacts" / "model")
    (root / "MLmodel").write_text(MLMODEL)
    return root


def _slots(root: Path) -> dict[str, Path]:
    """Every file of the logged model, plus names a pickle loader would pick up if they were there."""
    model = root / "artifacts" / "model"
    return {
        "weights.safetensors": model / "weights.safetensors",
        "config.json": model / "config.json",
        "MLmodel": root / "MLmodel",
        "python_model.pkl (extra)": root / "python_model.pkl",
        "model.pt (extra)": model / "model.pt",
        "state.bin (extra)": model / "state.bin",
    }


@pytest.mark.parametrize("slot", list(_slots(Path("."))))
def test_a_pickle_in_any_artifact_slot_is_refused_unread(tmp_path: Path, logged_model: Path, slot: str, drill) -> None:
    case = drill("crafted pickle in a model artifact", "security",
                 "a pickle whose loading would touch a marker file, in each of 6 slots of a logged vidgen model "
                 "(weights, config, MLmodel, extra .pkl/.pt/.bin)",
                 "loading is refused with one line naming the file; the marker never appears")
    root = logged_model
    check_logged_model(root)  # the untouched model passes
    marker = tmp_path / "UNPICKLED"
    _slots(root)[slot].write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(UserError, match="refusing to load model artifact") as err:
        check_logged_model(root)
    assert "\n" not in str(err.value) and _slots(root)[slot].name in str(err.value)
    assert not marker.exists()
    case.figure = "refused 1/1, unpickled 0"


def _tamper(path: Path, edit) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def _first(header: dict) -> dict:
    return header[next(k for k in header if k != "__metadata__")]


TAMPERS = {
    "offsets past the end": lambda h: _first(h).update(data_offsets=[0, 1 << 40]),
    "shape larger than its bytes": lambda h: _first(h).update(shape=[1 << 20, 1 << 10]),
    "two tensors on the same bytes": lambda h: [e.update(data_offsets=_first(h)["data_offsets"])
                                                for k, e in list(h.items())[2:3] if k != "__metadata__"],
    "unknown dtype": lambda h: _first(h).update(dtype="PICKLE"),
}


@pytest.mark.parametrize("how", list(TAMPERS))
def test_a_tampered_safetensors_header_is_refused(logged_model: Path, how: str, drill) -> None:
    case = drill("tampered safetensors header", "security",
                 "the weights' JSON header edited: offsets past the end, a shape larger than its bytes, "
                 "two tensors on the same bytes, an unknown dtype",
                 "refused with one line before torch or safetensors reads a tensor")
    _tamper(_slots(logged_model)["weights.safetensors"], TAMPERS[how])
    with pytest.raises(UserError, match="weights.safetensors") as err:
        check_logged_model(logged_model)
    assert "\n" not in str(err.value)
    case.figure = "refused 1/1"


def _vgc_with_name(path: Path, name: bytes) -> None:
    """A .vgc file whose header (checksum correct) names the model ``name``: no checks on the way in."""
    fixed = bitstream._FIXED.pack(1, b"\0" * 8, 4, 12, 1, 32, 32, 0, 0, 4, 0, 0.5)
    body = bitstream.MAGIC + bytes([bitstream.FORMAT_VERSION, len(name)]) + name + fixed
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))


@pytest.mark.parametrize("name", [b"../../../../tmp/evil", b"/etc/passwd", b"models:/x/1", b"a/../../b"])
def test_a_path_in_a_vgc_header_is_refused(tmp_path: Path, name: bytes, drill) -> None:
    case = drill("path traversal in a .vgc header", "security",
                 "a .vgc header (valid checksum) naming its model '../../../../tmp/evil', '/etc/passwd', "
                 "'models:/x/1', 'a/../../b'",
                 "refused with one line before any model is looked up or file written")
    src = tmp_path / "evil.vgc"
    _vgc_with_name(src, name)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(UserError, match="bad model name") as err:
        read_vgc_header(str(src))
    assert "\n" not in str(err.value)
    assert set(tmp_path.rglob("*")) == before
    case.figure = "refused 1/1, files written 0"


def test_credentials_in_uris_never_reach_logged_params(drill) -> None:
    from workflows.executor import _flat_params

    case = drill("secrets in config", "security",
                 "a password in the tracking URI and in the data source URI",
                 "the pipeline's logged params hold neither password")
    secret = "s3cr3t-pw-4711"
    cfg = PipelineConfig.model_validate({
        "tracking": {"uri": f"http://alice:{secret}@mlflow.example.com:5000"},
        "data": {"source": f"s3://key:{secret}@bucket/videos"},
    })
    params = _flat_params(cfg)
    leaked = [k for k, v in params.items() if secret in v]
    assert params["tracking.uri"] == "http://alice:***@mlflow.example.com:5000"
    assert leaked == []
    case.figure = f"params with the secret 0/{len(params)}"


def test_no_code_path_unpickles_without_weights_only(drill) -> None:
    case = drill("code that could unpickle", "security",
                 "a scan of vidgen_core/ and workflows/ for pickle.load(s), torch.load, cloudpickle, joblib",
                 "the only torch.load reads our own checkpoints with weights_only=True; nothing else unpickles")
    root = Path(__file__).resolve().parents[2]
    calls = []
    for path in [*root.glob("vidgen_core/**/*.py"), *root.glob("workflows/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            f = node.func if isinstance(node, ast.Call) else None
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.attr in ("load", "loads") \
                    and f.value.id in ("pickle", "torch", "cloudpickle", "joblib", "dill"):
                calls.append((path.name, ast.unparse(node)))
    assert calls and all(name == "checkpoint.py" and "weights_only=True" in code for name, code in calls), calls
    case.figure = f"unpickling calls {len(calls)}, all torch.load(weights_only=True) of vidgen's own checkpoints"
