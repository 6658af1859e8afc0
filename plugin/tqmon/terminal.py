"""`tqmon status` and `tqmon doctor`: the commands for a person at a terminal.

They take every connection and schema flag, the environment and the config file exactly as the
exec plugin does (config.load), plus a few flags of their own, parsed here first so that the
plugin's parser never sees them. What differs from the exec plugin is who reads the output: a
person (or a script, with --json), so warnings are shown in the output instead of on stderr,
colours and symbols are used on a terminal only, and the exit status says whether anything was
reached (status) or whether anything is wrong (doctor), not whether metrics were printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .config import Config, ConfigError, load
from .redaction import internal_error
from .screen import Captured
from .stdio import OutputClosed, output_lost
from .termsafe import clean

# Options that only make sense for the exec plugin: refused, so nobody waits for a textfile.
EXEC_ONLY = ("textfile", "interval", "listen", "web_config_file")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ConfigError(message)


def _own_parser(command: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"tqmon {command}", add_help=False, allow_abbrev=False)
    if command == "status":
        p.add_argument("--watch", metavar="SECONDS", type=float)
        p.add_argument("--json", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


USAGE = {
    "status": "usage: tqmon status [--watch SECONDS] [--json] [tqmon's connection and schema "
              "flags]\n\nOne collection, shown for a person: Redis nodes, workers, queues and "
              "tqmon's collectors.\n  --watch SECONDS  redraw every SECONDS until Ctrl-C\n"
              "  --json           print one JSON document (see docs/operations.md)\n"
              "Exit 0 when something was reached, 1 when nothing was, 2 for a usage error.\n",
    "doctor": "usage: tqmon doctor [tqmon's connection and schema flags]\n\nChecks the set-up "
              "one finding a line (ok / warning / problem) and says how to fix what is wrong.\n"
              "Exit 0 when nothing is a problem, 1 otherwise, 2 for a usage error.\n",
}


def parse(command: str, argv: Sequence[str]) -> tuple[argparse.Namespace, Config | None]:
    """Split off the subcommand's own flags; the rest is tqmon's configuration."""
    own, rest = _own_parser(command).parse_known_args(list(argv))
    if own.help:
        return own, None
    config = load(rest)
    for key in EXEC_ONLY:
        if getattr(config, key) is not None:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} is for the exec plugin; tqmon {command} prints to the "
                              "terminal")
    watch = getattr(own, "watch", None)
    if watch is not None and not 0.1 <= watch <= 86400:
        raise ConfigError("--watch takes a number of seconds from 0.1 to 86400")
    return own, config


def main(command: str, argv: Sequence[str]) -> int:
    config: Config | None = None
    try:
        own, config = parse(command, argv)
        if config is None:
            sys.stdout.write(USAGE[command])
            return 0
        if sys.stdout is None:  # started with fd 1 closed
            raise OutputClosed
        captured = Captured(config.secrets)
        root = logging.getLogger()
        root.handlers[:] = [captured]
        root.setLevel(logging.WARNING)
        if command == "status":
            from . import status

            return status.main(config, own.watch, own.json, captured)
        from . import doctor

        return doctor.main(config, captured)
    except ConfigError as exc:
        print(clean(f"tqmon {command}: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, OutputClosed) as exc:
        return output_lost(f"tqmon {command}", exc)
    except Exception as exc:
        if os.environ.get("TQMON_DEBUG"):
            raise
        line = internal_error(f"tqmon {command}", exc, config.secrets if config else None)
        print(clean(line), file=sys.stderr)  # redacted
        return 1
