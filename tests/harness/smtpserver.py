#!/usr/bin/python3
"""smtpserver.py — the SMTP server of the libloop-smtp tests: Debian's aiosmtpd on loopback.

Started by tests/harness/smtpserver.c (run with /usr/bin/python3), stopped by its PID.

  smtpserver.py DIR      DIR holds cert.pem and key.pem (made with the openssl CLI by the harness)

It listens on 127.0.0.1 with free ports (bound to port 0 and read back) and writes
"PLAIN_PORT TLS_PORT\n" to DIR/ports when ready:
  PLAIN_PORT  plaintext with STARTTLS offered; AUTH only after STARTTLS, except for the user
              "plainuser" whose mechanisms are accepted in plaintext too (for allow_plaintext_auth)
  TLS_PORT    implicit TLS (smtps)
AUTH: PLAIN and LOGIN (aiosmtpd's), CRAM-MD5 and XOAUTH2 (below); user "user", password "secret"
(XOAUTH2 token "token"). AUTH is optional. Recipients decide their fate by their local part:
  reject*  550 5.1.1      defer*  451 4.2.0      anything else accepted
A message whose data holds the line "X-Test-Reject: yes" is refused after the data (554 5.6.0).
A client whose EHLO name starts with "pipelining" is offered PIPELINING (RFC 2920; aiosmtpd reads
commands in order, so pipelined input works); other clients are not.
Every accepted message is recorded as DIR/mail/NNNNNN.json: envelope sender, recipients, MAIL
parameters, whether the session was TLS, the authenticated user and the exact data (base64), so
a test reads back exactly what the server received.
"""
import asyncio, base64, hashlib, hmac, json, os, ssl, sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

DIR = sys.argv[1]
USERS = {"user": "secret", "plainuser": "secret"}
TOKENS = {"token"}
counter = 0


def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword):
        user = auth_data.login.decode()
        ok = USERS.get(user) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
    return AuthResult(success=False, handled=False)


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        if local.startswith("defer"):
            return "451 4.2.0 <%s>: Try again later" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if hostname.startswith("pipelining"):
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        global counter
        if b"\r\nX-Test-Reject: yes\r\n" in b"\r\n" + (envelope.original_content or b""):
            return "554 5.6.0 Message refused by the test server"
        counter += 1
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": session.ssl is not None
                   or server.transport.get_extra_info("ssl_object") is not None,
            "auth": session.auth_data if isinstance(session.auth_data, str) else None,
            "data": base64.b64encode(envelope.original_content or envelope.content).decode(),
        }
        path = os.path.join(DIR, "mail", "%06d.json" % counter)
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 Ok: queued as %06d" % counter

    async def auth_CRAM__MD5(self, server, args):
        challenge = b"<%d.libloop@localhost>" % os.getpid()
        resp = await server.challenge_auth(challenge)
        if not isinstance(resp, bytes):
            return AuthResult(success=False, handled=False)
        user, _, digest = resp.decode().partition(" ")
        pw = USERS.get(user)
        if pw is None:
            return AuthResult(success=False, handled=False)
        want = hmac.new(pw.encode(), challenge, hashlib.md5).hexdigest()
        ok = hmac.compare_digest(want, digest)
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    async def auth_XOAUTH2(self, server, args):
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1]).decode()
        fields = dict(f.split("=", 1) for f in raw.split("\x01") if "=" in f)
        token = fields.get("auth", "").replace("Bearer ", "", 1)
        if token in TOKENS:
            return AuthResult(success=True, handled=False, auth_data=fields.get("user"))
        # The XOAUTH2 error: a 334 with a JSON status, answered by an empty line, then 535.
        await server.challenge_auth(b'{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=False)


class PlainAuthSMTP(SMTP):
    """AUTH is advertised in plaintext too (so a client that refuses to use it there is what the
    test sees), but only "plainuser" may use it without TLS (for allow_plaintext_auth)."""
    async def smtp_AUTH(self, arg):
        if not self._tls_protocol and not (arg and self._plain_user_ok(arg)):
            return await self.push("538 5.7.11 Encryption required for requested authentication mechanism")
        return await super().smtp_AUTH(arg)

    def _plain_user_ok(self, arg):
        parts = arg.split()
        if len(parts) == 2 and parts[0].upper() == "PLAIN":
            try:
                return base64.b64decode(parts[1]).split(b"\0")[1] == b"plainuser"
            except Exception:
                return False
        return False


async def main():
    os.makedirs(os.path.join(DIR, "mail"), exist_ok=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(DIR, "cert.pem"), os.path.join(DIR, "key.pem"))
    handler = Handler()
    loop = asyncio.get_running_loop()

    def plain_factory():
        return PlainAuthSMTP(handler, tls_context=ctx, authenticator=authenticator,
                             auth_require_tls=False, enable_SMTPUTF8=True,
                             hostname="aiosmtpd.test", ident="libloop test server")

    def tls_factory():
        return SMTP(handler, authenticator=authenticator, hostname="aiosmtpd.test",
                    enable_SMTPUTF8=True,
                    ident="libloop test server")

    plain = await loop.create_server(plain_factory, "127.0.0.1", 0)
    tls = await loop.create_server(tls_factory, "127.0.0.1", 0, ssl=ctx)
    ports = "%d %d\n" % (plain.sockets[0].getsockname()[1], tls.sockets[0].getsockname()[1])
    with open(os.path.join(DIR, "ports.tmp"), "w") as f:
        f.write(ports)
    os.rename(os.path.join(DIR, "ports.tmp"), os.path.join(DIR, "ports"))
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
