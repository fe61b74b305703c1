# curate pipeline over datasets/. Each stage reads the previous stage's directory:
#   make demo                      install into .venv and run every stage that works offline
#   make clean translate reflect   the pipeline, stage by stage
#   make test                      the test suite
PY         ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
CURATE     := $(BIN)/curate
RAW        ?= datasets/raw
NORMALIZED ?= datasets/normalized
CLEANED    ?= datasets/clean
TRANSLATED ?= datasets/translated
REFLECTED  ?= datasets/reflected
EXPORTED   ?= datasets/export
TEST_SIZE  ?= 0.05
# the last stage that ran before export (override: make export EXPORT_FROM=datasets/translated)
EXPORT_FROM ?= $(CLEANED)

.PHONY: install demo ingest export info test distclean bench argilla-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,ray]'
	$(BIN)/python -m curate.warmup  # numba compiles its kernels once here, not in the first real run
	touch $@

install: $(BIN)/.installed

ingest: install
	$(CURATE) ingest $(RAW) -o $(NORMALIZED)

export: install
	$(CURATE) export $(EXPORT_FROM) -o $(EXPORTED) --test-size $(TEST_SIZE)

info: install
	$(CURATE) info $(NORMALIZED)

# clean: registered rules fix, flag or drop rows (curate clean --list-rules); dropped rows go to
# $(CLEANED)/quarantine.parquet (curate info reads it). Extra options: make clean CLEAN_ARGS="--rule fix_indonesian=fix"
# Before translation no language is wanted yet (CLEAN_LANG=any keeps English/Korean/Indonesian rows
# for translate); on data already in the target language use CLEAN_LANG=ms.
CLEAN_LANG ?= any
CLEAN_ARGS ?=
.PHONY: clean
clean: install
	$(CURATE) clean $(NORMALIZED) -o $(CLEANED) --target-lang $(CLEAN_LANG) $(CLEAN_ARGS)

# translate: reads the clean stage when it exists, else the normalized rows. Endpoint from BASE_URL/MODEL
# or OPENAI_BASE_URL/OPENAI_API_KEY; with none it writes OpenAI Batch API files and says how to go on.
TO       ?= ms
BASE_URL ?=
MODEL    ?=
.PHONY: translate
translate: install
	$(CURATE) translate $(if $(wildcard $(CLEANED)),$(CLEANED),$(NORMALIZED)) -o $(TRANSLATED) --to $(TO) \
	    $(if $(BASE_URL),--base-url $(BASE_URL)) $(if $(MODEL),--model $(MODEL))

# reflect: chats from the translate stage (else clean, else normalized) rewritten in hindsight -> SFT + RM rows.
# judge: pairwise win rate of the reflected answers over the originals (JUDGED dir, report.json).
JUDGED   ?= datasets/judged
REFLECT_FROM = $(firstword $(wildcard $(TRANSLATED) $(CLEANED)) $(NORMALIZED))
.PHONY: reflect judge
reflect: install
	$(CURATE) reflect $(REFLECT_FROM) -o $(REFLECTED) \
	    $(if $(BASE_URL),--base-url $(BASE_URL)) $(if $(MODEL),--model $(MODEL))

judge: install
	$(CURATE) judge $(REFLECTED) -o $(JUDGED) --pairwise \
	    $(if $(BASE_URL),--base-url $(BASE_URL)) $(if $(MODEL),--model $(MODEL))

# push / pull: human review in Argilla. Needs ARGILLA_API_URL and ARGILLA_API_KEY (owner/admin key).
# push reads the last stage that exists (override: make push PUSH_FROM=datasets/clean DATASET=review-ms).
DATASET   ?= curate-review
WORKSPACE ?=
LABELLED  ?= datasets/labelled
PUSH_FROM ?= $(firstword $(wildcard $(REFLECTED) $(TRANSLATED) $(CLEANED)) $(NORMALIZED))
.PHONY: push pull argilla-env
argilla-env:
	@if [ -z "$$ARGILLA_API_URL" ] || [ -z "$$ARGILLA_API_KEY" ]; then \
	  echo "push/pull need an Argilla server. Set, for example:"; \
	  echo "  export ARGILLA_API_URL=http://localhost:6900   # your Argilla server"; \
	  echo "  export ARGILLA_API_KEY=...                     # Argilla UI -> My settings -> API key"; \
	  echo "then: make push DATASET=$(DATASET)   (annotate in the UI)   make pull DATASET=$(DATASET)"; \
	  exit 1; fi

push: argilla-env install
	$(CURATE) push $(PUSH_FROM) --dataset $(DATASET) $(if $(WORKSPACE),--workspace $(WORKSPACE))

pull: argilla-env install
	$(CURATE) pull --dataset $(DATASET) -o $(LABELLED) $(if $(WORKSPACE),--workspace $(WORKSPACE))
	@echo "next: make export EXPORT_FROM=$(LABELLED)   (RM pairs and PPO prompts from the answers)"

# demo: offline. translate writes its requests as OpenAI Batch API files (it never calls an API here,
# even with OPENAI_API_KEY set) and exits 5 (rows pending), which stops `make clean translate reflect`
# but not the demo; the HTML report and the export read the cleaned rows.
demo: ingest clean info
	$(CURATE) translate $(CLEANED) -o $(TRANSLATED) --to $(TO) --batch-out $(TRANSLATED)/batch/translate-requests.jsonl -q \
	    || [ $$? -eq 5 ]   # 5: the rows wait for the Batch API results, as expected offline
	$(CURATE) report $(CLEANED) --compare $(NORMALIZED) -o $(CLEANED)/report.html
	$(MAKE) --no-print-directory export
	@echo
	@echo "Demo done. Outputs:"
	@echo "  $(NORMALIZED)/   canonical rows (<kind>.parquet), quarantine.jsonl, report.json"
	@echo "  $(CLEANED)/        rows after the clean rules, quarantine.parquet (dropped rows), report.json,"
	@echo "                          report.html (open it in a browser)"
	@echo "  $(TRANSLATED)/batch/  translation requests as OpenAI Batch API files (no endpoint was called);"
	@echo "                          point at a server instead: make translate BASE_URL=http://127.0.0.1:8000/v1 MODEL=..."
	@echo "  $(EXPORTED)/     training files (TRL / OpenAI / Alpaca / RM pairs / PPO), export.json, manifest.json, README.md card"

# the argilla-server venv for the Argilla tests: at $CURATE_ARGILLA_VENV or ~/.cache/curate/argilla-venv,
# the one `curate argilla serve` uses (installed once, by whichever needs it first)
argilla-venv: install
	@$(BIN)/python curate/argilla_local/venv.py

# everything pip can install is installed above; the Debian packages are only checked (one line
# saying how to install what is missing; their tests skip). .ci/run installs them and allows no skip.
test: install argilla-venv
	@bash scripts/debian-packages.sh
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/ingest.py

distclean:
	rm -rf $(NORMALIZED) $(CLEANED) $(TRANSLATED) $(REFLECTED) $(EXPORTED) $(JUDGED) $(LABELLED) bench/out
