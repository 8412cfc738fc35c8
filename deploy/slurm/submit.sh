#!/bin/bash
# Submits a sharded robustness evaluation: N array tasks, then the merge once all succeeded.
#
#   WEIGHTS=/shared/runs/x/model.safetensors OUT=/shared/runs/eval/x SHARDS=8 \
#     deploy/slurm/submit.sh
#
# The same works for `bulwark attack ... --shard slurm/N` and `bulwark sweep ... --shard slurm/N`
# (write their command into eval-array.sbatch's place); `bulwark merge` recognises what it merges.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SHARDS=${SHARDS:-4}
: "${WEIGHTS:?set WEIGHTS}"
: "${OUT:?set OUT (a directory on the shared filesystem)}"
export WEIGHTS OUT SHARDS
array=$(sbatch --parsable --export=ALL --array=0-$((SHARDS - 1)) "$here/eval-array.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --export=ALL --dependency=afterok:"$array" "$here/merge.sbatch")
echo "submitted evaluation array $array ($SHARDS shards) and merge job ${merge%%;*}"
echo "report when done: $OUT/report.md"
