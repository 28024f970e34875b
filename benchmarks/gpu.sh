#!/usr/bin/env bash
# The GPU path's checks in one go, for a machine with one CUDA GPU (issue 11, part 7): the gpu-marked tests (FSDP2
# and NCCL among them), then benchmarks/mfu.py on gpt2_small in bf16 with torch.compile at two batch sizes.
# (mode=max-autotune-no-cudagraphs was tried too, on an H100: its autotuning ran past 200 s without finishing.)
#   bash benchmarks/gpu.sh [OUT_DIR]        # rows go to OUT_DIR/mfu.json (default runs/bench), logs beside them
set -uo pipefail
out=${1:-runs/bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
mfu() { timeout "$1" "$python" benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile \
  --steps 20 --out "$out/mfu.json" "${@:2}"; }
mfu 150 --batch 32
mfu 150 --batch 64
timeout 240 "$python" -m pytest -q -m gpu tests/test_gpu.py tests/run/test_ddp.py -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.log" | tail -4
"$python" - "$out/mfu.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"{r['name']:<60} batch {r['batch']:>3}  {r['tokens_per_sec']:>9.0f} tok/s  MFU {r['mfu']:.3f} "
          f"(peak {r['matmul_peak_tflops']:.0f} measured)  {r['mfu_nominal'] or float('nan'):.3f} (datasheet)")
PY
