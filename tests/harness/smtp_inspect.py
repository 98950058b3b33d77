#!/usr/bin/python3
"""smtp_inspect.py RECORD.json [DKIM_PUBLIC_KEY.pem] — what the test SMTP server received, parsed
with Python's email package (an implementation independent of libloop's MIME builder), printed as
"key: value" lines for the C tests:
  from, rcpt, options, tls, auth, size, crlf_only (every line ends in CRLF), max_line (longest line
  in bytes), header:<Name> (decoded, unfolded; one line per occurrence), part:<n> (content type,
  disposition, filename, Content-ID, decoded length, sha256 of the decoded payload, and the text
  for text parts, repr'd), dkim (pass/fail, checked with python3-dkim against the key given,
  served for any selector/domain from a stub DNS lookup), defects (parser defects, if any).
"""
import base64, email, email.header, email.policy, hashlib, json, sys

rec = json.load(open(sys.argv[1]))
data = base64.b64decode(rec["data"])
print("from:", rec["mail_from"])
print("rcpt:", ",".join(rec["rcpt_tos"]))
print("options:", " ".join(rec["mail_options"]))
print("tls:", rec["tls"])
print("auth:", rec["auth"])
print("size:", len(data))
lines = data.split(b"\r\n")
print("crlf_only:", all(b"\n" not in l and b"\r" not in l for l in lines))
print("max_line:", max(len(l) for l in lines))
msg = email.message_from_bytes(data, policy=email.policy.default)
for name, value in msg.items():
    print("header:%s: %s" % (name, str(value).replace("\n", " ")))
defects = list(msg.defects)
for i, part in enumerate(msg.walk()):
    defects += part.defects
    if part.is_multipart():
        print("part:%d: %s" % (i, part.get_content_type()))
        continue
    payload = part.get_payload(decode=True) or b""
    line = "part:%d: %s disp=%s file=%s cid=%s len=%d sha256=%s cte=%s" % (
        i, part.get_content_type(), part.get_content_disposition(), part.get_filename(),
        part.get("Content-ID"), len(payload), hashlib.sha256(payload).hexdigest(),
        part.get("Content-Transfer-Encoding"))
    if part.get_content_maintype() == "text":
        line += " text=%r" % part.get_content()
    print(line)
print("defects:", len(defects), " ".join(type(d).__name__ for d in defects))
if len(sys.argv) > 2:
    import dkim
    pem = open(sys.argv[2], "rb").read()
    if b"BEGIN" in pem:
        der = base64.b64decode(b"".join(l for l in pem.splitlines() if not l.startswith(b"-----")))
    else:
        der = pem
    def dnsfunc(name, timeout=5):
        # Ed25519 (RFC 8463): the raw 32-byte key, not the SubjectPublicKeyInfo; rsa: the SPKI.
        if len(der) == 44:
            return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:])
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    try:
        ok = dkim.verify(data, dnsfunc=dnsfunc)
    except Exception as e:
        print("dkim_error:", e)
        ok = False
    print("dkim:", "pass" if ok else "fail")
