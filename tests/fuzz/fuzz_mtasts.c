/* libFuzzer target: MTA-STS's network-fed parsers (src/tls/mtasts_parse.c
 * and the HTTP response reader of src/tls/mtasts_fetch.c).
 *
 * Input layout: byte 0 picks the parser (0 policy, 1 HTTP response with a
 * clean close, 2 without, 3 TXT record), the rest is its input.
 * Invariants checked:
 *   - an accepted policy has a known mode, max_age within RFC 8461's
 *     bound, 1..32 mx patterns unless the mode is none, and matches each
 *     of its own exact (non-wildcard) patterns;
 *   - an accepted HTTP body is at most 65536 bytes, NUL-terminated, and is
 *     itself fed to the policy parser;
 *   - an accepted TXT id is 1..32 letters and digits. */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/mtasts.h"
#include "tls/mtasts_fetch.h"

static void check_policy(const char *text, size_t n)
{
    static struct mtasts_policy p;
    char err[300];
    if (mtasts_parse(text, n, &p, err, sizeof err) < 0)
        return;
    if (p.mode > STS_ENFORCE || p.max_age < 0 || p.max_age > MTASTS_MAX_AGE ||
        p.nmx > MTASTS_MAX_MX || (p.mode != STS_NONE && p.nmx == 0))
        abort();
    for (int i = 0; i < p.nmx; i++)
        if (strncmp(p.mx[i], "*.", 2) != 0 && !mtasts_mx_match(&p, p.mx[i]))
            abort();
}

static void check_http(const char *resp, size_t n, int clean)
{
    static char body[MTASTS_MAX_BODY + 1];
    size_t len = 0;
    char err[300];
    if (mtasts_http_response(resp, n, clean, body, sizeof body, &len, err, sizeof err) < 0)
        return;
    if (len > MTASTS_MAX_BODY || body[len] != '\0')
        abort();
    check_policy(body, len);
}

static void check_txt(const char *txt)
{
    char id[MTASTS_ID_MAX + 1];
    if (mtasts_txt_parse(txt, id, sizeof id) != 1)
        return;
    size_t n = strlen(id);
    if (n == 0 || n > MTASTS_ID_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* NUL-terminated copy: the HTTP reader's contract, and the TXT parser
     * takes a string. */
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] & 3) {
    case 0:
        check_policy(text, size - 1);
        break;
    case 1:
    case 2:
        check_http(text, size - 1, (data[0] & 3) == 1);
        break;
    default:
        check_txt(text);
        break;
    }
    free(text);
    return 0;
}
