#!/usr/bin/env bash
# A lab's first session, timed: six labelled images of a material the shipped models were not trained
# on (graphene stands in, exported from its labels as if from a labelling tool), the microscope
# calibrated with a flat field from the images, the shipped MoS2 model fine-tuned on five of them (the
# sixth held out to score it), and three new images screened with the setup. Each step's wall seconds go to times.tsv in WORKDIR.
#   FLAKESEG_DATA=... bash docs/results/lab_day_cpu/run.sh [WORKDIR]   (with the venv active)
set -euo pipefail
work=${1:-/tmp/lab_day}
images=$FLAKESEG_DATA/data/graphen/original_halfsize
rm -rf "$work" && mkdir -p "$work" && cd "$work"
printf 'step\tseconds\n' > times.tsv
step() {  # step NAME COMMAND...: run it, append its wall time
    local name=$1 start end
    shift
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    printf '%s\t%d.%01d\n' "$name" $(((end - start) / 1000000000)) $((((end - start) / 100000000) % 10)) >> times.tsv
}
# the first of the few-shot study's 5-image draws (conf/fewshot/cpu.yaml, draw 0) and one more
step export flakeseg export-labels --data graphene --ids 001,009,010,015,017,025 --out labels.json
step import flakeseg import-labels coco labels.json --images "$images" --name lab --background other \
    --conf-dir conf --test-fraction 0.1
step calibrate flakeseg calibrate data/lab/images --data conf/data/lab.yaml --material graphene \
    --flatfield-from-images --out setup.yaml
step fine-tune flakeseg train data=lab data.material=graphene model.init_from=mos2 stage=test \
    data.samples_per_epoch=160 trainer.max_epochs=20 "hydra.searchpath=[file://$work/conf]" \
    hydra.run.dir=outputs/lab
step screen flakeseg predict outputs/lab/checkpoints/final.ckpt "$images"/Go00{2,3,5}.jpg \
    --setup setup.yaml --out screen
awk -F'\t' 'NR > 1 { total += $2 } END { printf "total\t%.1f\n", total }' times.tsv >> times.tsv
cat times.tsv
