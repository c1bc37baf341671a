#!/bin/sh
# Installs what a fresh Debian/Ubuntu machine lacks to build chatpay:
# libclang (RocksDB's bindings are generated with bindgen), a C++ compiler
# (RocksDB itself), and Python with YAML and pip (checks of the test vectors
# and of deploy/). Installs nothing that is already present.
set -eu

# libclang itself (libclang.so*, libclang-14.so*), not libclang-cpp, which
# some images ship alone and which bindgen cannot use.
is_libclang() {
    grep -Eq '(^|/)libclang(-[0-9.]+)?\.so(\.[0-9.]+)?$'
}

have_libclang() {
    for f in ${LIBCLANG_PATH:-/nonexistent}/libclang* /usr/lib/llvm-*/lib/libclang* \
        /usr/lib/*/libclang* /usr/lib/libclang* /usr/local/lib/libclang*; do
        [ -e "$f" ] && echo "$f" | is_libclang && return 0
    done
    return 1
}

# bindgen also needs clang's own headers (stddef.h and friends).
have_clang_headers() {
    ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h /usr/lib/clang/*/include/stddef.h \
        >/dev/null 2>&1
}

missing=""
{ have_libclang && have_clang_headers; } || missing="$missing libclang-dev"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
# deploy/check.py parses the compose file and Kubernetes manifests.
python3 -c 'import yaml' >/dev/null 2>&1 || missing="$missing python3-yaml"
# `make vectors` installs coincurve and cryptography (the independent check
# of encrypted memos) into target/pydeps with pip.
python3 -m pip --version >/dev/null 2>&1 || missing="$missing python3-pip"

if [ -z "$missing" ]; then
    exit 0
fi

echo "installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "need root or sudo to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
