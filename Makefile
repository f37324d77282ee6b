# Two commands do all the set-up: `make demo` and `make test`. Both create .venv when it is absent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO   ?= runs/demo

.PHONY: demo test lint env clean-env

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the exact pins (a CUDA build; on Kaggle it is preinstalled and never reinstalled).
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

env: $(VENV)/.installed

demo: env
	$(PY) -m amzkit demo --out $(DEMO)

test: env
	$(PY) -m pytest -q

lint: env
	$(VENV)/bin/ruff check amzkit tests benchmarks

clean-env:
	rm -rf $(VENV)
