#include "smtpd/address.h"

#include <arpa/inet.h>
#include <string.h>

#include "util/strutil.h"

static int literal_ok(const char *d, size_t n)
{
    char text[64];
    if (n < 3 || d[n - 1] != ']' || n - 2 >= sizeof text)
        return 0;
    memcpy(text, d + 1, n - 2);
    text[n - 2] = '\0';
    unsigned char bin[16];
    if (str_iprefix(text, "IPv6:"))
        return inet_pton(AF_INET6, text + 5, bin) == 1;
    return inet_pton(AF_INET, text, bin) == 1;
}

int address_domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253)
        return 0;
    if (d[0] == '[')
        return literal_ok(d, n);
    size_t label = 0;
    for (const unsigned char *p = (const unsigned char *)d; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p >= 0x80;
        if (!ok || ++label > 63)
            return 0;
    }
    return label > 0;
}

int address_ok(const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (at == NULL || at == addr || at - addr > 256)
        return 0;
    for (const unsigned char *p = (const unsigned char *)addr; p < (const unsigned char *)at; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return address_domain_ok(at + 1);
}

int address_mailbox_name_ok(const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t n = at ? (size_t)(at - addr) : strlen(addr);
    return n > 0 && addr[0] != '.' && memchr(addr, '/', n) == NULL && n <= 200;
}
