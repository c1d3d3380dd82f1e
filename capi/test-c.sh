#!/usr/bin/env bash
# The C API as C and C++ engines use it: installs the library into a temporary prefix
# (capi/install.sh), then builds with pkg-config and runs, against the static library and the
# shared one each,
#   capi/tests/c/test_capi.c       C11: every function vs a scalar C reference, error paths
#   capi/examples/engine.cpp       C++17: fold BN into conv weights, fused BN+add+ReLU in bf16
# with -Wall -Wextra -Werror and AddressSanitizer + UndefinedBehaviorSanitizer. Then, if cmake
# is installed, the same two programs built through find_package(dropnorm)
# (capi/tests/cmake/CMakeLists.txt), once per imported target.
set -euo pipefail
cd "$(dirname "$0")/.."
cc="${CC:-cc}"
cxx="${CXX:-c++}"
prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
capi/install.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
warn="-Wall -Wextra -Werror -pedantic"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for kind in static shared; do
  pc=dropnorm; [ "$kind" = static ] && pc=dropnorm-static
  # shellcheck disable=SC2046  # pkg-config's flags are words
  "$cc" -std=c11 $warn $san -O1 -g capi/tests/c/test_capi.c -o "$prefix/test_capi_$kind" \
    $(pkg-config --cflags --libs "$pc") -lm -Wl,-rpath,"$prefix/lib"
  # shellcheck disable=SC2046
  "$cxx" -std=c++17 $warn $san -O1 -g capi/examples/engine.cpp -o "$prefix/engine_$kind" \
    $(pkg-config --cflags --libs "$pc") -Wl,-rpath,"$prefix/lib"
  if [ "$kind" = shared ]; then
    # Linked against the shared library by its soname, not by a path.
    readelf -d "$prefix/test_capi_$kind" | grep -q 'NEEDED.*libdropnorm\.so' \
      || { echo "test_capi_$kind does not load libdropnorm.so"; exit 1; }
  else
    ! readelf -d "$prefix/test_capi_$kind" | grep -q 'NEEDED.*libdropnorm' \
      || { echo "test_capi_$kind loads libdropnorm dynamically"; exit 1; }
  fi
  echo "--- C test ($kind library)"
  "$prefix/test_capi_$kind"
  echo "--- C++ engine example ($kind library)"
  "$prefix/engine_$kind"
done

if command -v cmake >/dev/null; then
  echo "--- CMake: find_package(dropnorm), dropnorm::dropnorm and dropnorm::dropnorm_static"
  cmake -S capi/tests/cmake -B "$prefix/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$prefix/cmake-build" >/dev/null
  for kind in static shared; do
    "$prefix/cmake-build/test_capi_$kind" | tail -1
    "$prefix/cmake-build/engine_$kind" | tail -1
  done
  readelf -d "$prefix/cmake-build/engine_shared" | grep -q 'NEEDED.*libdropnorm\.so' \
    || { echo "engine_shared (CMake) does not load libdropnorm.so"; exit 1; }
else
  echo "--- CMake package not tested: no cmake here"
fi
