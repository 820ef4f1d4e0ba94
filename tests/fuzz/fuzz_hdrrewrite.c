/* libFuzzer target: canonical rewriting of header addresses
 * (src/addr/hdrrewrite.c), with maps that rename one address and one
 * domain. Input: a header block, any bytes at all.
 * Invariants checked:
 *   - no crash, no read or write out of bounds (ASan/UBSan);
 *   - when nothing is said to change, nothing is written;
 *   - a changed block differs from the input only where an address of the
 *     maps stood: with every new address turned back into the old one,
 *     the output is the input again (but for case: lookups ignore it). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr/addrclass.h"
#include "addr/hdrrewrite.h"
#include "addr/rewrite.h"
#include "conf/conf.h"
#include "util/buf.h"

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("mydestination", "example.org", &errs);
    /* Same-length names, so that turning them back is a plain replace. */
    conf_set("canonical_maps", "inline:{ old@example.org=new@example.org, @aaaa.test=@bbbb.test }",
             &errs);
    addrclass_init(&errs);
    rewrite_init(&errs);
    if (errs.count)
        abort();
}

static void undo(char *p, size_t n, const char *from, const char *to)
{
    size_t l = strlen(from);
    for (size_t i = 0; i + l <= n; i++)
        if (memcmp(p + i, from, l) == 0)
            memcpy(p + i, to, l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    struct buf out;
    buf_init(&out, 2 * size + 8192);
    int r = hdr_rewrite_block((const char *)data, size, &out);
    if (r < 0)
        abort(); /* inline tables always answer, same-length names always fit */
    if (r == 1) {
        char *copy = malloc(size + 1);
        memcpy(copy, data, size);
        undo(copy, size, "new@example.org", "old@example.org");
        undo(copy, size, "@bbbb.test", "@aaaa.test");
        char *back = malloc(out.len + 1);
        memcpy(back, out.data, out.len);
        undo(back, out.len, "new@example.org", "old@example.org");
        undo(back, out.len, "@bbbb.test", "@aaaa.test");
        /* Lookups ignore case: "x@AAAA.test" became "x@bbbb.test". */
        if (out.len != size || strncasecmp(back, copy, size) != 0)
            abort();
        free(copy);
        free(back);
    }
    buf_free(&out);
    return 0;
}
