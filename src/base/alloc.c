#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

void *up_malloc(size_t n)
{
    return malloc(n ? n : 1);
}

void *up_calloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size ? size : 1);
}

void *up_realloc(void *p, size_t n)
{
    return realloc(p, n ? n : 1);
}

void up_free(void *p)
{
    free(p);
}

void up_alloc_trim(void)
{
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
}

char *up_strndup(const char *s, size_t n)
{
    if (!s) {
        return NULL;
    }
    char *d = malloc(n + 1);
    if (!d) {
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *up_strdup(const char *s)
{
    return s ? up_strndup(s, strlen(s)) : NULL;
}
