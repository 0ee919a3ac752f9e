#!/usr/bin/env bash
# Build the wheelhouse for installing jaxrl-icl on a GPU node without internet that already has its
# own JAX (jax, jaxlib and the CUDA plugin, flax, optax, chex, orbax-checkpoint, h5py, matplotlib).
# Run it on any machine with internet; copy the folder to the node; there:
#   pip install --no-index --no-deps wheelhouse/*.whl
#   pip install --no-index --find-links wheelhouse/build --no-deps -e .
#
#   tools/wheelhouse.sh [DIR] [PYTHON_VERSION] [PLATFORM]     (defaults: wheelhouse 3.11 manylinux_2_28_x86_64)
#
# PYTHON_VERSION and PLATFORM are the node's: python -c "import sys; print(sys.version_info[:2])",
# and pip debug --verbose lists the platform tags it accepts. The versions are the ones the tests
# run with. Set BENCH_REFS=0 to leave out the references of `bench curriculum` (scikit-learn).
set -euo pipefail
dir="${1:-wheelhouse}"
python_version="${2:-3.11}"
platform="${3:-manylinux_2_28_x86_64}"

# gymnax and its declared dependencies a JAX node lacks; six (gymnax imports it without declaring
# it); tqdm (progress bars). No brax, mujoco, rlax or distrax: only `envs.make("brax:...")` needs Brax.
packages=(gymnax==1.0.1 gymnasium==1.3.0 cloudpickle==3.1.3 farama-notifications==0.0.6 seaborn==0.13.2
          pandas==3.1.1 six==1.17.0 tqdm==4.70.1)
# the reference implementation of `python -m experiments.bench curriculum` (skipped without it)
if [ "${BENCH_REFS:-1}" = 1 ]; then
  packages+=(scikit-learn==1.9.1 joblib==1.6.0 narwhals==2.29.0 threadpoolctl==3.8.0)
fi

mkdir -p "$dir/build"
pip download --no-deps --only-binary=:all: --python-version "$python_version" --platform "$platform" \
  -d "$dir" "${packages[@]}"
# only to build the editable install of this checkout offline (pip's isolated build environment)
# (setuptools asks for wheel to build an editable install; pure Python, with their requirements)
pip download --only-binary=:all: -d "$dir/build" "setuptools>=68" wheel
ls "$dir" "$dir/build"
