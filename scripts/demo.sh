#!/usr/bin/env bash
# The main job (`make demo`): start the local Kafka and Neo4j, replay the shipped sample stream,
# run the worker until it has caught up, and print recommendations read back from Neo4j.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TASTEGRAPH_VENV:-$HOME/.cache/tastegraph/venv}
export PATH="$VENV/bin:$PATH"
tastegraph services up
tastegraph replay deploy/demo/items.jsonl.gz
tastegraph replay deploy/demo/events.jsonl.gz
tastegraph worker --until-idle 5 --no-metrics
users=$(python - <<'PY'
import gzip, json, collections
c = collections.Counter(json.loads(l)["user_id"] for l in gzip.open("deploy/demo/events.jsonl.gz", "rt"))
print(" ".join(u for u, _ in c.most_common(3)))
PY
)
for user in $users; do
  echo "== recommendations for user $user"
  tastegraph recommend "$user" -k 5
done
