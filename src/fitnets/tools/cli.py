"""The ``fitnets`` command line: one module per command in ``fitnets.tools.commands``, each holding its parser
beside its body; this module builds the top-level parser from them, sets up logging and dispatches.

Options of a run come from the typed config (``fitnets.training.config``): defaults, then ``--config FILE``
(YAML or TOML), then ``--set KEY=VALUE`` and the named flags. Every user mistake ends in one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from fitnets.errors import FitNetsError
from fitnets.tools.commands import (
    bench,
    demo,
    diagnose,
    evaluate,
    export,
    frontier,
    layers,
    models,
    report,
    run,
    store,
    suggest,
)

# In the order `fitnets --help` lists them; each has add_parser(sub), which sets its handler as `func`.
COMMANDS = (run, evaluate, diagnose, layers, suggest, frontier, export, report, bench, store, models, demo)


class _TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record):
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitnets", description="FitNets: hint-based knowledge distillation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


# Flags whose value may be left out (`--fast` = `--fast=tune`, `--fast=retune`), with the values they accept, the
# first being the flag's meaning alone. argparse would take any next word as the value, so `fitnets run --fast
# FILE` read FILE as --fast's value; a bare flag is bound to its first value before parsing instead.
OPTIONAL_VALUES = {"--fast": ("tune", "retune")}


def bind_optional_values(argv: list[str]) -> list[str]:
    """``argv`` with each flag of ``OPTIONAL_VALUES`` not followed by one of its values written ``--flag=value``."""
    bound = []
    for i, word in enumerate(argv):
        if word == "--":  # the rest are positionals
            return bound + argv[i:]
        values = OPTIONAL_VALUES.get(word)
        if values and (i + 1 == len(argv) or argv[i + 1] not in values):
            word = f"{word}={values[0]}"
        bound.append(word)
    return bound


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # the run saves nothing half-written and prints how to resume, as for Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(bind_optional_values(sys.argv[1:] if argv is None else list(argv)))
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler], force=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)  # a polite stop (kill, a scheduler's preemption) ends like Ctrl-C
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (`fitnets layers ... | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except FitNetsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:  # torch.compile's own failures (no C++ compiler, an unsupported op): one line
        if not type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        cause = getattr(err, "inner_exception", None) or err  # BackendCompilerFailed wraps the backend's error
        first = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
        print(f"error: torch.compile failed: {type(cause).__name__}: {first} — run without --compile", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
