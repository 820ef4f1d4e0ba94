/* milter's insides, shared by milter.c (protocol, phases) and
 * milter_msg.c (the message: reading, macros, recorded changes). */
#ifndef KP_MILTER_INT_H
#define KP_MILTER_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "milter/milter.h"
#include "util/buf.h"

#define MILTER_MAX 8
#define MILTER_MAX_PACKET (1024 * 1024 + 64) /* a body chunk with room to spare */
#define MILTER_CHUNK 65535                   /* body bytes per packet */
#define MILTER_MAX_HEADERS 2000
#define MILTER_MAX_CHANGES 2000
#define HEADER_BLOCK_MAX (1024 * 1024)

/* Actions a filter may take (SMFIF_*), all of which keypost carries out. */
#define SMFIF_ADDHDRS 0x001
#define SMFIF_CHGBODY 0x002
#define SMFIF_ADDRCPT 0x004
#define SMFIF_DELRCPT 0x008
#define SMFIF_CHGHDRS 0x010
#define SMFIF_QUARANTINE 0x020
#define SMFIF_CHGFROM 0x040
#define SMFIF_ADDRCPT_PAR 0x080
#define SMFIF_SETSYMLIST 0x100
#define MILTER_ACTIONS 0x1ff

/* Protocol steps a filter may leave out or not answer (SMFIP_*). */
#define SMFIP_NOCONNECT 0x00001
#define SMFIP_NOHELO 0x00002
#define SMFIP_NOMAIL 0x00004
#define SMFIP_NORCPT 0x00008
#define SMFIP_NOBODY 0x00010
#define SMFIP_NOHDRS 0x00020
#define SMFIP_NOEOH 0x00040
#define SMFIP_NR_HDR 0x00080
#define SMFIP_NOUNKNOWN 0x00100
#define SMFIP_NODATA 0x00200
#define SMFIP_SKIP 0x00400
#define SMFIP_NR_CONN 0x01000
#define SMFIP_NR_HELO 0x02000
#define SMFIP_NR_MAIL 0x04000
#define SMFIP_NR_RCPT 0x08000
#define SMFIP_NR_DATA 0x10000
#define SMFIP_NR_UNKN 0x20000
#define SMFIP_NR_EOH 0x40000
#define SMFIP_NR_BODY 0x80000
#define SMFIP_HDR_LEADSPC 0x100000
#define MILTER_PFLAGS 0x1ff7ff /* all of the above */

/* Macro stages as the protocol numbers them, then keypost's own steps of
 * the message phase. */
enum milter_stage {
    MS_CONNECT, MS_HELO, MS_MAIL, MS_RCPT, MS_DATA, MS_EOM_MACROS, MS_EOH, MS_COUNT,
    MS_MESSAGE = MS_COUNT, MS_BODY, MS_EOM
};

struct milter_def {
    char target[300];
};

enum filter_state {
    F_CONNECTING, F_NEGOTIATING, F_READY,
    F_ACCEPTED, /* said accept: asked nothing more about this message */
    F_DONE,     /* said accept at connect/HELO: asked nothing more this session */
    F_FAILED,   /* broken: milter_default_action answers for it */
};

struct filter {
    struct milter_set *set;
    const struct milter_def *def;
    struct bufferevent *bev;
    enum filter_state state;
    uint32_t version, actions, pflags;
    char *symlist[MS_COUNT];
    int waiting;       /* an answer is due */
    int told_connect;
    int skip_body;
};

struct header {
    char *name;
    char *value;       /* as written after the colon, lines joined by "\r\n" */
};

struct change {
    char kind;         /* 'h' add, 'i' insert, 'm' change/delete */
    uint32_t index;
    char *name, *value;
    int as_is;         /* the filter asked for values with their leading space
                          (SMFIP_HDR_LEADSPC): write the value as given */
};

struct message {
    int fd;
    int blank_line;    /* the headers ended with an empty line, not at a non-header */
    off_t body_start;
    struct header *headers;
    int nheaders;
    int header_step;   /* the next header to send to the current filter */
    off_t body_sent;
    int content_step;  /* 0 DATA, 1 headers, 2 EOH, 3 body, 4 EOB, 5 done */
    struct change *changes;
    int nchanges;
    struct buf new_body;
    int body_replaced;
    char *new_sender;
    char **added, **deleted;
    int nadded, ndeleted;
};

struct milter_set {
    struct filter f[MILTER_MAX];
    int n;
    const struct milter_session *info; /* the session's, updated as it goes */
    const char *log_id;
    enum milter_stage stage;
    int cur, step, active, stopped, sync, expect_reply, told_mail;
    enum milter_verdict failed_verdict;
    int quarantine;            /* a failed filter's default action said so */
    char quarantine_reason[256];
    struct milter_result result;
    milter_done_fn done;
    void *arg;
    char sender[512], rcpt[512];
    struct message msg;
};

void milter_send(struct filter *f, char cmd, const void *data, size_t len);
void milter_fail(struct filter *f, const char *why);
void milter_arm_timeout(struct filter *f);
void milter_disarm_timeout(struct filter *f);
/* The macros the filter wants at stage st, as one 'D' packet for cmd. */
void milter_send_macros(struct filter *f, enum milter_stage st, char cmd);
int milter_run(struct milter_set *set, enum milter_stage stage, struct milter_result *r,
               milter_done_fn done, void *arg);
int milter_command_packet(struct milter_set *set, struct filter *f);
/* milter_msg.c */
const char *milter_macro_value(const struct milter_set *set, const char *name);
int milter_next_content(struct milter_set *set, struct filter *f);
int milter_record_change(struct filter *f, char cmd, const char *data, size_t len);
void milter_message_free(struct milter_set *set);

#endif
