"""Self-instruct seed tasks JSONL: ``{id, name, instruction, instances: [{input, output}], is_classification}``."""

from __future__ import annotations

from curate.ingest.base import Record, Reject, SourceFormat, key_score, keep_extra, text

KEYS = {"id", "name", "instruction", "instances", "is_classification"}


class SeedTasks(SourceFormat):
    name = "seed_tasks"
    kind = "sft"
    summary = "self-instruct seed tasks {id, name, instruction, instances[], is_classification}"

    def score(self, sample):
        return key_score(sample, {"instruction", "instances"})

    def convert(self, obj, rec: Record):
        instruction = text(obj, "instruction", rec)
        instances = obj.get("instances")
        if not isinstance(instances, list) or not instances:
            raise Reject("missing_instances", "no instances", instances)
        rec.info["seed"] = {k: obj.get(k) for k in ("id", "name", "is_classification")}
        keep_extra(obj, KEYS, rec)
        rows = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise Reject("bad_instance", f"instance {i} is not an object", inst)
            rows.append({"instruction": instruction,
                         "input": text(inst, "input", rec, required=False),
                         "output": text(inst, "output", rec)})
        return rows
