/* address: what an envelope address may look like (RFC 5321 4.1.2, with
 * UTF-8 allowed as RFC 6531 does). Addresses end up in routes, file names,
 * logs and queue files: anything that is not a plain domain or an address
 * literal is refused at MAIL or RCPT, before it can steer a delivery. */
#ifndef KP_ADDRESS_H
#define KP_ADDRESS_H

/* 1 for "[192.0.2.1]", "[IPv6:2001:db8::1]" or a host name of letters,
 * digits, '-' and '_' (and UTF-8 bytes) in labels of 1-63 bytes. */
int address_domain_ok(const char *domain);
/* 1 for local@domain with a bounded local part free of control bytes. */
int address_ok(const char *addr);
/* 1 when a local part can name a Maildir folder: no '/', no leading '.'. */
int address_mailbox_name_ok(const char *addr);

#endif
