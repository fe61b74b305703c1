"""Refusals and assistant boilerplate ("As an AI language model ...") in English, Malay/Indonesian, Korean."""

from __future__ import annotations

import polars as pl

from curate.clean.base import Rule, fast, python_regex, regex_match

_EN = (
    r"\bas\s+an?\s+(?:ai|artificial\s+intelligence)(?:\s+language)?(?:\s+model|\s+assistant|\s+chatbot)?\s*,"
    r"|\bas\s+a\s+(?:large\s+)?language\s+model\s*,\s*I\s+(?:do\s+not|don't|cannot|can't|am\s+(?:not|unable))"
    r"|\bI(?:'m|\s+am)\s+(?:just\s+|only\s+)?(?:an?\s+)?(?:ai|artificial\s+intelligence)\s+(?:language\s+model|model|assistant|chatbot)\b"
    r"|\bI(?:'m|\s+am)\s+(?:just\s+|only\s+)?a\s+(?:large\s+)?language\s+model\s+(?:and|so|,)"
    r"|^\W*(?:I'm|I\s+am)\s+(?:very\s+|so\s+)?sorry,?\s+(?:but\s+)?(?:I|as\s+an)\s+(?:can(?:no|')t|am\s+(?:not\s+able|unable)|do\s+not|don't|AI)"
    r"|^\W*(?:sorry|I\s+apologi[sz]e),?\s+(?:but\s+)?(?:I|as\s+an)\s+(?:can(?:no|')t|am\s+(?:not\s+able|unable)|AI)"
    r"|\bI\s+(?:cannot|can't|am\s+(?:not\s+able|unable)\s+to)\s+(?:provide|fulfil+|comply|assist|help)\s+(?:with\s+)?(?:that|this|your)\s+(?:request|question)"
    r"|^\W*(?:I'm\s+)?(?:sorry|I\s+apologi[sz]e),?\s+but\s+the\s+(?:text|output|input|content|sentence|json)\s+you\s+(?:provided|gave|sent)"
    r"|\bmy\s+(?:knowledge\s+)?(?:training\s+data|knowledge)\s+(?:cut-?off|only\s+goes\s+up)"
    r"|\bI\s+(?:do\s+not|don't)\s+have\s+(?:access\s+to\s+)?(?:real-time|personal\s+opinions|the\s+ability\s+to\s+browse)"
)
_MS = (
    r"\bsebagai\s+(?:sebuah\s+|satu\s+)?(?:model\s+bahasa|ai|kecerdasan\s+buatan|pembantu\s+ai|asisten\s+ai|chatbot\s+ai)\b"
    r"|\bsaya\s+(?:adalah|ialah|hanyalah|hanya|merupakan)\s+(?:sebuah\s+|satu\s+)?(?:model\s+bahasa|ai\b|kecerdasan\s+buatan|program\s+(?:komputer|ai)|pembantu\s+(?:maya|ai)|asisten\s+(?:virtual|ai)|chatbot)"
    r"|^\W*maaf,?\s+(?:tetapi\s+|tapi\s+|namun\s+)?(?:saya|sebagai)\s+(?:tidak\s+(?:dapat|boleh|bisa|mampu)|tak\s+(?:dapat|boleh)|adalah|ialah|hanya)"
    r"|^\W*(?:mohon\s+maaf|minta\s+maaf),?\s+(?:tetapi\s+|tapi\s+)?saya\s+(?:tidak\s+(?:dapat|boleh|bisa)|adalah)"
    r"|\bterjemahan\s+tidak\s+(?:diperlukan|perlu)\b"
    r"|\bsaya\s+tidak\s+(?:dapat|boleh|bisa|mampu)\s+(?:memberikan|menyediakan|membantu)\s+(?:jawapan|jawaban|maklumat|informasi)\s+(?:tersebut|itu|ini)\s+kerana\s+saya"
)
_KO = (
    r"(?:AI|인공\s*지능)\s*언어\s*모델(?:로서|로써|이기\s*때문에|이므로|입니다)"
    r"|(?:저는|나는)\s*(?:AI|인공\s*지능|언어\s*모델)(?:\s*언어\s*모델)?(?:이기\s*때문에|이므로|로서|입니다|일\s*뿐)"
    r"|^\W*죄송(?:하지만|합니다만|합니다)[,.]?\s*(?:저는|제가)?\s*(?:AI|인공\s*지능)"
)
REFUSAL = fast(rf"(?im)(?:{_EN}|{_MS}|{_KO})")
REFUSAL_RE = python_regex(rf"(?im)(?:{_EN}|{_MS}|{_KO})")  # the same, for one text (curate reflect's check)
# Every alternative above contains one of these: a literal check before REFUSAL_RE on one text
# (curate reflect). Not before REFUSAL on a column: the regex engine's own literal prefilter scans a
# million responses faster (0.64 s of CPU) than this list's (0.75-0.79 s, and then the regex on the
# 110k it keeps: 0.14 s).
KEYWORDS = [
    "language model", "artificial intelligence", " ai ", " ai,", " ai.", " ai-", " ai\n", "sorry", "apologi",
    "cannot", "can't", "unable", "not able", "knowledge", "training data", "real-time", "personal opinion", "browse",
    "model bahasa", "kecerdasan buatan", "pembantu", "asisten", "chatbot", "program komputer", "program ai", "maaf",
    "terjemahan", "tidak dapat memberi", "tidak boleh memberi", "tidak bisa memberi", "tidak mampu memberi",
    "tidak dapat menyedia", "tidak dapat membantu", "tidak boleh menyedia", "tidak boleh membantu",
    "언어", "인공", "죄송", "저는", "나는",
]


class Refusal(Rule):
    code = "refusal"
    description = "refusal or assistant boilerplate (\"As an AI language model\", \"Sebagai model bahasa AI\", \"Maaf, saya tidak dapat\", \"AI 언어 모델로서\")"
    default_action = "drop"
    roles = ("response", "system")
    kinds = ("sft", "chat", "rm")

    def match(self, cells, ctx):
        return regex_match(cells, REFUSAL)
