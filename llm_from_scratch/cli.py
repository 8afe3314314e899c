"""The ``llm-scratch`` command line.

    llm-scratch exercises list                 every exercise, by chapter
    llm-scratch exercises start NAME [--dir D] write a stub to D/NAME.py (never overwrites)
    llm-scratch exercises check NAME [--dir D] import D/NAME.py, run the checks, exit 1 on failure

The learner's folder is ``./exercises`` unless ``--dir`` or the ``LLM_SCRATCH_EXERCISES``
environment variable says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from llm_from_scratch import exercises


def _exercise_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("LLM_SCRATCH_EXERCISES", "exercises"))


def _cmd_list(args) -> int:
    chapter = None
    for ex in exercises.all_exercises():
        if ex.chapter != chapter:
            chapter = ex.chapter
            print(f"chapter {chapter}")
        print(f"  {ex.name:<28} {ex.title}")
    return 0


def _get(name: str):
    try:
        return exercises.get(name)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return None


def _cmd_start(args) -> int:
    ex = _get(args.name)
    if ex is None:
        return 2
    folder = _exercise_dir(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ex.name}.py"
    if path.exists():
        print(f"{path} already exists; leaving your work as it is. "
              f"Check it with: llm-scratch exercises check {ex.name}")
        return 0
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(exercises.stub_source(ex.name), encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}: fill in {ex.name}(), then run: llm-scratch exercises check {ex.name}")
    return 0


def _cmd_check(args) -> int:
    ex = _get(args.name)
    if ex is None:
        return 2
    path = _exercise_dir(args.dir) / f"{ex.name}.py"
    if not path.exists():
        print(f"error: {path} does not exist; create it with: llm-scratch exercises start {ex.name}",
              file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"_exercise_{ex.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        print(f"error: importing {path} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    fn = getattr(module, ex.name, None)
    if fn is None:
        print(f"error: {path} defines no function named {ex.name}", file=sys.stderr)
        return 1
    report = ex.run(fn)
    print(report)
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-scratch", description="llm-from-scratch command line")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("exercises", help="list, start and check the course exercises")
    ex_sub = ex.add_subparsers(dest="action", required=True)
    ex_sub.add_parser("list", help="list every exercise").set_defaults(func=_cmd_list)
    for action, func, text in (("start", _cmd_start, "write a stub file to fill in"),
                               ("check", _cmd_check, "check your solution")):
        p = ex_sub.add_parser(action, help=text)
        p.add_argument("name", help="exercise name (see: llm-scratch exercises list)")
        p.add_argument("--dir", help="your exercises folder (default ./exercises or $LLM_SCRATCH_EXERCISES)")
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
