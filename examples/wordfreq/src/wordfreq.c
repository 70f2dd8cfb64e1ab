#include "wordfreq.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static struct wf_entry *find(const struct wf_table *table, const char *word) {
  for (size_t i = 0; i < table->len; i++)
    if (strcmp(table->entries[i].word, word) == 0) return &table->entries[i];
  return NULL;
}

static int add_word(struct wf_table *table, const char *word) {
  struct wf_entry *hit = find(table, word);
  if (hit) {
    hit->count++;
    return 0;
  }
  if (table->len == table->cap) {
    size_t cap = table->cap ? table->cap * 2 : 16;
    struct wf_entry *grown = realloc(table->entries, cap * sizeof *grown);
    if (!grown) return -1;
    table->entries = grown;
    table->cap = cap;
  }
  char *copy = strdup(word);
  if (!copy) return -1;
  table->entries[table->len++] = (struct wf_entry){ copy, 1 };
  return 0;
}

int wf_add_text(struct wf_table *table, const char *text) {
  char word[256];
  size_t n = 0;
  for (const char *p = text;; p++) {
    if (*p && isalnum((unsigned char)*p)) {
      if (n + 1 < sizeof word) word[n++] = (char)tolower((unsigned char)*p);
      continue;
    }
    if (n > 0) {
      word[n] = 0;
      if (add_word(table, word) < 0) return -1;
      n = 0;
    }
    if (!*p) return 0;
  }
}

size_t wf_count(const struct wf_table *table, const char *word) {
  char folded[256];
  size_t n = 0;
  for (; word[n] && n + 1 < sizeof folded; n++) folded[n] = (char)tolower((unsigned char)word[n]);
  folded[n] = 0;
  const struct wf_entry *hit = find(table, folded);
  return hit ? hit->count : 0;
}

static int by_count(const void *a, const void *b) {
  const struct wf_entry *x = a, *y = b;
  if (x->count != y->count) return x->count < y->count ? 1 : -1;
  return strcmp(x->word, y->word);
}

void wf_sort(struct wf_table *table) {
  qsort(table->entries, table->len, sizeof *table->entries, by_count);
}

void wf_free(struct wf_table *table) {
  for (size_t i = 0; i < table->len; i++) free(table->entries[i].word);
  free(table->entries);
  *table = (struct wf_table){ 0 };
}
