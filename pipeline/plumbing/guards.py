"""The guards every stage passes before it touches anything (stages.run calls them): its outputs
overlap no other path of the pipeline and can be written, and its batches fit in the memory of
the device that runs them. They read the stages' declarations (pipeline/stages.py), which stay
data."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ParamsError
from .params import Params, lookup
from .paths import check_apart, check_writable, listed_folders, relation
from ..store.files import check_report


def check_paths(stage, params: Params, every_stage):
    """Its outputs overlap no other path of the pipeline (`every_stage`'s declarations) and can be
    written. Two declarations of the same key (ingest writes what train reads) are one path, not
    an overlap; a stage that makes the raw data (`Stage.makes_raw`, the demo) writes the folder
    paths.raw points into."""
    def resolved(p) -> Path | None:
        v = p.value(params)
        return None if v is None else Path(v).expanduser().resolve()

    raw = params.paths.raw and Path(params.paths.raw).expanduser().resolve()
    listed = listed_folders(raw) if raw and raw.is_file() and raw.suffix.lower() in (".csv", ".parquet") else []
    for out in stage.writes:
        path = resolved(out)
        if path is None:
            continue
        # The folders a table lists are inputs too (the demo writes them; in place, the batches
        # go into the tracked set's own subfolder). An output may sit beside the listed images
        # (a flat table, data/labels.csv listing x.png, lists data/ itself), never be or hold
        # their folder.
        lists = [] if stage.makes_raw or out.key == "append.target" else \
            [("a folder of the images paths.raw lists", folder) for folder in listed
             if relation(path, folder) in ("is", "contains")]
        others = {}
        for other in (stage, *every_stage):  # its own inputs first: the likeliest mistake
            for q in other.reads + other.writes:
                same = (q.key, q.file) == (out.key, out.file)
                raw_source = stage.makes_raw and q.key == "paths.raw"
                # In place, the batches go into a subfolder of the tracked set that ingest skips.
                in_place = out.key == "append.target" and q.key == "paths.raw"
                if not same and not raw_source and not in_place and (path_q := resolved(q)) is not None:
                    others.setdefault(q.shown(), path_q)
        check_apart((out.shown(), path), list(others.items()) + lists, stage.name)
        check_writable(out.shown(), path, out.folder)
        if out.file:  # a report: refused now, not after the stage's work, when it is not ganaug's to replace
            check_report(path)


def check_memory(stage, params: Params, available: dict[str, int] | int | None = None):
    """Refuse, before allocating, batch sizes whose activations cannot fit in the memory of the
    device that runs them (a rough upper estimate of float32 activations: training keeps every
    layer's for the backward pass; generate and the filter only run forward, a layer at a time).
    A guard against `batch_size=10**8`, not a planner: a run that passes may still be tight.
    available: bytes, per device key or for all (tests); default: the GPU's memory where the
    stage runs on one, else the host's."""
    px = params.ingest.size ** 2 * params.ingest.channels
    for batch in stage.memory:
        size, width = lookup(params, batch.size), max(lookup(params, batch.width), 8)
        nbytes = size * px * 4 * width * batch.maps
        limit, where = _memory_of(batch.device, params, available)
        if limit is not None and nbytes > 0.8 * limit:
            raise ParamsError(f"{stage.name}: {batch.size} needs about {nbytes / 2**30:.1f} GiB of memory for one batch "
                              f"at ingest.size={params.ingest.size}, more than {where}'s {limit / 2**30:.1f} GiB; "
                              "use a smaller batch")


def _memory_of(device_key: str, params: Params, available) -> tuple[int | None, str]:
    if isinstance(available, dict):
        return available.get(device_key), device_key
    if available is not None:
        return available, "this machine"
    name = lookup(params, device_key)
    if name != "cpu":  # auto or cuda: is a GPU what runs it?
        import torch

        from .params import device as params_device
        dev = params_device(device_key, name)
        if dev.type == "cuda":
            return torch.cuda.get_device_properties(dev).total_memory, f"the GPU ({device_key}={dev})"
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine"
    except (ValueError, OSError, AttributeError):
        return None, "this machine"
