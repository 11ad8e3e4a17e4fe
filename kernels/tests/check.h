// CHECK(cond, printf-format, ...) of the C++ tests: counts and prints a failure, keeps going;
// finish(name) prints the verdict and returns main's exit code (0 = pass).
#pragma once
#include <cstdio>

static int failures = 0;
#define CHECK(cond, ...)                               \
  do {                                                 \
    if (!(cond)) {                                     \
      ++failures;                                      \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
    }                                                  \
  } while (0)

static int finish(const char* name) {
  if (failures) {
    std::printf("%s: %d check(s) failed\n", name, failures);
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}
