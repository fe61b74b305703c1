"""``manifest.json``: what a committed dataset directory holds, written last by its stage.

A directory is a complete dataset exactly when it has a valid manifest and every file the
manifest lists exists with the recorded size. Readers refuse anything else and say what to re-run.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from pathlib import Path
from typing import Any

import orjson

from curate import schemas
from curate.io.files import DatasetError

NAME = "manifest.json"
FORMAT_VERSION = 1


def new_id() -> str:
    return secrets.token_hex(8)


def build(*, stage: str, params: dict[str, Any] | None, inputs: list[str], input_manifests: list[str],
          kinds: dict[str, dict[str, Any]], files: dict[str, dict[str, Any]], ident: str | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "curate_dataset": FORMAT_VERSION,
        "id": ident or new_id(),
        "stage": stage,
        "schema_version": schemas.SCHEMA_VERSION,
        "params": params or {},
        "inputs": inputs,
        "input_manifests": input_manifests,
        "kinds": kinds,
        "files": files,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def _rerun(directory: Path, stage: str | None) -> str:
    cmd = f"curate {stage}" if stage else "the curate command that wrote it"
    return f"re-run {cmd} with -o {directory}"


def stage_hint(directory: Path) -> str | None:
    """The stage an old or unfinished output directory came from (its report.json says), if known."""
    for name in (NAME, "report.json"):
        try:
            data = orjson.loads((directory / name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("stage"), str):
            return data["stage"]
    return None


def read(directory: str | os.PathLike) -> dict[str, Any]:
    """The validated manifest of a dataset directory, or a :class:`DatasetError` saying what to do."""
    directory = Path(directory)
    path = directory / NAME
    if not path.is_file():
        raise DatasetError(f"{directory}: not a complete curate dataset (no {NAME}): it was written by an older "
                           f"curate or by a run that did not finish; {_rerun(directory, stage_hint(directory))}.")
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable manifest ({exc}); {_rerun(directory, stage_hint(directory))}.") from None
    if not isinstance(data, dict) or data.get("curate_dataset") is None:
        raise DatasetError(f"{path}: not a curate dataset manifest (an export's manifest? `curate export` output is "
                           "for trainers, not for curate stages); give the dataset the export was made from.")
    if data.get("curate_dataset") != FORMAT_VERSION:
        raise DatasetError(f"{path}: dataset format {data.get('curate_dataset')!r} is not the one this curate reads "
                           f"({FORMAT_VERSION}); {_rerun(directory, data.get('stage'))}.")
    stage = data.get("stage")
    kinds = data.get("kinds")
    files = data.get("files")
    if not isinstance(kinds, dict) or not isinstance(files, dict):
        raise DatasetError(f"{path}: manifest without kinds/files; {_rerun(directory, stage)}.")
    for kind, entry in kinds.items():
        if kind not in schemas.KINDS or not isinstance(entry, dict) or not isinstance(entry.get("files"), list):
            raise DatasetError(f"{path}: manifest lists an unknown kind {kind!r}; {_rerun(directory, stage)}.")
    for name, info in files.items():
        f = directory / name
        if not f.is_file():
            raise DatasetError(f"{directory}: {name} listed in {NAME} is missing; {_rerun(directory, stage)}.")
        size = info.get("bytes") if isinstance(info, dict) else None
        if size is not None and f.stat().st_size != size:
            raise DatasetError(f"{directory}: {name} changed after the dataset was written ({f.stat().st_size:,} "
                               f"bytes, the manifest says {size:,}); {_rerun(directory, stage)}.")
    return data


def files_of(directory: Path, data: dict[str, Any]) -> dict[str, list[Path]]:
    """kind -> the files holding its rows (several when a stage wrote shards)."""
    return {kind: [directory / f for f in entry["files"]] for kind, entry in data["kinds"].items()}
