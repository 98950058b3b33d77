/*
 * check.c — what may reach the wire. Every string that becomes part of a command line (addresses,
 * the EHLO name, credentials) or a header is checked here before anything is sent: a CR, LF or NUL
 * in it would let the caller's data — often a web form's — end the command and start another one
 * (SMTP command injection).
 */
#include <string.h>
#include "smtp_internal.h"

int ll__smtp_check_line(const char *what, const char *s, size_t n, char *err) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == 0)
            return ll__smtp_errf(err, LL_EINVAL, "%s contains a %s (refused before sending)", what,
                                 s[i] == '\r' ? "CR" : s[i] == '\n' ? "LF" : "NUL byte");
    }
    return 0;
}

int ll__smtp_check_address(const char *what, const char *s, bool allow_empty, char *err) {
    if (!s) return ll__smtp_errf(err, LL_EINVAL, "%s is NULL", what);
    size_t n = strlen(s);
    int rc = ll__smtp_check_line(what, s, n, err);
    if (rc) return rc;
    if (n == 0 && !allow_empty) return ll__smtp_errf(err, LL_EINVAL, "%s is empty", what);
    /* RFC 5321 4.5.3.1.3: a path is at most 256 octets including the brackets. */
    if (n > 254) return ll__smtp_errf(err, LL_EINVAL, "%s is longer than 254 bytes", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
            return ll__smtp_errf(err, LL_EINVAL, "%s \"%s\" contains a character not allowed in an "
                                 "address", what, s);
    }
    if (n && !strchr(s, '@'))
        return ll__smtp_errf(err, LL_EINVAL, "%s \"%s\" has no domain (no '@')", what, s);
    return 0;
}

int ll__smtp_check_helo(const char *s, char *err) {
    size_t n = strlen(s);
    int rc = ll__smtp_check_line("EHLO name", s, n, err);
    if (rc) return rc;
    if (n == 0 || n > 255) return ll__smtp_errf(err, LL_EINVAL, "EHLO name must be 1 to 255 bytes");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return ll__smtp_errf(err, LL_EINVAL, "EHLO name \"%s\" contains a space or a character "
                                 "that is not printable ASCII", s);
    }
    return 0;
}

bool ll__smtp_is_ascii(const void *p, size_t n) {
    /* eight bytes at a time: every message body goes through here before MAIL */
    const unsigned char *s = p;
    size_t i = 0;
    uint64_t acc = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        acc |= w;
    }
    if (acc & 0x8080808080808080ull) return false;
    for (; i < n; i++)
        if (s[i] & 0x80) return false;
    return true;
}
