"""Host memory each process needs to create a network under FSDP: built whole and then sharded, against created on
the meta device, sharded, and filled shard by shard from the seed (what `llm train trainer=fsdp` does).

    python benchmarks/sharded_init.py --model gpt2_small --processes 2 4

For each way and process count, fresh CPU processes (gloo) create the network as `trainer=fsdp` shards it (each
transformer block a unit, then the root). Each process reports how far its resident memory rose while creating it
(its peak, VmHWM, reset just before, minus its resident memory then) and the bytes of its own shards; the row gives
the largest rise over the processes. Prints a table and writes runs/bench/sharded_init.json.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import command_line, print_table, write_rows
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from llm.configs import compose_config
from llm.model import GPT, ModelConfig, build_gpt
from llm.model.gpt import materialize
from llm.run.recipes import model_config

MiB = 1 << 20


def memory_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS: resident now; VmHWM: the peak since the last reset), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: this benchmark needs Linux")


def shard(network: GPT, world: int) -> None:
    mesh = init_device_mesh("cpu", (world,))
    for block in network.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(network, mesh=mesh)


def create(rank: int, way: str, world: int, port: int, config: ModelConfig, results: Any) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the resident memory now
        before, started = memory_kib("VmRSS"), time.perf_counter()
        if way == "whole, then sharded":
            network = build_gpt(config, seed=0)
            shard(network, world)
        else:
            network = build_gpt(config, empty=True)
            shard(network, world)
            materialize(network, torch.device("cpu"), seed=0)
        seconds = time.perf_counter() - started
        local = [p.to_local() if isinstance(p, DTensor) else p for p in network.parameters()]
        results[rank] = {
            "rise_mib": (memory_kib("VmHWM") - before) / 1024,
            "shard_mib": sum(t.numel() * t.element_size() for t in local) / MiB,
            "seconds": seconds,
        }
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gpt2_small", help="a conf/model preset")
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sharded_init.json"))
    args = parser.parse_args()
    config = model_config(compose_config("train", [f"model={args.model}"]), args.vocab)
    whole_mib = sum(p.numel() * 4 for p in build_gpt(config, empty=True).parameters()) / MiB
    rows = []
    for world in args.processes:
        for way in ("whole, then sharded", "meta, filled shard by shard"):
            with mp.Manager() as manager:
                results = manager.dict()
                mp.spawn(create, args=(way, world, free_port(), config, results), nprocs=world)
                per_process = list(results.values())
            rows.append(
                {
                    "name": f"{args.model}, {world} processes: {way}",
                    "model_mib": whole_mib,
                    "shard_mib": max(r["shard_mib"] for r in per_process),
                    "rise_mib": max(r["rise_mib"] for r in per_process),
                    "seconds": max(r["seconds"] for r in per_process),
                    "command": command_line(),
                }
            )
    columns = {
        "name": ("what", "s"),
        "model_mib": ("whole model MiB", ".0f"),
        "shard_mib": ("own shards MiB", ".0f"),
        "rise_mib": ("memory rise MiB (largest process)", ".0f"),
        "seconds": ("seconds", ".1f"),
    }
    print_table(rows, columns)
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
