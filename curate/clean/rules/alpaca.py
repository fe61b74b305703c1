"""The AlpacaDataCleaned list: tasks a text model cannot do, merged and broken instructions."""

from __future__ import annotations

import polars as pl

from curate.clean.base import Rule, any_of, empty_matches, fast, regex_match

URL = r"(?:https?://|www\.)[^\s<>\"')\]]+"

# The prompt refers to a web page / article / link whose text is not in the row.
REFERS_TO_WEB = (
    r"(?i)(?:\b(?:this|the|following|given|above|below|attached|linked|provided|that)\s+(?:news\s+|web\s+|online\s+|blog\s+)?"
    r"(?:article|blog\s+post|post|web\s*page|website|site|link|url|news\s+story|news\s+report)s?\b"
    r"|\b(?:visit|go\s+to|browse|click|open|read)\s+(?:the\s+|this\s+)?(?:link|url|website|site|page)\b"
    r"|\b(?:artikel|rencana|pautan|laman\s+web|laman\s+sesawang|tapak\s+web|situs(?:\s+web)?|tautan|berita|url)\s+"
    r"(?:ini|berikut|tersebut|itu|yang\s+(?:diberikan|disediakan|dilampirkan|dipautkan)|di\s+atas|di\s+bawah)\b"
    rf"|{URL})"
)
REFERS_TO_WEB = fast(REFERS_TO_WEB)
# every alternative of REFERS_TO_WEB and URL_ONLY holds one of these
WEB_WORDS = ["http", "www.", "article", "post", "page", "site", "link", "url", "story", "report", "artikel",
             "rencana", "pautan", "laman", "tapak", "situs", "tautan", "berita"]
# A field that is only a URL, possibly with a label ("Article: https://...").
URL_ONLY = rf"(?i)^\s*(?:[^\n:/]{{1,25}}:\s*)?<?{URL}>?\s*$"


class NeedsInternet(Rule):
    code = "needs_internet"
    description = "the task needs a web page, article or link whose text is not given (URL-only inputs)"
    default_action = "drop"
    roles = ("prompt", "input")
    params = {"min_words": 25}

    def match(self, cells, ctx):
        cells = cells.filter(any_of(WEB_WORDS))
        url_only = cells.filter(pl.col("text").str.contains(URL_ONLY)).select(
            "_cell", pl.col("text").str.strip_chars().alias("evidence"))
        # prompt refers to an article/link; the words after the reference plus the given input
        # are too few to be the article itself
        ref = pl.col("text").str.extract(f"({REFERS_TO_WEB})", 1)
        after = pl.col("text").str.split_exact(ref, 1).struct.field("field_1").fill_null("")
        words = (after.str.count_matches(r"\w+") + pl.col("given").str.count_matches(r"\w+"))
        given_is_url = pl.col("given").str.contains(URL_ONLY)
        refs = (cells.filter((pl.col("role") == "prompt") & pl.col("text").str.contains(REFERS_TO_WEB))
                .filter((words < self.p["min_words"]) | given_is_url)
                .select("_cell", ref.alias("evidence")))
        return pl.concat([url_only, refs]).unique("_cell", keep="first", maintain_order=True)


# Another task glued into a field: "2. Instruction:", "### Instruction", "Instruksi: ..." after text.
MERGED = (r"(?im)(?:^\s*(?:#{1,4}\s*)?\d{1,2}\s*[.)]\s*(?:instruction|instruksi|arahan)\s*:"
          r"|^\s*#{2,4}\s*(?:instruction|instruksi|arahan|input|response|respons)\b"
          r"|\S[^\n]*\n\s*(?:instruction|instruksi|arahan)\s*:)")
MERGED = fast(MERGED)
# a response that carries the next task's empty-input marker
MERGED_RESPONSE = r"(?i)<\s*no\s*input\s*>"


class MergedInstruction(Rule):
    code = "merged_instruction"
    description = "another task merged into the field (\"2. Instruction:\", \"### Instruction\", a stray <noinput>)"
    default_action = "drop"
    roles = ("prompt", "response")

    def match(self, cells, ctx):
        # every alternative needs "label:" (or "label :"), "##" or "input>"
        labels = [f"{w}{sep}:" for w in ("instruction", "instruksi", "arahan") for sep in ("", " ")]
        cand = cells.filter(any_of([*labels, "##", "input>", "input >"]))
        return pl.concat([regex_match(cand, MERGED),
                          regex_match(cand, MERGED_RESPONSE, mask=pl.col("role") == "response")]
                         ).unique("_cell", keep="first", maintain_order=True)


# A response that promises code and gives none.
EMPTY_FENCE = r"```[\w+#.-]*[ \t]*\r?\n?\s*```"
EMPTY_TAG = r"(?i)<code>\s*</code>|<pre>\s*</pre>"
PROMISE = (r"(?i)(?:here\s+is|here's|below\s+is|berikut\s+(?:adalah|ialah|merupakan|ini)?|ini\s+(?:adalah|ialah))"
           r"[^\n]{0,60}\b(?:code|kod|program|script|skrip|function|fungsi|snippet|query|pertanyaan\s+sql|sql)\b"
           r"[^\n]{0,40}:\s*$")
CODE_ASK = (r"(?i)\b(?:write|create|generate|implement|give|provide|tulis(?:kan|lah)?|hasilkan|buat(?:kan|lah)?|bina(?:kan)?)\b"
            r"[^\n]{0,60}\b(?:code|kod|program|script|skrip|function|fungsi|query|class|kelas|algorithm|algoritma)\b")
CODEISH = r"[{};=()\[\]]|\bdef\b|\breturn\b|\bimport\b|\bSELECT\b|\bprint\b|\bfunction\b|<\w+>|```"
PROMISE, CODE_ASK, CODEISH = fast(PROMISE), fast(CODE_ASK), fast(CODEISH)


class EmptyCode(Rule):
    code = "empty_code"
    description = "empty code example: an empty ``` block or <code></code>, or code promised/asked for and none given"
    default_action = "drop"
    roles = ("response",)
    kinds = ("sft", "chat", "rm")

    def match(self, cells, ctx):
        fence = regex_match(cells, rf"{EMPTY_FENCE}|{EMPTY_TAG}", mask=any_of(["```", "<code", "<pre"]))
        code_words = ["code", "kod", "program", "script", "skrip", "function", "fungsi", "snippet", "query", "sql"]
        promise = cells.filter(pl.col("text").str.contains(r":\s*$"))
        promise = regex_match(promise, PROMISE, mask=any_of(code_words))
        short = cells.filter(pl.col("text").str.len_bytes() < 1200).filter(pl.col("text").str.len_chars() < 300)
        short = short.filter(any_of([*code_words, "class", "kelas", "algorithm", "algoritma"], "question"))
        short = short.filter(pl.col("text").str.strip_chars() != "")
        asked = (short.filter(pl.col("question").str.contains(CODE_ASK) & ~pl.col("text").str.contains(CODEISH))
                 .select("_cell", (pl.lit("code asked for, none given: ")
                                   + pl.col("text").str.slice(0, 80)).alias("evidence")))
        return pl.concat([fence, promise, asked]).unique("_cell", keep="first", maintain_order=True)


MEDIA_EN = r"(?:image|picture|photo|photograph|drawing|painting|logo|poster|illustration|video|audio|animation|gif|meme|banner|flyer|infographic|sketch|cartoon|comic|voice\s+recording|sound\s+clip|mp3|mp4|3d\s+model)s?"
MEDIA_MS = r"(?:gambar|imej|foto|gambar\s+foto|lukisan|logo|poster|ilustrasi|video|audio|rakaman|animasi|infografik|risalah|sepanduk|kartun|komik|lakaran|klip\s+suara|mp3|mp4)"
MAKE_EN = r"\b(?:draw|paint|sketch|design|create|generate|make|produce|render|record|film|shoot|take|compose|upload|attach|send)\b"
MAKE_MS = r"\b(?:lukis(?:kan|lah)?|lakar(?:kan|lah)?|reka(?:kan|lah)?|reka\s+bentuk(?:kan)?|mereka\s+bentuk|cipta(?:kan|lah)?|hasil(?:kan|lah)?|menghasilkan|buat(?:kan|lah)?|membuat|rakam(?:kan|lah)?|merakam|ambil(?:kan|lah)?|muat\s+naik|lampirkan|hantar(?:kan)?|bina(?:kan|lah)?)\b"
# Asking to make media, or working on an image/recording that a text row cannot carry.
_GAP = r"(?:\s+[^\s.?!,;:]+){0,3}?\s+"   # up to three words between the verb and its object
MEDIA_MAKE = (rf"(?i)(?:{MAKE_EN}{_GAP}{MEDIA_EN}\b|{MAKE_MS}{_GAP}{MEDIA_MS}\b)")
MEDIA_PLACEHOLDER = (r"(?i)<\s*(?:img|image|gambar|foto|photo|picture|video|audio|imej)\b[^>]*>"
                     r"|\[\s*(?:image|gambar|foto|photo|picture|imej)\b[^\]]*\]"
                     r"|(?:https?://|www\.)\S+\.(?:jpe?g|png|gif|bmp|webp|svg|mp3|mp4|wav|avi|mov)\b")
MEDIA_GIVEN = (rf"(?i)\b(?:the|this|following|given|attached|above|below|provided|that)\s+{MEDIA_EN}\b"
               rf"|\b{MEDIA_MS}\s+(?:yang\s+)?(?:diberikan|berikut|ini|di\s+atas|di\s+bawah|dilampirkan|disediakan|tersebut)\b")
# every media noun above, for a literal prefilter
MEDIA_WORDS = ["image", "picture", "photo", "drawing", "painting", "logo", "poster", "illustration", "video", "audio",
               "animation", "gif", "meme", "banner", "flyer", "infographic", "sketch", "cartoon", "comic", "recording",
               "sound", "mp3", "mp4", "3d", "gambar", "imej", "foto", "lukisan", "ilustrasi", "rakaman", "animasi",
               "infografik", "risalah", "sepanduk", "kartun", "komik", "lakaran", "klip"]
# every alternative of MEDIA_PLACEHOLDER holds one of these
_PLACEHOLDER_MARKS = ["<", "[", "http", "www."]
# "describe the painting Mona Lisa" is fine; these words say the image is *here*.
_GIVEN_EXCUSE = fast(r"(?i)\b(?:mona\s+lisa|starry\s+night|famous)\b")
MEDIA_MAKE, MEDIA_PLACEHOLDER, MEDIA_GIVEN = fast(MEDIA_MAKE), fast(MEDIA_PLACEHOLDER), fast(MEDIA_GIVEN)


class MediaRequest(Rule):
    code = "media_request"
    description = "asks to make or look at an image, audio, video, logo or poster (<gambar ...>, <img src>, lukis ...)"
    default_action = "drop"
    roles = ("prompt", "input")
    params = {"given_max_words": 60}

    def match(self, cells, ctx):
        # one literal scan for both prefilters (each scan reads every field), then each on what it kept
        cells = cells.filter(any_of([*_PLACEHOLDER_MARKS, *MEDIA_WORDS]))
        placeholder = regex_match(cells, MEDIA_PLACEHOLDER, mask=any_of(_PLACEHOLDER_MARKS))
        cells = cells.filter(any_of(MEDIA_WORDS))
        make = regex_match(cells, MEDIA_MAKE, mask=pl.col("role") == "prompt")
        # "describe the given image": only when nothing but a short text accompanies it
        given = regex_match(cells, MEDIA_GIVEN,
                            mask=(pl.col("role") == "prompt")
                            & (pl.col("given").str.count_matches(r"\w+") < self.p["given_max_words"])
                            & ~pl.col("text").str.contains(_GIVEN_EXCUSE))
        return pl.concat([placeholder, make, given]).unique("_cell", keep="first", maintain_order=True)


# Placeholders left unfilled by a template (#이름#, #nama#, {name}, [NAME], <NAME>).
PLACEHOLDER = r"#[^\s#]{1,20}#|\{\{?\s*[A-Za-z_]{2,20}\s*\}?\}|\[(?:NAME|NAMA|nama|name|PLACEHOLDER|TEMPAT|X+)\]"


class UnclearInstruction(Rule):
    code = "unclear_instruction"
    description = "nonsensical or unclear prompt: too few words, no letters, mostly symbols, an unfilled #placeholder#"
    default_action = "flag"
    roles = ("prompt",)
    params = {"min_words": 2}

    def match(self, cells, ctx):
        text = pl.col("_t")
        c = cells.select("_cell", "text")
        # too short / no letters: only short prompts can have fewer than min_words words
        c_short = c.filter(pl.col("text").str.len_bytes() < 60 * int(self.p["min_words"]))
        c_short = c_short.filter(~pl.col("text").str.contains(" ", literal=True)
                                 | (pl.col("text").str.len_bytes() < 12 * int(self.p["min_words"]))) \
            if int(self.p["min_words"]) <= 2 else c_short
        c_short = c_short.with_columns(pl.col("text").str.strip_chars().alias("_t")).filter(text != "")
        c_short = c_short.with_columns(text.str.count_matches(r"[\p{L}\p{N}]+").alias("_w"))
        short = c_short.filter(pl.col("_w") < self.p["min_words"]).with_columns(text.str.count_matches(r"\p{L}").alias("_l"))
        short = short.select("_cell", pl.when(pl.col("_l") == 0).then(pl.lit("no letters: ") + text.str.slice(0, 60))
                             .otherwise(pl.lit("too short: ") + text.str.slice(0, 60)).alias("evidence"))
        rest = c.filter(~pl.col("_cell").is_in(short["_cell"].implode()))
        ph = rest.filter(pl.col("text").str.contains_any(["#", "{", "["]))
        ph = ph.filter(pl.col("text").str.contains(PLACEHOLDER)).select(
            "_cell", (pl.lit("unfilled placeholder: ") + pl.col("text").str.extract(f"({PLACEHOLDER})", 1)).alias("evidence"))
        # mostly symbols: letters under 30% (letters counted as what removing letter runs takes away,
        # one regex match per word instead of one per letter)
        sym = rest.filter(pl.col("text").str.len_bytes() > 12)
        from curate import char_scan_jit  # numba: imported by the rules that run, not by --help

        if char_scan_jit.AVAILABLE and sym.height:  # the rows whose letters surely reach 30% go first
            n, at_least = char_scan_jit.letter_counts(sym["text"])  # n: the characters (str.len_chars)
            sym = sym.with_columns(pl.Series("_n", n)).filter(pl.Series((n > 12) & (at_least < n * 0.3)))
        else:
            sym = sym.with_columns(pl.col("text").str.len_chars().alias("_n"))
        sym = sym.with_columns((pl.col("_n") - pl.col("text").str.replace_all(r"\p{L}+", "").str.len_chars()).alias("_l"))
        sym = sym.filter((pl.col("_n") > 12) & (pl.col("_l") < pl.col("_n") * 0.3)).with_columns(
            pl.col("text").alias("_t")).select(
            "_cell", (pl.lit("mostly symbols: ") + text.str.slice(0, 60)).alias("evidence"))
        out = pl.concat([short, ph, sym]).unique("_cell", keep="first", maintain_order=True)
        return out if out.height else empty_matches()
