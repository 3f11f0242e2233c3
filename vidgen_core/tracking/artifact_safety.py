"""Refuse model artifacts that could run code when loaded.

A vidgen model is ``config.json`` + ``weights.safetensors`` rebuilt by vidgen
code (MLflow "models from code"). Anything that would be *unpickled* on load —
a ``.pkl``/``.pt`` file, a cloudpickled ``python_model``, a non-pyfunc flavour
(``mlflow.pytorch`` loads with pickle), a weights file that is really a pickle
or a torch zip — means the artifact was not written by vidgen, or was tampered
with. Loading such an artifact is refused with one line (:class:`UserError`)
*before* MLflow or torch reads it.

Checks are on local directories: vidgen's own loading path downloads the model
first (:func:`vidgen_core.tracking.registry.load_pyfunc`); the pyfunc
``load_context`` re-checks its artifact folders for users who call
``mlflow.pyfunc.load_model`` directly.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from vidgen_core.errors import UserError

WEIGHTS_FILE = "weights.safetensors"
# Extensions of formats that unpickle on load (torch.save, joblib, numpy object arrays ...).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".npy", ".npz", ".dill")
# Loaders of a pyfunc wrapper around a models-from-code script (MLflow 3 writes the first).
_PYFUNC_LOADERS = ("mlflow.pyfunc.loaders.code_model", "mlflow.pyfunc.model")
_ALLOWED_FLAVORS = {"python_function"}
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _refuse(path: Path | str, why: str) -> UserError:
    return UserError(f"refusing to load model artifact '{path}': {why}; it was not written by vidgen or was tampered with")


def _looks_pickled(head: bytes) -> bool:
    # Pickle protocol 2+ starts with PROTO (0x80) + version; torch.save's zip starts with "PK".
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head[:4] == b"PK\x03\x04"


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """Raise UserError unless ``path`` is a well-formed safetensors file (header parsed, never executed)."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if _looks_pickled(head):
            raise _refuse(p, "the weights file is a pickle, not safetensors")
        if len(head) < 8:
            raise _refuse(p, "the weights file is truncated, not safetensors")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise _refuse(p, "the weights file has no valid safetensors header")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise _refuse(p, "the weights file has no valid safetensors header") from None
    if not isinstance(header, dict):
        raise _refuse(p, "the weights file has no valid safetensors header")
    _check_tensor_table(p, header, size - 8 - n)


# Bytes per element of the dtypes safetensors writes.
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
                "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


def _check_tensor_table(p: Path, header: dict, data_bytes: int) -> None:
    """Every tensor's dtype, shape and byte range agree, and the ranges tile the data exactly: a header
    edited to point outside the file, or to overlapping bytes, is refused before a reader trusts it."""
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            count = 1
            for dim in shape:
                if not isinstance(dim, int) or dim < 0:
                    raise ValueError
                count *= dim
            ok = isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_bytes \
                and end - begin == count * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _refuse(p, f"the safetensors header entry of '{name}' does not match the file's data")
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise _refuse(p, "the safetensors header's byte ranges overlap or leave gaps")
        position = end
    if position != data_bytes:
        raise _refuse(p, "the safetensors header does not cover the file's data")


def _check_files(root: Path) -> None:
    """No file under ``root`` is in a pickle format; safetensors and JSON files are what they claim."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise _refuse(path, f"'{path.suffix}' files are loaded with pickle")
        if path.suffix.lower() == ".safetensors":
            check_safetensors(path)
        if path.suffix.lower() == ".json":
            try:  # vidgen's loaders read these with json; anything else here was put by someone else
                json.loads(path.read_bytes())
            except (ValueError, UnicodeDecodeError):
                raise _refuse(path, "not a JSON file") from None


def check_model_dir(model_dir: str | os.PathLike[str]) -> None:
    """A vidgen model directory: no pickle-format file anywhere, weights in safetensors."""
    root = Path(model_dir)
    _check_files(root)
    if not (root / WEIGHTS_FILE).is_file():
        raise _refuse(root, f"no {WEIGHTS_FILE}")


def check_mlmodel(mlmodel_path: str | os.PathLike[str]) -> None:
    """The MLmodel file must describe a models-from-code pyfunc and nothing that unpickles."""
    import yaml

    path = Path(mlmodel_path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _refuse(path, f"unreadable MLmodel ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise _refuse(path, "the MLmodel file is not a YAML mapping")
    flavors = doc.get("flavors") or {}
    extra = sorted(set(flavors) - _ALLOWED_FLAVORS)
    if extra:
        raise _refuse(path, f"flavor '{extra[0]}' is loaded with pickle; vidgen models are pyfunc models from code")
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module") not in _PYFUNC_LOADERS:
        raise _refuse(path, f"loader_module '{pyfunc.get('loader_module')}' is not a models-from-code loader")
    # Without model_code_path MLflow falls back to unpickling python_model (a cloudpickle file).
    if "python_model" in pyfunc or not str(pyfunc.get("model_code_path") or "").endswith(".py"):
        raise _refuse(path, "its python_model is cloudpickled, not models from code")


def check_logged_model(local_root: str | os.PathLike[str]) -> None:
    """A downloaded logged model: MLmodel is models-from-code, no file anywhere is a pickle format.

    Raises:
        UserError: one line naming the offending file.
    """
    root = Path(local_root)
    if not (root / "MLmodel").is_file():
        raise _refuse(root, "no MLmodel file")
    check_mlmodel(root / "MLmodel")
    _check_files(root)


def check_pyfunc_context(artifacts: dict[str, str]) -> None:
    """Checks for ``PythonModel.load_context``: every artifact folder, and the MLmodel beside them.

    MLflow copies artifacts to ``<model root>/artifacts/<name>``; the MLmodel sits
    at the model root. (A cloudpickled ``python_model`` would already have been
    unpickled by MLflow before ``load_context`` runs: vidgen's own loader
    checks the MLmodel before handing the model to MLflow.)
    """
    for path in artifacts.values():
        check_model_dir(path)
    roots = {Path(p).resolve().parent.parent for p in artifacts.values()}
    for root in roots:
        if (root / "MLmodel").is_file():
            check_mlmodel(root / "MLmodel")
