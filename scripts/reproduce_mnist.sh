#!/usr/bin/env bash
# Reproduce the MTAdam paper's MNIST multi-term experiment (sec. 4.1) at this machine's scale
# and write the tables and plots into results/mnist/<dataset>_<scales>/.
#
#   scripts/reproduce_mnist.sh [DATA_ROOT] [SEEDS] [DATASETS] [SCALES]
#     DATA_ROOT  folder holding mnist_t10k/MNIST/raw (default ../shared/data)
#     SEEDS      comma-separated seeds (default 0,1,2,3,4) of the papers' methods, the balanced reference and
#                the tuned baseline
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
#     NEW_SEEDS    seeds of the twelve methods beyond the papers, trained on t10k only (mnist5k keeps the papers'
#                  methods; default: the first three of SEEDS)
#     NEW_METHODS  which of them (default all twelve: uncertainty dwa rlw gls relobralo famo gradnorm mgda
#                  pcgrad cagrad imtl aligned_mtl); NEW_METHODS= (empty) leaves them out
#     THREADS      torch intra-op threads per run (default 1: device.threads=1 and OMP_NUM_THREADS=1, so that the
#                  recorded command regenerates each row; the count is in the row's threads column)
#
# Per-seed CSVs (docs/results_tooling.md): every finished run is appended to results/mnist/<tag>/per_seed.csv
# (one row per arm and seed) and an (arm, seed) already there is not trained again, even on a machine without
# the runs; table.md and table_stats.csv are made from that CSV alone (scripts/make_tables.py). The per-step
# curves (mtbench report) are redrawn only when every recorded run is on this machine. The tuned arm uses
# results/mnist/<tag>/hyperband_baseline.yaml when it is there (delete it and $RUN_ROOT/<tag>/baseline to tune
# again).
#
# For each dataset and scale setting: every method on the unbalanced terms, balanced Adam
# (all scales 1) as the reference, and the Hyperband-tuned fixed weights (tuned once per setting;
# delete $RUN_ROOT/<tag>/baseline to tune again).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data}
SEEDS=${2:-0,1,2,3,4}
NEW_SEEDS=${NEW_SEEDS:-$(echo "$SEEDS" | cut -d, -f1-3)}
NEW_METHODS=${NEW_METHODS-uncertainty dwa rlw gls relobralo famo gradnorm mgda pcgrad cagrad imtl aligned_mtl}
DATASETS=${3:-mnist5k t10k}
SCALES=${4:-uniform loguniform}
MT=${MTBENCH:-.venv/bin/mtbench}
PY=${PYTHON:-.venv/bin/python}
ROOT=${RUN_ROOT:-runs/reproduce/mnist}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
COMMON=(trainer.progress=false device.threads=$THREADS device.deterministic=true)
MAXR=810  # Hyperband rungs at 90, 270 and 810 steps (eta 3)

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
    out="results/mnist/$tag"
    SEED_CSV="$out/per_seed.csv" MISSING_RUNS=0
    for m in fixed softadapt softadapt_normalized softadapt_loss_weighted mtadam; do
      stage "$run/unbalanced" mnist $m experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}"
    done
    ARM=balanced stage "$run/balanced" mnist fixed experiment=mnist_balanced "${DATA[@]}"
    runs=("$run/unbalanced" "$run/balanced")
    if [ "${SKIP_TUNE:-0}" != 1 ]; then
      bl="$run/baseline"
      if compgen -G "$bl/*.yaml" >/dev/null; then :
      elif [ -f "$out/hyperband_baseline.yaml" ] && restore_baseline "$out/hyperband_baseline.yaml" "$bl" $MAXR; then :
      else
        run_mt tune experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" "baselines_dir=$bl" "${COMMON[@]}" \
          tune.n_trials=${TUNE_TRIALS:-20} tune.range_factor=${TUNE_RANGE:-1000} \
          tune.min_resource=$((MAXR / 9)) tune.max_resource=$MAXR \
          "tune.storage=$run/tune.journal" "hydra.run.dir=$run/tune"
      fi
      ARM=tuned stage "$run/tuned_fixed" mnist fixed experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}" method.weights=baseline \
        "baselines_dir=$bl"
      runs+=("$run/tuned_fixed")
    fi
    # the twelve methods beyond the two papers, on the same unbalanced terms (fewer seeds: NEW_SEEDS)
    for m in $([ "$ds" = t10k ] && echo $NEW_METHODS); do
      SEEDS=$NEW_SEEDS stage "$run/unbalanced" mnist $m experiment=mnist_unbalanced "${DATA[@]}" "${SCL[@]}"
    done
    if [ "$MISSING_RUNS" = 0 ]; then  # the per-step curves (weights, loss) need every run
      mkdir -p "$out" && rm -f "$out"/*.png  # figures of an earlier report
      "$MT" report "${runs[@]}" --out "$out" --overwrite --label tuned:method.weights=baseline --label balanced:experiment=mnist_balanced
    else
      echo "[${0##*/}] $out: curves not redrawn (recorded runs missing from $run); the tables come from per_seed.csv"
    fi
    if [ "${SKIP_TUNE:-0}" != 1 ]; then publish_baseline "$(ls "$bl"/*.yaml | head -n 1)" "$out/hyperband_baseline.yaml"; fi
    "$PY" scripts/make_tables.py "$SEED_CSV"
  done
done
