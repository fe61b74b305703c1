from __future__ import annotations

from pathlib import Path

import click
import orjson
import polars as pl
from rich.table import Table

from curate import io
from curate import tokens as tok
from curate.progress import bar, console


def frames_for(path: Path):
    """Any input: a curate dataset as it is; a raw source ingested in memory (no language id: not needed)."""
    from curate.info import frames_for as read

    return read(path, detect_lang=False)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v != int(v) else f"{int(v):,}"
    return f"{v:,}"


@click.group("tokens")
def tokens():
    """SentencePiece tokenizers: train one, count tokens, estimate LLM cost.

    \b
    Example:
      curate tokens train datasets/normalized --vocab-size 16000 -o malay.model
      curate tokens stats datasets/normalized --model malay.model --max-tokens 2048
      curate tokens estimate datasets/normalized --price-in 0.15 --price-out 0.60
    """


@tokens.command("train")
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_model", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the model (e.g. malay.model).")
@click.option("--vocab-size", type=click.IntRange(1, 2**31 - 1), default=16000, show_default=True,
              help="Vocabulary size (a soft limit: a small corpus may give fewer pieces).")
@click.option("--model-type", type=click.Choice(["unigram", "bpe", "char", "word"]), default="unigram",
              show_default=True)
@click.option("--character-coverage", type=click.FloatRange(0, 1, min_open=True), default=0.9995, show_default=True,
              help="Share of characters the vocabulary must cover; 0.9995 suits Latin script, 1.0 CJK/Hangul.")
@click.option("--input-sentence-size", type=click.IntRange(0, 2**31 - 1), default=2_000_000, show_default=True,
              help="At most this many lines (a random sample) are used for training.")
@click.option("--no-byte-fallback", is_flag=True, help="Map unknown characters to <unk> instead of bytes.")
@click.option("--user-symbol", "user_symbols", multiple=True,
              help="A piece that must stay whole (repeatable), e.g. --user-symbol '<noinput>'.")
@click.option("--threads", type=click.IntRange(1, 1024), default=2, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Show SentencePiece's own training log.")
def train_cmd(inp, out_model, vocab_size, model_type, character_coverage, input_sentence_size, no_byte_fallback,
              user_symbols, threads, verbose):
    """Train a SentencePiece model on every text field of a dataset (all kinds).

    Defaults suit Malay: unigram, character coverage 0.9995, byte fallback (never <unk>),
    digits split one by one, NFKC normalization. Raw source files are ingested in memory first.

    \b
    Example:
      curate tokens train datasets/translated --vocab-size 16000 -o malay.model
    """
    if vocab_size < 300 and not no_byte_fallback:
        raise click.BadParameter("with byte fallback the vocabulary needs more than 256 byte pieces; "
                                 "use --vocab-size 300 or more", param_hint="--vocab-size")
    io.check_file_output(out_model, [inp], "-o")
    frames = frames_for(inp)
    with bar("reading text", enabled=None if not verbose else False) as b:
        summary = tok.train(frames, out_model, vocab_size, model_type=model_type,
                            character_coverage=character_coverage, input_sentence_size=input_sentence_size,
                            byte_fallback=not no_byte_fallback, num_threads=threads, user_symbols=user_symbols,
                            verbose=verbose, on_line=b.advance)
    console.print(f"trained on {summary['lines']:,} lines ({summary['chars']:,} characters); "
                  f"vocabulary {summary['vocab_size']:,} pieces -> {summary['model']}")


@tokens.command("stats")
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("-m", "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SentencePiece model; without it tokens are estimated as characters/4.")
@click.option("--max-tokens", type=click.IntRange(0), help="List the rows whose total tokens exceed this.")
@click.option("--top", type=click.IntRange(0), default=20, show_default=True, help="How many over-limit rows to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats_cmd(inp, model, max_tokens, top, as_json):
    """Token counts per field and per row (min / median / p95 / max), and rows over a limit.

    \b
    Example:
      curate tokens stats datasets/clean --model malay.model --max-tokens 2048
    """
    st = tok.stats(frames_for(inp), model, max_tokens, top=top)
    if as_json:
        click.echo(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"tokens ({st['method']})")
    for col in ("kind", "field", "texts", "total", "min", "median", "p95", "max"):
        table.add_column(col, justify="left" if col in ("kind", "field") else "right")
    for kind, entry in st["kinds"].items():
        for field, s in [*entry["fields"].items(), ("row", entry["row"])]:
            table.add_row(kind, field, _fmt(s["count"]), _fmt(s["sum"]), _fmt(s["min"]), _fmt(s["median"]),
                          _fmt(s["p95"]), _fmt(s["max"]), style="bold" if field == "row" else None)
    console.print(table)
    console.print(f"{st['rows']:,} rows, {st['tokens']:,} tokens")
    if max_tokens is not None:
        console.print(f"{st['over_limit']:,} rows over {max_tokens:,} tokens")
        for kind, entry in st["kinds"].items():
            for r in entry["over_limit_rows"]:
                console.print(f"  {r['tokens']:>8,}  {kind}  {r['id']}  {r['where']}")


@tokens.command("estimate")
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("-m", "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SentencePiece model; without it tokens are estimated as characters/4.")
@click.option("--price-in", type=click.FloatRange(0), help="Price per million input tokens.")
@click.option("--price-out", type=click.FloatRange(0), help="Price per million output tokens.")
@click.option("--prompt-overhead", type=click.IntRange(0), default=0, show_default=True,
              help="Extra input tokens per row (system prompt, instructions).")
@click.option("--output-ratio", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Output tokens per input text token (1.0 for translation; ~0.05 for a judge).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate_cmd(inp, model, price_in, price_out, prompt_overhead, output_ratio, as_json):
    """Estimate the tokens (and money) an LLM stage will use on a dataset: cost before you pay.

    \b
    Example:
      curate tokens estimate datasets/clean --price-in 0.15 --price-out 0.60
      curate tokens estimate datasets/clean --model malay.model --prompt-overhead 120
    """
    est = tok.estimate_tokens(frames_for(inp), model, prompt_overhead=prompt_overhead, output_ratio=output_ratio)
    if price_in is not None or price_out is not None:
        est["cost"] = round(tok.cost(est, price_in or 0.0, price_out or 0.0), 4)
    if as_json:
        click.echo(orjson.dumps(est, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"token estimate ({est['method']})")
    for col in ("kind", "rows", "text tokens", "per row"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind, k in est["by_kind"].items():
        table.add_row(kind, f"{k['rows']:,}", f"{k['tokens']:,}", f"{k['tokens'] / max(k['rows'], 1):,.0f}")
    console.print(table)
    console.print(f"input ~{est['input_tokens']:,} tokens, output ~{est['output_tokens']:,} tokens")
    if "cost" in est:
        console.print(f"estimated cost: {est['cost']:,.4f} (at {price_in or 0}/M in, {price_out or 0}/M out)")
    if est["method"] == "chars/4":
        console.print("[dim]heuristic estimate (chars/4; 1 per Hangul/CJK char); pass --model for exact counts[/dim]")
