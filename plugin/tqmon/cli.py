"""The `tqmon` command: collect once to stdout (Telegraf exec), to a textfile, or in a loop.

Exit status: 0 whenever metrics were produced, partial ones included (Telegraf drops the whole
output of a failing command); 2 and one line on stderr for a usage or config error; 1 and one
line if the output cannot be written (stdout closed, or its reader gone: a broken pipe).
Never a traceback (set TQMON_DEBUG=1 to see one).
`tqmon status` and `tqmon doctor` (the first word only) are for a person at a terminal: see
terminal.py.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from . import catalog, exposition
from .config import Config, ConfigError, load
from .model import Samples
from .redaction import Redact as _Redact
from .redaction import internal_error
from .run import collect_once
from .stdio import OutputClosed, output_lost
from .termsafe import CleanLog, clean

log = logging.getLogger("tqmon")
SUBCOMMANDS = ("status", "doctor")  # `tqmon status ...`, `tqmon doctor ...`: see terminal.py


def _setup_logging(config: Config | None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tqmon: %(message)s"))
    handler.addFilter(_Redact(config.secrets if config else None))
    handler.addFilter(CleanLog())  # after redaction: names from Redis never act on a terminal
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """One pass allocates a few tuples per worker and drops them all at its end: the cyclic
    collector's repeated sweeps over them cost ~40% of a 100,000-worker collection. Reference
    counting still frees everything; nothing here builds cycles that would need the GC."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _produce(config: Config) -> Iterator[bytes]:
    return exposition.render_chunks(catalog.default(), collect_once(config), config.format)


def _loop(config: Config) -> int:
    """Rewrite the textfile every --interval seconds until SIGTERM or SIGINT."""
    assert config.textfile is not None and config.interval is not None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Only set a flag: a write in progress completes, so the file in place stays whole.
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        started = time.monotonic()
        with _no_cyclic_gc():
            exposition.write_atomic(config.textfile, _produce(config))
        stop.wait(max(0.0, config.interval - (time.monotonic() - started)))
    return 0


def _listen(config: Config) -> int:
    """--listen: a collection per scrape (shared by concurrent scrapes) until SIGTERM."""
    from . import serve, webconfig  # only for --listen: asyncio and HTTP stay out of exec runs

    web = webconfig.load(config.web_config_file) if config.web_config_file else None

    def collect() -> Samples:
        with _no_cyclic_gc():
            return collect_once(config)

    def render(samples: Samples, fmt: str) -> bytes:
        return b"".join(exposition.render_chunks(catalog.default(), samples, fmt))

    host, port = config.listen or ("", 0)
    server = serve.MetricsServer(collect, render, config.format, web)
    bound: list[object] = []
    try:
        serve.serve_forever(server, host, port, web or webconfig.WebConfig(), bound.extend)
    except OSError as exc:
        if bound:
            raise
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:  # only the first word: every flag keeps its meaning
        from . import terminal  # the person-facing commands stay out of exec runs

        return terminal.main(args[0], args[1:])
    config: Config | None = None
    try:
        config = load(args)
        _setup_logging(config)
        for warning in config.warnings:
            log.warning(warning)
        if config.interval is not None:
            return _loop(config)
        if config.listen is not None:
            return _listen(config)
        if config.textfile is None and sys.stdout is None:  # started with fd 1 closed
            raise OutputClosed
        with _no_cyclic_gc():
            data = _produce(config)
            if config.textfile is not None:
                exposition.write_atomic(config.textfile, data)
            else:
                for chunk in data:
                    sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        return 0
    except ConfigError as exc:
        print(clean(f"tqmon: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, OutputClosed) as exc:  # e.g. `tqmon | head -1`, `tqmon >&-`
        return output_lost("tqmon", exc)
    except OSError as exc:
        print(clean(f"tqmon: error: cannot write output: {exc.strerror or exc}"), file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get("TQMON_DEBUG"):
            raise
        line = internal_error("tqmon", exc, config.secrets if config else None)
        print(clean(line), file=sys.stderr)  # redacted
        return 1


def console() -> None:
    """The `tqmon` command: main(), then exit at once. The answer is written and flushed by
    then; the interpreter's own teardown (modules, the collection's objects) would add ~35 ms
    to every run of an exec plugin that runs every few seconds (make bench)."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError, AttributeError):  # reader left, stream closed or none
        pass
    os._exit(code)
