"""One storage root, any filesystem: locations under a local folder or an fsspec URL.

A root is a local folder (``/srv/ml``, ``.data``) or an fsspec URL (``s3://bucket/prefix``, ``gs://...``,
``memory://...``). Local roots are plain ``pathlib.Path`` objects (no extra import, today's layout
and atomic renames); URLs are ``upath.UPath`` objects (universal-pathlib, with s3fs for ``s3://``),
imported only when a URL root is used. The functions here take either and pick the operation the
filesystem allows:

- ``put_atomic``: local, a temp file in the same folder renamed into place; object stores, one PUT
  (a single object write is atomic: readers see the old object or the new one, never a part).
- ``copy_object``: local, a hard link (instant, no bytes copied); object stores, a server-side copy.
- ``replace_object``: local, ``os.replace``; object stores, copy then delete (not atomic as a
  pair, which the staged-write journal tolerates: it only restores from a copy it still has).

``content_hash`` is the SHA-256 of the stored bytes: what the IO managers record per partition and
check on every read. Standard library only (plus upath for URL roots).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

HASH_PREFIX = "sha256:"


def is_url(root: str) -> bool:
    """True for an fsspec URL such as ``s3://bucket/prefix`` (``file://`` counts as local)."""
    return "://" in root and not root.startswith("file://")


def root_path(root: str, *parts: str) -> Any:
    """``root`` joined with ``parts``: a ``Path`` for a local root, a ``UPath`` for a URL."""
    if is_url(root):
        from upath import UPath

        # no listings cache: a long-lived worker must see objects other workers wrote since it listed
        base = UPath(root.rstrip("/"), use_listings_cache=False)
    else:
        base = Path(root.removeprefix("file://"))
    return base.joinpath(*parts) if parts else base


def is_local(path: Any) -> bool:
    """True when ``path`` is on the local filesystem (a plain ``Path`` or a local ``UPath``)."""
    protocol = getattr(path, "protocol", "")
    return isinstance(path, Path) and protocol in ("", "file", "local")


def content_hash(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the data version recorded for a stored object."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def ensure_folder(folder: Any) -> None:
    if is_local(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
    else:  # object stores have no folders; mkdir of a bucket prefix is a no-op or creates the bucket
        folder.mkdir(parents=True, exist_ok=True)


def put_atomic(path: Any, data: bytes) -> None:
    """Store ``data`` at ``path`` so that readers see the old object or the new one, never a part."""
    if is_local(path):
        local = Path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{local.stem}.", suffix=".tmp", dir=local.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp_name, local)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return
    path.write_bytes(data)  # one PUT (s3fs uploads what it buffered on close)


def write_temp(folder: Any, stem: str, data: bytes) -> Path | None:
    """A hidden temp file holding ``data`` in ``folder`` (local only, else None: object stores write
    with one PUT and need no temp object)."""
    if not is_local(folder):
        return None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return Path(tmp_name)


def copy_object(source: Any, target: Any) -> None:
    """``target`` becomes a copy of ``source`` (local: a hard link; object stores: server-side copy)."""
    remove_object(target)
    if is_local(source):
        os.link(source, target)
    else:
        source.fs.copy(source.path, target.path)


def replace_object(source: Any, target: Any) -> None:
    """Move ``source`` over ``target`` (local: atomic rename; object stores: copy, then delete)."""
    if is_local(source):
        os.replace(source, target)
    else:
        source.fs.copy(source.path, target.path)
        source.fs.rm(source.path)


def remove_object(path: Any) -> None:
    if is_local(path):
        Path(path).unlink(missing_ok=True)
    elif path.exists():
        path.fs.rm(path.path)


def describe(path: Any) -> str:
    """How a location is shown in messages: a local path, or the full URL of an object."""
    return str(path)


def to_parquet_bytes(frame: Any) -> bytes:
    """``frame`` as the Parquet bytes that are stored and hashed (same bytes on every filesystem)."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
