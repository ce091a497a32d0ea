"""The notification channels: one `Channel` interface (`send(message) -> Outcome`, never raising) and
its implementations: SMTP email (the standard library's smtplib: STARTTLS and login when configured),
Slack and Teams incoming webhooks and a generic JSON webhook (aiohttp), and a log file (JSON lines)."""
from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path

import aiohttp

from notify.config import ChannelSpec, Smtp
from notify.message import Message


@dataclass(frozen=True)
class Outcome:
    """What one attempt did: delivered, or failed with a reason and whether a retry can help."""
    ok: bool
    error: str = ""
    retry: bool = False


DELIVERED = Outcome(True)


class Channel(ABC):
    """One destination of notifications. `send` turns every failure into an Outcome."""

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    async def send(self, message: Message) -> Outcome: ...

    async def close(self) -> None:
        """Releases what the channel holds (connections)."""


def valid_address(address: str) -> bool:
    """An address smtplib can submit: one local part, one domain, no spaces."""
    addr = parseaddr(address)[1]
    local, _, domain = addr.partition("@")
    return bool(local and domain) and addr.count("@") == 1 and not any(c.isspace() for c in addr)


class SmtpChannel(Channel):
    """Email to fixed recipients through one SMTP server; Message-ID and X-Idempotency-Key carry the key."""

    def __init__(self, name: str, smtp: Smtp, to: tuple[str, ...], timeout: float):
        super().__init__(name)
        self.smtp, self.timeout = smtp, timeout
        self.to = tuple(a for a in to if valid_address(a))
        self.malformed = tuple(a for a in to if not valid_address(a))

    async def send(self, message: Message) -> Outcome:
        skipped = f"malformed address(es) skipped: {', '.join(map(repr, self.malformed))}" if self.malformed else ""
        if not self.to:
            return Outcome(False, skipped)
        email = EmailMessage()
        email["From"], email["To"] = self.smtp.sender, ", ".join(self.to)
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        key = message.key(self.name)
        email["Message-ID"] = f"<{key.replace('/', '.')}@margintick>"
        email["X-Idempotency-Key"] = key
        email.set_content(message.body())
        try:
            await asyncio.to_thread(self._submit, email)
        except smtplib.SMTPRecipientsRefused as e:
            return Outcome(False, f"smtp: recipients refused: {_refusals(e.recipients)}")
        except smtplib.SMTPResponseException as e:
            text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
            return Outcome(False, f"smtp: {e.smtp_code} {text}", retry=400 <= e.smtp_code < 500)
        except (OSError, smtplib.SMTPException) as e:
            return Outcome(False, f"smtp {self.smtp.host}:{self.smtp.port}: {type(e).__name__}: {e}", retry=True)
        return Outcome(True, skipped)

    def _submit(self, email: EmailMessage) -> None:
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout) as s:
            if self.smtp.starttls:
                s.starttls(context=ssl.create_default_context(cafile=self.smtp.ca_file or None))
            if self.smtp.user:
                s.login(self.smtp.user, self.smtp.password)
            refused = s.send_message(email, to_addrs=list(self.to))
        if refused:          # some accepted: the message is delivered, the rest reported
            raise smtplib.SMTPRecipientsRefused(refused)


def _refusals(recipients: dict) -> str:
    return "; ".join(f"{a}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                     for a, (code, msg) in recipients.items())


class WebhookChannel(Channel):
    """A JSON POST to an incoming webhook; 2xx delivered, 5xx / 429 / no answer retried, other 4xx failed.
    The Idempotency-Key header (and the generic body's idempotency_key) carry the key."""

    def __init__(self, name: str, url: str, timeout: float):
        super().__init__(name)
        self.url, self.timeout = url, timeout
        self._session: aiohttp.ClientSession | None = None

    def payload(self, message: Message) -> dict:
        return message.as_json(self.name)

    async def send(self, message: Message) -> Outcome:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(self.url, json=self.payload(message),
                                          headers={"Idempotency-Key": message.key(self.name)}) as r:
                if 200 <= r.status < 300:
                    return DELIVERED
                text = (await r.text(errors="replace"))[:200]
                return Outcome(False, f"HTTP {r.status} from {self.url}: {text}",
                               retry=r.status >= 500 or r.status in (408, 429))
        except asyncio.TimeoutError:
            return Outcome(False, f"no answer from {self.url} within {self.timeout:g}s", retry=True)
        except aiohttp.ClientError as e:
            return Outcome(False, f"{self.url}: {type(e).__name__}: {e}", retry=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class SlackChannel(WebhookChannel):
    """A Slack-compatible incoming webhook (`text` in mrkdwn)."""

    def payload(self, message: Message) -> dict:
        return {"text": f"*{message.subject}*\n{message.body()}"}


class TeamsChannel(WebhookChannel):
    """A Microsoft Teams-compatible incoming webhook (a MessageCard)."""

    def payload(self, message: Message) -> dict:
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions",
                "summary": message.subject, "title": message.subject,
                "text": message.body().replace("\n", "  \n"),
                "potentialAction": [{"@type": "OpenUri", "name": "Open the account",
                                     "targets": [{"os": "default", "uri": message.link}]}]}


class LogChannel(Channel):
    """Appends each notification as one JSON line to a file (the default when nothing is configured)."""

    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = Path(path)

    async def send(self, message: Message) -> Outcome:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps({**message.as_json(self.name), "subject": message.subject}) + "\n")
        except OSError as e:
            return Outcome(False, f"log {self.path}: {e}", retry=True)
        return DELIVERED


def make_channel(spec: ChannelSpec, smtp: Smtp, timeout: float) -> Channel:
    """The Channel of a configured channel."""
    if spec.kind == "smtp":
        return SmtpChannel(spec.name, smtp, spec.to, timeout)
    if spec.kind == "log":
        return LogChannel(spec.name, spec.path)
    cls = {"slack": SlackChannel, "teams": TeamsChannel, "webhook": WebhookChannel}[spec.kind]
    return cls(spec.name, spec.url, timeout)
