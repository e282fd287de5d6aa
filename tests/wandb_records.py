"""Read the records of an offline W&B run file (``run-<id>.wandb``) for tests.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
chunks, each with a 7-byte header (CRC32, little-endian length, type: 1 full, 2 first, 3 middle,
4 last) holding serialised ``wandb.proto`` ``Record`` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    out, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            offset += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        chunk = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == 0 and length == 0:
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def run_info(path: Path) -> dict[str, Any]:
    """``{"id", "job_type", "group", "name", "summary": {...}, "history_keys": set}`` of a run file."""
    info: dict[str, Any] = {"summary": {}, "history_keys": set()}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(
                id=record.run.run_id,
                job_type=record.run.job_type,
                group=record.run.run_group,
                name=record.run.display_name,
            )
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                info["summary"][key] = json.loads(item.value_json)
        elif kind == "history":
            info["history_keys"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return info
