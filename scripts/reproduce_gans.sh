#!/usr/bin/env bash
# Reproduce the GAN comparisons at the quick scale on real data and write the tables and plots into
# results/gans/<model>/:
#   pix2pix   people_contours, contour drawing -> photo (B->A), 64x64    experiment=pix2pix_people_contours
#   cyclegan  people_contours contours <-> photos, unpaired, 64x64       experiment=cyclegan_people_contours
#   srgan     x4, trained on 32x32 crops of 60 BSD68 images, validated on
#             the other 8, reported on Set5 and Set14                     experiment=srgan_bsd68
#             every arm's generator starts from one SRResNet-MSE pre-training (content term only, 64x64 crops,
#             seed 0, run once and shared by every method and seed; a row of its own)  experiment=srresnet_bsd68
# each under the default fixed weights, the three SoftAdapt variants (as the SoftAdapt README uses them, and on the
# model's default weights: method.on_default_weights=true), MTAdam and the Hyperband-tuned fixed weights;
# pix2pix and CycleGAN also with two untrained baselines (mtbench trivial): identity (the contour drawing itself)
# and mean_train_photo (the per-pixel mean training photo), rows of their own in the report.
#
#   scripts/reproduce_gans.sh [DATA_ROOT] [SEEDS] [MODELS]
#     DATA_ROOT  folder holding people_contours/ and sr/{BSD68,Set5,Set14} (default ../shared/data)
#     SEEDS      comma-separated seeds (default 0,1,2)
#     MODELS     any of pix2pix cyclegan srgan (default all three)
#   environment:
#     RUN_ROOT     where the prepared data and the runs go (default runs/reproduce/gans). Re-running with the
#                  same RUN_ROOT skips the (stage, method, seed) runs with a summary.json, resumes the unfinished
#                  ones from their checkpoints/last.pt and trains the others. An interrupt (Ctrl-C, SIGTERM)
#                  stops the script (exit status 128 + the signal) with every run so far kept.
#     TUNE_TRIALS  Hyperband trials per model (default 12); SKIP_TUNE=1 leaves the tuned baseline out
#     NEW_SEEDS    seeds of the twelve methods beyond the papers, on pix2pix only (default: SEEDS)
#     NEW_METHODS  which of them (default all twelve: uncertainty dwa rlw gls relobralo famo gradnorm mgda
#                  pcgrad cagrad imtl aligned_mtl); NEW_METHODS= (empty) leaves them out
#     THREADS      torch intra-op threads per run (default 1: device.threads=1 and OMP_NUM_THREADS=1, so that the
#                  recorded command regenerates each row; the count is in the row's threads column)
#
# Per-seed CSVs (docs/results_tooling.md): every finished run (arms, trivial baselines, the SRResNet) is appended
# to results/gans/<model>/per_seed.csv (one row per arm and seed) and an (arm, seed) already there is not run again,
# even on a machine without the runs; table.md and table_stats.csv are made from that CSV alone
# (scripts/make_tables.py). The per-step curves (mtbench report) are redrawn only when every recorded run is on
# this machine. The tuned arm uses results/gans/<model>/hyperband_baseline.yaml when it is there (delete it and
# $RUN_ROOT/<model>/baseline to tune again).
#
# FID/KID: with the pytorch-fid Inception weights on disk (eval.fid=auto finds them) FID becomes each GAN's
# primary metric and the tuning objective; without them (offline) the task metrics are reported:
# PSNR/SSIM/L1 against the true photo (pix2pix, CycleGAN on its held-out pairs), Y-channel PSNR/SSIM (SRGAN).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data}
SEEDS=${2:-0,1,2}
MODELS=${3:-pix2pix cyclegan srgan}
NEW_SEEDS=${NEW_SEEDS:-$SEEDS}
NEW_METHODS=${NEW_METHODS-uncertainty dwa rlw gls relobralo famo gradnorm mgda pcgrad cagrad imtl aligned_mtl}
MT=${MTBENCH:-.venv/bin/mtbench}
PY=${PYTHON:-.venv/bin/python}
ROOT=${RUN_ROOT:-runs/reproduce/gans}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
COMMON=(trainer.progress=false device.threads=$THREADS device.deterministic=true)

# the data layouts (links and PNG halves under $ROOT/data; the source is never modified)
"$PY" scripts/prepare_people_contours.py "$DATA_ROOT/people_contours" "$ROOT/data/people_contours"
SR="$ROOT/data/sr"
if [ ! -d "$SR/bsd68_val" ]; then  # BSD68: the first 60 images (by name) train, the last 8 validate
  mapfile -t bsd < <(ls "$DATA_ROOT/sr/BSD68" | sort)
  if [ ${#bsd[@]} -ne 68 ]; then echo "error: expected 68 images in $DATA_ROOT/sr/BSD68, found ${#bsd[@]}" >&2; exit 2; fi
  mkdir -p "$SR.partial/bsd68_train" "$SR.partial/bsd68_val"
  for f in "${bsd[@]:0:60}"; do ln -sf "$(realpath "$DATA_ROOT/sr/BSD68/$f")" "$SR.partial/bsd68_train/$f"; done
  for f in "${bsd[@]:60}"; do ln -sf "$(realpath "$DATA_ROOT/sr/BSD68/$f")" "$SR.partial/bsd68_val/$f"; done
  rm -rf "$SR"; mv "$SR.partial" "$SR"
fi

source scripts/reproduce_lib.sh  # stage DIR MODEL METHOD OVERRIDES...: resumable stages; run_mt: stops on interrupts

# all_recorded ARM...: whether SEED_CSV has every seed of SEEDS of every ARM
all_recorded() {
  local a s
  for a in "$@"; do for s in ${SEEDS//,/ }; do recorded "$SEED_CSV" "$a" "$s" || return 1; done; done
}

for model in $MODELS; do
  out="results/gans/$model"
  SEED_CSV="$out/per_seed.csv" MISSING_RUNS=0
  case $model in
    pix2pix)  ARGS=(experiment=pix2pix_people_contours "data.root=$ROOT/data/people_contours/aligned"); MAXR=2000
              DATA_NAME=people_contours ;;
    cyclegan) ARGS=(experiment=cyclegan_people_contours "data.root=$ROOT/data/people_contours/unpaired"); MAXR=1600
              DATA_NAME=people_contours ;;
    srgan)    # Set5 and Set14 as DATA_ROOT gives them (relative to the repository root): no machine path in the report
              SR_DATA=("data.train_root=$SR/bsd68_train" "data.eval_roots=[$SR/bsd68_val,$DATA_ROOT/sr/Set5,$DATA_ROOT/sr/Set14]")
              # the SRGAN paper's SRResNet-MSE pre-training, once; resumed if interrupted, skipped when finished
              SRRESNET="$ROOT/srgan/srresnet" DATA_NAME=bsd68
              arms=(fixed softadapt softadapt_normalized softadapt_loss_weighted mtadam)
              arms+=(softadapt_on_defaults softadapt_normalized_on_defaults softadapt_loss_weighted_on_defaults)
              if [ "${SKIP_TUNE:-0}" != 1 ]; then arms+=(tuned); fi
              if [ ! -f "$SRRESNET/summary.json" ] && recorded "$SEED_CSV" srresnet 0 && all_recorded "${arms[@]}"; then
                MISSING_RUNS=1  # every SRGAN arm is recorded: no pre-training needed
              elif [ ! -f "$SRRESNET/summary.json" ]; then
                again=(); if [ -f "$SRRESNET/checkpoints/last.pt" ]; then again=(resume=true); fi
                echo "[${0##*/}] $SRRESNET: SRResNet pre-training (experiment=srresnet_bsd68)"
                run_mt train experiment=srresnet_bsd68 "${SR_DATA[@]}" seed=0 "${COMMON[@]}" ${again[@]+"${again[@]}"} \
                  "hydra.run.dir=$SRRESNET"
              fi
              if [ -f "$SRRESNET/summary.json" ] && ! recorded "$SEED_CSV" srresnet 0; then record srresnet "$SRRESNET"; fi
              ARGS=(experiment=srgan_bsd68 "${SR_DATA[@]}" "model.init_from=$SRRESNET")
              MAXR=400 ;;
    *) echo "error: unknown model '$model' (choose from pix2pix cyclegan srgan)" >&2; exit 2 ;;
  esac
  run="$ROOT/$model"
  for m in fixed softadapt softadapt_normalized softadapt_loss_weighted mtadam; do
    stage "$run/methods" "$model" $m "${ARGS[@]}"
  done
  # SoftAdapt on the model's default weights (effective weight = default x K x softmax): the second SoftAdapt arm
  for m in softadapt softadapt_normalized softadapt_loss_weighted; do
    ARM=${m}_on_defaults stage "$run/softadapt_on_defaults" "$model" $m "${ARGS[@]}" method.on_default_weights=true
  done
  runs=("$run/methods" "$run/softadapt_on_defaults")
  if [ "${SKIP_TUNE:-0}" != 1 ]; then
    bl="$run/baseline"
    if compgen -G "$bl/*.yaml" >/dev/null; then :
    elif [ -f "$out/hyperband_baseline.yaml" ] && restore_baseline "$out/hyperband_baseline.yaml" "$bl" $MAXR; then :
    else
      # Hyperband rungs at MAXR/9, MAXR/3 and MAXR steps (eta 3); the objective is the validation split's
      run_mt tune "${ARGS[@]}" "baselines_dir=$bl" "${COMMON[@]}" tune.n_trials=${TUNE_TRIALS:-12} \
        tune.min_resource=$((MAXR / 9)) tune.max_resource=$MAXR \
        "tune.storage=$run/tune.journal" "hydra.run.dir=$run/tune"
    fi
    ARM=tuned stage "$run/tuned_fixed" "$model" fixed "${ARGS[@]}" method.weights=baseline "baselines_dir=$bl"
    runs+=("$run/tuned_fixed")
  fi
  if [ "$model" = pix2pix ]; then  # the twelve methods beyond the two papers: a loss-balancing leaderboard on a GAN
    for m in $NEW_METHODS; do SEEDS=$NEW_SEEDS stage "$run/methods" "$model" $m "${ARGS[@]}"; done
  fi
  if [ "$model" = pix2pix ] || [ "$model" = cyclegan ]; then
    # untrained baselines on the same data, split and metrics (mtbench trivial): rows of their own in the report
    for k in identity mean_train_photo; do  # seed 0: deterministic, one row each
      if recorded "$SEED_CSV" "$k" 0; then
        if [ ! -f "$run/trivial/$k/summary.json" ]; then MISSING_RUNS=1; fi
        continue
      fi
      if [ ! -f "$run/trivial/$k/summary.json" ]; then
        rm -rf "$run/trivial/$k"  # an interrupted evaluation (no summary.json): nothing of value, redo it
        run_mt trivial $k "${ARGS[@]}" "${COMMON[@]}" "hydra.run.dir=$run/trivial/$k"
      fi
      record "$k" "$run/trivial/$k"
    done
    runs+=("$run/trivial")
  fi
  if [ "$model" = srgan ]; then runs+=("$SRRESNET"); fi  # the SRResNet the arms start from: a row of its own
  if [ "$MISSING_RUNS" = 0 ]; then  # the per-step curves (weights, loss) need every run
    mkdir -p "$out" && rm -f "$out"/*.png  # figures of an earlier report
    "$MT" report "${runs[@]}" --out "$out" --overwrite --label tuned:method.weights=baseline
  else
    echo "[${0##*/}] $out: curves not redrawn (recorded runs missing from $run); the tables come from per_seed.csv"
  fi
  if [ "${SKIP_TUNE:-0}" != 1 ]; then publish_baseline "$(ls "$bl"/*.yaml | head -n 1)" "$out/hyperband_baseline.yaml"; fi
  "$PY" scripts/make_tables.py "$SEED_CSV"
done
