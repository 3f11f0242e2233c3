"""The input side of ingest: list the videos under a source and give each an id and a label.

Labels come from class sub-folders (``source/<class>/...``) or, when
``data.labels_file`` is set, from a CSV or Parquet table with columns
``path,label`` (``path`` relative to the source; files it does not list are
unlabelled). A label's integer is its index in ``label_names``: the sorted
names (numerically when all are integers) on a fresh ingest; names already
known from earlier runs keep their index and new ones are appended, so
adding files never renumbers the clips already written.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.config import DataConfig
from vidgen_core.data.plan import video_id_of
from vidgen_core.errors import UserError

log = logging.getLogger(__name__)


def _name_order(names: set[str]) -> list[str]:
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def read_labels_file(uri: str) -> dict[str, str]:
    """``{relative path: label name}`` from a CSV or Parquet file with columns ``path,label``.

    Raises:
        UserError: missing or unreadable file, missing columns, or a path listed twice.
    """
    try:
        fs, path = storage.resolve(uri)
        if uri.lower().endswith(".parquet"):
            table = pq.read_table(path, filesystem=fs)
        else:
            with fs.open_input_stream(path) as f:
                table = pacsv.read_csv(f)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read data.labels_file '{uri}': {exc}") from None
    missing = {"path", "label"} - set(table.column_names)
    if missing:
        raise UserError(f"data.labels_file '{uri}' needs columns path,label; missing {sorted(missing)}")
    paths = [str(p).lstrip("/") for p in table.column("path").to_pylist()]
    labels = ["" if v is None else str(v) for v in table.column("label").to_pylist()]
    seen: dict[str, str] = {}
    for p, label in zip(paths, labels):
        if p in seen and seen[p] != label:
            raise UserError(f"data.labels_file '{uri}' gives '{p}' two labels: '{seen[p]}' and '{label}'")
        seen[p] = label
    return seen


def labels_digest(data: DataConfig) -> str | None:
    """sha256 of the labels file's bytes (None without one): changed labels mean a new ingest."""
    if data.labels_file is None:
        return None
    try:
        return hashlib.sha256(storage.read_bytes(data.labels_file)).hexdigest()
    except OSError as exc:
        raise UserError(f"cannot read data.labels_file '{data.labels_file}': {exc}") from None


def _list_files(source: str, extensions: list[str]) -> list[tuple[str, pafs.FileInfo]]:
    fs, root = storage.resolve(source)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"source '{source}' does not exist")
    if info.type != pafs.FileType.Directory:
        raise UserError(f"source '{source}' is not a directory; point data.source at a folder of videos")
    exts = tuple(sorted({e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}))
    files = []
    for fi in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = fi.path[len(root) :].lstrip("/")
        # Hidden names (".x.mp4.tmp", macOS "._x.mp4") are never videos we want.
        if fi.type != pafs.FileType.File or any(p.startswith(".") for p in rel.split("/")):
            continue
        if fi.base_name.lower().endswith(exts):
            files.append((rel, fi))
    if not files:
        raise UserError(f"no video files ({', '.join(exts)}) found under '{source}'")
    files.sort(key=lambda x: x[0])
    return files


def list_inputs(
    source: str, data: DataConfig, known_labels: list[str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Video files under ``source`` (recursive, sorted by relative path) and the label names.

    Returns:
        ``(rows, label_names)``: one dict per file with ``source`` (URI), ``rel``,
        ``size``, ``mtime_ns``, ``video_id``, ``label``, ``label_name``; unlabelled
        files get -1 and "".

    Raises:
        UserError: ``source`` is missing, not a directory, or holds no video files;
            a bad labels file.
    """
    files = _list_files(source, data.extensions)
    if data.labels_file is not None:
        table = read_labels_file(data.labels_file)
        name_of = {rel: table.get(rel, "") for rel, _ in files}
        # Paths are only ever looked up among the files under source: a listed path that is not
        # one of them ("../x.mp4", "/etc/passwd", a typo) labels nothing and is never opened.
        unmatched = sorted(set(table) - set(name_of))
        if unmatched:
            log.warning("data.labels_file lists %d path(s) that are not video files under '%s', ignored: %s",
                        len(unmatched), source, ", ".join(unmatched[:3]) + (" ..." if len(unmatched) > 3 else ""))
    else:
        name_of = {rel: rel.split("/", 1)[0] if "/" in rel else "" for rel, _ in files}
    known = list(known_labels or [])
    new = {n for n in name_of.values() if n and n not in known}
    label_names = known + _name_order(new)
    index = {n: i for i, n in enumerate(label_names)}
    base = storage.normalize(source)
    rows = []
    for rel, fi in files:
        name = name_of[rel]
        rows.append(
            {
                "source": storage.join(base, rel),
                "rel": rel,
                "size": int(fi.size or 0),
                "mtime_ns": int(fi.mtime_ns or 0),
                "video_id": video_id_of(rel),
                "label": index[name] if name else -1,
                "label_name": name,
            }
        )
    return rows, label_names
