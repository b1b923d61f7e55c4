#!/bin/sh
# Build llama.cpp's CPU benchmark tools as a measuring peer for pdkv's CPU backend
# (docs/PERFORMANCE.md, compute section). Nothing of llama.cpp goes into pdkv: it is
# fetched into a directory of its own, built there, and only run.
#
#   deploy/bench/llamacpp-peer.sh DIR
#
# The source comes from the npm package node-llama-cpp, which carries llama.cpp as a git
# bundle (llama/gitRelease.bundle); the version is pinned, and npm checks the tarball
# against the registry's integrity hash. Builds DIR/llama.cpp/build/bin/llama-bench and
# DIR/pd-llama-greedy (greedy token ids from given token ids, deploy/bench/llama-greedy.c)
# with -march=native, on the CPU only, with OpenMP. Needs npm, cmake, gcc, g++; the GGUF
# converter needs Debian's python3-numpy (run it with /usr/bin/python3).
#
# Then, for the comparison in docs/PERFORMANCE.md:
#   build/bin/pdctl model new --preset m50 --seed 1 -o DIR/m50
#   for t in f32 bf16 q8_0; do PYTHONPATH=DIR/llama.cpp/gguf-py /usr/bin/python3 \
#       deploy/bench/gguf-from-pdkv.py DIR/m50 DIR/m50-$t.gguf --outtype $t; done
#   DIR/pd-llama-greedy DIR/m50-f32.gguf 32 IDS   # equals: pdctl generate -m DIR/m50 --tokens IDS -n 32 --temperature 0
#   deploy/bench/llamacpp-compare.py --kbench build/bin/pd-kbench \
#       --llama-bench DIR/llama.cpp/build/bin/llama-bench --gguf-prefix DIR/m50 --rounds 3
set -eu
NODE_LLAMA_CPP_VERSION=3.22.1
dir=${1:?usage: llamacpp-peer.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
cd "$dir"
if [ ! -d llama.cpp ]; then
    npm pack "node-llama-cpp@$NODE_LLAMA_CPP_VERSION"
    tar xzf "node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" package/llama/gitRelease.bundle \
        package/llama/llama.cpp.info.json
    git clone -q package/llama/gitRelease.bundle llama.cpp
fi
jobs=${JOBS:-2}
cmake -S llama.cpp -B llama.cpp/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_APP=OFF -DBUILD_SHARED_LIBS=OFF
nice -n 10 cmake --build llama.cpp/build -j"$jobs" --target llama-bench llama
# The greedy-token harness: token ids in, greedy token ids out, f32 logits argmax.
gcc -O2 -c -o llama-greedy.o "$here/llama-greedy.c" -Illama.cpp/include -Illama.cpp/ggml/include
g++ -o pd-llama-greedy llama-greedy.o \
    -Illama.cpp/include -Illama.cpp/ggml/include \
    llama.cpp/build/src/libllama.a llama.cpp/build/ggml/src/libggml.a \
    llama.cpp/build/ggml/src/libggml-cpu.a llama.cpp/build/ggml/src/libggml-base.a \
    -fopenmp -lpthread -lm
echo "built: $dir/llama.cpp/build/bin/llama-bench $dir/pd-llama-greedy"
echo "gguf-py (for deploy/bench/gguf-from-pdkv.py): PYTHONPATH=$dir/llama.cpp/gguf-py"
