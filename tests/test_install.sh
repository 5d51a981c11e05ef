#!/usr/bin/env bash
# test_install.sh — the installed library as a user outside this tree meets it: `cmake
# --install` into a fresh prefix, then examples/resnet_block.c built and run against it both
# ways, with pkg-config (shared, then static) and with find_package(regrad) in CMake.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -u
BUILD=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { # NAME COMMAND...: passes when the command exits 0 and prints a loss
  local name=$1; shift
  if "$@" >"$tmp/out" 2>&1 && grep -q "^loss " "$tmp/out"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL: $name: $(tail -5 "$tmp/out")"; fi
}
cmake --install "$BUILD" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || { echo "FAIL: install: $(tail -5 "$tmp/install.log")"; exit 1; }
for f in include/regrad.h bin/regrad lib/libregrad.a lib/pkgconfig/regrad.pc lib/cmake/regrad/regradConfig.cmake; do
  [ -e "$tmp/prefix/$f" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: not installed: $f"; }
done
soname=$(objdump -p "$tmp/prefix/lib/libregrad.so" 2>/dev/null | sed -n 's/ *SONAME *//p')
[ "$soname" = "libregrad.so.0" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: SONAME '$soname'"; }
# the prefix moved after installing: pkg-config finds it from the .pc file's own place
mv "$tmp/prefix" "$tmp/moved"
export PKG_CONFIG_PATH="$tmp/moved/lib/pkgconfig"
cc -o "$tmp/shared" "$SRC/examples/resnet_block.c" $(pkg-config --cflags --libs regrad) -lm \
   -Wl,-rpath,"$tmp/moved/lib" >"$tmp/out" 2>&1
check "pkg-config, shared" "$tmp/shared"
ldd "$tmp/shared" | grep -q "libregrad.so.0 => $tmp/moved/lib" && pass=$((pass + 1)) ||
  { fail=$((fail + 1)); echo "FAIL: the shared build does not load the installed libregrad.so.0"; }
cc -o "$tmp/static" "$SRC/examples/resnet_block.c" $(pkg-config --cflags regrad) \
   "$tmp/moved/lib/libregrad.a" $(pkg-config --static --libs-only-other --libs-only-l regrad | sed 's/-lregrad//') >"$tmp/out" 2>&1
check "pkg-config --static" "$tmp/static"
mkdir -p "$tmp/app"
cp "$SRC/examples/resnet_block.c" "$tmp/app/"
cat > "$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(regrad 0.1 REQUIRED)
add_executable(app_shared resnet_block.c)
target_link_libraries(app_shared PRIVATE regrad::regrad m)
add_executable(app_static resnet_block.c)
target_link_libraries(app_static PRIVATE regrad::regrad_static m)
CM
if cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$tmp/moved" >"$tmp/out" 2>&1 &&
   cmake --build "$tmp/app/build" >>"$tmp/out" 2>&1; then
  check "find_package, shared" "$tmp/app/build/app_shared"
  check "find_package, static" "$tmp/app/build/app_static"
else
  fail=$((fail + 1)); echo "FAIL: find_package(regrad): $(tail -5 "$tmp/out")"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
