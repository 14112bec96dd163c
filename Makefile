# make demo: the whole tool on this machine; make test: the test suite. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DATASET ?= ravdess
ENCODER ?= vith16-384
STORE ?= caches/$(DATASET).zarr
PROBE ?= attentive
RUN ?= runs/$(notdir $(basename $(STORE)))-$(PROBE)
EXTRACT_ARGS ?=

.PHONY: install test demo extract probe bench bench-gpu lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch where no GPU is present; a GPU box keeps whatever torch it resolves.
	if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q "torch>=2.4"; \
	else $(PIP) install -q torch==2.13.0 || $(PIP) install -q torch --index-url https://download.pytorch.org/whl/cpu; fi
	$(PIP) install -q -e ".[dev,plots,hf,augment]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest tests

demo: install
	$(PY) scripts/demo.py

extract: install
	$(VENV)/bin/fer-cache extract --dataset $(DATASET) --encoder $(ENCODER) --out $(STORE) \
		$(if $(PROTOCOL),--preset $(PROTOCOL) --test-out $(basename $(STORE))-test.zarr) $(EXTRACT_ARGS)

probe: install
	$(VENV)/bin/fer-probe cv $(STORE) --probe $(PROBE) --out $(RUN)

bench: install
	$(PY) benchmarks/bench_encoder.py --preset tiny
	$(PY) benchmarks/bench_extract.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_probe.py
	$(PY) benchmarks/bench_probe.py --mode floor
	$(PY) benchmarks/bench_probe.py --mode floor --rank 256 --epochs 4
	$(PY) benchmarks/bench_optimizer.py
	$(PY) benchmarks/bench_probe.py --mode disk

# On a fresh CUDA machine with torch (no .venv): the missing libraries come from .whl/ (scripts/gpu_wheels.sh).
bench-gpu:
	bash scripts/bench_gpu.sh

lint: install
	$(VENV)/bin/ruff check fer_cache fer_probe tests benchmarks scripts
	$(PY) scripts/check_sizes.py

clean:
	rm -rf $(VENV) .fer runs/demo caches/demo.zarr
