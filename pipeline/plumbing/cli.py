"""`ganaug`: every stage as a command, `ganaug run` for all of them. Thin: parse, call, summarize."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import GanaugError
from .params import Params, load_params, preset_names, preset_overrides
from ..stages import DEMO_DATA, STAGES, run, summarize


def _run_stage(name: str, params: Params):
    t0 = time.perf_counter()
    result = run(name, params)
    print(f"[{name}] {summarize(name, result)} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return result


def _init_message(r: dict) -> str:
    return f"""wrote {r['dir']}/dvc.yaml and params.yaml (reading {r['raw']}, relative to {r['dir']}).

Next:
  dvc repro {Path(r['dir']).name}/dvc.yaml       # ganaug's stages alone; once your training stage
                                  # depends on the augmented set, plain `dvc repro` runs them too
  git add {Path(r['dir']).name} && git commit -m "Add ganaug augmentation stages"

In your training stage (dvc.yaml), train on the augmented set instead of the raw images:
  deps:   add {r['augmented']}
  data:   {r['augmented']} is ImageFolder-shaped (<class>/<image>.png); its manifest.parquet
          marks each image real or synthetic, with the seed and discriminator score."""


def _add_overrides(parser: argparse.ArgumentParser, help: str):
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help=help)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", metavar="FILE",
                        help="params file (default: params.yaml; missing means all defaults)")
    _add_overrides(common, "override one param, e.g. --set train.steps=100 (repeatable)")
    parser = argparse.ArgumentParser(prog="ganaug", description="GAN data augmentation for rare classes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("demo-data", parents=[common], help=DEMO_DATA.help)
    for name, stage in STAGES.items():
        sub.add_parser(name, parents=[common], help=stage.help)
    run = sub.add_parser("run", parents=[common], help="all stages in order, no DVC or Prefect needed")
    run.add_argument("--demo", action="store_true", help="write the demo dataset first")
    shown = sub.add_parser("params", parents=[common], help="print the validated params (defaults filled in)")
    shown.add_argument("--explain", action="store_true", help="with what each knob does")
    shown.add_argument("--preset", choices=preset_names(), help="print these params with a preset applied "
                       "(e.g. `ganaug params --preset gpu > params.yaml`)")
    init = sub.add_parser("init", help="add ganaug's DVC stages to another repository (run in its root)")
    init.add_argument("--dir", default="augment", help="folder for ganaug's dvc.yaml, params.yaml and outputs")
    init.add_argument("--data", required=True, help="the repository's image folder or path,label table")
    init.add_argument("--preset", choices=preset_names(), help="write params.yaml with a preset applied (e.g. gpu)")
    _add_overrides(init, "params to write, e.g. --set train.steps=5000 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":
            from .dvcfile import init_host
            overrides = preset_overrides(args.preset) + args.overrides
            print(_init_message(init_host(Path.cwd(), args.dir, args.data, overrides)))
            return 0
        params = load_params(args.params, preset_overrides(getattr(args, "preset", None)) + args.overrides)
        if args.command == "params":
            from .params import explain, render_yaml
            print(explain(params) if args.explain else render_yaml(params, f"# {args.params}, validated"), end="")
        elif args.command == "demo-data":
            _run_stage("demo-data", params)
        elif args.command == "run":
            if args.demo:
                _run_stage("demo-data", params)
            results = {name: _run_stage(name, params) for name in STAGES}
            from .run_summary import markdown
            print("\n" + markdown(params, results), end="")
        else:
            _run_stage(args.command, params)
    except GanaugError as e:
        print(f"ganaug {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganaug {args.command}: interrupted; outputs left as they were", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
