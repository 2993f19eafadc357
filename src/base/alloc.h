/* The one place that calls malloc/free (STYLE §4, §11). */
#ifndef UP_BASE_ALLOC_H
#define UP_BASE_ALLOC_H

#include <stddef.h>

/* Allocate/resize/free memory. They return NULL on failure and never abort. */
void *up_malloc(size_t n);
void *up_calloc(size_t n, size_t size);
void *up_realloc(void *p, size_t n);
void up_free(void *p);
/* Give freed memory back to the system where the C library keeps it (glibc's malloc_trim):
 * after many streams close, RSS returns near its idle figure. Costs a walk of the free lists;
 * call it now and then, not per free. */
void up_alloc_trim(void);
/* Duplicate a NUL-terminated string; NULL on failure or when s is NULL. */
char *up_strdup(const char *s);
/* Duplicate n bytes of s and NUL-terminate; NULL on failure. */
char *up_strndup(const char *s, size_t n);

/* An allocator passed to a codec at init (STYLE §5, nghttp2_mem), so a memory budget or a
 * failalloc test sees every byte it takes. realloc_fn(ud, p, n) behaves like the C library's
 * realloc, and realloc_fn(ud, p, 0) frees p and returns NULL. A NULL realloc_fn means
 * up_realloc/up_free. */
struct up_alloc {
    void *(*realloc_fn)(void *ud, void *p, size_t n);
    void *ud;
};

/* Free p and set it to NULL (Tor FREE_AND_NULL). */
#define UP_FREE(p)                                                                                 \
    do {                                                                                           \
        up_free(p);                                                                                \
        (p) = NULL;                                                                                \
    } while (0)

#endif
