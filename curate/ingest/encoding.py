"""Bytes -> text, never silently: what a file is, and how each line of it is decoded.

* A file whose first bytes are a known binary signature (gzip, zip, PDF, images, SQLite,
  executables, ...) or that holds NUL/control bytes is refused, with what it looks like.
* A UTF-16/UTF-32 byte-order mark means the file is decoded from that encoding (losslessly).
* UTF-8, with or without a BOM, is read as it is.
* A line that is not valid UTF-8 is decoded as Windows-1252 (a superset of printable Latin-1)
  only when the bytes prove it (every non-ASCII byte decodes to a letter or common punctuation,
  none is a C1 control); the row then carries a note in ``meta.recovered``. Otherwise the line is
  quarantined. Never a silent U+FFFD.
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path

from curate.errors import UserError

# (signature, what it is); checked against the first bytes of a file
MAGIC: list[tuple[bytes, str]] = [
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a ZIP archive (unzip it first)"),
    (b"\x1f\x8b", "gzip-compressed (gunzip it first)"),
    (b"BZh", "bzip2-compressed (bunzip2 it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed (unxz it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed (unzstd it first)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ARROW1", "an Arrow IPC file"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"\x80\x04\x95", "a Python pickle"),
    (b"Obj\x01", "an Avro file"),
    (b"ORC", "an ORC file"),
    (b"\xd0\xcf\x11\xe0", "a Microsoft Office document"),
]

# gzip, bzip2 and xz streams (Python's own modules): a compressed JSON, JSON Lines or text file is
# read from a decompressed temporary copy (curate.ingest.pipeline.open_source), its lines numbered
# as in the decompressed text; zstd and archives are still refused (MAGIC)
COMPRESSED = {b"\x1f\x8b": ("gzip", "gzip"), b"BZh": ("bzip2", "bz2"), b"\xfd7zXZ\x00": ("xz", "lzma")}
COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz"}


def compression_of(head: bytes) -> tuple[str, str] | None:
    """(name, module) of the compressed stream ``head`` starts, or None."""
    return next((v for magic, v in COMPRESSED.items() if head.startswith(magic)), None)


def decompressed_name(path: Path) -> Path:
    """The file a compressed ``path`` holds, by its name: ``x.jsonl`` for ``x.jsonl.gz`` (``path``
    itself when its suffix is not a compressed one)."""
    return path.with_suffix("") if path.suffix.lower() in COMPRESSED_SUFFIXES else path


# longest first, so UTF-32-LE is not mistaken for UTF-16-LE
BOMS: list[tuple[bytes, str]] = [
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
]

CP1252_NOTE = "decoded as Windows-1252/Latin-1: the bytes were not valid UTF-8"

_CONTROL = set(range(0, 9)) | {11} | set(range(14, 32)) | {127}
# punctuation and symbols a Latin-1/cp1252 text plausibly holds
_CP1252_OK_CATEGORIES = ("L", "M", "N", "Pd", "Pi", "Pf", "Po", "Ps", "Pe", "Sc", "Sm", "So", "Sk", "Zs")


def magic_of(head: bytes) -> str | None:
    """What a file is, from its first bytes, if it is a known binary format."""
    for sig, what in MAGIC:
        if head.startswith(sig):
            return what
    return None


def bom_of(head: bytes) -> tuple[str, int] | None:
    """(encoding, BOM length) when the file starts with a byte-order mark."""
    for bom, enc in BOMS:
        if head.startswith(bom):
            return enc, len(bom)
    return None


def check_text_head(path: Path, head: bytes) -> str:
    """The encoding to read a text file in ("utf-8", "utf-16-le", ...), or raise a one-line error
    for binary content."""
    bom = bom_of(head)
    if bom:
        enc, n = bom
        if enc != "utf-8":
            try:
                # a BOM followed by text that does not decode is binary that happens to start so
                head[n:len(head) - len(head) % 4].decode(enc)
            except UnicodeDecodeError:
                raise UserError(f"{path}: starts with a {enc.upper()} byte-order mark but does not decode as "
                                f"{enc.upper()}; convert it to UTF-8 (e.g. iconv -f {enc.upper()} -t UTF-8).") from None
        return enc
    what = magic_of(head)
    if what:
        # (curate reads a Parquet file as Parquet by its .parquet name; this one is named as text)
        hint = " (where curate takes Parquet, name it .parquet)" if what == "a Parquet file" else ""
        raise UserError(f"{path}: this is {what}, not text{hint}.")
    if b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if max(even, odd) > len(head) // 4 and min(even, odd) < len(head) // 50 + 1:
            guess = "UTF-16-LE" if odd > even else "UTF-16-BE"
            raise UserError(f"{path}: looks like {guess} text without a byte-order mark; convert it to UTF-8 "
                            f"(e.g. iconv -f {guess} -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}).")
        raise UserError(f"{path}: binary content (NUL bytes), not a text, JSON, JSON Lines, Parquet or CSV file; "
                        "curate refuses it rather than guess.")
    sample = head[:65536]
    controls = sum(1 for b in sample if b in _CONTROL)
    if controls > max(2, len(sample) // 100):
        raise UserError(f"{path}: binary content ({controls} control bytes in the first {len(sample):,}), not text; "
                        "curate refuses it rather than guess.")
    return "utf-8"


def decode_cp1252(raw: bytes) -> str | None:
    """``raw`` decoded as Windows-1252 when the bytes prove it, else None (see the module doc)."""
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined in cp1252
        return None
    high = [ch for ch in text if ord(ch) >= 0x80]
    if not high or len(high) * 3 > len(text):
        return None
    for ch in set(high):
        if not unicodedata.category(ch).startswith(_CP1252_OK_CATEGORIES):
            return None
    return text


def decode_line(raw: bytes) -> tuple[str | None, str | None]:
    """(text, note): UTF-8 as it is (note None); proven cp1252 with :data:`CP1252_NOTE`; or
    (None, reason) when the bytes are neither."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        start = exc.start
    text = decode_cp1252(raw)
    if text is None:
        return None, (f"invalid UTF-8 (bytes {raw[start:start + 4]!r} at offset {start}) and not recognisably "
                      "Latin-1/cp1252")
    return text, CP1252_NOTE
