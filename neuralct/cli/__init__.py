"""The ``neuralct`` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import Sequence

from ..errors import NeuralCTError, first_line

__all__ = ["main", "build_parser", "in_flags", "out_of_memory_line"]

#: Subcommand modules, each with ``add_parser(subparsers)`` and ``run(args) -> int``.
SUBCOMMANDS = ("simulate", "train", "analyze", "export", "bias", "sample", "quickstart", "explore")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    from .options import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="neuralct",
        description=(
            "Slow collective variables from neural canonical transformations (symplectic flows on phase space)."
        ),
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"neuralct {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 only on success)."""
    from .options import apply_config, config_positionals

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    config_positionals(parser, argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed, one line), --help or --version
        return exc.code if isinstance(exc.code, int) else 2
    try:
        args = apply_config(parser, args, argv)
        return int(args.run(args) or 0)
    except NeuralCTError as exc:
        print(f"neuralct {args.command}: error: {in_flags(str(exc), parser, args.command)}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"neuralct {args.command}: error: {exc.strerror or exc}{where}; check the path, permissions and free space",
            file=sys.stderr,
        )
        return 1
    except (MemoryError, RuntimeError) as exc:
        # torch reports a failed allocation as a RuntimeError (CPU) or its OutOfMemoryError (CUDA).
        if not isinstance(exc, MemoryError) and not _out_of_memory(exc):
            raise
        print(f"neuralct {args.command}: error: {out_of_memory_line(exc, parser, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from ..md.interrupt import InterruptedBeforeCheckpoint

        if isinstance(exc, InterruptedBeforeCheckpoint):
            print(
                f"neuralct {args.command}: interrupted during {exc}, before its first checkpoint; rerun the same "
                "command to start again",
                file=sys.stderr,
            )
        else:
            print(f"neuralct {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


#: Library settings named otherwise than the option that sets them: setting -> option's argument name.
_SETTING_OPTIONS = {
    "n_cvs": "cvs",
    "data_topology": "top",
    "data_frame_ps": "frame_ps",
    "frozen_bias_from": "frozen_bias",
    "continued_bias_from": "continue_bias",
}


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Each option of ``command`` by its argument name (``lag_ps``) -> its flag (``--lag-ps``), and by the name of
    the library setting it sets where that differs (``n_cvs`` -> ``--cvs``)."""
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    flags = {
        action.dest: next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        for action in subparsers.choices[command]._actions
        if action.option_strings
    }
    return flags | {setting: flags[dest] for setting, dest in _SETTING_OPTIONS.items() if dest in flags}


def in_flags(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """A library error in the command line's words: each argument named as `` `name` `` becomes its flag.

    The library names its arguments as Python sees them (`` `lag_ps` 0.3 is not a whole number of
    frames``); the command line says ``--lag-ps 0.3 is not ...``. A backquoted word that is no
    option of ``command`` is left as it is.
    """
    flags = _flags(parser, command)
    return re.sub(r"`(\w+)`", lambda match: flags.get(match[1], match[0]), message)


#: Options whose values scale the memory of a run, by argument name; an allocation that failed names those of the
#: command.
MEMORY_OPTIONS = ("batch_size", "hidden", "samples", "chains")


def out_of_memory_line(exc: BaseException, parser: argparse.ArgumentParser, command: str) -> str:
    """The one-line error for an allocation that failed, naming the options of ``command`` that reduce the run."""
    flags = _flags(parser, command)
    reducible = [flags[name] for name in MEMORY_OPTIONS if name in flags]
    options = f" ({', '.join(reducible)})" if reducible else ""
    return f"ran out of memory ({first_line(exc)[:160]}); reduce the sizes of the run{options}"


def _out_of_memory(exc: RuntimeError) -> bool:
    """Whether torch raised ``exc`` for an allocation that failed."""
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()
