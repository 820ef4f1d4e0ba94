/* Unit tests for the sd_notify protocol (src/util/sdnotify.c): what goes
 * to $NOTIFY_SOCKET, for path and abstract names, and the names refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/sdnotify.h"

/* A datagram socket bound to name ("/path" or "@abstract"). */
static int bound(const char *name)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sun.sun_path, name, n);
    if (name[0] == '@')
        sun.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, alen), 0);
    return fd;
}

static void received(int fd, const char *want)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_no_socket_does_nothing(void **state)
{
    (void)state;
    char err[300] = "";
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sdnotify_send("READY=1", err, sizeof err), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sdnotify_send("READY=1", err, sizeof err), 0);
    assert_string_equal(err, "");
}

static void test_path_socket(void **state)
{
    (void)state;
    char path[] = "/tmp/kp-sdnotify-XXXXXX";
    assert_non_null(mkdtemp(path));
    char sock[200];
    snprintf(sock, sizeof sock, "%s/notify", path);
    int fd = bound(sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    char err[300];
    assert_int_equal(sdnotify_send("READY=1\nSTATUS=x", err, sizeof err), 1);
    received(fd, "READY=1\nSTATUS=x");
    sdnotify_stopping();
    received(fd, "STOPPING=1\nSTATUS=stopping");
    close(fd);
    unlink(sock);
    rmdir(path);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@kp-sdnotify-test-%d", (int)getpid());
    int fd = bound(name);
    setenv("NOTIFY_SOCKET", name, 1);
    sdnotify_reloading();
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
    unsigned long long usec = 0;
    assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu\n", &usec), 1);
    assert_true(usec > 0);
    assert_non_null(strstr(buf, "\nSTATUS=reloading"));
    sdnotify_ready("accepting mail");
    received(fd, "READY=1\nSTATUS=accepting mail");
    close(fd);
}

static void test_bad_names_are_errors(void **state)
{
    (void)state;
    char err[300];
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(sdnotify_send("READY=1", err, sizeof err), -1);
    assert_non_null(strstr(err, "not an absolute path"));
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
    assert_int_equal(sdnotify_send("READY=1", err, sizeof err), -1);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    assert_int_equal(sdnotify_send("READY=1", err, sizeof err), -1);
    assert_non_null(strstr(err, "too long"));
    /* Nobody listening: an error with the reason, not silence. */
    setenv("NOTIFY_SOCKET", "/nonexistent/kp-notify", 1);
    assert_int_equal(sdnotify_send("READY=1", err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket_does_nothing),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_bad_names_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
