# `make demo` and `make test` work on a fresh clone: each creates .venv when it
# is missing, installs torch pinned first (an unpinned resolve would pull
# several GB of CUDA wheels), then the project with its dev and cpu extras
# (the cpu extra is onnxruntime; GPU machines take the gpu extra instead).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint bench clean venv weights ethucy-weights stack-weights

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev,cpu]"
	touch $(STAMP)

# The closed-loop evaluation of the shipped stack (weights/stack.safetensors) on the built-in `demo`
# suite: the stack, its argmax ablation, the rule-based baseline and a short sigma sweep, with a
# report folder (runs/demo/report). A few minutes on a 2-core CPU.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/drivestack stack evaluate --preset demo --out runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,cpu,bench]"
	$(PY) bench/sim_throughput.py --out docs/bench/sim_throughput.json

# Default perception weights for the demo: record expert drives (drive logs, tensor
# channels only), pretrain without labels on every 5th frame, fine-tune on every
# label, calibrate on held-out drives. Every step resumes or is skipped when its
# output exists (a recording's index.json is written last). Full size takes hours
# on a 2-core CPU; the variables shrink it for a smoke run (GEN_ARGS: `fleet
# record` flags, e.g. --duration 2 --raster-size 32 --resolution 1; TRAIN_ARGS:
# the jobs' flags, e.g. --every 2).
DS := $(VENV)/bin/drivestack
WEIGHTS_WORK ?= runs/weights
WEIGHTS_OUT ?= weights/perception.safetensors
WEIGHTS_SEEDS ?= 32
WEIGHTS_VAL_SEEDS ?= 8
GEN_ARGS ?=
TRAIN_ARGS ?=
EVAL_ARGS ?=
PRETRAIN_ARGS ?= --steps 2000 --batch-size 16
FINETUNE_ARGS ?= --steps 1000 --batch-size 16

$(WEIGHTS_WORK)/train/index.json: | $(STAMP)
	$(DS) fleet record --suite hard --out $(WEIGHTS_WORK)/train --seeds $(WEIGHTS_SEEDS) --no-foxglove $(GEN_ARGS)

$(WEIGHTS_WORK)/val/index.json: | $(STAMP)
	$(DS) fleet record --suite hard --out $(WEIGHTS_WORK)/val --seeds $(WEIGHTS_VAL_SEEDS) --first-seed 1000 \
		--no-foxglove $(GEN_ARGS)

weights: $(WEIGHTS_WORK)/train/index.json $(WEIGHTS_WORK)/val/index.json
	$(DS) perception pretrain --data $(WEIGHTS_WORK)/train --out $(WEIGHTS_WORK)/pretrain --resume \
		$(PRETRAIN_ARGS) $(TRAIN_ARGS)
	$(DS) perception finetune --data $(WEIGHTS_WORK)/train --out $(WEIGHTS_WORK)/finetune --resume \
		--init $(WEIGHTS_WORK)/pretrain/final.safetensors --label-fraction 1.0 $(FINETUNE_ARGS) $(TRAIN_ARGS)
	$(DS) perception evaluate --checkpoint $(WEIGHTS_WORK)/finetune/final.safetensors \
		--data $(WEIGHTS_WORK)/val --out $(WEIGHTS_WORK)/eval $(EVAL_ARGS)
	mkdir -p $(dir $(WEIGHTS_OUT))
	cp $(WEIGHTS_WORK)/eval/calibrated.safetensors $(WEIGHTS_OUT)

# ETH/UCY predictor weights, one per leave-one-scene-out fold (each trained on the
# other four scenes), then the per-scene benchmark table. Resumes; skips folds
# whose weights exist.
ETHUCY ?= ../shared/data/ethucy

ethucy-weights: $(STAMP)
	$(PY) bench/ethucy.py --data $(ETHUCY) --train --work runs/ethucy --out docs/bench/ethucy.json

# The default stack: the shipped perception weights (`make weights`) and a predictor trained on
# the windows of simulator drives (vehicles and pedestrians of the hard suite, seeds clear of the
# evaluation's; recorded as drive logs),
# assembled into one checkpoint with the planner's settings. Resumes; skips what exists.
STACK_WORK ?= runs/stack-weights
PREDICTOR_ARGS ?= --latent 8 --hidden 48 --decoder-hidden 96 --interaction-radius 20 --lanes \
	--steps 6000 --checkpoint-every 500

$(STACK_WORK)/logs-a/index.json: | $(STAMP)
	$(DS) fleet record --suite hard --out $(STACK_WORK)/logs-a --seeds 12 --first-seed 100 --no-foxglove

$(STACK_WORK)/logs-b/index.json: | $(STAMP)
	$(DS) fleet record --suite hard --out $(STACK_WORK)/logs-b --seeds 24 --first-seed 200 --no-foxglove

stack-weights: $(STACK_WORK)/logs-a/index.json $(STACK_WORK)/logs-b/index.json
	$(DS) prediction train --logs $(dir $^) --out $(STACK_WORK)/predictor --resume $(PREDICTOR_ARGS)
	$(DS) stack assemble --perception weights/perception.safetensors \
		--predictor $(STACK_WORK)/predictor/final.safetensors --out weights/stack.safetensors

clean:
	rm -rf $(VENV) runs .pytest_cache
