#!/usr/bin/env python
"""LruNet NAS: the command line.

    python launch.py --space lru_full [options]      run a search (see `python launch.py --help`)
    python launch.py --replay TABLE [options]        replay a recorded learning-curve table
    python launch.py COMMAND ...                      describe, train, spaces, check-space, pareto,
                                                      export, reproduce, record, ui,
                                                      import-reference

Errors a user can cause (a typo in a YAML file, an impossible architecture, a missing dataset, an
unreachable tracking server) print one line and exit with code 2, before any compute is spent.
Set LRUNET_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> module with `add_arguments(parser)` and `run(args) -> int`; imported only when used,
# so `describe` or `check-space` never pay for importing Ray or MLflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("experiments.cli_search", "run a Ray Tune search over a search space (default)"),
    "describe": (
        "lrunet.cli",
        "print params, conv params, MACs, MFLOPs (and measured latency) of an architecture",
    ),
    "import-reference": ("lrunet.cli_import", "convert an authors' checkpoint to this project"),
    "spaces": ("search_spaces.cli", "list the shipped search spaces"),
    "check-space": ("search_spaces.cli", "validate a search-space file and summarise it"),
    "train": ("trainables.cli", "train one architecture without Ray"),
    "record": ("experiments.cli_record", "a finished grid search's learning curves as a table"),
    "pareto": ("experiments.cli_pareto", "recompute and print an experiment's Pareto front"),
    "export": ("experiments.cli_export", "export winners as standalone TorchScript/ONNX models"),
    "reproduce": ("experiments.cli_reproduce", "train a paper's table, print it beside the paper"),
    "ui": (
        "experiments.cli_ui",
        "start the MLflow UI on a store, print the newest front's URL",
    ),
}

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ConnectionError,
    TimeoutError,
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the usage block first), still exit 2."""

    def error(self, message: str):
        help_cmd = "launch.py --help" if self.prog == "launch.py" else f"{self.prog} --help"
        self.exit(2, f"{self.prog}: error: {message} (see 'python {help_cmd}')\n")


def get_args_parser(command: str):
    module = importlib.import_module(COMMANDS[command][0])
    prog = "launch.py" if command == "search" else f"launch.py {command}"
    parser = _Parser(prog=prog, description=COMMANDS[command][1])
    module.add_arguments(parser, command) if _takes_command(module) else module.add_arguments(
        parser
    )
    return parser, module


def _takes_command(module) -> bool:
    import inspect

    return len(inspect.signature(module.add_arguments).parameters) > 1


def _usage() -> str:
    lines = [__doc__.strip().split("\n\n")[0], "", "commands:"]
    lines += [f"  {name:<17} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(_usage())
        print("\nsearch options: python launch.py search --help")
        return 0
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(
            f"launch.py: error: unknown command {argv[0]!r}; choose one of "
            f"{', '.join(COMMANDS)}, or run a search with 'python launch.py --space NAME'",
            file=sys.stderr,
        )
        return 2
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "search"
    parser, module = get_args_parser(command)
    args = parser.parse_args(argv)
    args.command = command
    args.argv = ["launch.py"] + list(sys.argv[1:] if argv is None else argv)
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("LRUNET_DEBUG"):
            raise
        msg = (
            str(e)
            if not isinstance(e, OSError) or not e.filename
            else f"{e.strerror}: {e.filename}"
        )
        print(f"launch.py {command}: error: {msg}".replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"launch.py {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
