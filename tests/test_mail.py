"""Mail: SMTP with STARTTLS and implicit TLS against a real server on loopback, failures
retried, logged and counted (never failing the signup that sent them), the development outbox,
and SMTP_URL checked at start-up."""

from __future__ import annotations

import json
from typing import Any

import pytest

from authsvc import create_app, observability
from authsvc.config import ConfigError, load_settings
from authsvc.mail import Mail, MailError, NoMailer, make_mailer
from authsvc.mail.outbox import OutboxMailer, read_outbox
from authsvc.mail.queue import FAILED, RETRY, SENT, MailQueue
from authsvc.mail.smtp import SmtpMailer, parse_smtp_url
from tests.conftest import PASSWORD, TEST_SECRET, app_overrides
from tests.lifecycle import Api
from tests.mailbox import Mailbox, link_in
from tests.service import free_port

MAIL = Mail(
    "email_verification", "to@example.com", "Hello", "Open https://x.example/verify?token=t"
)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_smtp_over_tls_delivers_to_a_server_whose_certificate_it_checks(tls):
    with Mailbox(tls=tls) as box:
        target = parse_smtp_url(box.url)
        assert target.implicit_tls is (tls == "implicit") and target.starttls is (tls != "implicit")
        SmtpMailer(target).send(MAIL.message("authsvc <no-reply@example.com>"))
        (received,) = box.wait_for(1)
        assert received["Subject"] == "Hello" and received["To"] == "to@example.com"
        assert box.envelopes == [("no-reply@example.com", ["to@example.com"])]
        # Without the CA the server's certificate is refused: TLS is really checked.
        untrusted = parse_smtp_url(box.url.split("&cafile=")[0].replace("?cafile=", "?"))
        with pytest.raises(MailError):
            SmtpMailer(untrusted).send(MAIL.message("a@example.com"))


def test_smtp_failures_say_whether_retrying_can_help(mailbox):
    mailer = SmtpMailer(parse_smtp_url(mailbox.url))
    mailbox.refuse("451 4.3.0 try again later")
    with pytest.raises(MailError) as temporary:
        mailer.send(MAIL.message("a@example.com"))
    assert temporary.value.permanent is False
    mailbox.refuse("554 5.7.1 rejected")
    with pytest.raises(MailError) as permanent:
        mailer.send(MAIL.message("a@example.com"))
    assert permanent.value.permanent is True
    closed = SmtpMailer(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"))
    with pytest.raises(MailError) as refused:
        closed.send(MAIL.message("a@example.com"))
    assert refused.value.permanent is False


def test_the_queue_retries_a_temporary_failure_and_counts_it(mailbox):
    mailbox.refuse("451 4.3.0 try again later", times=2)
    queue = MailQueue(SmtpMailer(parse_smtp_url(mailbox.url)), "a@example.com", 4, 0.01)
    seen: list[tuple[str, str]] = []
    queue.observers.append(lambda kind, outcome: seen.append((kind, outcome)))
    queue.submit("email_verification", lambda: MAIL)
    assert queue.drain(10)
    assert len(mailbox.wait_for(1)) == 1
    assert seen == [("email_verification", RETRY)] * 2 + [("email_verification", SENT)]
    queue.close()


def test_the_queue_gives_up_loudly(mailbox, capfd):
    observability.configure_logging()  # JSON lines on stderr, as the service logs
    mailbox.refuse("554 5.7.1 rejected")
    queue = MailQueue(SmtpMailer(parse_smtp_url(mailbox.url)), "a@example.com", 4, 0.01)
    queue.submit("password_reset", lambda: MAIL)
    assert queue.drain(10)
    assert queue.counts[("password_reset", FAILED)] == 1
    assert queue.counts[("password_reset", RETRY)] == 0  # a 5xx answer is not retried
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    (line,) = [x for x in lines if x["msg"] == "mail not delivered; giving up"]
    assert line["level"] == "error" and "554" in line["error"]
    queue.close()


def test_a_signup_succeeds_while_mail_fails_and_the_failure_is_logged_and_counted(
    database_url, tmp_path, capfd
):
    dead = f"smtp://127.0.0.1:{free_port()}?timeout=1"
    app = create_app(
        app_overrides(
            database_url,
            tmp_path,
            SMTP_URL=dead,
            AUTHSVC_METRICS="on",
            AUTHSVC_MAIL_ATTEMPTS="2",
            AUTHSVC_MAIL_RETRY_MS="10",
        )
    )
    try:
        body = Api(app.test_client()).signup("mailless@example.com")
        assert body["session"] is not None
        assert app.extensions["authsvc"].mail.drain(15)
        lines = [
            json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
        ]
        mail_lines = [line for line in lines if line["logger"] == "authsvc.mail"]
        assert [(line["level"], line["msg"]) for line in mail_lines] == [
            ("warning", "mail attempt failed; retrying"),
            ("error", "mail not delivered; giving up"),
        ]
        assert mail_lines[-1]["user_id"] == body["user"]["id"]
        assert "token=" not in json.dumps(lines)  # the link never reaches a log line
        metrics = app.test_client().get("/metrics").text
        assert 'authsvc_mail_total{kind="email_verification",outcome="retry"} 1.0' in metrics
        assert 'authsvc_mail_total{kind="email_verification",outcome="failed"} 1.0' in metrics
    finally:
        app.extensions["authsvc"].stores.close()


def test_development_without_smtp_writes_the_outbox(database_url, tmp_path):
    app = create_app(app_overrides(database_url, tmp_path))
    try:
        runtime = app.extensions["authsvc"]
        assert isinstance(runtime.mail.mailer, OutboxMailer)
        Api(app.test_client()).signup("dev@example.com", PASSWORD)
        assert runtime.mail.drain(10)
        (message,) = read_outbox(tmp_path / "outbox")
        assert message["To"] == "dev@example.com"
        assert link_in(message).startswith("http://127.0.0.1:8000/verify?token=")
    finally:
        app.extensions["authsvc"].stores.close()


def settings(**env: Any):
    return load_settings({"JWT_SECRET_KEY": TEST_SECRET, "AUTHSVC_DATA_DIR": "/tmp/unused", **env})


def test_production_without_smtp_has_no_mailer_and_says_so():
    strong = "k" + "".join(chr(97 + (i * 7) % 26) for i in range(47)) + "Z9"
    prod = load_settings(
        {
            "AUTHSVC_ENV": "production",
            "JWT_SECRET_KEY": strong,
            "DATABASE_URL": "postgresql://db/x",
            "AUTHSVC_DATA_DIR": "/tmp/u",
        }
    )
    assert isinstance(make_mailer(prod), NoMailer)
    assert any("SMTP_URL is not set" in w for w in prod.warnings)
    with pytest.raises(MailError):
        NoMailer().send(MAIL.message("a@example.com"))
    with pytest.raises(ConfigError, match="SMTP_URL"):
        load_settings(
            {
                "AUTHSVC_ENV": "production",
                "JWT_SECRET_KEY": strong,
                "DATABASE_URL": "postgresql://db/x",
                "AUTHSVC_DATA_DIR": "/tmp/u",
                "AUTHSVC_REQUIRE_EMAIL_CONFIRMATION": "on",
            }
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://",
        "smtps://h?starttls=1",
        "smtp://h?bogus=1",
        "smtp://h:notaport",
        "smtp://h?timeout=soon",
    ],
)
def test_a_bad_smtp_url_stops_the_start_saying_what_to_set(url, database_url, tmp_path):
    with pytest.raises(ConfigError, match="SMTP_URL"):
        create_app(app_overrides(database_url, tmp_path, SMTP_URL=url))


def test_smtp_url_parts_and_its_password_stays_out_of_repr():
    target = parse_smtp_url("smtp://me%40x.com:s%3Acret@mail.example.com:587?starttls=1")
    assert (target.host, target.port, target.username, target.password) == (
        "mail.example.com",
        587,
        "me@x.com",
        "s:cret",
    )
    assert parse_smtp_url("smtps://mail.example.com").port == 465
    assert parse_smtp_url("smtp://mail.example.com").port == 25
    assert "s:cret" not in repr(target)
    assert "s%3Acret" not in repr(settings(SMTP_URL="smtp://u:s%3Acret@h:25"))


def test_a_bad_public_url_stops_the_start():
    with pytest.raises(ConfigError, match="AUTHSVC_PUBLIC_URL"):
        settings(AUTHSVC_PUBLIC_URL="auth.example.com")
    assert settings(AUTHSVC_PUBLIC_URL="https://a.example/").public_url == "https://a.example"
    assert settings(HOST="0.0.0.0", PORT="9000").public_url == "http://0.0.0.0:9000"
