#!/usr/bin/env bash
# Issue 29's GPU checks, in one call on a lent GPU machine (the `device` tool), whose device time
# is short (15 minutes a session, starts counted in): prepared here, run there once.
#
#   here:   bash benchmarks/gpu_session.sh --prepare
#           copies Fashion-MNIST into data/fashion-mnist and downloads visdom 0.3.0 (an sdist) and
#           the wheels it needs beyond that machine's image into .gpu/wheels (both ignored by git);
#   there:  device run, carry ["data", ".gpu"], timeout_s 540, command
#           "bash benchmarks/gpu_session.sh"
#
# There it uses the machine's own python3 (it holds torch, torchvision, click, pytest and numpy;
# nothing can be installed from the network), installs visdom from .gpu/wheels if it is missing,
# and writes to $OUT (what the device tool brings back; artifacts/gpu elsewhere):
#   1. gpu.txt: make test-gpu (tests/test_cuda.py and tests/test_distributed.py, a GPU required);
#   2. tta.txt: benchmarks.time_to_accuracy --device cuda, the CNN first (its epoch time with the
#      data resident on the GPU: the issue's goal is under 1 s on an H100 or H200);
#   3. ddp.txt: benchmarks.ddp_bench --device cuda, 1 GPU against all, where there are 2 or more.
# Each step has its own time limit, so that a hang in one leaves the others their time.
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p data/fashion-mnist .gpu/wheels
    src=$(.venv/bin/python -c "from trainers import data; print(data.load('fashion-mnist').source)")
    cp -n "$src"/*-ubyte.gz data/fashion-mnist/
    py312=${PY312:-.venv-visdom03/bin/python}  # visdom 0.3.0 is for Python >= 3.12, as python3 is there
    "$py312" -m pip download -q -d .gpu/wheels --no-deps --no-binary=:all: "visdom==0.3.0"
    "$py312" -m pip download -q -d .gpu/wheels --only-binary=:all: "tornado==6.5.10" jsonpatch websocket-client
    grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
    du -sh data/fashion-mnist .gpu/wheels
    exit 0
fi

OUT=${OUT:-artifacts/gpu}
mkdir -p "$OUT"
export GPU_PY=${GPU_PY:-python3} LIVETRAIN_DATA=$PWD/data PYTHONPATH=$PWD
{ date -u +%FT%TZ; git rev-parse --short HEAD 2>/dev/null || echo "commit ?"; nvidia-smi -L; } > "$OUT/machine.txt" 2>&1
if ! "$GPU_PY" -c "import visdom" 2> /dev/null; then
    "$GPU_PY" -m pip install -q --no-index --no-build-isolation --no-deps .gpu/wheels/* \
        > "$OUT/visdom-install.txt" 2>&1 || echo "visdom did not install (see visdom-install.txt)" >> "$OUT/machine.txt"
fi
timeout 240 make --no-print-directory test-gpu GPU_PY="$GPU_PY" > "$OUT/gpu.txt" 2>&1
echo "make test-gpu: exit $?" >> "$OUT/machine.txt"
timeout 180 "$GPU_PY" -m benchmarks.time_to_accuracy --device cuda --models cnn,mlp,softmax \
    --json "$OUT/tta.json" > "$OUT/tta.txt" 2>&1
echo "time_to_accuracy: exit $?" >> "$OUT/machine.txt"
if [ "$("$GPU_PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    timeout 120 "$GPU_PY" -m benchmarks.ddp_bench --device cuda > "$OUT/ddp.txt" 2>&1
    echo "ddp_bench: exit $?" >> "$OUT/machine.txt"
else
    echo "ddp_bench: one GPU here, the 1-vs-N comparison needs 2 or more" >> "$OUT/machine.txt"
fi
cat "$OUT/machine.txt"; tail -25 "$OUT/gpu.txt"; cat "$OUT/tta.txt"
