#!/usr/bin/env bash
# The GPU path's checks in one go, for a machine with one CUDA GPU (issue 11, part 7): the gpu-marked tests (FSDP2
# and NCCL among them), then benchmarks/mfu.py on gpt2_small in bf16 at batch 32, compiled, three ways in one sitting:
# the network alone compiled; the cross-entropy compiled too (what training on a GPU does); and that with
# cuDNN's attention kernel, with a kernel profile. (mode=max-autotune-no-cudagraphs was tried too, on an H100: its
# autotuning ran past 200 s without finishing.)
#   bash benchmarks/gpu.sh [OUT_DIR]        # rows go to OUT_DIR/mfu.json (default runs/bench), logs beside them
set -uo pipefail
out=${1:-runs/bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
"$python" -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
timeout 180 "$python" -m pytest -q -m gpu tests/test_gpu.py tests/run/test_ddp.py -p no:cacheprovider 2>&1 \
  | tee "$out/gpu-tests.log" | tail -4
mfu() { timeout 130 "$python" benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile \
  --batch 32 --steps 20 --out "$out/mfu.json" "$@" >>"$out/mfu.log" 2>&1 || { echo "mfu.py $* failed:"; tail -5 "$out/mfu.log"; }; }
mfu
mfu --compile-loss
mfu --compile-loss --sdpa cudnn --profile 3
grep -B2 -A28 'Self CUDA %' "$out/mfu.log" | cut -c1-150 | head -32
"$python" - "$out/mfu.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"{r['name']:<64} batch {r['batch']:>3}  {r['tokens_per_sec']:>9.0f} tok/s  MFU {r['mfu']:.3f} "
          f"(peak {r['matmul_peak_tflops']:.0f} measured)  {r['mfu_nominal'] or float('nan'):.3f} (datasheet)")
PY
