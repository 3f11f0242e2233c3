"""Paths as URIs: local paths, ``file://``, ``s3://``, ``gs://`` through pyarrow.fs.

Only pyarrow is imported here, so video, data, eval and serving code can share
these helpers without pulling in Ray or PyAV.
"""

from __future__ import annotations

import os
import re
import uuid

import pyarrow.fs as pafs


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than ``file://`` (object stores, HDFS, ...)."""
    return "://" in uri and not uri.startswith("file://")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a URI or plain local path.

    Plain paths become absolute so they mean the same thing in Ray workers that
    run in another working directory.
    """
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def normalize(uri: str) -> str:
    """A canonical form of ``uri``: absolute for local paths, unchanged (minus a trailing '/') otherwise."""
    if "://" in uri:
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def redact(text: str) -> str:
    """``text`` with the password of every URI in it masked: ``http://user:pw@host`` -> ``http://user:***@host``.

    For what is logged or printed (params, console lines): credentials belong in
    variables such as ``MLFLOW_TRACKING_PASSWORD``, but a URI may still carry them.
    """
    return re.sub(r"(://[^/:@\s]+:)[^/@\s]+@", r"\1***@", text)


def join(uri: str, *parts: str) -> str:
    """Join path components onto a URI or local path with '/'."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    """Whole content of a (small) file. Raises FileNotFoundError if it does not exist."""
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` so that readers see either the old file or the complete new one.

    Local files: write a temporary sibling, then rename (atomic on POSIX). Object
    stores: a single PUT is already atomic, and a "rename" there is a copy.
    """
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.create_dir(parent, recursive=True)
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    finally:
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)


# Variables pyarrow's S3 client reads (endpoint, region, credentials, profile).
_S3_ENV_PREFIXES = ("AWS_",)


def object_store_env(*uris: str) -> dict[str, str]:
    """The driver's ``AWS_*`` variables when any of ``uris`` is an ``s3://`` URI, else {}.

    Ray workers do not inherit the driver's environment on a cluster, nor one
    set after a local Ray started; passing these in a task's ``runtime_env``
    lets ``AWS_ENDPOINT_URL`` (S3-compatible stores) and friends reach pyarrow there.
    """
    if not any(u.startswith("s3://") for u in uris):
        return {}
    return {k: v for k, v in os.environ.items() if k.startswith(_S3_ENV_PREFIXES)}
