#!/bin/sh
# The mutation score of impl/select_server.py, with the conformance checker as the test.
#
#   sh bench/mutation/run.sh [WORKDIR]        # about 15 minutes on 2 cores
#
# Clones the current commit into WORKDIR (default: a new temporary directory),
# makes a virtual environment there without the project installed (mutmut
# must import the mutated copy, not this checkout), adds the one test mutmut
# runs (bench/mutation/test_mutation_target.py: every requirement against the
# reference, ECHO-1..7 derandomized) and runs mutmut 3.8.1 with 2 children.
# Prints mutmut's per-mutant results and the score; kills.jsonl in WORKDIR
# says which requirement killed each mutant.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/mutation.XXXXXX)}
git clone -q "$here" "$work/repo"
cd "$work/repo"
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
pip install -q --disable-pip-version-check mutmut==3.8.1 'hypothesis>=6.100' 'pytest>=8.0' pytest-xdist psutil
cp "$here/bench/mutation/test_mutation_target.py" tests/
cat >> pyproject.toml <<'TOML'

[tool.mutmut]
source_paths = ["impl/"]
only_mutate = ["impl/select_server.py"]
also_copy = ["spec/", "conftest.py"]
pytest_add_cli_args_test_selection = ["tests/test_mutation_target.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist"]
timeout_multiplier = 5.0
timeout_constant = 5.0
TOML
export MUT_KILL_LOG="$work/repo/kills.jsonl"
nice -n 10 mutmut run --max-children 2 || true
mutmut results --all true > "$work/results.txt" || true
mutmut export-cicd-stats || true
cat mutants/mutmut-cicd-stats.json
echo
echo "per-mutant results: $work/results.txt; kills: $MUT_KILL_LOG"
