"""Overhead of the Prefect flow over `ganaug run` for the same work.

    python bench/flow_overhead.py [--steps 200]

Both run the digits demo at 8 px (train.steps as given) in fresh temporary folders; the flow
runs against a temporary local Prefect server (its start-up is reported apart, not counted).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

from ganaug.flows import augment_flow
from ganaug.pipeline.plumbing.cli import main as cli
from ganaug.pipeline.demo_data import demo_data
from ganaug.pipeline.plumbing.params import load_params


def overrides(steps: int) -> list[str]:
    return ["demo.size=8", "ingest.size=8", f"train.steps={steps}", "evaluate.repeats=1"]


def timed_in_tmp(fn) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        Path("params.yaml").write_text("")
        demo_data(load_params("params.yaml", overrides(ARGS.steps)))
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def main():
    t0 = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=180):
        startup = time.perf_counter() - t0
        sets = [a for o in overrides(ARGS.steps) for a in ("--set", o)]
        cli_s = timed_in_tmp(lambda: cli(["run", *sets]))
        flow_s = timed_in_tmp(lambda: augment_flow("params.yaml", overrides(ARGS.steps)))
    print(f"ganaug run (baseline): {cli_s:.1f} s; augment flow: {flow_s:.1f} s; "
          f"overhead {flow_s - cli_s:+.1f} s, ratio = {flow_s / cli_s:.2f} (server start-up {startup:.1f} s, apart)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ARGS = ap.parse_args()
    main()
