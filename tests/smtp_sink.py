#!/usr/bin/env python3
"""A real SMTP server for tests/notify.rs (aiosmtpd, Debian's python3-aiosmtpd).

Listens on 127.0.0.1 on a free port and prints the port on the first line of
stdout. Every message it accepts is printed as one JSON line: the envelope, the
TLS and AUTH state of the session, the raw Subject header as it came over the
wire and the message parsed with Python's email package (decoded subject,
From, To, content type, charset, body text). Runs until killed or until stdin
closes (the test dropped it).

Options:
  --tls CERT KEY   offer STARTTLS with this certificate, and require it
  --auth USER PASS accept AUTH PLAIN/LOGIN with these credentials only (and
                   require authentication)
"""
import argparse
import asyncio
import email
import email.policy
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        raw_subject = ""
        for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            if line.lower().startswith(b"subject:"):
                raw_subject = line.decode("ascii", "replace")
        body = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": bool(session.ssl),
            "auth_login": (session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None),
            "raw_subject": raw_subject,
            "raw_is_ascii": all(b < 128 for b in raw),
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "body": body.get_content() if body is not None else None,
        }
        print(json.dumps(record, ensure_ascii=False), flush=True)
        return "250 OK"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--auth", nargs=2, metavar=("USER", "PASS"))
    args = ap.parse_args()

    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls[0], args.tls[1])

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            args.auth is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.auth[0]
            and auth_data.password.decode() == args.auth[1]
        )
        # handled=False: aiosmtpd answers 535 itself (True would leave the client waiting).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def factory():
        return SMTP(
            Sink(),
            hostname="sink.test",
            tls_context=ctx,
            require_starttls=ctx is not None,
            authenticator=authenticator if args.auth else None,
            auth_required=args.auth is not None,
            # Credentials in the clear are refused unless STARTTLS is on.
            auth_require_tls=ctx is not None,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Stop when the test goes away (stdin closed).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
