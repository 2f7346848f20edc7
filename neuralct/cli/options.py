"""Options every subcommand shares (--config, --device, --seed, --output, --overwrite) and the checked option types.

Every numeric option of every command uses one of the types here, and so does every value of
a ``--config`` YAML file (:func:`apply_config` passes it through the option's type and
choices), so a bad value is one line naming the option, whichever way it came.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import yaml

from ..errors import NeuralCTError, first_line
from ..io import atomic_write_text

__all__ = [
    "add_common_options",
    "add_preset",
    "apply_config",
    "save_resolved_config",
    "OneLineArgumentParser",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "fraction",
    "positive_fraction",
    "device_option",
    "NUMERIC_TYPES",
    "result_settings",
    "print_warning",
]

_NOT_CONFIGURABLE = {"config", "command", "run", "help"}
#: Options that change where or how visibly a run works, never what it computes.
_NOT_RESULTS = _NOT_CONFIGURABLE | {"device", "output", "overwrite", "no_progress"}


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2), like every other error.

    Attributes
    ----------
    presets : dict
        Flags that set other options (:func:`add_preset`): the flag's argument name -> {argument name: value}.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.presets: dict[str, dict[str, Any]] = {}

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _number(text: Any, kind: type, what: str, accept: Callable[[float], bool]) -> Any:
    """``text`` read as ``kind`` and checked by ``accept``; else an ArgumentTypeError saying ``what`` it must be."""
    try:
        if isinstance(text, bool):
            raise ValueError
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    return _number(text, int, "a positive integer", lambda value: value > 0)


def positive_int_or_auto(text: str) -> int | str:
    """An integer >= 1, or ``auto`` (argparse type)."""
    if text == "auto":
        return text
    return _number(text, int, "a positive integer or auto", lambda value: value > 0)


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    return _number(text, int, "an integer >= 0", lambda value: value >= 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    return _number(text, float, "a finite number > 0", lambda value: value > 0)


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (argparse type)."""
    return _number(text, float, "a finite number >= 0", lambda value: value >= 0)


def fraction(text: str) -> float:
    """A share of a whole: a number >= 0 and < 1 (argparse type)."""
    return _number(text, float, "a number >= 0 and < 1", lambda value: 0 <= value < 1)


def positive_fraction(text: str) -> float:
    """A share of a whole that is not empty: a number > 0 and < 1 (argparse type)."""
    return _number(text, float, "a number > 0 and < 1", lambda value: 0 < value < 1)


#: The checked numeric option types; a numeric option of any command uses one of them.
NUMERIC_TYPES = (positive_int, nonnegative_int, positive_float, nonnegative_float, fraction, positive_fraction)


def device_option(cpu_only: str | None = None, *, torch_cuda: bool = True) -> Callable[[str], str]:
    """The argparse type of ``--device``: one check of the name, and of CUDA, for every command.

    Parameters
    ----------
    cpu_only : str, optional
        Why the command runs on the CPU whatever the device (then only ``auto`` and ``cpu`` are
        accepted, and this reason is given for ``cuda``).
    torch_cuda : bool
        Whether ``cuda`` means a torch CUDA device, checked here; otherwise the command checks the
        CUDA it uses (OpenMM's platform for ``simulate``).
    """

    def device(text: str) -> str:
        text = str(text)
        if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", text):
            raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
        if text.startswith("cuda"):
            if cpu_only:
                raise argparse.ArgumentTypeError(f"must be auto or cpu, got {text!r}: {cpu_only}")
            if torch_cuda:
                import torch

                if not torch.cuda.is_available():
                    raise argparse.ArgumentTypeError(
                        f"{text!r} asked for, but torch sees no CUDA GPU here; use auto or cpu"
                    )
                index = int(text.partition(":")[2] or 0)
                if index >= torch.cuda.device_count():
                    raise argparse.ArgumentTypeError(
                        f"{text!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)"
                    )
        return text

    device.__name__ = "device"
    return device


def add_common_options(
    parser: argparse.ArgumentParser, *, output_default: str, cpu_only: str | None = None, torch_cuda: bool = True
) -> None:
    """Add ``--config``, ``--device``, ``--seed``, ``--output`` and ``--overwrite`` to a subcommand parser.

    ``cpu_only`` and ``torch_cuda`` are those of :func:`device_option`.
    """
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--config",
        metavar="YAML",
        help=(
            "YAML file of option values (keys as the long option names with '_'); command-line options win; "
            "unknown keys are an error"
        ),
    )
    group.add_argument(
        "--device",
        type=device_option(cpu_only, torch_cuda=torch_cuda),
        default="auto",
        help="auto, cpu or cuda"
        + (f" (only auto and cpu: {cpu_only})" if cpu_only else "")
        + " (default: %(default)s)",
    )
    group.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default: %(default)s)")
    group.add_argument("--output", "-o", default=output_default, help="output folder (default: %(default)s)")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "replace what an earlier neuralct run left in --output (otherwise a rerun with the same options "
            "resumes it and one with other options is refused)"
        ),
    )


def add_preset(parser: OneLineArgumentParser, flag: str, values: dict[str, Any], purpose: str) -> None:
    """Add a flag that sets several other options at once, each only where neither the command line nor ``--config``
    gives it (:func:`apply_config` applies it).

    Parameters
    ----------
    parser : OneLineArgumentParser
        A subcommand's parser that has every option named in ``values``.
    flag : str
        The flag, e.g. ``"--for-sampling"``.
    values : dict
        Argument name (``"selection"``) -> the value the flag gives it, as the option's type returns it.
    purpose : str
        What the flag is for, the start of its help.
    """
    flags = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    unknown = sorted(set(values) - set(flags))
    if unknown:
        raise ValueError(f"{flag} sets options the parser does not have: {', '.join(unknown)}")
    shown = " ".join(f"{flags[name]} {value}" for name, value in values.items())
    action = parser.add_argument(
        flag,
        action="store_true",
        help=f"{purpose}: sets {shown} (options given on the command line or in --config win)",
    )
    parser.presets[action.dest] = dict(values)


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)


def config_positionals(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Let the inputs that a ``--config`` file names (MODEL, TRAJ, SYSTEM) be left off the command line.

    Every run saves its options, inputs included, as ``config.yaml``: ``neuralct COMMAND --config
    RUN/config.yaml --output NEW`` replays it. A positional the file gives becomes optional with
    the file's value as its default; one given on the command line wins, as every option does. A
    file that cannot be read is left to :func:`apply_config`, which says what is wrong with it.
    """
    words = list(argv)
    if not words or words[0] not in _subcommands(parser):
        return
    path = next(
        (
            word.split("=", 1)[1] if word.startswith("--config=") else words[i + 1]
            for i, word in enumerate(words)
            if word.startswith("--config=") or (word == "--config" and i + 1 < len(words))
        ),
        None,
    )
    if path is None:
        return
    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    if not isinstance(values, dict):
        return
    for action in _subparser(parser, words[0])._actions:
        if action.option_strings or values.get(action.dest) is None:
            continue
        try:
            default = _config_value(action, values[action.dest], "")
        except NeuralCTError:
            continue
        action.nargs = {None: "?", "+": "*"}.get(action.nargs, action.nargs)
        action.default = default


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices
    }


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> argparse.Namespace:
    """Merge a ``--config`` YAML file, and the options set by a preset flag (:func:`add_preset`), under the
    command-line options.

    Keys must name options of the subcommand; values given on the command line win over the file,
    and the file's over a preset's. Each value of the file goes through its option's type and
    choices, as a command-line value would.

    Raises
    ------
    NeuralCTError
        If the file is missing, is not a YAML mapping, has unknown keys or a bad value.
    """
    sub = _subparser(parser, args.command)
    values = _config_values(sub, args)
    presets = {}
    for flag, preset in getattr(sub, "presets", {}).items():
        if getattr(args, flag) or values.get(flag):
            presets.update(preset)
    if not values and not presets:
        return args
    sub.set_defaults(**{**presets, **values})
    return parser.parse_args(list(argv))


def _config_values(sub: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The option values of the ``--config`` file of ``args`` (empty without one), checked as on the command line."""
    if not getattr(args, "config", None):
        return {}
    path = Path(args.config)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NeuralCTError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise NeuralCTError(f"config file {path} is not valid YAML: {first_line(exc)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise NeuralCTError(f"config file {path} must hold a mapping of option: value")
    known = {action.dest for action in sub._actions} - _NOT_CONFIGURABLE
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise NeuralCTError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    actions = {action.dest: action for action in sub._actions}
    return {key: _config_value(actions[key], value, f"config file {path}: {key}") for key, value in values.items()}


def _config_value(action: argparse.Action, value: Any, where: str) -> Any:
    """A config file's ``value`` for ``action``, converted and checked as on the command line."""
    if action.nargs == 0:  # a flag such as --no-progress
        if not isinstance(value, bool):
            raise NeuralCTError(f"{where}: must be true or false, got {value!r}")
        return value
    if value is None and action.default is None:
        return None
    many = isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+")
    if many:
        items = value if isinstance(value, list) else [value]
        return [_config_item(action, item, where) for item in items]
    return _config_item(action, value, where)


def _config_item(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (bool, list, dict)) or value is None:
        raise NeuralCTError(
            f"{where}: must be a single {'number' if action.type in NUMERIC_TYPES else 'value'}, got {value!r}"
        )
    text = str(value)
    try:
        converted = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise NeuralCTError(f"{where}: {first_line(exc)}") from None
    if action.choices is not None and converted not in action.choices:
        raise NeuralCTError(f"{where}: must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def result_settings(args: argparse.Namespace, *, ignore: Sequence[str] = ()) -> dict[str, Any]:
    """The options of ``args`` that change a result: a run's settings for :class:`neuralct.cli.runs.RunFolder`.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of one command.
    ignore : sequence of str
        Further option names to leave out: input files (identified by content instead) and
        options that do not change the output (checkpoint intervals, thread counts).
    """
    skip = _NOT_RESULTS | set(ignore)
    return {key: _by_name(value) for key, value in vars(args).items() if key not in skip}


def _by_name(value: Any) -> Any:
    """An option's value for a run's identity: an existing file or folder (alone or in a list) by its name only,
    since the run lists its input files by content (a folder by the files of it that it reads), so that a copy of
    them at another path is the same run."""
    if isinstance(value, list):
        return [_by_name(item) for item in value]
    if isinstance(value, (str, Path)) and _exists(value):
        return Path(value).name
    return str(value) if isinstance(value, Path) else value


def _exists(value: str | Path) -> bool:
    """Whether ``value`` names an existing file or folder (not for a text no path can be: too long, a NUL)."""
    try:
        return Path(value).exists()
    except (OSError, ValueError):
        return False


def save_resolved_config(args: argparse.Namespace, folder: Path) -> None:
    """Write every option value of this run to ``folder/config.yaml`` (reusable as ``--config``)."""
    resolved = {key: value for key, value in vars(args).items() if key not in _NOT_CONFIGURABLE | {"overwrite"}}
    resolved = {key: (str(value) if isinstance(value, Path) else value) for key, value in resolved.items()}
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(resolved, sort_keys=True))


def print_warning(text: str) -> None:
    """Print a one-line warning on stderr (the run goes on)."""
    print(f"warning: {text}", file=sys.stderr)
