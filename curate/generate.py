"""generate: self-instruct, as stanford_alpaca's ``generate_instruction.py`` did it, in any language.

``generate(seed_tasks, n, engine, lang="ms")`` grows ``n`` new tasks from a seed file:

1. Each request shows 3 seed tasks sampled at random (numbered ``1.``-``3.``, blocks separated by
   ``###``, an empty input written ``<noinput>``) under a prompt asking for a set of 20 diverse tasks
   and ends with ``4. Instruction:`` so the model continues the list. English uses the original
   prompt verbatim; Malay has its own prompt (same requirements, plus "Malay, not Indonesian");
   other languages use the original with "The instructions should be in <language>".
2. The reply is parsed as a numbered list of ``N. Instruction/Input/Output`` blocks (Malay labels
   ``Arahan``/``Input``/``Output`` too). When the reply was cut by length
   (``finish_reason == "length"``) its last item is dropped.
3. Each instruction is filtered as the original did: 3 words or fewer, or over 150 words; words
   naming things a text model can't do (image, graph, picture, file, map, draw, plot, go to, video,
   audio, music, flow chart, diagram, and the target language's words: gambar, graf, foto, fail,
   peta, lukis, video, audio, muzik, carta alir, rajah ...); starting with "Write a program" (or
   its translation); starting with punctuation (or, for Latin-script languages, a non-ASCII
   character); then (not in the original) an instruction+output that ``curate.langid`` reads
   confidently as another language (Indonesian when generating Malay: malay.json has many such
   rows); then ROUGE-L F above 0.7 against any seed or kept task.
4. Kept tasks get ``most_similar_instructions`` (the 10 most similar of all earlier instructions,
   seeds included, with their ROUGE-L F) and ``avg_similarity_score`` (mean F over all of them),
   exactly like malay.json. :class:`curate.rouge.RougeIndex` decides keep/drop with its pruned
   (exact) threshold check, then computes those two fields for kept tasks only, with a vectorised
   bit-parallel LCS against all earlier instructions; ``similarity_fields=False`` skips that scan
   for very large runs.

Requests go through the LLM engine (:mod:`curate.llm`): cached (a re-run sends nothing and gives the
same output: the seed sample and the ``seed`` parameter of request ``i`` depend only on ``--seed``
and ``i``), concurrent, retried, or written as Batch API files when there is no endpoint.
Rejected items go to ``quarantine.jsonl`` with their code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import string
import time
from collections import Counter
from pathlib import Path
from typing import Any

from curate import io, schemas
from curate.errors import UserError
from curate.llm import Engine, Request
from curate.rouge import THRESHOLD, RougeIndex, tokenize, top_k
from curate.seeds import Task

# The original stanford_alpaca prompt.txt (Apache-2.0), verbatim, typos and numbering included.
ALPACA_PROMPT = """You are asked to come up with a set of 20 diverse task instructions. These task instructions will be given to a GPT model and we will evaluate the GPT model for completing the instructions.

Here are the requirements:
1. Try not to repeat the verb for each instruction to maximize diversity.
2. The language used for the instruction also should be diverse. For example, you should combine questions with imperative instrucitons.
3. The type of instructions should be diverse. The list should include diverse types of tasks like open-ended generation, classification, editing, etc.
2. A GPT language model should be able to complete the instruction. For example, do not ask the assistant to create any visual or audio output. For another example, do not ask the assistant to wake you up at 5pm or set a reminder because it cannot perform any action.
3. The instructions should be in English.
4. The instructions should be 1 to 2 sentences long. Either an imperative sentence or a question is permitted.
5. You should generate an appropriate input to the instruction. The input field should contain a specific example provided for the instruction. It should involve realistic data and should not contain simple placeholders. The input should provide substantial content to make the instruction challenging but should ideally not exceed 100 words.
6. Not all instructions require input. For example, when a instruction asks about some general information, "what is the highest peak in the world", it is not necssary to provide a specific context. In this case, we simply put "<noinput>" in the input field.
7. The output should be an appropriate response to the instruction and the input. Make sure the output is less than 100 words.

List of 20 tasks:"""

MALAY_PROMPT = """Anda diminta untuk mencipta satu set 20 arahan tugasan yang pelbagai. Arahan-arahan ini akan diberikan kepada sebuah model bahasa GPT dan kami akan menilai sejauh mana model itu dapat melaksanakannya.

Berikut ialah syarat-syaratnya:
1. Cuba elakkan kata kerja yang sama bagi setiap arahan supaya arahan-arahan itu lebih pelbagai.
2. Gaya bahasa arahan juga perlu pelbagai. Contohnya, gabungkan soalan dengan ayat suruhan.
3. Jenis tugasan perlu pelbagai: penjanaan terbuka, klasifikasi, penyuntingan, ringkasan, terjemahan, soal jawab, penaakulan dan sebagainya.
4. Model bahasa mesti boleh melaksanakan arahan itu dengan teks sahaja. Contohnya, jangan minta model menghasilkan output visual atau audio (gambar, graf, peta, lukisan, video, muzik). Jangan juga minta model mengejutkan anda pada pukul 5 petang atau menetapkan peringatan, kerana ia tidak boleh melakukan sebarang tindakan.
5. Arahan, input dan output mesti dalam bahasa Melayu (Bahasa Malaysia), bukan bahasa Indonesia: tulis "anda", "boleh", "kerana", "sahaja", "wang", "kereta", bukan "Anda bisa", "karena", "saja", "uang", "mobil".
6. Setiap arahan sepanjang 1 hingga 2 ayat. Ayat suruhan atau soalan dibenarkan.
7. Sediakan input yang sesuai untuk arahan itu. Input mesti mengandungi contoh khusus bagi arahan tersebut, dengan data yang realistik dan bukan pemegang tempat yang ringkas. Input perlu cukup bermakna untuk menjadikan arahan mencabar, tetapi sebaiknya tidak melebihi 100 patah perkataan.
8. Tidak semua arahan memerlukan input. Contohnya, apabila arahan bertanya tentang maklumat umum seperti "apakah gunung tertinggi di dunia", konteks khusus tidak diperlukan. Dalam kes ini, tulis sahaja "<noinput>" dalam medan input.
9. Output mestilah jawapan yang sesuai kepada arahan dan input. Pastikan output kurang daripada 100 patah perkataan.

Senarai 20 tugasan:"""

LANG_NAMES = {"en": "English", "ms": "Malay (Bahasa Malaysia, not Indonesian)", "id": "Indonesian",
              "ko": "Korean", "zh": "Chinese", "ja": "Japanese", "ta": "Tamil", "th": "Thai",
              "vi": "Vietnamese", "tl": "Filipino", "fr": "French", "de": "German", "es": "Spanish"}
LATIN = {"en", "ms", "id", "tl", "vi", "fr", "de", "es"}

# Field labels of the numbered list, per prompt language.
LABELS = {"en": ("Instruction", "Input", "Output"), "ms": ("Arahan", "Input", "Output")}
_LABEL_ALTS = {"instruction": ("Instruction", "Arahan", "Instruksi", "Soalan"),
               "input": ("Input", "Masukan", "Input yang diberikan"),
               "output": ("Output", "Jawapan", "Keluaran")}

# Words naming things a text model can't do. The English list is the original's; it applies to
# every language (models leave English words in), plus the target language's own words.
BLACKLIST = {
    "en": ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
           "draw", "plot", "go to", "video", "audio", "music", "flow chart", "flowchart", "diagram"],
    "ms": ["gambar", "gambar-gambar", "imej", "graf", "foto", "fotograf", "fail", "fail-fail", "peta",
           "lukis", "melukis", "lukiskan", "dilukis", "lakaran", "lakarkan", "plot", "memplot", "video",
           "audio", "muzik", "carta alir", "rajah", "gambar rajah", "pergi ke", "rakaman"],
    "id": ["gambar", "grafik", "foto", "berkas", "peta", "gambarlah", "menggambar", "video", "audio",
           "musik", "diagram alir", "diagram", "pergi ke"],
}
WRITE_PROGRAM = {
    "en": re.compile(r"^write a program", re.I),
    "ms": re.compile(r"^(?:tulis|tuliskan|buat|hasilkan)\s+(?:satu\s+|sebuah\s+)?(?:program|atur\s*cara)\b", re.I),
    "id": re.compile(r"^(?:tulis|tuliskan|buatlah|buat)\s+(?:sebuah\s+)?program\b", re.I),
}

DEFAULT_PARAMS = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072}


def prompt_for(lang: str) -> str:
    if lang == "en":
        return ALPACA_PROMPT
    if lang == "ms":
        return MALAY_PROMPT
    name = LANG_NAMES.get(lang, lang)
    return ALPACA_PROMPT.replace("3. The instructions should be in English.",
                                 f"3. The instructions, inputs and outputs should be in {name}.")


def labels_for(lang: str) -> tuple[str, str, str]:
    return LABELS.get(lang, LABELS["en"])


def encode_prompt(examples: list[dict[str, str]], lang: str, prompt: str | None = None) -> str:
    """The original ``encode_prompt``: prompt, then ``###``-separated numbered examples."""
    ins_l, in_l, out_l = labels_for(lang)
    text = (prompt or prompt_for(lang)) + "\n"
    for idx, ex in enumerate(examples):
        instruction = re.sub(r"\s+", " ", ex["instruction"]).strip().rstrip(":")
        inp = "<noinput>" if ex["input"].strip() == "" else ex["input"]
        text += "###\n"
        text += f"{idx + 1}. {ins_l}: {instruction}\n"
        text += f"{idx + 1}. {in_l}:\n{inp}\n"
        text += f"{idx + 1}. {out_l}:\n{ex['output']}\n"
    text += "###\n"
    text += f"{len(examples) + 1}. {ins_l}:"
    return text


# ---- parsing -----------------------------------------------------------------------------------
def _alt(names) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


_ANY_LABEL = _alt([n for v in _LABEL_ALTS.values() for n in v])
_ITEM_START = re.compile(rf"(?mi)^[ \t]*(?:#+[ \t]*)?(?:\*\*)?(\d+)\.[ \t]*(?:\*\*)?(?:{_alt(_LABEL_ALTS['instruction'])})(?:\*\*)?[ \t]*:(?:\*\*)?")
_FIELD = re.compile(rf"(?mi)^[ \t]*(?:\*\*)?(\d+)\.[ \t]*(?:\*\*)?({_ANY_LABEL})(?:\*\*)?[ \t]*:(?:\*\*)?")


def _kind(label: str) -> str:
    low = label.lower()
    for kind, names in _LABEL_ALTS.items():
        if low in (n.lower() for n in names):
            return kind
    return "?"


@dataclasses.dataclass
class Item:
    number: int | None
    instruction: str
    input: str
    output: str
    raw: str


def parse_reply(text: str, first_number: int, lang: str, finish_reason: str | None):
    """Numbered ``N. Instruction/Input/Output`` blocks -> (items, rejects).

    The reply continues the prompt, so it may start right after ``4. Instruction:``; that label is
    put back first. Rejects are ``(code, reason, raw)``: ``unparsed`` for a block without the three
    fields, ``truncated`` for the last block of a reply cut by length.
    """
    ins_l = labels_for(lang)[0]
    body = text or ""
    first_field = _FIELD.search(body)
    if first_field is not None and _kind(first_field.group(2)) != "instruction":
        # completion style: the reply starts right after the prompt's "4. Instruction:"
        body = f"{first_number}. {ins_l}:" + body
    starts = [m.start() for m in _ITEM_START.finditer(body)]
    blocks = [body[a:b] for a, b in zip(starts, starts[1:] + [len(body)])]
    items, rejects = [], []
    for k, block in enumerate(blocks):
        raw = block.strip()
        raw_clean = re.sub(r"\n?\s*#{3,}\s*$", "", raw).strip()
        if k == len(blocks) - 1 and finish_reason == "length":
            rejects.append(("truncated", "the reply was cut by length; its last item is dropped", raw_clean))
            continue
        fields = list(_FIELD.finditer(raw_clean))
        kinds = [_kind(m.group(2)) for m in fields]
        nums = {m.group(1) for m in fields}
        if kinds != ["instruction", "input", "output"] or len(nums) != 1:
            rejects.append(("unparsed", "not one numbered Instruction/Input/Output block", raw_clean))
            continue
        vals = [raw_clean[fields[i].end():(fields[i + 1].start() if i + 1 < 3 else len(raw_clean))].strip()
                for i in range(3)]
        vals[1] = "" if re.fullmatch(r"<\s*no\s*-?\s*input\s*>|no\s*input|tiada\s+input", vals[1], re.I) else vals[1]
        items.append(Item(int(fields[0].group(1)), vals[0], vals[1], vals[2], raw_clean))
    return items, rejects


# ---- filtering ---------------------------------------------------------------------------------
def _word_re(words: list[str]) -> re.Pattern:
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + r")\b",
                      re.I)


def blacklist_for(lang: str) -> re.Pattern:
    return _word_re(BLACKLIST["en"] + BLACKLIST.get(lang, []))


def check_instruction(inst: str, lang: str, blacklist: re.Pattern | None = None) -> tuple[str, str] | None:
    """(code, reason) when an instruction fails the original's heuristic filters, else None."""
    words = inst.split()
    if len(words) <= 3:
        return "too_short", f"{len(words)} words (needs more than 3)"
    if len(words) > 150:
        return "too_long", f"{len(words)} words (at most 150)"
    m = (blacklist or blacklist_for(lang)).search(inst)
    if m:
        return "not_text", f"names something a text model can't do: {m.group(0)!r}"
    for pat in (WRITE_PROGRAM["en"], WRITE_PROGRAM.get(lang)):
        if pat is not None and pat.search(inst):
            return "write_program", "starts with \"Write a program\""
    if inst[0] in string.punctuation:
        return "punctuation", f"starts with punctuation {inst[0]!r}"
    if lang in LATIN and not inst[0].isascii():
        return "non_ascii_start", f"starts with a non-ASCII character {inst[0]!r}"
    if not inst.strip() or not any(ch.isalnum() for ch in inst):
        return "empty", "no words"
    return None


LANG_CONFIDENT = 0.8


def wrong_language(items: list[Item], lang: str) -> dict[int, tuple[str, float]] | None:
    """Items (by position) confidently in another language than ``lang``; None without langid.

    Instruction and output are read together; an item whose instruction alone reads as ``lang``
    passes (a translation task may answer in another language), except Indonesian for Malay, the
    confusion this check is for (malay.json has many Indonesian rows).
    """
    from curate.seeds import detect_languages

    if lang not in ("ms", "id", "en", "ko"):
        return {}
    found = detect_languages([it.instruction + "\n" + it.output for it in items])
    if found is None:
        return None
    odd = [k for k, (l, c) in enumerate(found) if l not in (lang, "und") and c >= LANG_CONFIDENT]
    keep_by_instruction = set()
    check = [k for k in odd if not (lang == "ms" and found[k][0] == "id")]
    if check:
        alone = detect_languages([items[k].instruction for k in check]) or []
        keep_by_instruction = {k for k, (l, c) in zip(check, alone) if l in (lang, "und") or c < LANG_CONFIDENT}
    return {k: found[k] for k in odd if k not in keep_by_instruction}


# ---- the stage ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Generated:
    rows: list[dict[str, Any]]            # Alpaca rows with most_similar_instructions / avg_similarity_score
    quarantine: list[dict[str, Any]]
    report: dict[str, Any]
    pending: int = 0                      # requests written to Batch API files, not answered yet


def seed_examples(tasks: list[Task]) -> list[dict[str, str]]:
    """The seed pool: first instance of each task, exact duplicates removed (as the original used)."""
    seen, out = set(), []
    for t in tasks:
        ex = {"instruction": t.instruction, "input": t.instances[0]["input"], "output": t.instances[0]["output"]}
        key = (ex["instruction"], ex["input"], ex["output"])
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def make_request(i: int, pool: list[dict[str, str]], lang: str, seed: int, num_examples: int = 3,
                 prompt: str | None = None, params: dict[str, Any] | None = None,
                 per_request: int = 20) -> Request:
    """Request ``i``: its seed sample and sampling seed depend only on (``seed``, ``i``)."""
    rng = random.Random(f"{seed}:{i}")
    examples = rng.sample(pool, min(num_examples, len(pool)))
    text = encode_prompt(examples, lang, prompt)
    stop_at = per_request + 1
    p = {**DEFAULT_PARAMS, "stop": [f"\n{stop_at}.", f"{stop_at}."], "seed": seed * 1_000_003 + i, **(params or {})}
    return Request(key=f"generate:{seed}:{i}", messages=[{"role": "user", "content": text}], params=p,
                   data={"request": i, "examples": len(examples)})


def generate(tasks: list[Task], n: int, engine: Engine, lang: str = "ms", *, seed: int = 0,
             num_examples: int = 3, per_request: int = 20, threshold: float = THRESHOLD,
             prompt: str | None = None, params: dict[str, Any] | None = None,
             similarity_fields: bool = True, lang_check: bool = True, max_rounds: int = 1000,
             source: str = "seeds", progress=None) -> Generated:
    """Grow ``n`` tasks from seed ``tasks`` (see the module docstring). Deterministic given ``seed``."""
    if n <= 0:
        raise UserError("-n must be at least 1")
    pool = seed_examples(tasks)
    if len(pool) < num_examples:
        raise UserError(f"the seed file has {len(pool)} distinct tasks; at least {num_examples} are needed")
    blacklist = blacklist_for(lang)
    index = RougeIndex()
    for ex in pool:
        index.add(ex["instruction"])
    n_seeds = len(index)
    rows: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    codes: Counter = Counter()
    failed: Counter = Counter()
    next_i = 0
    pending = 0
    parsed = 0
    t_filter = 0.0
    yield_per_request = 8.0  # first guess; updated from what the replies give
    first = num_examples + 1
    rounds = 0
    lang_note = "on" if lang_check else "off"

    def reject(code: str, reason: str, item: dict[str, str], request: int, evidence: Any = None) -> None:
        codes[code] += 1
        rid = schemas.content_id("sft", item) if "instruction" in item else None
        quarantine.append({"stage": "generate", "code": code, "reason": reason, "evidence": evidence, "id": rid,
                           "source": source, "line": None, "where": f"request {request}", "row": item})

    while len(rows) < n and rounds < max_rounds:
        rounds += 1
        need = n - len(rows)
        k = max(1, min(int(math.ceil(need / max(yield_per_request, 0.5) * 1.15)), 2000))
        requests = [make_request(next_i + j, pool, lang, seed, num_examples, prompt, params, per_request)
                    for j in range(k)]
        next_i += k
        results = engine.run(requests)
        kept_before = len(rows)
        ok = 0
        candidates: list[tuple[int, Item, dict[str, str]]] = []
        t0 = time.perf_counter()
        for res in results:
            i = res.request.data["request"]
            if not res.ok:
                if res.code == "batch":
                    pending += 1
                else:
                    failed[res.code] += 1
                    if res.code != "budget":  # not sent at all: nothing to quarantine
                        reject(f"llm_{res.code}", res.error or res.code, {"reply": res.text or ""}, i)
                continue
            ok += 1
            items, rejects = parse_reply(res.value, first, lang, res.finish_reason)
            for code, reason, raw in rejects:
                reject(code, reason, {"raw": raw}, i)
            for item in items:
                parsed += 1
                row = {"instruction": item.instruction, "input": item.input, "output": item.output}
                bad = check_instruction(item.instruction, lang, blacklist)
                if bad:
                    reject(bad[0], bad[1], row, i)
                    continue
                candidates.append((i, item, row))
        if lang_check and candidates:
            wrong = wrong_language([c[1] for c in candidates], lang)
            if wrong is None:
                lang_note = "skipped: curate.langid could not run"
            else:
                for k in sorted(wrong, reverse=True):
                    i, item, row = candidates.pop(k)
                    got, conf = wrong[k]
                    reject("wrong_language", f"reads as {got!r} ({conf:.2f}), not {lang!r}", row, i,
                           {"lang": got, "confidence": conf})
        kept_now: list[tuple[dict[str, Any], list[str], int]] = []  # (row, tokens, index position)
        for i, item, row in candidates:
            if len(rows) >= n:
                break
            toks = tokenize(item.instruction)
            # the keep/drop decision with the pruned check (exact); only kept tasks pay for the
            # scan of all pairs that their most_similar_instructions/avg_similarity_score need
            j, f = index.most_similar_above(item.instruction, threshold, toks)
            if j >= 0:
                reject("similar", f"ROUGE-L F {f:.3f} > {threshold} against "
                                  f"{'a seed' if j < n_seeds else 'a kept task'}", row, i,
                       {"most_similar": index.texts[j], "rouge_l": round(f, 4)})
                continue
            kept_now.append((row, toks, index.add(item.instruction, toks)))
            rows.append(row)
            if progress is not None:
                progress(len(rows), n)
        if similarity_fields and kept_now:
            # each kept task against the instructions kept before it, the round's tasks at once
            all_scores = index.scores_many([r["instruction"] for r, _, _ in kept_now],
                                           [t for _, t, _ in kept_now], [p for _, _, p in kept_now])
            for (row, _, _), scores in zip(kept_now, all_scores):
                top = top_k(scores, 10)
                row["most_similar_instructions"] = {index.texts[k]: float(scores[k]) for k in top}
                row["avg_similarity_score"] = float(scores.mean()) if len(scores) else 0.0
        t_filter += time.perf_counter() - t0
        if pending:
            break  # Batch API files written: the answers come back with --batch-in
        if failed.get("budget"):
            break  # --max-requests spent: a re-run continues from the cache
        new = len(rows) - kept_before
        if ok == 0 or new == 0:
            if ok == 0 and failed:
                raise UserError(f"every request of the last round failed ({dict(failed)}); see the engine "
                                "errors above or in quarantine, fix the endpoint and re-run (replies are cached)")
            if new == 0:
                break  # the model gives nothing new any more: stop instead of looping
        yield_per_request = max(0.5, len(rows) / max(1, next_i - pending - sum(failed.values())))
    report = {
        "stage": "generate", "lang": lang, "seed": seed, "requested": n, "kept": len(rows),
        "seed_tasks": len(tasks), "seed_pool": len(pool), "requests": next_i, "rounds": rounds,
        "pending_batch_requests": pending, "parsed_items": parsed, "dropped": dict(codes),
        "llm_failures": dict(failed), "threshold": threshold, "similarity_fields": similarity_fields,
        "lang_check": lang_note,
        "filter_seconds": round(t_filter, 3),
        "rouge": {k: int(v) for k, v in index.stats.items()},
        "llm": engine.report(),
    }
    return Generated(rows, quarantine, report, pending)


def to_frame(rows: list[dict[str, Any]], lang: str, source: str):
    """Kept tasks as canonical ``sft`` rows (the similarity fields go into ``meta.generated``)."""
    out = []
    for r in rows:
        meta = {"generated": {"method": "self-instruct"}}
        if "avg_similarity_score" in r:
            meta["generated"]["avg_similarity_score"] = r["avg_similarity_score"]
            top = next(iter(r["most_similar_instructions"].items()), None)
            if top:
                meta["generated"]["most_similar"] = {"instruction": top[0], "rouge_l": top[1]}
        out.append({"instruction": r["instruction"], "input": r["input"], "output": r["output"], "lang": lang,
                    "source": source, "format": "self_instruct", "line": None, "meta": meta})
    return schemas.from_rows("sft", out)


def write_outputs(result: Generated, out_dir: Path, lang: str, source: str) -> dict[str, Path]:
    """``generated.json`` (Alpaca, like malay.json), ``sft.parquet``, ``quarantine.jsonl``, ``report.json``."""
    out_dir = Path(out_dir)
    paths = {"alpaca": out_dir / "generated.json", "sft": out_dir / "sft.parquet",
             "quarantine": out_dir / "quarantine.jsonl", "report": out_dir / "report.json"}
    with io.DatasetWriter(out_dir, stage="generate", inputs=[source], params={"lang": lang}) as w:
        # malay.json's own encoding: indent 4, ASCII escapes
        w.write_bytes("generated.json", json.dumps(result.rows, indent=4).encode() + b"\n")
        w.write_frame("sft", to_frame(result.rows, lang, source))
        w.write_jsonl("quarantine.jsonl", result.quarantine)
        w.write_json("report.json", result.report)
    return paths
