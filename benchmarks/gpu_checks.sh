#!/usr/bin/env bash
# The GPU checks of pcvae_sklearn in one go: the CUDA tests, then the scale and speed benchmarks on device="cuda".
#
#   bash benchmarks/gpu_checks.sh [OUTDIR]
#
# Run from the repository root on a machine with a CUDA GPU and the package importable
# (pip install -e . or PYTHONPATH=$PWD). Logs go to OUTDIR (default gpu_out/). About 5 minutes on one H100/H200.
set -o pipefail
out=${1:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, awkward, sklearn, numpy; print('torch', torch.__version__, 'awkward', awkward.__version__, \
'sklearn', sklearn.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_readout.py tests/test_reliability.py -k "cuda or gpu or readout or distil" 2>&1 \
    | tee "$out/pytest_gpu.log"
python3 benchmarks/bench_scale.py --device cuda --parts transform fit3d 2>&1 | tee "$out/bench_scale_cuda.log"
python3 benchmarks/bench_speed_options.py --device cuda --options float32 bfloat16 2>&1 | tee "$out/bench_speed_cuda.log"
timeout 240 python3 benchmarks/bench_speed_options.py --device cuda --options compile 2>&1 | tee "$out/bench_compile_cuda.log"
