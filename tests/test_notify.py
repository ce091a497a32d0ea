"""notify: alerts delivered by real SMTP (aiosmtpd) and real HTTP webhooks on 127.0.0.1, one notice
row per attempt; bad endpoints (400, a hang, a malformed address) recorded with the reason while the
other channels deliver; a receiver down then up gets every notice once; a kill -9 mid-burst loses
nothing; the MISSION scenario (antitrust AMD) through the real feeds and calc to the inboxes of the
head trader and the CRO; the message a person reads; bad configuration."""
import math
import ssl
import subprocess
import sys
import time

import numpy as np
import pytest

from common.alerts import alert_batch, alert_row
from conftest import Collector, free_endpoint, rpc_answer, wait_until
from test_calc_recovery import Stack, calc_config_file
from tests.receivers import HttpReceiver, SmtpReceiver
from tickerplant.client import Publisher


@pytest.fixture
def smtp():
    s = SmtpReceiver()
    yield s
    s.close()


@pytest.fixture
def http():
    h = HttpReceiver()
    yield h
    h.close()


def stress_alert(account="FUND1", i=0):
    return alert_row(time.time_ns(), account, "stresscall", "high",
                     f"stress antitrust predicts a call of 1,250,000, 125% of the cash buffer 1,000,000 (#{i})",
                     model="fhs", value=1_250_000.0, threshold=500_000.0, drivers="AMD:2400000;NVDA:800000",
                     stress=3_100_000.0)


def write_config(tmp_path, text):
    path = tmp_path / "notify.toml"
    path.write_text(text)
    return path


def start_notify(spawn, tp, config, status):
    proc = spawn("notify", "--config", config, "--control", tp.control, "--ingest", tp.ingest, "--status", status,
                 "--log-level", "INFO")
    wait_until(lambda: rpc_answer(status) or proc.poll() is not None, 60, what="notify status")
    assert proc.poll() is None, proc.log_path.read_text()
    return proc


def notices(collector):
    t = collector.table("notice")
    return [dict(zip(t, v)) for v in zip(*t.values())] if t else []


def test_every_channel_delivers_or_records_why(spawn, tickerplant, tmp_path, smtp, http):
    http.answer.update({"bad": 400, "hang": "hang"})
    config = write_config(tmp_path, f"""
dashboard = "http://dash.example:8080/"
[delivery]
max_attempts = 2
backoff_min_s = 0.1
backoff_max_s = 0.2
timeout_s = 1.0
[smtp]
host = "127.0.0.1"
port = {smtp.port}
sender = "margintick@test"
[channels.email]
kind = "smtp"
to = ["head.trader@example.com", "cro@example.com"]
[channels.typo]
kind = "smtp"
to = ["not an address"]
[channels.chat]
kind = "slack"
url = "{http.url('slack')}"
[channels.json]
kind = "webhook"
url = "{http.url('json')}"
[channels.bad]
kind = "webhook"
url = "{http.url('bad')}"
[channels.hang]
kind = "teams"
url = "{http.url('hang')}"
[routes]
FUND1 = ["email", "typo", "chat", "json", "bad", "hang"]
default = ["json"]
""")
    status = free_endpoint()
    proc = start_notify(spawn, tickerplant, config, status)
    pub = Publisher("test-calc", tickerplant.ingest)
    pub.publish_sync("alert", alert_batch([stress_alert()]))
    wait_until(lambda: smtp.messages and http.delivered("slack") and http.delivered("json"), 30, what="deliveries")
    (mail,) = smtp.messages
    assert sorted(mail.rcpt_tos) == ["cro@example.com", "head.trader@example.com"]
    body = mail.get_content()
    assert "FUND1" in mail["Subject"] and "[HIGH]" in mail["Subject"]
    assert "AMD" in body and "2,400,000" in body and "stress loss 3,100,000" in body
    assert "http://dash.example:8080/#/account/FUND1" in body
    key = mail["X-Idempotency-Key"]
    assert key.endswith("/email")
    (_, _, jkey, payload, _), = [p for p in http.posts if p[0] == "json"]
    assert jkey == payload["idempotency_key"] and payload["stress_loss"] == 3_100_000.0
    assert payload["drivers"][0] == {"sym": "AMD", "contribution": 2_400_000.0}
    slack = [p for p in http.posts if p[0] == "slack"][0][3]
    assert "FUND1" in slack["text"] and "AMD" in slack["text"]

    c = Collector("check", tickerplant.control, tables=["notice"]).start()
    try:
        c.poll_until(lambda: {n["channel"] for n in notices(c) if n["status"] in ("sent", "failed")} ==
                     {"email", "typo", "chat", "json", "bad", "hang"}, 30, what="final notices")
        final = {n["channel"]: n for n in notices(c) if n["status"] in ("sent", "failed")}
        assert {k: v["status"] for k, v in final.items()} == {"email": "sent", "typo": "failed", "chat": "sent",
                                                            "json": "sent", "bad": "failed", "hang": "failed"}
        assert "malformed" in final["typo"]["error"] and "not an address" in final["typo"]["error"]
        assert "HTTP 400" in final["bad"]["error"] and final["bad"]["attempts"] == 1      # a 400 is not retried
        assert "no answer" in final["hang"]["error"] and final["hang"]["attempts"] == 2
        retries = [n for n in notices(c) if n["channel"] == "hang" and n["status"] == "retry"]
        assert len(retries) == 1 and "no answer" in retries[0]["error"]
        assert final["email"]["idem"] == key and final["email"]["error"] == ""
    finally:
        c.close()
    assert proc.poll() is None
    s = rpc_answer(status)
    assert s["owed"] == 0 and s["alerts"] == 1


def test_an_unreachable_smtp_server_is_retried_then_recorded(spawn, tickerplant, tmp_path, http, free_port):
    config = write_config(tmp_path, f"""
[delivery]
max_attempts = 3
backoff_min_s = 0.1
[smtp]
host = "127.0.0.1"
port = {free_port()}
[channels.email]
kind = "smtp"
to = ["cro@example.com"]
[channels.hook]
kind = "webhook"
url = "{http.url('hook')}"
[routes]
default = ["email", "hook"]
""")
    proc = start_notify(spawn, tickerplant, config, free_endpoint())
    Publisher("test-calc", tickerplant.ingest).publish_sync("alert", alert_batch([stress_alert()]))
    c = Collector("check", tickerplant.control, tables=["notice"]).start()
    try:
        c.poll_until(lambda: [n for n in notices(c) if n["channel"] == "email" and n["status"] == "failed"], 30,
                     what="the email given up")
        email = [(n["status"], n["attempts"]) for n in notices(c) if n["channel"] == "email"]
        assert email == [("retry", 1), ("retry", 2), ("failed", 3)]
        assert all("Connection refused" in n["error"] or "ConnectionRefused" in n["error"]
                   for n in notices(c) if n["channel"] == "email")
        assert [n["status"] for n in notices(c) if n["channel"] == "hook"] == ["sent"]     # unaffected
    finally:
        c.close()
    assert len(http.delivered("hook")) == 1 and proc.poll() is None


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl): (cert file, server context)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("tls", ["none", "trusted", "untrusted"])
def test_smtp_login_and_starttls_with_the_server_certificate_checked(spawn, tickerplant, tmp_path, certificate, tls):
    """Login when configured; with STARTTLS, before it, the server's certificate must chain to a trusted
    CA (`ca_file`): an untrusted one is a notice row naming the failure, and nothing is sent in clear."""
    cert, context = certificate
    smtp = SmtpReceiver(credentials=("margintick", "s3cret"), tls=None if tls == "none" else context)
    try:
        config = write_config(tmp_path, f"""
[smtp]
host = "127.0.0.1"
port = {smtp.port}
starttls = {"false" if tls == "none" else "true"}
user = "margintick"
password = "s3cret"
{f'ca_file = "{cert}"' if tls == "trusted" else ""}
[delivery]
max_attempts = 1
[channels.email]
kind = "smtp"
to = ["cro@example.com"]
[routes]
default = ["email"]
""")
        start_notify(spawn, tickerplant, config, free_endpoint())
        Publisher("test-calc", tickerplant.ingest).publish_sync("alert", alert_batch([stress_alert()]))
        if tls == "untrusted":
            c = Collector("check", tickerplant.control, tables=["notice"]).start()
            try:
                c.poll_until(lambda: [n for n in notices(c) if n["status"] == "failed"], 30, what="the email given up")
                failed, = [n for n in notices(c) if n["status"] == "failed"]
                assert "CERTIFICATE_VERIFY_FAILED" in failed["error"] and smtp.messages == []
            finally:
                c.close()
        else:
            wait_until(lambda: smtp.messages, 30, what="the email after login")
            assert smtp.messages[0].login == "margintick"           # the server required AUTH and it was given
            assert smtp.messages[0].tls == (tls == "trusted")
    finally:
        smtp.close()


def test_receiver_down_then_up_gets_every_notice_once(spawn, tickerplant, tmp_path, http):
    http.answer["hook"] = 503
    config = write_config(tmp_path, f"""
[delivery]
max_attempts = 50
backoff_min_s = 0.05
backoff_max_s = 0.4
[channels.hook]
kind = "webhook"
url = "{http.url('hook')}"
[routes]
default = ["hook"]
""")
    status = free_endpoint()
    start_notify(spawn, tickerplant, config, status)
    pub = Publisher("test-calc", tickerplant.ingest)
    pub.publish_sync("alert", alert_batch([stress_alert(f"ACC{i}", i) for i in range(20)]))
    wait_until(lambda: len([p for p in http.posts if p[0] == "hook"]) >= 40, 30, what="failed attempts")
    assert http.delivered("hook") == []
    http.answer["hook"] = 200
    wait_until(lambda: len(set(http.delivered("hook"))) == 20, 30, what="every notice")
    time.sleep(1.0)                                        # nothing more arrives
    keys = http.delivered("hook")
    assert len(keys) == 20 and len(set(keys)) == 20
    assert rpc_answer(status)["owed"] == 0


def test_kill9_mid_burst_loses_nothing(spawn, tickerplant, tmp_path):
    http = HttpReceiver(delay=0.005)
    try:
        config = write_config(tmp_path, f"""
[delivery]
concurrency = 4
[channels.hook]
kind = "webhook"
url = "{http.url('hook')}"
[routes]
default = ["hook"]
""")
        status = free_endpoint()
        proc = start_notify(spawn, tickerplant, config, status)
        pub = Publisher("test-calc", tickerplant.ingest)
        n = 300
        for start in range(0, n, 50):
            pub.publish("alert", alert_batch([stress_alert(f"ACC{i}", i) for i in range(start, start + 50)]))
        pub.flush(10)
        wait_until(lambda: len(http.delivered("hook")) >= 60, 30, what="part of the burst")
        proc.kill()
        proc.wait(10)
        before = len(set(http.delivered("hook")))
        assert before < n, "the burst was over before the kill"
        start_notify(spawn, tickerplant, config, free_endpoint())
        wait_until(lambda: len(set(http.delivered("hook"))) == n, 60, what="the whole burst")
        time.sleep(1.0)
        keys = http.delivered("hook")
        repeats = len(keys) - len(set(keys))
        # a repeat can only be an attempt under way or one whose notice was not yet journaled at the kill;
        # its key is the same, so the receiver drops it
        assert len(set(keys)) == n and repeats <= 20, (before, repeats)
    finally:
        http.close()


def test_mission_scenario_emails_the_stress_call(spawn, free_port, tmp_path, repo_root, smtp):
    stack = Stack(spawn, free_port, tmp_path / "stack", calc_config_file(tmp_path, repo_root))
    assert spawn("feedhandlers.refdata", "--ingest", stack.ingest).wait(60) == 0
    prices_control = f"tcp://127.0.0.1:{free_port()}"
    spawn("feedhandlers.prices", "--ingest", stack.ingest, "--control", prices_control, "--steps-per-sec", "4",
          "--seed", "11")
    stack.start_calc()
    status = free_endpoint()
    proc = spawn("notify", "--config", "none", "--control", stack.control, "--ingest", stack.ingest,
                 "--status", status, "--smtp", f"127.0.0.1:{smtp.port}",
                 "--to", "head.trader@example.com", "--to", "cro@example.com")
    wait_until(lambda: rpc_answer(status), 60, what="notify status")
    wait_until(lambda: rpc_answer(stack.query, "status")["counters"].get("quote", 0) > 100, 60, what="quotes")
    event = time.monotonic()
    assert spawn("feedhandlers.prices", "--send", "antitrust AMD", "--control", prices_control).wait(30) == 0

    def stress_mail():
        return [m for m in smtp.messages if "FUND1 stresscall" in m["Subject"] and "[HIGH]" in m["Subject"]]
    wait_until(stress_mail, 90, what="the stress-call email for FUND1")
    mail = stress_mail()[0]
    assert sorted(mail.rcpt_tos) == ["cro@example.com", "head.trader@example.com"]
    assert mail.accepted_at > event, [m["Subject"] for m in smtp.messages]
    body = mail.get_content()
    lines = body.splitlines()
    top = lines[lines.index("top drivers (contribution to the requirement):") + 1]
    assert top.split()[0] == "AMD"                                          # AMD drives the requirement
    assert "stress loss " in body and "of the cash buffer" in body
    assert "http://127.0.0.1:8080/#/account/FUND1" in body
    assert proc.poll() is None


def test_a_rule_set_at_run_time_applies_to_the_next_margin_row_and_routes_it(spawn, free_port, tmp_path, repo_root,
                                                                             http):
    from common.alertrules import Rule, rule_batch
    stack = Stack(spawn, free_port, tmp_path / "stack", calc_config_file(tmp_path, repo_root))
    assert spawn("feedhandlers.refdata", "--ingest", stack.ingest).wait(60) == 0
    stack.start_calc()
    config = write_config(tmp_path, f"""
[channels.ops]
kind = "webhook"
url = "{http.url('ops')}"
[channels.desk]
kind = "webhook"
url = "{http.url('desk')}"
[routes]
default = ["ops"]
""")
    status = free_endpoint()
    start_notify(spawn, stack, config, status)
    now = time.time_ns()
    stack.send("alertrule", rule_batch([Rule("tight", "account", "FUND1", "threshold", 1.0, severity="high",
                                             channels=("desk",), user="risk", time=now),
                                        Rule("typo", "account", "FUND9", "threshold", 1.0, time=now)]))
    assert not [p for p in http.posts if p[3]["kind"] == "threshold"]        # no margin row yet: nothing fired
    stack.send("collateral", {"time": np.array([now], dtype="datetime64[ns]"), "sym": np.array(["FUND1"], object),
                              "amount": np.array([1.0]), "kind": np.array(["cash"], object),
                              "ref": np.array(["t1"], object)})
    wait_until(lambda: [p for p in http.posts if p[0] == "desk"], 30, what="the threshold alert on the rule's channel")
    (desk,) = [p[3] for p in http.posts if p[0] == "desk"]
    assert desk["account"] == "FUND1" and desk["kind"] == "threshold" and desk["severity"] == "high"
    assert "(rule tight)" in desk["text"] and desk["threshold"] == 1.0
    # the rule naming an unknown account: an alert with the reason, delivered by the default route
    wait_until(lambda: [p for p in http.posts if p[0] == "ops" and p[3]["kind"] == "rule"], 30, what="the rule alert")
    (bad,) = [p[3] for p in http.posts if p[0] == "ops" and p[3]["kind"] == "rule"]
    assert "unknown account 'FUND9'" in bad["text"]
    assert not [p for p in http.posts if p[0] == "ops" and p[3]["kind"] == "threshold"]


def test_reminders_until_acknowledged_also_after_a_restart(spawn, tickerplant, tmp_path, http):
    config = write_config(tmp_path, f"""
[delivery]
remind_s = 0.3
[channels.hook]
kind = "webhook"
url = "{http.url('hook')}"
[routes]
default = ["hook"]
""")
    proc = start_notify(spawn, tickerplant, config, free_endpoint())
    pub = Publisher("test-calc", tickerplant.ingest)
    pub.publish_sync("alert", alert_batch([stress_alert("FUND1"), stress_alert("FUND2")]))

    def reminders(account):
        return [p[3] for p in http.posts if p[3]["account"] == account and ".r" in p[3]["alert"]]
    wait_until(lambda: len(reminders("FUND1")) >= 2, 30, what="reminders")
    r = reminders("FUND1")[0]
    assert r["text"].startswith("reminder 1, not acknowledged: stress antitrust") and "ack[`FUND1;`stresscall]" in r["text"]
    assert r["idempotency_key"].endswith(".r1/hook")
    now = time.time_ns()
    pub.publish_sync("ack", {"time": np.array([now], dtype="datetime64[ns]"), "sym": np.array(["FUND1"], object),
                             "kind": np.array(["stresscall"], object), "user": np.array(["cro"], object),
                             "note": np.array(["on it"], object)})
    time.sleep(0.5)                                            # a reminder under way at the ack may still land
    acked = len(reminders("FUND1"))
    time.sleep(1.0)
    assert len(reminders("FUND1")) == acked                    # acknowledged: no more reminders
    assert len(reminders("FUND2")) > acked                     # the other episode goes on
    # a restart rebuilds the episodes from the journal: FUND1 stays quiet, FUND2's numbering continues
    proc.kill()
    proc.wait(10)
    n2 = len(reminders("FUND2"))
    start_notify(spawn, tickerplant, config, free_endpoint())
    wait_until(lambda: len(reminders("FUND2")) > n2 + 1, 30, what="FUND2 reminders after the restart")
    keys = [p[2] for p in http.posts]
    # a reminder delivered just before the kill, its notice not yet journaled, is issued again with the
    # same number, so the same idempotency key: the receiver drops it
    assert len(reminders("FUND1")) == acked and len(keys) - len(set(keys)) <= 1
    numbers = sorted(int(r["alert"].rsplit(".r", 1)[1]) for r in reminders("FUND2"))
    assert sorted(set(numbers)) == list(range(1, max(numbers) + 1))          # numbering continued
    pub.publish_sync("alert", alert_batch([{**stress_alert("FUND2"), "severity": "info", "text": "back within"}]))
    time.sleep(0.5)
    ended = len(reminders("FUND2"))
    time.sleep(1.0)
    assert len(reminders("FUND2")) == ended                    # the episode cleared: no more reminders


def test_message_a_person_can_act_on():
    from notify.message import Previous, build_message
    row = {**stress_alert(), "time": np.datetime64(time.time_ns(), "ns")}
    first = build_message("7.0", row, "http://h:1", None)
    assert first.link == "http://h:1/#/account/FUND1" and first.key("email") == "margintick/7.0/email"
    assert first.drivers == (("AMD", 2_400_000.0), ("NVDA", 800_000.0))
    assert "first notice" in first.body()
    later = build_message("9.1", row, "http://h:1/", Previous("2026-12-05T10:00:00.000Z", "warn", 900_000.0))
    assert "value 900,000 -> 1,250,000" in later.body() and later.link == first.link
    no_stress = build_message("9.2", {**row, "stress": math.nan, "drivers": ""}, "http://h:1", None)
    assert "stress loss" not in no_stress.body() and no_stress.as_json("x")["stress_loss"] is None


def test_bad_configuration_is_refused_with_the_key(tmp_path):
    cases = [('[channels.x]\nkind = "pager"\n', "channels.x.kind"),
             ('[channels.x]\nkind = "webhook"\nurl = "ftp://x"\n', "channels.x.url"),
             ('[channels.x]\nkind = "smtp"\nto = ["a@b.c"]\n', "smtp.host"),
             ('[routes]\nFUND1 = ["nope"]\n', "routes.FUND1"),
             ('[delivery]\nmax_attempts = "many"\n', "delivery.max_attempts")]
    for text, key in cases:
        path = write_config(tmp_path, text)
        out = subprocess.run([sys.executable, "-m", "notify", "--config", str(path)], capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 2 and key in out.stderr, (text, out.stderr)
    out = subprocess.run([sys.executable, "-m", "notify", "--config", "none", "--smtp", "nohost"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
