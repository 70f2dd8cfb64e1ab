#include "wordfreq.h"

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                \
    }                                                            \
  } while (0)

int main(void) {
  struct wf_table t = { 0 };
  CHECK(wf_add_text(&t, "The cat and the hat. THE end!") == 0);
  CHECK(wf_count(&t, "the") == 3);
  CHECK(wf_count(&t, "The") == 3);
  CHECK(wf_count(&t, "cat") == 1);
  CHECK(wf_count(&t, "dog") == 0);
  wf_sort(&t);
  CHECK(strcmp(t.entries[0].word, "the") == 0);
  CHECK(strcmp(t.entries[1].word, "and") == 0);
  wf_free(&t);

  CHECK(wf_add_text(&t, "") == 0);
  CHECK(t.len == 0);
  for (int i = 0; i < 100; i++) CHECK(wf_add_text(&t, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17") == 0);
  CHECK(t.len == 17);
  CHECK(wf_count(&t, "w17") == 100);
  wf_free(&t);

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all wordfreq tests passed\n");
  return 0;
}
