#!/bin/sh
# End-to-end tests of the spot_interruptions and ci_queue rulebooks under ansible-rulebook
# (see rulebook_e2e.py and ci_queue_e2e.py).
#
# Environment:
#   PYTHON           interpreter with moto[server] and boto3 (default python3)
#   ANSIBLE_RULEBOOK an ansible-rulebook with boto3 and ansible-core beside it; when unset, a
#                    virtualenv is made in EDA_VENV (default <collection>/.build/eda-venv) and
#                    ansible-rulebook, ansible-core and boto3 are installed there from PyPI.
#   EDA_PYTHON       interpreter (>= 3.10) for that virtualenv (default: python3.12 or python3)
# Needs Java 17+ (ansible-rulebook's rule engine); JAVA_HOME is guessed when unset.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PYTHON=${PYTHON:-python3}

if [ -z "${JAVA_HOME:-}" ] && command -v java >/dev/null 2>&1; then
    JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    export JAVA_HOME
fi
if ! command -v java >/dev/null 2>&1; then
    echo "rulebook.sh: Java 17+ is required by ansible-rulebook (apt-get install openjdk-17-jre-headless)" >&2
    exit 1
fi

if [ -z "${ANSIBLE_RULEBOOK:-}" ]; then
    EDA_VENV=${EDA_VENV:-$ROOT/.build/eda-venv}
    if [ ! -x "$EDA_VENV/bin/ansible-rulebook" ]; then
        EDA_PYTHON=${EDA_PYTHON:-$(command -v python3.12 || command -v python3)}
        "$EDA_PYTHON" -m venv "$EDA_VENV"
        "$EDA_VENV/bin/pip" install --quiet ansible-rulebook==1.3.2 ansible-core==2.21.5 boto3==1.44.8
    fi
    ANSIBLE_RULEBOOK=$EDA_VENV/bin/ansible-rulebook
fi
export ANSIBLE_RULEBOOK

# Schema check of every rulebook with ansible-rulebook's own validator (the controller variant
# cannot run here: it needs an AWX to launch a job template).
"$(dirname "$ANSIBLE_RULEBOOK")/python" - "$ROOT"/extensions/eda/rulebooks/*.yml <<'PY'
import sys
import yaml
from ansible_rulebook.validators import Validate
for path in sys.argv[1:]:
    with open(path) as handle:
        Validate.rulebook(yaml.safe_load(handle))
    print("schema ok:", path.rsplit("/", 1)[-1])
PY

"$PYTHON" "$HERE/rulebook_e2e.py"
exec "$PYTHON" "$HERE/ci_queue_e2e.py"
