"""Model artifacts that would unpickle are refused with one line, before anything reads them."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidgen_core.errors import UserError
from vidgen_core.tracking.artifact_safety import check_logged_model, check_model_dir, check_safetensors

CODE_MODEL = """flavors:
  python_function:
    loader_module: mlflow.pyfunc.loaders.code_model
    model_code_path: /somewhere/pyfunc_vae.py
    cloudpickle_version: 3.1.2
"""


def _model_dir(root: Path) -> Path:
    d = root / "artifacts" / "model"
    d.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(d / "weights.safetensors"))
    (d / "config.json").write_text("{}")
    (root / "MLmodel").write_text(CODE_MODEL)
    return d


def test_a_vidgen_model_passes(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    check_model_dir(d)
    check_logged_model(tmp_path)


def test_pickle_disguised_as_safetensors_is_refused(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    torch.save({"w": torch.zeros(2)}, d / "weights.safetensors")  # a torch zip (holds data.pkl)
    with pytest.raises(UserError, match="is a pickle, not safetensors"):
        check_safetensors(d / "weights.safetensors")
    (d / "weights.safetensors").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    with pytest.raises(UserError, match="is a pickle, not safetensors") as err:
        check_model_dir(d)
    assert "\n" not in str(err.value)


def test_pickle_files_and_pickled_python_models_are_refused(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    (d / "extra.pkl").write_bytes(b"")
    with pytest.raises(UserError, match="'.pkl' files are loaded with pickle"):
        check_logged_model(tmp_path)
    (d / "extra.pkl").unlink()
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl\n"
    )
    with pytest.raises(UserError, match="cloudpickled"):
        check_logged_model(tmp_path)
    (tmp_path / "MLmodel").write_text(CODE_MODEL + "  pytorch:\n    pickle_module_name: mlflow.pytorch.pickle_module\n")
    with pytest.raises(UserError, match="flavor 'pytorch'"):
        check_logged_model(tmp_path)
