/* spec/c/test.h: a minimal assertion kit for the C tests: each check prints both sides. */
#ifndef RILL_TEST_H
#define RILL_TEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Descriptors this process has open now (tests compare it before and after their failures). */
static inline int test_fd_count(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream's own */
}

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define CHECK_INT(a, b)                                                                         \
  do {                                                                                          \
    long long a_ = (long long)(a), b_ = (long long)(b);                                         \
    if (a_ != b_) {                                                                             \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_, \
              b_);                                                                              \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

#define CHECK_STR(a, b)                                                                         \
  do {                                                                                          \
    const char *a_ = (a), *b_ = (b);                                                            \
    if (strcmp(a_, b_) != 0) {                                                                  \
      fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, \
              a_, b_);                                                                          \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

#define RUN(test)                      \
  do {                                 \
    fprintf(stderr, "-- %s\n", #test); \
    test();                            \
  } while (0)

#endif
