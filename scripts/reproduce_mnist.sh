#!/usr/bin/env bash
# Reproduce the MTAdam paper's MNIST multi-term experiment (sec. 4.1) at this machine's scale
# and write the tables and plots into results/mnist/<dataset>_<scales>/.
#
#   scripts/reproduce_mnist.sh [DATA_ROOT] [SEEDS] [DATASETS] [SCALES]
#     DATA_ROOT  folder holding mnist_t10k/MNIST/raw (default ../shared/data)
#     SEEDS      comma-separated seeds (default 0,1,2,3,4)
#     DATASETS   mnist5k and/or t10k (default "mnist5k t10k")
#     SCALES     uniform and/or loguniform (default "uniform loguniform")
#   environment:
#     RUN_ROOT     where the runs go (default runs/reproduce/mnist). Re-running with the same RUN_ROOT
#                  skips the (stage, method, seed) runs that have a summary.json, resumes the unfinished ones
#                  (resume=true from their checkpoints/last.pt) and trains the others, so the script continues
#                  after an interruption and adding seeds trains only the new ones. An interrupt (Ctrl-C,
#                  SIGTERM) stops the script (exit status 128 + the signal) with every run so far kept.
#     T10K_STEPS   optimisation steps of a t10k run (default 825, the step budget of mnist5k's 15 epochs
#                  of 3,500 digits; about 7 epochs of t10k's 7,500), so both datasets get the same budget
#     TUNE_TRIALS  Hyperband trials (default 20); TUNE_RANGE: weights searched in [1/R, R] (default 1000,
#                  wide enough to undo scales up to 1000); SKIP_TUNE=1 leaves the tuned baseline out
#     THREADS      torch intra-op threads per run (default: torch's choice)
#
# For each dataset and scale setting: every method on the unbalanced terms, balanced Adam
# (all scales 1) as the reference, and the Hyperband-tuned fixed weights (tuned once per setting;
# delete $RUN_ROOT/<tag>/baseline to tune again).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data}
SEEDS=${2:-0,1,2,3,4}
DATASETS=${3:-mnist5k t10k}
SCALES=${4:-uniform loguniform}
MT=${MTBENCH:-.venv/bin/mtbench}
ROOT=${RUN_ROOT:-runs/reproduce/mnist}
COMMON=(trainer.progress=false)
if [ -n "${THREADS:-}" ]; then COMMON+=(device.threads=$THREADS); fi

source scripts/reproduce_lib.sh  # stage DIR MODEL METHOD OVERRIDES...: resumable stages; run_mt: stops on interrupts

for ds in $DATASETS; do
  if [ "$ds" = t10k ]; then
    # the real MNIST test file, a fixed 8,000/2,000 split; 500 of the 8,000 validate (tuning)
    DATA=(data=mnist "data.root=$DATA_ROOT/mnist_t10k" data.subset=t10k data.download=false data.val_size=500
          trainer.max_steps=${T10K_STEPS:-825})
  else
    DATA=(data=mnist5k)
  fi
  for sc in $SCALES; do
    if [ "$sc" = loguniform ]; then SCL=(model.scales.kind=loguniform model.scales.low=0.001 model.scales.high=1000)
    else SCL=(model.scales.kind=uniform model.scales.low=0 model.scales.high=1000); fi
    tag="${ds}_${sc}"
    run="$ROOT/$tag"
    for m in fixed softadapt softadapt_normalized softadapt_loss_weighted mtadam; do
      stage "$run/unbalanced" mnist $m experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}"
    done
    stage "$run/balanced" mnist fixed experiment=mnist_balanced "${DATA[@]}"
    runs=("$run/unbalanced" "$run/balanced")
    if [ "${SKIP_TUNE:-0}" != 1 ]; then
      bl="$run/baseline"
      if ! compgen -G "$bl/*.yaml" >/dev/null; then
        run_mt tune experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" "baselines_dir=$bl" "${COMMON[@]}" \
          tune.n_trials=${TUNE_TRIALS:-20} tune.range_factor=${TUNE_RANGE:-1000} \
          tune.min_resource=90 tune.max_resource=810 \
          "tune.storage=$run/tune.journal" "hydra.run.dir=$run/tune"
      fi
      stage "$run/tuned_fixed" mnist fixed experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" method.weights=baseline \
        "baselines_dir=$bl"
      runs+=("$run/tuned_fixed")
    fi
    mkdir -p results/mnist && rm -f "results/mnist/$tag"/*.png  # figures of an earlier report
    "$MT" report "${runs[@]}" --out "results/mnist/$tag" --overwrite
    if [ "${SKIP_TUNE:-0}" != 1 ]; then cp "$bl"/*.yaml "results/mnist/$tag/hyperband_baseline.yaml"; fi
  done
done
