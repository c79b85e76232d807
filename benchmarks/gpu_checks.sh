#!/usr/bin/env bash
# The checks only a CUDA GPU can run, as one short script (about 5 minutes on one GPU, after the install):
# the CUDA tests (batched half-precision boundary model; each mask tokenizer's label maps on CUDA equal the CPU's)
# and the mask-tokenizer benchmark on the GPU (ours on the same GPU as the baseline).
#
#     bash benchmarks/gpu_checks.sh [OUT_DIR]     # default OUT_DIR: benchmarks/results
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU here'; print(torch.cuda.get_device_name())"
python -m pytest -q -rs -p no:cacheprovider -k cuda tests/test_mask_tokenizers.py tests/test_throughput.py \
    2>&1 | tee "$out/gpu_tests.log"
BENCH_THREADS="${BENCH_THREADS:-4}" python benchmarks/bench_mask_tokenizers.py --device cuda \
    --out "$out/mask_tokenizers_cuda.json"
