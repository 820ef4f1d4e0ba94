/* Unit tests for restriction lists and network matching (src/policy/restrict.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "conf/conf.h"
#include "policy/restrict.h"
#include "tls/tls.h"

static struct sockaddr_storage addr_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1)
        sin->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1)
        sin6->sin6_family = AF_INET6;
    else
        fail_msg("bad address in test: %s", text);
    return ss;
}

static int in_mynetworks(const char *text)
{
    struct sockaddr_storage ss = addr_of(text);
    return restrict_in_mynetworks(&ss);
}

static void print_errors(const struct conf_errors *errs)
{
    for (int i = 0; i < errs->count; i++)
        print_message("error: %s\n", errs->msgs[i]);
}

/* conf_set each NAME, VALUE pair (NULL-terminated), then restrict_init;
 * both must succeed. */
static void configure(const char *const *pairs)
{
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("myhostname", "mx.example.org", &errs);
    conf_set("mydestination", "example.org, $myhostname, localhost", &errs);
    for (; pairs && pairs[0]; pairs += 2)
        conf_set(pairs[0], pairs[1], &errs);
    addrclass_init(&errs);
    restrict_init(&errs);
    print_errors(&errs);
    assert_int_equal(errs.count, 0);
}

static int teardown(void **state)
{
    (void)state;
    restrict_free();
    return 0;
}

static enum restrict_action check_rcpt(const char *client, const char *rcpt,
                                       const struct tls_peer *tls, struct restrict_result *res)
{
    struct sockaddr_storage ss = addr_of(client);
    struct restrict_ctx ctx = {
        .client = &ss,
        .client_name = "client.example",
        .client_addr = client,
        .helo = "helo.example",
        .sender = "sender@remote.test",
        .recipient = rcpt,
        .tls = tls,
    };
    restrict_check_rcpt(&ctx, res);
    return res->action;
}

static void test_default_mynetworks(void **state)
{
    (void)state;
    configure(NULL);
    assert_true(in_mynetworks("127.0.0.1"));
    assert_true(in_mynetworks("127.255.255.254"));
    assert_false(in_mynetworks("128.0.0.1"));
    assert_false(in_mynetworks("126.255.255.255"));
    assert_true(in_mynetworks("::1"));
    assert_false(in_mynetworks("::2"));
    assert_false(in_mynetworks("::"));
    /* IPv4-mapped IPv6 addresses match the IPv4 networks. */
    assert_true(in_mynetworks("::ffff:127.0.0.1"));
    assert_false(in_mynetworks("::ffff:10.0.0.1"));
    /* ... but only the mapped form, not IPv4-compatible or other prefixes. */
    assert_false(in_mynetworks("::127.0.0.1"));
    assert_false(in_mynetworks("64:ff9b::127.0.0.1"));
}

static void test_cidr_matching(void **state)
{
    (void)state;
    static const char *const cfg[] = {
        "mynetworks",
        "10.0.0.0/8, 192.168.1.0/24 172.16.0.0/12,[2001:db8::]/32, 192.0.2.7, "
        "[2001:db8:1:8000::]/49, 198.51.100.128/25, [fe80::1]",
        NULL};
    configure(cfg);
    assert_true(in_mynetworks("10.0.0.0"));
    assert_true(in_mynetworks("10.255.255.255"));
    assert_false(in_mynetworks("11.0.0.0"));
    assert_false(in_mynetworks("9.255.255.255"));
    assert_true(in_mynetworks("192.168.1.0"));
    assert_true(in_mynetworks("192.168.1.255"));
    assert_false(in_mynetworks("192.168.2.1"));
    assert_false(in_mynetworks("192.168.0.255"));
    /* /12: 172.16.0.0 - 172.31.255.255 */
    assert_true(in_mynetworks("172.16.0.1"));
    assert_true(in_mynetworks("172.31.255.255"));
    assert_false(in_mynetworks("172.32.0.0"));
    assert_false(in_mynetworks("172.15.255.255"));
    /* /25 */
    assert_true(in_mynetworks("198.51.100.128"));
    assert_true(in_mynetworks("198.51.100.255"));
    assert_false(in_mynetworks("198.51.100.127"));
    /* A bare address is a host (/32). */
    assert_true(in_mynetworks("192.0.2.7"));
    assert_false(in_mynetworks("192.0.2.6"));
    assert_false(in_mynetworks("192.0.2.8"));
    /* Loopback is not in this list. */
    assert_false(in_mynetworks("127.0.0.1"));
    assert_false(in_mynetworks("::1"));
    /* IPv6 /32 */
    assert_true(in_mynetworks("2001:db8::1"));
    assert_true(in_mynetworks("2001:db8:ffff:ffff::1"));
    assert_false(in_mynetworks("2001:db9::1"));
    assert_false(in_mynetworks("2001:db7:ffff::1"));
    /* IPv6 /49, not on a byte boundary */
    static const char *const cfg2[] = {"mynetworks", "[2001:db8:1:8000::]/49", NULL};
    configure(cfg2);
    assert_true(in_mynetworks("2001:db8:1:8000::1"));
    assert_true(in_mynetworks("2001:db8:1:ffff:ffff::1"));
    assert_false(in_mynetworks("2001:db8:1:7fff::1"));
    assert_false(in_mynetworks("2001:db8:2:8000::1"));
    /* IPv4 client against IPv6 networks: no match, no crash. */
    assert_false(in_mynetworks("10.0.0.1"));
    /* v4-mapped clients match v4 networks. */
    configure(cfg);
    assert_true(in_mynetworks("::ffff:192.168.1.77"));
    assert_true(in_mynetworks("::ffff:172.20.1.1"));
    assert_false(in_mynetworks("::ffff:192.168.2.77"));
    /* Host /128 without a prefix. */
    assert_true(in_mynetworks("fe80::1"));
    assert_false(in_mynetworks("fe80::2"));
}

static void test_prefix_zero(void **state)
{
    (void)state;
    static const char *const cfg[] = {"mynetworks", "0.0.0.0/0", NULL};
    configure(cfg);
    assert_true(in_mynetworks("1.2.3.4"));
    assert_true(in_mynetworks("255.255.255.255"));
    assert_true(in_mynetworks("::ffff:8.8.8.8"));
    assert_false(in_mynetworks("2001:db8::1"));
}

static void test_bad_networks(void **state)
{
    (void)state;
    static const char *const bad[] = {"10.0.0.0/33", "[::1]/129", "not-an-address",
                                      "10.0.0.0/x", "10.0.0/8", "10.0.0.0/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct conf_errors errs = {0};
        conf_defaults();
        conf_set("mynetworks", bad[i], &errs);
        assert_int_equal(errs.count, 0);
        assert_true(restrict_init(&errs) >= 1);
        char want[200];
        snprintf(want, sizeof want,
                 "command line: mynetworks: bad network \"%s\" (expected addr/prefix)", bad[i]);
        int found = 0;
        for (int k = 0; k < errs.count; k++)
            found |= strcmp(errs.msgs[k], want) == 0;
        if (!found)
            print_errors(&errs);
        assert_true(found);
        conf_errors_free(&errs);
        restrict_free();
    }
}

static int is_local(const char *domain)
{
    enum addr_class c;
    assert_int_equal(addrclass_of_domain(domain, &c), 0);
    return c == AC_LOCAL;
}

static void test_local_domains(void **state)
{
    (void)state;
    configure(NULL);
    assert_true(is_local("example.org"));
    assert_true(is_local("EXAMPLE.ORG"));
    assert_true(is_local("mx.example.org"));
    assert_true(is_local("localhost"));
    assert_false(is_local("sub.example.org"));
    assert_false(is_local("example.org.evil"));
    assert_false(is_local(""));
}

static void test_reject_unauth_destination(void **state)
{
    (void)state;
    configure(NULL);
    struct restrict_result res;
    /* Outside mynetworks: only local domains. */
    assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", NULL, &res), RA_PERMIT);
    assert_int_equal(check_rcpt("192.0.2.10", "alice@Example.Org", NULL, &res), RA_PERMIT);
    assert_int_equal(check_rcpt("192.0.2.10", "postmaster@mx.example.org", NULL, &res),
                     RA_PERMIT);
    assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", NULL, &res), RA_REJECT);
    assert_string_equal(res.reply, "554 5.7.1 <bob@other.net>: Relay access denied");
    /* The domain is what follows the last '@'. */
    assert_int_equal(check_rcpt("192.0.2.10", "\"a@example.org\"@other.net", NULL, &res),
                     RA_REJECT);
    assert_int_equal(check_rcpt("2001:db8::5", "bob@other.net", NULL, &res), RA_REJECT);
    /* Inside mynetworks: relaying allowed. */
    assert_int_equal(check_rcpt("127.0.0.1", "bob@other.net", NULL, &res), RA_PERMIT);
    assert_int_equal(check_rcpt("::1", "bob@other.net", NULL, &res), RA_PERMIT);
    assert_int_equal(check_rcpt("::ffff:127.0.0.1", "bob@other.net", NULL, &res), RA_PERMIT);
}

static void test_permit_reject_defer(void **state)
{
    (void)state;
    struct restrict_result res;
    {
        static const char *const cfg[] = {"smtpd_client_restrictions", "reject", NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", NULL, &res), RA_REJECT);
        assert_string_equal(res.reply,
                            "554 5.7.1 <client.example[192.0.2.10]>: Client host rejected: "
                            "Access denied");
        /* Even for mynetworks: the client list is evaluated first. */
        assert_int_equal(check_rcpt("127.0.0.1", "alice@example.org", NULL, &res), RA_REJECT);
        restrict_free();
    }
    {
        static const char *const cfg[] = {"smtpd_helo_restrictions", "permit_mynetworks, reject",
                                          NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", NULL, &res), RA_REJECT);
        assert_string_equal(res.reply,
                            "554 5.7.1 <helo.example>: Helo command rejected: Access denied");
        assert_int_equal(check_rcpt("127.0.0.1", "alice@example.org", NULL, &res), RA_PERMIT);
        restrict_free();
    }
    {
        static const char *const cfg[] = {"smtpd_sender_restrictions", "defer", NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", NULL, &res), RA_DEFER);
        assert_string_equal(res.reply,
                            "450 4.7.1 <sender@remote.test>: Sender address rejected: Try "
                            "again later");
        restrict_free();
    }
    {
        /* permit ends its own list only: a later list still rejects. */
        static const char *const cfg[] = {"smtpd_client_restrictions", "permit",
                                          "smtpd_recipient_restrictions", "reject", NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("127.0.0.1", "alice@example.org", NULL, &res), RA_REJECT);
        assert_string_equal(res.reply,
                            "554 5.7.1 <alice@example.org>: Recipient address rejected: "
                            "Access denied");
        restrict_free();
    }
    {
        /* permit before reject in the same list: the reject is never reached. */
        static const char *const cfg[] = {"smtpd_recipient_restrictions", "permit, reject",
                                          NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", NULL, &res), RA_PERMIT);
        /* The relay list comes before it and still protects against relaying. */
        assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", NULL, &res), RA_REJECT);
        assert_string_equal(res.reply, "554 5.7.1 <bob@other.net>: Relay access denied");
        restrict_free();
    }
    {
        /* An open relay only when the operator writes one. */
        static const char *const cfg[] = {"smtpd_relay_restrictions", "permit", NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", NULL, &res), RA_PERMIT);
        restrict_free();
    }
    {
        /* Empty lists everywhere: everything is permitted. */
        static const char *const cfg[] = {"smtpd_relay_restrictions", "", NULL};
        configure(cfg);
        assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", NULL, &res), RA_PERMIT);
    }
}

static void test_unknown_restriction(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("smtpd_recipient_restrictions", "permit_mynetworks, permit_everyone, reject",
             &errs);
    assert_int_equal(errs.count, 0);
    assert_int_equal(restrict_init(&errs), 1);
    assert_string_equal(errs.msgs[0], "command line: smtpd_recipient_restrictions: unknown "
                                      "restriction \"permit_everyone\"");
    conf_errors_free(&errs);

    /* From a file, the error names FILE:LINE. */
    char dir[] = "/tmp/kp-test-restrict-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/main.cf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("myhostname = mx.example.org\n"
          "smtpd_client_restrictions =\n"
          "    permit_mynetworks,\n"
          "    reject_everything\n"
          "smtpd_relay_restrictions = check_ccert_access\n",
          f);
    fclose(f);
    conf_defaults();
    assert_int_equal(conf_load(path, &errs), 0);
    assert_int_equal(restrict_init(&errs), 2);
    char want[300];
    snprintf(want, sizeof want,
             "%s:2: smtpd_client_restrictions: unknown restriction \"reject_everything\"", path);
    assert_string_equal(errs.msgs[0], want);
    /* A table restriction without its table: the message names the place
     * and the restriction. */
    snprintf(want, sizeof want, "%s:5: smtpd_relay_restrictions: check_ccert_access", path);
    assert_memory_equal(errs.msgs[1], want, strlen(want));
    conf_errors_free(&errs);
    unlink(path);
    rmdir(dir);
}

/* Postfix's replies: unknown_client_reject_code when the name is unknown
 * for good, 450 when DNS could not tell; a known name passes. */
static void test_reject_unknown_client(void **state)
{
    (void)state;
    const char *cfg[] = {"smtpd_client_restrictions",
                         "reject_unknown_reverse_client_hostname, reject_unknown_client_hostname",
                         "unknown_client_reject_code", "550", NULL};
    configure(cfg);
    struct sockaddr_storage ss = addr_of("192.0.2.7");
    struct restrict_result res;
    struct restrict_ctx ctx = {
        .client = &ss, .client_name = "mx.partner.example",
        .reverse_client_name = "mx.partner.example", .client_addr = "192.0.2.7",
        .helo = "h.example", .sender = "a@b.example", .recipient = "alice@example.org",
    };
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_PERMIT);
    ctx.client_name = "unknown"; /* a PTR that the A records do not confirm */
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_REJECT);
    assert_string_equal(res.reply, "550 5.7.25 Client host rejected: cannot find your "
                                   "hostname, [192.0.2.7]");
    ctx.client_name_tempfail = 1;
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_DEFER);
    assert_string_equal(res.reply, "450 4.7.25 Client host rejected: cannot find your "
                                   "hostname, [192.0.2.7]");
    ctx.reverse_client_name = "unknown";
    ctx.reverse_client_name_tempfail = 1;
    restrict_check_rcpt(&ctx, &res);
    assert_string_equal(res.reply, "450 4.7.1 Client host rejected: cannot find your "
                                   "reverse hostname, [192.0.2.7]");
    ctx.reverse_client_name_tempfail = 0;
    restrict_check_rcpt(&ctx, &res);
    assert_string_equal(res.reply, "550 5.7.1 Client host rejected: cannot find your "
                                   "reverse hostname, [192.0.2.7]");
    /* Postfix's default code is 450 also for the permanent case. */
    const char *dflt[] = {"smtpd_client_restrictions", "reject_unknown_client", NULL};
    configure(dflt);
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_DEFER);
    assert_string_equal(res.reply, "450 4.7.25 Client host rejected: cannot find your "
                                   "hostname, [192.0.2.7]");
}

static void test_bad_unknown_client_reject_code(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    conf_defaults();
    /* The bounds in params.def keep it a 4xx or 5xx code. */
    assert_int_equal(conf_set("unknown_client_reject_code", "250", &errs), -1);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.msgs[0], "command line: bad value for unknown_client_reject_code: "
                                      "\"250\" (must be at least 400)");
    conf_errors_free(&errs);
    assert_int_equal(conf_set("unknown_client_reject_code", "600", &errs), -1);
    assert_string_equal(errs.msgs[0], "command line: bad value for unknown_client_reject_code: "
                                      "\"600\" (must be at most 599)");
    conf_errors_free(&errs);
}

static void test_limit_exceptions(void **state)
{
    (void)state;
    configure(NULL);
    struct sockaddr_storage lo = addr_of("127.0.0.1"), out = addr_of("192.0.2.1");
    assert_true(restrict_in_limit_exceptions(&lo));
    assert_false(restrict_in_limit_exceptions(&out));
    static const char *const cfg[] = {"smtpd_client_event_limit_exceptions", "192.0.2.0/24",
                                      NULL};
    configure(cfg);
    assert_false(restrict_in_limit_exceptions(&lo));
    assert_true(restrict_in_limit_exceptions(&out));
}

static void test_tls_pins(void **state)
{
    (void)state;
    static const char *const cfg[] = {
        "relay_clientcerts", "inline:{ AA:BB:CC=partner }",
        "smtpd_relay_restrictions", "permit_tls_clientcerts, reject_unauth_destination",
        "smtpd_recipient_restrictions",
        "check_ccert_access inline:{ 11:22=HOLD, 33:44=REJECT, 55:66=DISCARD }",
        NULL};
    configure(cfg);
    struct tls_peer peer;
    memset(&peer, 0, sizeof peer);
    peer.trust.has_cert = 1;
    snprintf(peer.trust.pubkey_fp, sizeof peer.trust.pubkey_fp, "%s", "AA:BB:CC");
    snprintf(peer.trust.cert_fp, sizeof peer.trust.cert_fp, "%s", "DD:EE:FF");
    struct restrict_result res;
    /* Without TLS, or with another key: no relaying. */
    assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", NULL, &res), RA_REJECT);
    assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", &peer, &res), RA_PERMIT);
    snprintf(peer.trust.pubkey_fp, sizeof peer.trust.pubkey_fp, "%s", "AA:BB:CD");
    assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", &peer, &res), RA_REJECT);
    /* The certificate digest pins as well. */
    snprintf(peer.trust.cert_fp, sizeof peer.trust.cert_fp, "%s", "AA:BB:CC");
    assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", &peer, &res), RA_PERMIT);
    /* A session without a client certificate is not pinned. */
    peer.trust.has_cert = 0;
    assert_int_equal(check_rcpt("192.0.2.10", "bob@other.net", &peer, &res), RA_REJECT);

    /* check_ccert_access actions (local recipient, so the relay list passes). */
    peer.trust.has_cert = 1;
    snprintf(peer.trust.cert_fp, sizeof peer.trust.cert_fp, "%s", "00:00");
    snprintf(peer.trust.pubkey_fp, sizeof peer.trust.pubkey_fp, "%s", "11:22");
    assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", &peer, &res), RA_HOLD);
    snprintf(peer.trust.pubkey_fp, sizeof peer.trust.pubkey_fp, "%s", "55:66");
    assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", &peer, &res), RA_DISCARD);
    snprintf(peer.trust.pubkey_fp, sizeof peer.trust.pubkey_fp, "%s", "33:44");
    assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", &peer, &res), RA_REJECT);
    assert_string_equal(res.reply, "554 5.7.1 <alice@example.org>: Recipient address "
                                   "rejected: Access denied");
    snprintf(peer.trust.pubkey_fp, sizeof peer.trust.pubkey_fp, "%s", "77:88");
    assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", &peer, &res), RA_PERMIT);
}

static void test_access_tables(void **state)
{
    (void)state;
    struct restrict_result res;
    static const char *const cfg[] = {
        "smtpd_client_restrictions", "check_client_access inline:{ 192.0.2=REJECT }",
        "smtpd_sender_restrictions",
        "check_sender_access inline:{ spam.example=REJECT, <>=DEFER, ok@spam.example=OK }",
        "smtpd_recipient_restrictions",
        "check_recipient_access inline:{ { gone@example.org = 550 mailbox gone }, "
        "odd@example.org=FROBNICATE }",
        NULL};
    configure(cfg);
    /* The client address and its shorter prefixes are keys. */
    assert_int_equal(check_rcpt("192.0.2.10", "alice@example.org", NULL, &res), RA_REJECT);
    assert_string_equal(res.reply, "554 5.7.1 <client.example[192.0.2.10]>: Client host "
                                   "rejected: Access denied");
    assert_int_equal(check_rcpt("198.51.100.1", "alice@example.org", NULL, &res), RA_PERMIT);

    /* Sender: the domain matches its subdomains; a full address first. */
    struct sockaddr_storage ss = addr_of("198.51.100.1");
    struct restrict_ctx ctx = {
        .client = &ss, .client_name = "unknown", .client_addr = "198.51.100.1",
        .helo = "h.example", .sender = "x@sub.spam.example", .recipient = "alice@example.org",
    };
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_REJECT);
    assert_string_equal(res.reply, "554 5.7.1 <x@sub.spam.example>: Sender address rejected: "
                                   "Access denied");
    ctx.sender = "ok@spam.example";
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_PERMIT);
    ctx.sender = "x@notspam.example";
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_PERMIT);
    /* The null sender is looked up as "<>". */
    ctx.sender = "";
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_DEFER);
    assert_true(strncmp(res.reply, "450 4.7.1 ", 10) == 0);

    /* A numeric action with its own text. */
    ctx.sender = "x@notspam.example";
    ctx.recipient = "gone@example.org";
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_REJECT);
    assert_string_equal(res.reply, "550 5.7.1 <gone@example.org>: Recipient address rejected: "
                                   "mailbox gone");
    /* An action keypost does not know fails safe, temporarily. */
    ctx.recipient = "odd@example.org";
    restrict_check_rcpt(&ctx, &res);
    assert_int_equal(res.action, RA_DEFER);
    assert_string_equal(res.reply, "451 4.3.5 <odd@example.org>: Recipient address rejected: "
                                   "Server configuration error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_default_mynetworks, teardown),
        cmocka_unit_test_teardown(test_cidr_matching, teardown),
        cmocka_unit_test_teardown(test_prefix_zero, teardown),
        cmocka_unit_test_teardown(test_bad_networks, teardown),
        cmocka_unit_test_teardown(test_local_domains, teardown),
        cmocka_unit_test_teardown(test_reject_unauth_destination, teardown),
        cmocka_unit_test_teardown(test_permit_reject_defer, teardown),
        cmocka_unit_test_teardown(test_unknown_restriction, teardown),
        cmocka_unit_test_teardown(test_limit_exceptions, teardown),
        cmocka_unit_test_teardown(test_reject_unknown_client, teardown),
        cmocka_unit_test_teardown(test_bad_unknown_client_reject_code, teardown),
        cmocka_unit_test_teardown(test_tls_pins, teardown),
        cmocka_unit_test_teardown(test_access_tables, teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    conf_defaults();
    return r;
}
