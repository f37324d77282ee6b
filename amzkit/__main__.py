"""Command line: `python -m amzkit demo` and `python -m amzkit validate`."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from amzkit.pipeline import run_demo

    metrics = run_demo(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"demo CV SMAPE (nested blend): {metrics['cv_smape']:.2f}   "
          f"constant-median baseline: {metrics['constant_median_smape']:.2f}")
    if "test_smape" in metrics:
        print(f"demo hidden-test SMAPE: {metrics['test_smape']:.2f}")
    print(f"validated submission: {metrics['path']}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from amzkit.submit import validate_file

    problems = validate_file(args.submission, args.test, args.schema)
    if problems:
        print(f"{args.submission}: INVALID", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    print(f"{args.submission}: valid for {args.test} ({args.schema})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from amzkit.schema import SCHEMAS

    parser = argparse.ArgumentParser(prog="amzkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the five notebooks end to end on the embedded demo data")
    demo.add_argument("--out", default="runs/demo", help="work folder (default runs/demo)")
    demo.add_argument("--n-train", type=int, default=600)
    demo.add_argument("--n-test", type=int, default=200)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    validate = sub.add_parser("validate", help="check a submission CSV against a test CSV")
    validate.add_argument("submission")
    validate.add_argument("--test", required=True)
    validate.add_argument("--schema", default="amazon2025", choices=sorted(SCHEMAS))
    validate.set_defaults(func=_validate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
