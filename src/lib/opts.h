/* One table per subcommand is the only source of flags, environment variables, defaults and
 * --help (STYLE §10). Precedence: flag > UNDERPASS_* environment > default. Options of kind
 * UP_OPT_SECRET also accept NAME-file / UNDERPASS_NAME_FILE, read from a file. */
#ifndef UP_LIB_OPTS_H
#define UP_LIB_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum up_opt_kind {
    UP_OPT_STR,
    UP_OPT_SECRET, /* string; also NAME-file; never printed */
    UP_OPT_U64,
    UP_OPT_DURATION, /* "20s", "500ms", "1h" → milliseconds */
    UP_OPT_SIZE,     /* "256k", "16m" → bytes */
    UP_OPT_FLAG,     /* no argument */
    UP_OPT_LIST,     /* repeatable; the environment variable holds a comma-separated list */
};

struct up_opt {
    const char *name; /* long name without dashes */
    enum up_opt_kind kind;
    const char *def; /* default as text, NULL = none */
    const char *metavar;
    const char *help;
};

#define UP_OPT_MAX_LIST 64
#define UP_OPT_MAX_TABLE 64 /* options per table (a bound for the callers' value arrays) */

struct up_opt_val {
    bool set;
    const char *str; /* STR/SECRET (owned by argv/env or allocated for files) */
    uint64_t num;    /* U64/DURATION/SIZE, FLAG (0/1) */
    const char *list[UP_OPT_MAX_LIST];
    size_t nlist;
    char source[64]; /* "--name", "UNDERPASS_NAME" or "default", for error messages */
};

/* Parse argv[first..argc) against tab[0..n) into vals[0..n); positional arguments go to pos
 * (up to max_pos). Handles --help (*help = true). On error returns -1 with a one-line message
 * in err. */
int up_opts_parse(const struct up_opt *tab, size_t n, int argc, char **argv, int first,
                  struct up_opt_val *vals, const char **pos, size_t max_pos, size_t *npos,
                  bool *help, char *err, size_t cap);
/* Print the help text: usage line, description, then every option with its environment
 * variable and default. */
void up_opts_help(FILE *f, const char *usage, const char *desc, const struct up_opt *tab, size_t n,
                  const char *examples);
/* Reset vals[0..n) to the table's defaults (nothing from argv or the environment). Returns 0,
 * or -1 with a message in err (a bad default: our bug). */
int up_opts_defaults(const struct up_opt *tab, size_t n, struct up_opt_val *vals, char *err,
                     size_t cap);
/* Set option name from text, as --name text would (a list option gets one more value). text
 * is not copied: it must outlive vals. Returns 0, or -1 with a message in err (unknown name,
 * bad value). */
int up_opts_set(const struct up_opt *tab, size_t n, struct up_opt_val *vals, const char *name,
                const char *text, char *err, size_t cap);
/* Read a secret from a file (at most 8 KiB, trailing newlines cut). Returns an up_malloc'd
 * string the caller frees, or NULL with a message in err. */
char *up_opts_read_secret(const char *path, char *err, size_t cap);
/* Index of option name in tab, or -1. */
int up_opts_find(const struct up_opt *tab, size_t n, const char *name);

#endif
