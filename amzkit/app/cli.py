"""Command line: `python -m amzkit demo`, `validate`, and `kaggle build|push|fetch|inputs`."""

from __future__ import annotations

import argparse
import sys

from amzkit.app import kaggle, kaggle_push
from amzkit.app.demo import DEMO_N_TEST, DEMO_N_TRAIN, DEMO_SEED
from amzkit.app.kaggle import DEFAULT_BUILD
from amzkit.app.kaggle_api import KaggleError
from amzkit.app.kaggle_runtime import describe_inputs
from amzkit.app.runners import run_demo
from amzkit.core.schema import SCHEMAS
from amzkit.core.workdir import KAGGLE_INPUT
from amzkit.stages.leaderboard import add_cli as _add_lb
from amzkit.stages.submit import validate_file


def _demo(args: argparse.Namespace) -> int:
    metrics = run_demo(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"demo CV SMAPE (04_ensemble, nested): {metrics['cv_smape']:.2f}   "
          f"constant-median baseline: {metrics['constant_median_smape']:.2f}")
    if "test_smape" in metrics:
        print(f"demo hidden-test SMAPE: {metrics['test_smape']:.2f}")
    print(f"validated submission: {metrics['path']}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    problems = validate_file(args.submission, args.test, args.schema)
    if problems:
        print(f"{args.submission}: INVALID", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    print(f"{args.submission}: valid for {args.test} ({args.schema})")
    return 0


def _kaggle(args: argparse.Namespace) -> int:
    try:
        if args.kaggle_command == "build":
            result = kaggle.build(args.out, owner=args.owner, params_file=args.params, cli_params=args.param,
                                  stages=_split(args.stages), prefix=args.prefix, data=args.data,
                                  competitions=args.competition, ship_deps=not args.no_deps)
            shipped = ", ".join(sorted(result.shipped.values())) or "nothing else (the image has every package)"
            print(f"wheel dataset {result.dataset_id}: {result.dataset_dir}\n  amzkit {result.version} "
                  f"({result.wheel.name})\n  shipped for Kaggle's image: {shipped}")
            for kernel in result.kernels:
                sources = ", ".join(kernel.kernel_sources) or "-"
                print(f"{kernel.stage:<13} {kernel.id:<45} {result.out / kernel.folder}  sources: {sources}")
            print(f"next: python -m amzkit kaggle push --build {result.out} --wait")
        elif args.kaggle_command == "push":
            results = kaggle_push.push(args.build, stages=_split(args.stages), dry_run=args.dry_run, wait=args.wait,
                                  poll_interval=args.poll_interval, timeout=args.timeout, message=args.message,
                                  skip_dataset=args.skip_dataset)
            for kernel_id, status in results.items():
                print(f"{kernel_id}: {status}")
        elif args.kaggle_command == "fetch":
            for folder in kaggle_push.fetch(args.stage, args.build, args.out, dry_run=args.dry_run):
                print(f"outputs: {folder}")
        else:
            print(describe_inputs(args.root))
    except (KaggleError, ValueError, FileNotFoundError) as err:
        print(f"amzkit kaggle {args.kaggle_command}: {err}", file=sys.stderr)
        return 1
    return 0


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _add_kaggle(sub) -> None:
    kaggle = sub.add_parser("kaggle", help="build, push and fetch the notebooks as Kaggle kernels")
    ksub = kaggle.add_subparsers(dest="kaggle_command", required=True)
    build = ksub.add_parser("build", help="one kernel folder per notebook (parameters baked in) + the wheel dataset")
    build.add_argument("--out", default=str(DEFAULT_BUILD), help=f"build folder (default {DEFAULT_BUILD})")
    build.add_argument("--owner", help="Kaggle user name (default: KAGGLE_USERNAME or ~/.kaggle/kaggle.json; "
                       "needed with an API token, which does not name its user)")
    build.add_argument("--data", action="append", default=[], metavar="OWNER/DATASET",
                       help="the Kaggle dataset holding train.csv and test.csv (repeatable; default: the template's "
                       "dataset_sources)")
    build.add_argument("--competition", action="append", default=[], metavar="SLUG",
                       help="a competition hosted on Kaggle whose data the kernels read (repeatable)")
    build.add_argument("--params", help="YAML/JSON file: {stage: {name: value}} or {stage: [{...}, {...}]}")
    build.add_argument("-p", "--param", action="append", default=[], metavar="STAGE.NAME=VALUE",
                       help="one parameter, e.g. -p 03_train.run_name=siglip (repeatable)")
    build.add_argument("--stages", help="comma-separated stages to build (default all)")
    build.add_argument("--prefix", default="amzkit", help="first word of the kernel titles (default amzkit; ASCII "
                       "letters, digits, spaces and -, at most 20)")
    build.add_argument("--no-deps", action="store_true",
                       help="ship only amzkit: a kernel needing a package Kaggle's image lacks is then refused "
                       "(by default they are downloaded with pip into the wheel dataset; needs PyPI)")
    build.add_argument("--with-deps", action="store_true", help=argparse.SUPPRESS)  # the default since 0.1
    push = ksub.add_parser("push", help="push the wheel dataset, then the kernels in stage order")
    push.add_argument("--build", default=str(DEFAULT_BUILD))
    push.add_argument("--stages", help="comma-separated stages to push (default all built)")
    push.add_argument("--dry-run", action="store_true", help="print the kaggle commands instead of running them")
    push.add_argument("--wait", action="store_true", help="poll each kernel until it ends before pushing the next")
    push.add_argument("--poll-interval", type=float, default=60.0, help="seconds between status polls (60)")
    push.add_argument("--timeout", type=float, default=12 * 3600.0, help="seconds to wait per kernel (12 h)")
    push.add_argument("--message", default="", help="dataset version message")
    push.add_argument("--skip-dataset", action="store_true", help="do not upload the wheel dataset again")
    fetch = ksub.add_parser("fetch", help="download a stage's kernel outputs (kaggle kernels output)")
    fetch.add_argument("stage", help="01_extract .. 05_submit (or 01 .. 05)")
    fetch.add_argument("--build", default=str(DEFAULT_BUILD))
    fetch.add_argument("--out", help="folder (default <build>/outputs)")
    fetch.add_argument("--dry-run", action="store_true")
    inputs = ksub.add_parser("inputs", help="on Kaggle: show what /kaggle/input holds and what amzkit finds there")
    inputs.add_argument("--root", default=str(KAGGLE_INPUT))
    kaggle.set_defaults(func=_kaggle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amzkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the five notebooks end to end on the embedded demo data")
    demo.add_argument("--out", default="runs/demo", help="work folder (default runs/demo)")
    demo.add_argument("--n-train", type=int, default=DEMO_N_TRAIN,
                      help=f"train rows of the generated competition (default {DEMO_N_TRAIN})")
    demo.add_argument("--n-test", type=int, default=DEMO_N_TEST,
                      help=f"test rows, scored against its hidden solution (default {DEMO_N_TEST})")
    demo.add_argument("--seed", type=int, default=DEMO_SEED,
                      help=f"seed of the generated products and pictures (default {DEMO_SEED})")
    demo.set_defaults(func=_demo)
    validate = sub.add_parser("validate", help="check a submission CSV against a test CSV")
    validate.add_argument("submission")
    validate.add_argument("--test", required=True)
    validate.add_argument("--schema", default="amazon2025", choices=sorted(SCHEMAS))
    validate.set_defaults(func=_validate)
    _add_kaggle(sub)

    _add_lb(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # bad input (a work folder, a row count): its message, not a traceback
        print(f"amzkit {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
