"""The ``curate`` command line: a thin layer over the stage functions.

Commands are loaded lazily from ``COMMANDS`` (name -> "module:attribute"), so ``curate --help`` is
fast and a new command is one line here plus its own module under ``curate/commands/``.
"""

from __future__ import annotations

import errno
import importlib
import os
import re
import sys

# OpenBLAS, numpy's and scipy's (numba loads scipy's to check for BLAS), starts a thread per core for
# each library, which spins at start (~0.2 s of CPU in a 1M-row ingest); curate does no BLAS work
# worth them. Set before numpy is imported; the user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402

from curate import __version__  # noqa: E402
from curate.errors import EXIT_BUG, EXIT_ENV, EXIT_INTERRUPTED, EXIT_USER, UserError  # noqa: E402

COMMANDS: dict[str, str] = {
    "ingest": "curate.commands.ingest:ingest",
    "info": "curate.commands.info:info",
    "export": "curate.commands.export:export",
    "clean": "curate.commands.clean:clean",
    "restore": "curate.commands.restore:restore",
    "decontaminate": "curate.commands.decontaminate:decontaminate",
    "schemas": "curate.commands.info:schemas_cmd",
    "lang": "curate.commands.lang:lang",
    "seeds": "curate.commands.seeds:seeds",
    "generate": "curate.commands.generate:generate",
    "tokens": "curate.commands.tokens:tokens",
    "report": "curate.commands.report:report",
    "translate": "curate.commands.translate:translate",
    "localize": "curate.commands.translate:localize",
    "push": "curate.commands.label:push",
    "pull": "curate.commands.label:pull",
    "reflect": "curate.commands.reflect:reflect",
    "judge": "curate.commands.judge:judge",
    "batch": "curate.commands.batch:batch",
    "argilla": "curate.commands.argilla:argilla",
}


INT64 = 2**63


def bounded_numbers(command: click.Command) -> click.Command:
    """Every number option of ``command`` (and of its subcommands) also refuses what no setting
    means: nan or infinity for a float, an integer outside 64 bits (sqlite, numpy and Arrow take no
    more). Each such parameter gets its own copy of its type (click.INT is shared). Idempotent."""
    for param in command.params:
        t = param.type
        if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)) and not getattr(t, "curate_bounded", False):
            param.type = _bounded(t)
    for sub in getattr(command, "commands", {}).values():
        bounded_numbers(sub)
    return command


def _bounded(t: click.ParamType) -> click.ParamType:
    import copy
    import math

    bounded = copy.copy(t)
    convert = t.convert

    def check(value, param, ctx):
        v = convert(value, param, ctx)
        if isinstance(v, float) and not math.isfinite(v):
            bounded.fail(f"{value!r} is not a finite number.", param, ctx)
        if isinstance(v, int) and not -INT64 <= v < INT64:
            bounded.fail(f"{value!r} is too large.", param, ctx)
        return v

    bounded.convert = check
    bounded.curate_bounded = True
    return bounded


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (see Click's docs on lazy loading)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def resolve_command(self, ctx, args):
        ctx.meta["curate.args"] = list(args)  # the command line, to name a damaged input file in an error
        if args and not ctx.resilient_parsing:
            from curate.commands.early import EARLY  # before the command's modules are imported

            if args[0] in EARLY:
                EARLY[args[0]](list(args[1:]))
        return super().resolve_command(ctx, args)

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return bounded_numbers(getattr(importlib.import_module(module), attr))
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UserError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Nothing was published: the output directory holds its previous complete "
                       "result (or does not exist). To finish, run the same command again to resume: LLM replies "
                       "already received come from the cache (not paid again); reading and cleaning start over.",
                       err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a message, not a traceback
            if _debug(ctx):
                raise
            message, code = describe(exc, ctx.meta.get("curate.args", ()))
            _fail(message, code)
        except BaseException as exc:
            # a panic in polars' Rust code (pyo3's PanicException is a BaseException): a damaged
            # Parquet input can cause one; anything else is a bug, reported as one
            if type(exc).__name__ != "PanicException" or _debug(ctx):
                raise
            message, code = describe(exc, ctx.meta.get("curate.args", ()))
            _fail(message, code)


def _debug(ctx) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or bool(os.environ.get("CURATE_DEBUG"))


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def describe(exc: BaseException, args: "list[str] | tuple" = ()) -> tuple[str, int]:
    """One line for an exception that escaped a command, and the exit code (``args``: the command
    line, where a damaged input is looked for)."""
    from curate.io.tables import find_corrupt_parquet, is_corrupt_parquet_error

    damaged = is_corrupt_parquet_error(exc)
    if damaged or type(exc).__name__ == "PanicException":
        bad = find_corrupt_parquet(a for a in args if not a.startswith("-") and os.path.exists(a))
        if bad or damaged:
            text = str(exc).strip().splitlines()[0][:200] if damaged else "it does not decode"
            where = f"{bad}: a damaged Parquet file" if bad else "a Parquet input is damaged"
            return (f"{where} ({text}); nothing was published. Re-create it (re-run the stage that wrote it) "
                    "or copy it again from where it came."), EXIT_USER
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        code = exc.errno
        if code is None:  # polars raises OSError("No space left on device (os error 28)") without an errno
            found = re.search(r"\(os error (\d+)\)", str(exc))
            code = int(found.group(1)) if found else None
        if code == errno.ENOSPC:
            return (f"{where}no space left on the device. Nothing was published (the previous output is "
                    "unchanged); free some space and re-run."), EXIT_ENV
        if code == errno.EFBIG:
            return (f"{where}file too large for this file system or limit. Nothing was published; "
                    "choose another -o."), EXIT_ENV
        if code == errno.EROFS:
            return f"{where}read-only file system; choose an -o on a writable disk.", EXIT_USER
        if code in (errno.EACCES, errno.EPERM):
            return f"{where}permission denied; choose a path you can write to.", EXIT_USER
        if code == errno.ENOENT:
            return f"{where}no such file or directory.", EXIT_USER
        return f"{where}{exc.strerror or exc}.", EXIT_ENV
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    if "no space left" in low:
        return "no space left on the device. Nothing was published; free some space and re-run.", EXIT_ENV
    if "file too large" in low:
        return "file too large for this file system or limit. Nothing was published.", EXIT_ENV
    if "read-only file system" in low:
        return "read-only file system; choose an -o on a writable disk.", EXIT_USER
    if "permission denied" in low:
        return f"permission denied ({text[:200]}); choose a path you can write to.", EXIT_USER
    if isinstance(exc, MemoryError):
        return "out of memory; process the input in smaller files.", EXIT_ENV
    return (f"internal error ({type(exc).__name__}: {text[:300]}). This is a bug in curate; please report it "
            "with the output of `curate --debug ...`."), EXIT_BUG


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"],
                                                              "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error.")
@click.option("--input-format", metavar="FORMAT", default=None,
              help="Source format of raw input files for any command (auto-detected from content by default; "
                   "`curate ingest --list-formats`).")
@click.option("--compression", type=click.Choice(["none", "lz4", "zstd"]), envvar="CURATE_COMPRESSION",
              show_envvar=True, default=None,
              help="Parquet compression of the datasets stages write. Default none: a stage's output is the next "
                   "one's input, and zstd costs ~2 s of CPU per 1M rows to write, more to read; zstd files are "
                   "2.5-4.5x smaller, for outputs you keep. Quarantine files are always zstd.")
@click.pass_context
def cli(ctx, debug, input_format, compression):
    """Turn messy instruction/chat datasets into clean, multilingual training data.

    \b
    A typical run over the shipped samples:
      curate ingest datasets/raw/* -o datasets/normalized
      curate info datasets/normalized
      curate export datasets/normalized -o datasets/export --test-size 0.05
      curate --compression zstd clean datasets/normalized -o datasets/clean   # compact files to keep

    \b
    Exit codes: 0 all rows done; 1 unusable input or setting; nothing written; 2 bad option or
    argument; 3 rows quarantined because the model's replies were unusable; 4 stopped or rows
    quarantined because of the environment (endpoint, network, budget, disk); 5 rows wait for an
    earlier step (Batch API results, an earlier stage); 70 internal error (a bug); 130
    interrupted (Ctrl-C).
    """
    ctx.ensure_object(dict)["debug"] = debug
    from curate.io.writer import COMPRESSION

    COMPRESSION.set(compression)  # None (in-process runs, tests): nothing left from an earlier one
    from curate.commands._input import echo_notices
    from curate.io.reader import NOTIFY

    NOTIFY.set(echo_notices)  # every command says what it skipped or read twice
    if input_format:
        from curate.ingest.formats import BY_NAME
        from curate.io.reader import DEFAULT_FORMAT

        if input_format not in BY_NAME:
            raise click.BadParameter(f"{input_format!r}; choose one of: {', '.join(BY_NAME)}",
                                     param_hint="--input-format")
        DEFAULT_FORMAT.set(input_format)
    else:  # in-process runs (tests): no format left from an earlier one
        from curate.io.reader import DEFAULT_FORMAT

        DEFAULT_FORMAT.set(None)


# True when the process ends with the command (main): a command may then release early what only
# the process's end would (ray_session.release); not for in-process runs (tests)
PROCESS_ENDS_WITH_COMMAND = False


def main() -> None:
    global PROCESS_ENDS_WITH_COMMAND
    PROCESS_ENDS_WITH_COMMAND = True
    try:
        cli(prog_name="curate")
    except SystemExit as exc:  # click ends every command with sys.exit
        _exit(exc.code)
    _exit(0)


def _exit(code) -> None:
    """End the command without the interpreter's module-by-module teardown: once polars, openai or
    pydantic are loaded it frees hundreds of thousands of objects one by one (0.3-0.5 s, more than a
    cached LLM stage's own work). Everything a normal exit does for others still happens first: the
    atexit handlers (Ray, logging, temporary directories, multiprocessing) and flushing stdout and
    stderr. When another non-daemon thread still runs, it exits normally (and waits for it).
    ``CURATE_SLOW_EXIT=1`` always exits normally."""
    import threading

    if (os.environ.get("CURATE_SLOW_EXIT") or not isinstance(code, (int, type(None)))
            or any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())):
        sys.exit(code)
    import atexit

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        # disconnected here rather than by Ray's own atexit hook, which first sleeps 0.5 s so that
        # workers' last log lines can print (curate's workers print nothing it waits for)
        ray.shutdown()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more can be said
        pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
