#!/usr/bin/env bash
# The wheels bench/gpu.py needs on the lent GPU machine, made here (that machine has no network,
# Python 3.12 on x86-64, and an image holding torch, numpy, pandas, pyarrow, scipy, scikit-learn,
# pillow, pyyaml, filelock, tqdm, matplotlib and opencv, but not what is listed below): a wheel
# of ganaug itself and those packages, at the versions this checkout's .venv runs, into .whl/
# (ignored by git). Then, in one device call:
#
#   carry: [".whl"]
#   command: python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
#            --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 &&
#            python3 bench/gpu.py --out $OUT/gpu.json 2>&1 | tee $OUT/gpu.log
#
# dvc and prefect stay behind: bench/gpu.py runs the stages themselves, not the DVC pipeline or
# the flows. `bench/gpu_carry.sh --check` also installs the wheels the same way into a fresh
# Python 3.12 venv holding only that image's packages and runs `bench/gpu.py --smoke` there.
set -euo pipefail
cd "$(dirname "$0")/.."
NEEDED="albumentations albucore simsimd stringzilla pydantic pydantic-core annotated-types typing-inspection
        imbalanced-learn sklearn-compat animal-mnist"
IMAGE="torch==2.13.0 numpy pandas pyarrow scipy scikit-learn pillow pyyaml filelock tqdm matplotlib
       opencv-python-headless typing-extensions joblib threadpoolctl"

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w .whl .
for name in $NEEDED; do
    version=$(.venv/bin/python -m pip show "$name" | awk '/^Version:/ {print $2}')
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$name==$version"
done
ls .whl && du -sh .whl

if [[ "${1:-}" == "--check" ]]; then
    python312=""  # the first Python 3.12 that runs (a pyenv shim may exist and not run)
    for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
        if "$candidate" --version > /dev/null 2>&1; then python312=$candidate; break; fi
    done
    [[ -n "$python312" ]] || { echo "no Python 3.12 here to check with"; exit 1; }
    check=$(mktemp -d)
    "$python312" -m venv "$check/venv"
    # shellcheck disable=SC2086
    "$check/venv/bin/python" -m pip install -q $IMAGE
    "$check/venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$check/site" .whl/*.whl
    here=$PWD
    (cd "$check" && export PYTHONPATH="$check/site:$here" &&
        "$check/venv/bin/python" -c "from bench.datasets import load_animal_mnist; print(load_animal_mnist()[0].shape)" &&
        "$check/venv/bin/python" "$here/bench/gpu.py" --smoke --out "$check/smoke.json") &&
        echo "carry check passed: $check/smoke.json"
fi
