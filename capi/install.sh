#!/usr/bin/env bash
# Builds the C library (release) and installs it under PREFIX (default /usr/local):
#   PREFIX/include/dropnorm.h
#   PREFIX/lib/libdropnorm.a                       static
#   PREFIX/lib/libdropnorm.so.X.Y.Z (+ soname and dev symlinks)   shared
#   PREFIX/lib/pkgconfig/dropnorm.pc               shared:  pkg-config --cflags --libs dropnorm
#   PREFIX/lib/pkgconfig/dropnorm-static.pc        static:  pkg-config --cflags --libs dropnorm-static
#   PREFIX/lib/cmake/dropnorm/dropnormConfig.cmake find_package(dropnorm): dropnorm::dropnorm,
#                                                  dropnorm::dropnorm_static
# Usage: capi/install.sh [PREFIX]     (CARGO_TARGET_DIR is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$(mkdir -p "${1:-/usr/local}" && cd "${1:-/usr/local}" && pwd)"
target="${CARGO_TARGET_DIR:-target}"

# The system libraries a Rust static library needs, as rustc reports them for this target.
native="$(cargo rustc --release -p dropnorm-capi --lib --quiet -- --print native-static-libs 2>&1 \
  | sed -n 's/.*native-static-libs: //p' | tail -1)"
[ -n "$native" ] || native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

version="$(sed -n 's/^version = "\([0-9.]*\)".*/\1/p' capi/Cargo.toml | head -1)"
major="${version%%.*}"; rest="${version#*.}"; minor="${rest%%.*}"
if [ "$major" = 0 ]; then soname="libdropnorm.so.$major.$minor"; else soname="libdropnorm.so.$major"; fi

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/dropnorm"
install -m 644 include/dropnorm.h "$prefix/include/dropnorm.h"
install -m 644 "$target/release/libdropnorm_capi.a" "$prefix/lib/libdropnorm.a"
install -m 755 "$target/release/libdropnorm_capi.so" "$prefix/lib/libdropnorm.so.$version"
# The release profile keeps line tables for profiling; an installed library does without.
if command -v strip >/dev/null; then
  strip --strip-debug "$prefix/lib/libdropnorm.a" "$prefix/lib/libdropnorm.so.$version"
fi
ln -sf "libdropnorm.so.$version" "$prefix/lib/$soname"
ln -sf "libdropnorm.so.$version" "$prefix/lib/libdropnorm.so"

cat > "$prefix/lib/pkgconfig/dropnorm.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: dropnorm
Description: Dropout and batch-norm kernels for CPUs (shared library)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -ldropnorm
PC
cat > "$prefix/lib/pkgconfig/dropnorm-static.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: dropnorm-static
Description: Dropout and batch-norm kernels for CPUs (static library)
Version: $version
Cflags: -I\${includedir}
Libs: \${libdir}/libdropnorm.a $native
PC
cat > "$prefix/lib/cmake/dropnorm/dropnormConfig.cmake" <<CM
# dropnorm $version: find_package(dropnorm) gives dropnorm::dropnorm (shared) and
# dropnorm::dropnorm_static.
get_filename_component(_dropnorm_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(dropnorm_VERSION $version)
if(NOT TARGET dropnorm::dropnorm)
  add_library(dropnorm::dropnorm SHARED IMPORTED)
  set_target_properties(dropnorm::dropnorm PROPERTIES
    IMPORTED_LOCATION "\${_dropnorm_prefix}/lib/libdropnorm.so.$version"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_dropnorm_prefix}/include")
  add_library(dropnorm::dropnorm_static STATIC IMPORTED)
  separate_arguments(_dropnorm_native UNIX_COMMAND "$native")
  set_target_properties(dropnorm::dropnorm_static PROPERTIES
    IMPORTED_LOCATION "\${_dropnorm_prefix}/lib/libdropnorm.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_dropnorm_prefix}/include"
    INTERFACE_LINK_LIBRARIES "\${_dropnorm_native}")
endif()
CM
cat > "$prefix/lib/cmake/dropnorm/dropnormConfigVersion.cmake" <<CM
set(PACKAGE_VERSION $version)
if(PACKAGE_FIND_VERSION_MAJOR EQUAL $major AND (NOT $major EQUAL 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL $minor)
   AND NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CM
echo "installed dropnorm $version in $prefix"
