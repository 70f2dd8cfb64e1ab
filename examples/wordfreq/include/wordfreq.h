/* wordfreq: count how often each word occurs in a text. */
#ifndef WORDFREQ_H
#define WORDFREQ_H
#include <stddef.h>

struct wf_entry {
  char *word;
  size_t count;
};

struct wf_table {
  struct wf_entry *entries;
  size_t len;
  size_t cap;
};

/* Adds every word of `text` (letters and digits, case-folded) to the table. Returns 0, or -1 on allocation failure. */
int wf_add_text(struct wf_table *table, const char *text);
/* How often `word` was seen (case-insensitive); 0 if never. */
size_t wf_count(const struct wf_table *table, const char *word);
/* Sorts entries by count, highest first; ties alphabetically. */
void wf_sort(struct wf_table *table);
void wf_free(struct wf_table *table);

#endif
