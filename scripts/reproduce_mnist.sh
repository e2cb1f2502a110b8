#!/usr/bin/env bash
# Reproduce the MTAdam paper's MNIST multi-term experiment (sec. 4.1) at this machine's scale
# and write the tables and plots into results/mnist/<dataset>_<scales>/.
#
#   scripts/reproduce_mnist.sh [DATA_ROOT] [SEEDS] [DATASETS] [SCALES]
#     DATA_ROOT  folder holding mnist_t10k/MNIST/raw (default ../shared/data)
#     SEEDS      comma-separated seeds (default 0,1,2,3,4)
#     DATASETS   mnist5k and/or t10k (default "mnist5k t10k")
#     SCALES     uniform and/or loguniform (default "uniform loguniform")
#
# For each dataset and scale setting: every method on the unbalanced terms, balanced Adam
# (all scales 1) as the reference, and the Hyperband-tuned fixed weights (SKIP_TUNE=1 leaves them out).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data}
SEEDS=${2:-0,1,2,3,4}
DATASETS=${3:-mnist5k t10k}
SCALES=${4:-uniform loguniform}
MT=${MTBENCH:-.venv/bin/mtbench}
METHODS=fixed,softadapt,softadapt_normalized,softadapt_loss_weighted,mtadam
STAMP=$(date +%Y-%m-%d_%H-%M-%S)

for ds in $DATASETS; do
  if [ "$ds" = t10k ]; then
    # the real MNIST test file, a fixed 8,000/2,000 split; 500 of the 8,000 validate (tuning)
    DATA=(data=mnist "data.root=$DATA_ROOT/mnist_t10k" data.subset=t10k data.download=false data.val_size=500)
  else
    DATA=(data=mnist5k)
  fi
  for sc in $SCALES; do
    if [ "$sc" = loguniform ]; then SCL=(model.scales.kind=loguniform model.scales.low=0.001 model.scales.high=1000)
    else SCL=(model.scales.kind=uniform model.scales.low=0 model.scales.high=1000); fi
    tag="${ds}_${sc}"
    sweep="runs/reproduce/mnist/$STAMP/$tag"
    "$MT" train -m experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" method=$METHODS seed="$SEEDS" \
      trainer.progress=false "hydra.sweep.dir=$sweep/unbalanced"
    "$MT" train -m experiment=mnist_balanced "${DATA[@]}" method=fixed seed="$SEEDS" \
      trainer.progress=false "hydra.sweep.dir=$sweep/balanced"
    bl="runs/reproduce/mnist/$STAMP/baselines_$tag"
    runs=("$sweep/unbalanced" "$sweep/balanced")
    if [ "${SKIP_TUNE:-0}" != 1 ]; then
    "$MT" tune experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" "baselines_dir=$bl" \
      tune.n_trials=${TUNE_TRIALS:-20} tune.min_resource=90 tune.max_resource=810 \
      "tune.storage=runs/reproduce/mnist/$STAMP/$tag.journal" "hydra.run.dir=$sweep/tune"
    "$MT" train -m experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" method=fixed method.weights=baseline \
      "baselines_dir=$bl" seed="$SEEDS" trainer.progress=false "hydra.sweep.dir=$sweep/tuned_fixed"
    runs+=("$sweep/tuned_fixed")
    fi
    mkdir -p results/mnist
    "$MT" report "${runs[@]}" --out "results/mnist/$tag" --overwrite
    if [ "${SKIP_TUNE:-0}" != 1 ]; then cp "$bl"/*.yaml "results/mnist/$tag/hyperband_baseline.yaml"; fi
  done
done
