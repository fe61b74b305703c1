"""``curate seeds``: validate, add, align and describe the seed-task library (see curate.seeds)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from curate import seeds as S
from curate.errors import UserError


@click.group("seeds")
def seeds():
    """The self-instruct seed-task library under seeds/ (see seeds/CONTRIBUTING.md).

    \b
    Example:
      curate seeds validate
      curate seeds add seeds/malay_seed_tasks.jsonl
      curate seeds align seeds/alpaca_seed_tasks.jsonl seeds/malay_seed_tasks.jsonl
      curate seeds stats
    """


@seeds.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--lang", help="Expected language of every file (default: the file's `lang` in seeds.toml, "
                             "else the majority language of its tasks).")
@click.option("--strict", is_flag=True, help="Fail on warnings too, and on the known defects listed in seeds.toml.")
@click.option("--threshold", type=float, default=S.NEAR_DUP, show_default=True,
              help="ROUGE-L F above which two instructions are near-duplicates.")
@click.option("-q", "--errors-only", is_flag=True, help="Print errors only.")
def validate(files, lang, strict, threshold, errors_only):
    """Check seed files; print `file:line: severity: message [code]`; exit 1 on any error.

    Errors: broken JSON/schema, empty text, duplicate id/name/row, near-duplicate instruction,
    <noinput>-style marker, wrong language. Warnings (fail only with --strict): id gaps, name
    format, untranslated names, doubly escaped text, unsure language, and the known defects of the
    shipped files (seeds.toml `known`). With no FILES, every *.jsonl under seeds/; a directory
    stands for every *.jsonl in it.

    \b
    Example:
      curate seeds validate
      curate seeds validate --strict my_new_seeds.jsonl --lang ms
      curate seeds validate my_seeds/
    """
    files = [x for f in files for x in (S.default_files(f) if f.is_dir() else [f])] or S.default_files()
    n_err = n_warn = 0
    for f in files:
        for x in S.validate(f, lang=lang, strict=strict, near_dup=threshold):
            if x.severity == "error":
                n_err += 1
            else:
                n_warn += 1
                if errors_only:
                    continue
            click.echo(str(x))
    click.echo(f"{len(files)} file(s): {n_err} error(s), {n_warn} warning(s)", err=True)
    if n_err:
        sys.exit(1)


def _ask_multiline(label: str, default: str = "") -> str:
    click.echo(f"{label} (end with an empty line{'; empty for none' if default == '' else ''}):")
    lines = []
    while True:
        line = sys.stdin.readline()
        if not line or not line.strip():
            break
        lines.append(line.rstrip("\n"))
    return "\n".join(lines)


@seeds.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--instruction", help="The task instruction (prompted for when missing).")
@click.option("--input", "input_", help='The instance input; "" when the task needs none.')
@click.option("--output", help="The instance output (prompted for when missing).")
@click.option("--name", help="snake_case name (default: from the instruction's first words).")
@click.option("--classification/--no-classification", "is_classification", default=None,
              help="The output is one of a few labels.")
@click.option("--lang", help="Expected language (default: the file's `lang` in seeds.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print the added task as JSON.")
def add(file, instruction, input_, output, name, is_classification, lang, as_json):
    """Append a task with the next free id; refuses (exit 1) if it would not validate.

    Prompts for any field not given by flags; multi-line fields end with an empty line.
    The file is rewritten atomically.

    \b
    Example:
      curate seeds add seeds/malay_seed_tasks.jsonl
      curate seeds add seeds/malay_seed_tasks.jsonl --instruction "Senaraikan tiga negeri di Pantai Timur." \\
        --input "" --output "Kelantan, Terengganu dan Pahang." --name negeri_pantai_timur
    """
    interactive = instruction is None or output is None
    if instruction is None:
        instruction = click.prompt("Instruction")
    if input_ is None:
        input_ = _ask_multiline("Input") if interactive else ""
    if output is None:
        output = _ask_multiline("Output")
    if name is None and interactive:
        name = click.prompt("Name (snake_case)", default=S.slug(instruction))
    if is_classification is None:
        is_classification = click.confirm("Is it a classification task?", default=False) if interactive else False
    if not output.strip():
        raise UserError("the output is empty; a seed task needs an example output.")
    task, findings = S.add_task(file, instruction, output, input=input_, name=name,
                                is_classification=is_classification, lang=lang)
    for x in findings:
        click.echo(str(x), err=True)
    if as_json:
        click.echo(orjson.dumps(task.to_json()).decode())
    else:
        click.echo(f"added {task.id} ({task.name}) to {file}")


@seeds.command()
@click.argument("original", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("translation", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--min-score", type=float, default=0.5, show_default=True,
              help="Pairs scoring below this are reported as unmatched.")
@click.option("--pairs", "show_pairs", is_flag=True, help="Also print every pair.")
@click.option("--json", "as_json", is_flag=True, help="Print pairs and drift as JSON.")
def align(original, translation, min_score, show_pairs, as_json):
    """Pair translated seeds with their originals by content (not id) and report drift.

    Pairs are chosen by an assignment (Hungarian algorithm) over a similarity of what survives
    translation (numbers, names, code, URLs, identical inputs), instruction/output lengths,
    the classification flag and position. Drift: duplicated and missing ids, shifted blocks,
    id mismatches, untranslated originals, unmatched translations.

    \b
    Example:
      curate seeds align seeds/alpaca_seed_tasks.jsonl seeds/malay_seed_tasks.jsonl
    """
    en, ms = S.load_tasks(original), S.load_tasks(translation)
    a = S.align(en, ms, min_score=min_score)
    if as_json:
        click.echo(orjson.dumps({
            "pairs": [{"original": en[i].id, "original_line": en[i].line, "translation": ms[j].id,
                       "translation_line": ms[j].line, "score": round(s, 3)} for i, j, s in a.pairs],
            "unmatched_original": [en[i].id for i in a.unmatched_original],
            "unmatched_translation": [f"{ms[j].id}@{ms[j].line}" for j in a.unmatched_translation],
            "drift": a.drift}, option=orjson.OPT_INDENT_2).decode())
        return
    if show_pairs:
        for i, j, s in a.pairs:
            click.echo(f"{en[i].id:>15} (line {en[i].line:>3}) -> {ms[j].id:>15} (line {ms[j].line:>3})  {s:.2f}")
    click.echo(f"{len(a.pairs)} pairs; {len(a.unmatched_original)} originals and "
               f"{len(a.unmatched_translation)} translations unmatched")
    for d in a.drift:
        click.echo(f"  {d}")


@seeds.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def stats(files, as_json):
    """Counts per seed file: tasks, classification, with input, instruction length, languages.

    \b
    Example:
      curate seeds stats
    """
    for f in list(files) or S.default_files():
        st = S.stats(f)
        if as_json:
            click.echo(orjson.dumps(st).decode())
            continue
        click.echo(f"{f}")
        for k, v in st.items():
            if k != "file":
                click.echo(f"  {k:<18} {v}")
