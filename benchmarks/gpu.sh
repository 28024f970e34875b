#!/usr/bin/env bash
# The GPU path's checks in one go, for a machine with one CUDA GPU (issue 11, part 7): the gpu-marked tests (FSDP2
# and NCCL among them), then benchmarks/mfu.py on gpt2_small in bf16, compiled with its cross-entropy, in one sitting:
# batch 32 (the earlier headline), batch 64, batch 64 with CUDA graphs (mode=reduce-overhead), and batch 64 with
# inductor's horizontal and aggressive fusion. A long autotuning run (mode=max-autotune*) is left to a separate call:
#   bash benchmarks/gpu.sh [OUT_DIR]        # rows go to OUT_DIR/mfu.json (default runs/bench), logs beside them
#   SKIP_TESTS=1 bash benchmarks/gpu.sh OUT_DIR
set -uo pipefail
out=${1:-runs/bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
"$python" -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 180 "$python" -m pytest -q -m gpu tests/test_gpu.py tests/run/test_ddp.py -p no:cacheprovider 2>&1 \
    | tee "$out/gpu-tests.log" | tail -4
fi
mfu() { SECONDS=0; timeout 150 "$python" benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile \
  --compile-loss --steps 20 --out "$out/mfu.json" "$@" >>"$out/mfu.log" 2>&1 || { echo "mfu.py $* failed:"; tail -5 "$out/mfu.log"; }
  echo "mfu.py $* took ${SECONDS}s"; }
mfu --batch 32
mfu --batch 64
mfu --batch 64 --compile-mode reduce-overhead
mfu --batch 64 --inductor combo_kernels=True --inductor aggressive_fusion=True
"$python" - "$out/mfu.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"{r['name']:<80} batch {r['batch']:>3}  {r['tokens_per_sec']:>9.0f} tok/s  {r['ms_per_step']:6.1f} ms  "
          f"MFU {r['mfu']:.3f} (peak {r['matmul_peak_tflops']:.0f} measured)  {r['mfu_nominal'] or float('nan'):.3f} (datasheet)")
PY
