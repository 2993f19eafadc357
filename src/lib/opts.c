#include "lib/opts.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/str.h"

static void env_name(const char *name, const char *suffix, char *out, size_t cap)
{
    size_t o = 0;
    const char *pre = "UNDERPASS_";
    for (const char *c = pre; *c && o + 1 < cap; c++) {
        out[o++] = *c;
    }
    for (const char *c = name; *c && o + 1 < cap; c++) {
        out[o++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
    }
    for (const char *c = suffix; *c && o + 1 < cap; c++) {
        out[o++] = *c;
    }
    out[o] = '\0';
}

int up_opts_find(const struct up_opt *tab, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tab[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

char *up_opts_read_secret(const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = up_malloc(8193);
    size_t n = buf ? fread(buf, 1, 8192, f) : 0;
    bool more = buf && fgetc(f) != EOF;
    fclose(f);
    if (!buf) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    if (more) {
        up_free(buf);
        snprintf(err, cap, "%s: larger than 8 KiB", path);
        return NULL;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) {
        n--;
    }
    buf[n] = '\0';
    if (n == 0) {
        up_free(buf);
        snprintf(err, cap, "%s: empty", path);
        return NULL;
    }
    return buf;
}

/* Values read from files or copied from the environment live until exit; keeping them here
 * keeps them reachable (and out of leak reports). */
static char *kept[UP_OPT_MAX_LIST * 4];
static size_t n_kept;

static char *keep(char *p)
{
    if (p && n_kept < sizeof kept / sizeof kept[0]) {
        kept[n_kept++] = p;
    }
    return p;
}

/* Set one value from text. */
static int set_value(const struct up_opt *o, struct up_opt_val *v, const char *text,
                     const char *source, bool from_file, char *err, size_t cap)
{
    snprintf(v->source, sizeof v->source, "%s", source);
    switch (o->kind) {
    case UP_OPT_STR:
        v->str = text;
        break;
    case UP_OPT_SECRET:
        if (from_file) {
            char *s = up_opts_read_secret(text, err, cap);
            if (!s) {
                return -1;
            }
            v->str = keep(s);
        } else {
            v->str = text;
        }
        break;
    case UP_OPT_U64:
        if (up_parse_u64(text, UINT64_MAX, &v->num) < 0) {
            snprintf(err, cap, "%s: '%s' is not a number", source, text);
            return -1;
        }
        break;
    case UP_OPT_DURATION:
        if (up_parse_duration_ms(text, &v->num) < 0) {
            snprintf(err, cap, "%s: '%s' is not a duration (like 500ms, 20s, 5m, 1h)", source,
                     text);
            return -1;
        }
        break;
    case UP_OPT_SIZE:
        if (up_parse_size(text, &v->num) < 0) {
            snprintf(err, cap, "%s: '%s' is not a size (like 4096, 256k, 16m)", source, text);
            return -1;
        }
        break;
    case UP_OPT_FLAG:
        if (strcmp(text, "1") == 0 || strcmp(text, "true") == 0 || strcmp(text, "yes") == 0) {
            v->num = 1;
        } else if (strcmp(text, "0") == 0 || strcmp(text, "false") == 0 ||
                   strcmp(text, "no") == 0) {
            v->num = 0;
        } else {
            snprintf(err, cap, "%s: expected true or false, got '%s'", source, text);
            return -1;
        }
        break;
    case UP_OPT_LIST:
        if (v->nlist >= UP_OPT_MAX_LIST) {
            snprintf(err, cap, "%s: more than %d values", source, UP_OPT_MAX_LIST);
            return -1;
        }
        v->list[v->nlist++] = text;
        break;
    }
    v->set = true;
    return 0;
}

int up_opts_parse(const struct up_opt *tab, size_t n, int argc, char **argv, int first,
                  struct up_opt_val *vals, const char **pos, size_t max_pos, size_t *npos,
                  bool *help, char *err, size_t cap)
{
    bool from_flag[128] = {false};
    *npos = 0;
    *help = false;
    memset(vals, 0, n * sizeof(*vals));
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = true;
            return 0;
        }
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (*npos >= max_pos) {
                    snprintf(err, cap, "unexpected argument '%s'", argv[i]);
                    return -1;
                }
                pos[(*npos)++] = argv[i];
            }
            break;
        }
        if (a[0] != '-' || a[1] != '-') {
            if (a[0] == '-' && a[1] != '\0') {
                snprintf(err, cap, "unknown option '%s' (options are --long; see --help)", a);
                return -1;
            }
            if (*npos >= max_pos) {
                snprintf(err, cap, "unexpected argument '%s'", a);
                return -1;
            }
            pos[(*npos)++] = a;
            continue;
        }
        char name[80];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) {
            snprintf(err, cap, "unknown option '%s'", a);
            return -1;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        bool file = false;
        int idx = up_opts_find(tab, n, name);
        if (idx < 0 && nl > 5 && strcmp(name + nl - 5, "-file") == 0) {
            name[nl - 5] = '\0';
            idx = up_opts_find(tab, n, name);
            if (idx >= 0 && tab[idx].kind != UP_OPT_SECRET) {
                idx = -1;
            }
            file = idx >= 0;
        }
        if (idx < 0) {
            snprintf(err, cap, "unknown option '--%.*s' (see --help)", (int)nl, a + 2);
            return -1;
        }
        const struct up_opt *o = &tab[idx];
        const char *val;
        if (o->kind == UP_OPT_FLAG && !eq) {
            val = "true";
        } else if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc) {
                snprintf(err, cap, "option '--%s' needs a value (%s)", o->name,
                         o->metavar ? o->metavar : "VALUE");
                return -1;
            }
            val = argv[++i];
        }
        char src[80];
        snprintf(src, sizeof src, "--%s%s", o->name, file ? "-file" : "");
        if (o->kind != UP_OPT_LIST && from_flag[idx]) {
            snprintf(err, cap, "option '--%s' given twice", o->name);
            return -1;
        }
        if (set_value(o, &vals[idx], val, src, file, err, cap) < 0) {
            return -1;
        }
        from_flag[idx] = true;
    }
    /* Environment, then defaults, for what flags did not set. */
    for (size_t i = 0; i < n; i++) {
        if (from_flag[i]) {
            continue;
        }
        const struct up_opt *o = &tab[i];
        char env[96];
        env_name(o->name, "", env, sizeof env);
        const char *ev = getenv(env);
        bool file = false;
        if ((!ev || !*ev) && o->kind == UP_OPT_SECRET) {
            env_name(o->name, "_FILE", env, sizeof env);
            ev = getenv(env);
            file = ev && *ev;
        }
        if (ev && *ev) {
            if (o->kind == UP_OPT_LIST) {
                char *copy = keep(up_strdup(ev));
                if (!copy) {
                    snprintf(err, cap, "out of memory");
                    return -1;
                }
                for (char *save = NULL, *t = strtok_r(copy, ",", &save); t;
                     t = strtok_r(NULL, ",", &save)) {
                    while (*t == ' ') {
                        t++;
                    }
                    if (*t && set_value(o, &vals[i], t, env, false, err, cap) < 0) {
                        return -1;
                    }
                }
            } else if (set_value(o, &vals[i], ev, env, file, err, cap) < 0) {
                return -1;
            }
            continue;
        }
        if (o->def) {
            if (set_value(o, &vals[i], o->def, "default", false, err, cap) < 0) {
                return -1;
            }
            vals[i].set = false; /* a default is not a user choice */
        }
    }
    return 0;
}

int up_opts_defaults(const struct up_opt *tab, size_t n, struct up_opt_val *vals, char *err,
                     size_t cap)
{
    memset(vals, 0, n * sizeof(*vals));
    for (size_t i = 0; i < n; i++) {
        if (tab[i].def) {
            if (set_value(&tab[i], &vals[i], tab[i].def, "default", false, err, cap) < 0) {
                return -1;
            }
            vals[i].set = false;
        }
    }
    return 0;
}

int up_opts_set(const struct up_opt *tab, size_t n, struct up_opt_val *vals, const char *name,
                const char *text, char *err, size_t cap)
{
    int idx = up_opts_find(tab, n, name);
    if (idx < 0) {
        snprintf(err, cap, "unknown option '%s'", name);
        return -1;
    }
    if (!text) {
        snprintf(err, cap, "option '%s' needs a value", name);
        return -1;
    }
    struct up_opt_val *v = &vals[idx];
    if (tab[idx].kind == UP_OPT_LIST && !v->set) {
        v->nlist = 0; /* the first value given replaces a default list */
    }
    return set_value(&tab[idx], v, text, name, false, err, cap);
}

void up_opts_help(FILE *f, const char *usage, const char *desc, const struct up_opt *tab, size_t n,
                  const char *examples)
{
    fprintf(f,
            "Usage: %s\n\n%s\n\nOptions (each also read from the environment variable shown;"
            " a flag wins over the environment):\n",
            usage, desc);
    for (size_t i = 0; i < n; i++) {
        const struct up_opt *o = &tab[i];
        char env[96], left[128];
        env_name(o->name, "", env, sizeof env);
        if (o->kind == UP_OPT_FLAG) {
            snprintf(left, sizeof left, "--%s", o->name);
        } else {
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        }
        fprintf(f, "  %-30s %s\n", left, o->help);
        fprintf(f, "  %-30s [env %s", "", env);
        if (o->kind == UP_OPT_SECRET) {
            fprintf(f, "; or --%s-file FILE / %s_FILE", o->name, env);
        }
        if (o->kind == UP_OPT_LIST) {
            fprintf(f, "; repeatable, env is comma-separated");
        }
        if (o->def) {
            fprintf(f, "; default %s", o->def);
        }
        fprintf(f, "]\n");
    }
    fprintf(f, "  %-30s %s\n", "--help", "show this help");
    if (examples) {
        fprintf(f, "\nExamples:\n%s", examples);
    }
}
