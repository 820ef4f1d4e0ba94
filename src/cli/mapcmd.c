/* keypost map: build lmdb maps, and query any table as postmap -q does.
 * Exit status of a query: 0 found, 1 not found, 2 the table could not be
 * opened or could not answer. A table that cannot answer must never read
 * as "not found": a script would take a lost database for a missing key. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "table/table.h"

/* Longer than any key a table can hold (table.c folds keys in 512 bytes);
 * a longer input line is read whole but looked up as the absent key it is. */
#define KEY_LINE 4096

static int build_maps(int argc, char **argv)
{
    int status = 0;
    for (int i = 1; i < argc; i++) {
        char err[600];
        if (table_build_lmdb(argv[i], err, sizeof err) < 0) {
            fprintf(stderr, "keypost map: %s\n", err);
            status = 1;
        }
    }
    return status;
}

/* 1 found (*value set), 0 absent, -1 the table cannot answer (reported). */
static int query(const struct table *t, const char *key, const char **value)
{
    if (table_get(t, key, value) < 0) {
        fprintf(stderr, "keypost map: %s: cannot answer the lookup of \"%s\"\n", table_spec(t),
                key);
        return -1;
    }
    return *value != NULL;
}

static int query_one(const struct table *t, const char *key)
{
    const char *value;
    int r = query(t, key, &value);
    if (r > 0)
        printf("%s\n", value);
    return r < 0 ? 2 : r ? 0 : 1;
}

/* Drop the rest of a line too long for line[]. */
static void skip_rest(FILE *in)
{
    int c;
    while ((c = getc(in)) != EOF && c != '\n')
        ;
}

/* One key per line from stdin, "KEY<TAB>VALUE" for each found. */
static int query_stdin(const struct table *t)
{
    char line[KEY_LINE];
    int found = 0;
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        int whole = n && line[n - 1] == '\n';
        if (!whole && n == sizeof line - 1) {
            skip_rest(stdin);
            continue; /* no table holds so long a key */
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        const char *value;
        int r = query(t, line, &value);
        if (r < 0)
            return 2;
        if (r > 0) {
            printf("%s\t%s\n", line, value);
            found = 1;
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "keypost map: reading the keys: %s\n", strerror(errno));
        return 2;
    }
    return found ? 0 : 1;
}

static int query_table(const char *key, const char *spec)
{
    char err[600] = "";
    struct table *t = table_open(spec, err, sizeof err);
    if (t == NULL) {
        fprintf(stderr, "keypost map: %s\n", err[0] ? err : "cannot open the table");
        return 2;
    }
    int status = strcmp(key, "-") == 0 ? query_stdin(t) : query_one(t, key);
    table_free(t);
    if (fflush(stdout) != 0) {
        perror("keypost map: stdout");
        status = 2;
    }
    return status;
}

static int usage(void)
{
    fprintf(stderr, "usage: keypost map FILE...\n"
                    "       keypost map -q KEY|- TYPE:TABLE\n");
    return 1;
}

int cli_map(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "-q") == 0)
        return argc == 4 ? query_table(argv[2], argv[3]) : usage();
    if (argc < 2 || argv[1][0] == '-')
        return usage();
    return build_maps(argc, argv);
}
