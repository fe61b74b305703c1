"""The ``curate`` command line: a thin layer over the stage functions.

Commands are loaded lazily from ``COMMANDS`` (name -> "module:attribute"), so ``curate --help`` is
fast and a new command is one line here plus its own module under ``curate/commands/``.
"""

from __future__ import annotations

import importlib
import sys

import click

from curate import __version__
from curate.errors import UserError

COMMANDS: dict[str, str] = {
    "ingest": "curate.commands.ingest:ingest",
    "info": "curate.commands.info:info",
    "export": "curate.commands.export:export",
    "clean": "curate.commands.clean:clean",
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
    "argilla": "curate.commands.argilla:argilla",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (see Click's docs on lazy loading)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = getattr(exc, "exit_code", 1)
            raise err from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Outputs are written atomically: nothing half-written was left; "
                       "run the same command again to resume.", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"],
                                                              "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
def cli():
    """Turn messy instruction/chat datasets into clean, multilingual training data.

    \b
    A typical run over the shipped samples:
      curate ingest datasets/raw/* -o datasets/normalized
      curate info datasets/normalized
      curate export datasets/normalized -o datasets/export --test-size 0.05
    """


def main() -> None:
    cli(prog_name="curate")


if __name__ == "__main__":
    main()
