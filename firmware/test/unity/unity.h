// A stand-in for ThrowTheSwitch's Unity, the test framework PlatformIO's `native` environment
// runs (pio test -e native): the part of its API firmware/test/test_core uses, so the same test
// source builds here with g++ (lib/firmware/build.ts, target firmware-unit) where PlatformIO's
// packages cannot be fetched. Output follows Unity's: "file:line:test:PASS" or ":FAIL: why",
// then "N Tests F Failures 0 Ignored" and OK or FAIL.
#pragma once
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

void setUp(void);
void tearDown(void);

struct UnityState {
  int tests, failures;
  const char* current;
  jmp_buf abort;
};
static UnityState Unity = {0, 0, nullptr, {}};

static inline void unity_fail(const char* file, int line, const char* why) {
  printf("%s:%d:%s:FAIL: %s\n", file, line, Unity.current, why);
  Unity.failures++;
  longjmp(Unity.abort, 1);
}

#define UNITY_BEGIN() (Unity.tests = 0, Unity.failures = 0, 0)
#define UNITY_END() (printf("-----------------------\n%d Tests %d Failures 0 Ignored\n%s\n", Unity.tests, Unity.failures, Unity.failures ? "FAIL" : "OK"), Unity.failures)
#define RUN_TEST(fn)                                                  \
  do {                                                                \
    Unity.current = #fn;                                              \
    Unity.tests++;                                                    \
    if (setjmp(Unity.abort) == 0) {                                   \
      setUp();                                                        \
      fn();                                                           \
      tearDown();                                                     \
      printf("%s:%d:%s:PASS\n", __FILE__, __LINE__, #fn);             \
    }                                                                 \
  } while (0)

#define UNITY_CHECK(cond, ...)                       \
  do {                                               \
    if (!(cond)) {                                   \
      char why_[512];                                \
      snprintf(why_, sizeof why_, __VA_ARGS__);      \
      unity_fail(__FILE__, __LINE__, why_);          \
    }                                                \
  } while (0)

#define TEST_ASSERT_TRUE(c) UNITY_CHECK((c), "Expected TRUE Was FALSE: %s", #c)
#define TEST_ASSERT_FALSE(c) UNITY_CHECK(!(c), "Expected FALSE Was TRUE: %s", #c)
#define TEST_ASSERT_EQUAL_INT(e, a) UNITY_CHECK((long long)(e) == (long long)(a), "Expected %lld Was %lld", (long long)(e), (long long)(a))
#define TEST_ASSERT_EQUAL_UINT32(e, a) UNITY_CHECK((unsigned long)(e) == (unsigned long)(a), "Expected %lu Was %lu", (unsigned long)(e), (unsigned long)(a))
#define TEST_ASSERT_EQUAL_HEX32(e, a) UNITY_CHECK((unsigned long)(e) == (unsigned long)(a), "Expected 0x%08lX Was 0x%08lX", (unsigned long)(e), (unsigned long)(a))
#define TEST_ASSERT_GREATER_THAN(t, a) UNITY_CHECK((long long)(a) > (long long)(t), "Expected greater than %lld Was %lld", (long long)(t), (long long)(a))
#define TEST_ASSERT_DOUBLE_WITHIN(d, e, a) UNITY_CHECK(fabs((double)(e) - (double)(a)) <= (double)(d), "Expected %.6f +/- %g Was %.6f", (double)(e), (double)(d), (double)(a))
#define TEST_ASSERT_EQUAL_DOUBLE(e, a) UNITY_CHECK((double)(e) == (double)(a), "Expected %.17g Was %.17g", (double)(e), (double)(a))
#define TEST_ASSERT_EQUAL_STRING(e, a) UNITY_CHECK(strcmp((e), (a)) == 0, "Expected '%s' Was '%s'", (e), (a))
#define TEST_ASSERT_NOT_NULL(p) UNITY_CHECK((p) != nullptr, "Expected Non-NULL: %s", #p)
