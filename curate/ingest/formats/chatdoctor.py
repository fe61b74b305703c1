"""ChatDoctor JSON: Alpaca keys, one fixed "If you are a doctor ..." instruction (or its translations)."""

from __future__ import annotations

import re
from collections import Counter

from curate.ingest.base import data_objects
from curate.ingest.formats.alpaca import Alpaca

_DOCTOR = re.compile(r"doct|dokt|doctor|의사", re.I)


class ChatDoctor(Alpaca):
    name = "chatdoctor"
    summary = "ChatDoctor {instruction, input, output} with the doctor instruction repeated"

    def score(self, sample):
        base = super().score(sample)
        objs = [o for o in data_objects(sample) if isinstance(o.get("instruction"), str)]
        if not base or not objs:
            return 0.0
        doctorish = sum(1 for o in objs if _DOCTOR.search(o["instruction"])) / len(objs)
        top_share = Counter(o["instruction"] for o in objs).most_common(1)[0][1] / len(objs)
        # Wins over plain Alpaca only when the instruction is the doctor prompt in most rows.
        return base + 0.01 if doctorish > 0.6 and (top_share > 0.3 or doctorish > 0.9) else 0.0
