"""The web console (docs/design.md#web-console), in a real browser:
Debian's chromium driven headless by chromedriver through selenium, and
plain urllib for what a browser hides (status codes, forms without
JavaScript, forged posts).

- the overview shows every queue and this instance with its workers, and
  refreshes itself with JavaScript on;
- a pause clicked on the page pauses the queue for every instance: two
  digestd on one queue Redis take no job of it until it is resumed;
- a dead letter requeued from the page runs: its email reaches the sink;
- a POST without the CSRF token, or with a wrong one, gets 403 and changes
  nothing; basic auth refuses a wrong password;
- with JavaScript off every page and form works the same;
- a console on an address that is not loopback needs a password.

Chromium and chromedriver are started per test and stopped by pid.
"""
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from lib.harness import DIGESTD, free_port, kill_pid, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, job_id, wait_done, window)

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
PAGE_TIMEOUT = 30           # a hang guard for each browser step

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.common.exceptions import (NoSuchElementException,
                                            StaleElementReferenceException)
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - scripts/deps.sh installs it
    webdriver = None

needs_browser = pytest.mark.skipif(
    webdriver is None or CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium, chromium-driver and python3-selenium (scripts/deps.sh test)")


def click(page, css):
    """Click the element css names, found again if the page's refresh
    replaced it between the look and the click."""
    def attempt():
        try:
            page.find_element(By.CSS_SELECTOR, css).click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    wait_for(attempt, timeout=PAGE_TIMEOUT, what="a click on " + css)


def main_text(page):
    """The text of <main>, or "" while it is being replaced (the refresh,
    or the page loading after a form was sent)."""
    try:
        return page.find_element(By.ID, "main").text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def console_config(tmp_path, redis, console_port, sink=None, workers=1, extra="",
                   name="digestd.conf"):
    """The pipeline config with a console, written under name."""
    path = config(tmp_path, redis, sink=sink, workers=workers)
    with open(path) as f:
        text = f.read()
    text = text.replace("log_level = info\n", "log_level = info\nconsole_listen = "
                        "127.0.0.1:%d\n%s" % (console_port, extra), 1)
    if name != "digestd.conf":
        text = re.sub(r"listen = 127.0.0.1:\d+\n", "listen = 127.0.0.1:%d\n" % free_port(),
                      text, count=1)
        path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def descendants(pid):
    """Every process below pid, from /proc."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


class Browser:
    """Headless chromium through chromedriver; stop() ends both by pid."""

    def __init__(self, tmp_path, javascript=True):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--no-first-run",
                  "--user-data-dir=%s" % os.path.join(str(tmp_path), "chromium-%d" % javascript)):
            opts.add_argument(a)
        if not javascript:
            opts.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2})
        self.service = Service(CHROMEDRIVER, port=free_port(),
                               log_output=os.path.join(str(tmp_path), "chromedriver.log"))
        self.driver = None
        self.driver = webdriver.Chrome(service=self.service, options=opts)
        self.driver.set_page_load_timeout(PAGE_TIMEOUT)
        self.driver.set_script_timeout(PAGE_TIMEOUT)

    def get(self, url):
        self.driver.get(url)
        return self.driver

    def stop(self):
        pid = self.service.process.pid if self.service.process else None
        procs = descendants(pid) if pid else []
        try:
            if self.driver is not None:
                self.driver.quit()
        except Exception:
            pass
        for p in [pid] + procs:
            if p:
                kill_pid(p, signal.SIGKILL, timeout=10)


@pytest.fixture
def browser_factory(tmp_path):
    made = []

    def make(javascript=True):
        b = Browser(tmp_path, javascript)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


class Client:
    """urllib with a cookie jar: a browser without JavaScript."""

    def __init__(self, base, password=None):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()]
        self.opener = urllib.request.build_opener(*handlers)
        self.auth = None
        if password is not None:
            import base64
            self.auth = "Basic " + base64.b64encode(("ops:" + password).encode()).decode()

    def request(self, path, data=None, headers=None):
        h = dict(headers or {})
        if self.auth:
            h.setdefault("Authorization", self.auth)
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers=h)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def token(self, path="/"):
        code, _, body = self.request(path)
        assert code == 200, body
        m = re.search(r'name="csrf" value="([0-9a-f]{64})"', body)
        assert m, body
        return m.group(1)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def start(digestd_factory, path):
    d = digestd_factory(config_path=path)
    d.start()
    return d


def console_up(port):
    def up():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/console.css" % port,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(up, timeout=15, what="the console answering")


def instance_of(d):
    return "%s:%d" % (os.uname().nodename, d.pid())


@needs_browser
def test_page_shows_queues_and_this_instance_and_refreshes(tmp_path, redis_tcp,
                                                           digestd_factory,
                                                           browser_factory):
    cport = free_port()
    d = start(digestd_factory, console_config(tmp_path, redis_tcp, cport, workers=2))
    console_up(cport)
    me = instance_of(d)
    # The sampler registers the instance every round (5 s), workers and all.
    wait_for(lambda: len(json.loads(redis_tcp.client().hget("digest:instance:" + me,
                                                            "workers") or "[]")) == 2,
             timeout=15, what="the instance record with its workers")
    r = redis_tcp.client()
    assert 0 < r.ttl("digest:instance:" + me) <= 15
    assert r.zscore("digest:instances", me) is not None

    b = browser_factory()
    page = b.get("http://127.0.0.1:%d/" % cport)
    assert page.title == "digestd console: overview"
    rows = page.find_elements(By.CSS_SELECTOR, "#queues tr[data-queue]")
    assert [row.get_attribute("data-queue") for row in rows] == ["standard"]
    inst = page.find_element(By.CSS_SELECTOR, 'section[data-instance="%s"]' % me)
    assert "(this one)" in inst.text
    workers = inst.find_elements(By.CSS_SELECTOR, "table.workers tr")[1:]
    assert len(workers) == 2 and all("standard" in w.text for w in workers)
    # The script runs under the Content-Security-Policy and reloads <main>.
    wait_for(lambda: page.find_element(By.TAG_NAME, "body").get_attribute("data-script")
             == "on", timeout=PAGE_TIMEOUT, what="the refresh script")
    wait_for(lambda: page.find_element(By.TAG_NAME, "body").get_attribute("data-refreshed"),
             timeout=PAGE_TIMEOUT, what="a refresh")
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def paused(r, queue):
    return r.hgetall("digest:paused:" + queue)


@needs_browser
def test_pause_clicked_pauses_every_instance(tmp_path, redis_tcp, smtp_sink,
                                             digestd_factory, browser_factory):
    r = redis_tcp.client()
    data = Data(r)
    ws, we = window()
    data.group(7, name="Seven")
    data.members(7, [70])
    data.user(70, email="u70@example.com", name="U", last_seen=we)
    data.post(7, 700, we - 60, title="A post", author_id=71, likes=1)

    cport = free_port()
    d1 = start(digestd_factory, console_config(tmp_path, redis_tcp, cport, sink=smtp_sink))
    d2 = start(digestd_factory, console_config(tmp_path, redis_tcp, free_port(),
                                               sink=smtp_sink, name="second.conf"))
    console_up(cport)

    b = browser_factory()
    page = b.get("http://127.0.0.1:%d/" % cport)

    def pause_with_reason():
        # Found again if the refresh replaces the row meanwhile.
        try:
            row = page.find_element(By.CSS_SELECTOR,
                                    '#queues tr[data-queue="standard"]')
            field = row.find_element(By.NAME, "reason")
            field.clear()
            field.send_keys("bad template")
            row.find_element(By.NAME, "pause").click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    wait_for(pause_with_reason, timeout=PAGE_TIMEOUT, what="the pause form sent")
    wait_for(lambda: "Paused queue standard" in main_text(page),
             timeout=PAGE_TIMEOUT, what="the page saying paused")
    p = paused(r, "standard")
    assert p["reason"] == "bad template" and p["by"].startswith("console@")
    assert r.ttl("digest:paused:standard") == -1
    wait_for(lambda: "paused: bad template" in main_text(page),
             timeout=PAGE_TIMEOUT, what="the row saying why")

    # Every instance obeys within 2 s; a job enqueued after that stays put.
    time.sleep(2.5)
    jid = enqueue(r, 7, "daily", ws, we)
    time.sleep(3)
    groups = r.xinfo_groups("digest:q:standard")
    assert groups[0]["pending"] == 0 and groups[0]["lag"] == 1, groups
    assert r.exists("digest:job:" + jid) == 0
    assert smtp_sink.count() == 0

    # Resumed from the page: one of the two takes it and the email goes out.
    click(page, '#queues tr[data-queue="standard"] button[name="resume"]')
    wait_for(lambda: "Resumed queue standard" in main_text(page),
             timeout=PAGE_TIMEOUT, what="the page saying resumed")
    assert paused(r, "standard") == {}
    wait_done(r, jid, timeout=30)
    wait_for(lambda: smtp_sink.count() == 1, timeout=10, what="the email")
    assert not d1.exited() and not d2.exited()


@needs_browser
def test_dead_letter_requeued_from_the_page_runs(tmp_path, redis_tcp, smtp_sink,
                                                 digestd_factory, browser_factory):
    r = redis_tcp.client()
    data = Data(r)
    ws, we = window()
    data.group(9, name="Nine")
    data.members(9, [90])
    data.user(90, email="u90@example.com", name="U", last_seen=we)
    data.post(9, 900, we - 60, title="<b>Post</b>", author_id=91, likes=1)
    jid = job_id("daily", we, 9)
    r.xadd("digest:dlq", {"job_id": jid, "group_id": "9", "period": "daily",
                          "window_start": str(ws), "window_end": str(we),
                          "member_min": "0", "member_max": str(2 ** 53),
                          "enqueued_at": "%.3f" % time.time(),
                          "reason": "<script>alert(1)</script>", "attempts": "3",
                          "failed_at": "%.3f" % time.time(), "queue": "standard"})
    r.hset("digest:job:" + jid, mapping={"state": "dead", "attempts": 3})
    r.expire("digest:job:" + jid, 86400)

    cport = free_port()
    start(digestd_factory, console_config(tmp_path, redis_tcp, cport, sink=smtp_sink))
    console_up(cport)
    b = browser_factory()
    page = b.get("http://127.0.0.1:%d/dlq" % cport)
    row = page.find_element(By.CSS_SELECTOR, '#dlq tr[data-job="%s"]' % jid)
    # The reason is shown as text, never run.
    assert "<script>alert(1)</script>" in row.text
    assert page.find_elements(By.CSS_SELECTOR, "#dlq script") == []
    click(page, '#dlq tr[data-job="%s"] button[name="requeue"]' % jid)
    wait_for(lambda: "Requeued dead letter" in main_text(page),
             timeout=PAGE_TIMEOUT, what="the page saying requeued")
    assert r.xlen("digest:dlq") == 0
    wait_done(r, jid, timeout=30)
    wait_for(lambda: smtp_sink.count() == 1, timeout=10, what="the email")
    (msg,) = smtp_sink.parsed()
    assert msg["To"].addresses[0].addr_spec == "u90@example.com"


def test_post_without_token_is_refused(tmp_path, redis_tcp, digestd_factory):
    cport = free_port()
    start(digestd_factory, console_config(tmp_path, redis_tcp, cport))
    console_up(cport)
    r = redis_tcp.client()
    r.xadd("digest:dlq", {"job_id": "daily.1.1.0", "reason": "x", "queue": "standard"})
    base = "http://127.0.0.1:%d" % cport
    c = Client(base)
    good = c.token()

    # No cookie at all, no token, a wrong token, another session's token.
    assert Client(base).request("/pause", {"queue": "standard"})[0] == 403
    assert c.request("/pause", {"queue": "standard"})[0] == 403
    assert c.request("/pause", {"queue": "standard", "csrf": "0" * 64})[0] == 403
    other = Client(base)
    assert other.request("/pause", {"queue": "standard", "csrf": good})[0] == 403
    assert c.request("/dlq/delete", {"id": "daily.1.1.0", "csrf": good[:-1] + "x"})[0] == 403
    assert c.request("/dlq/requeue", {"id": "daily.1.1.0"})[0] == 403
    assert paused(r, "standard") == {} and r.xlen("digest:dlq") == 1
    # A GET of an action is not one.
    assert c.request("/pause?queue=standard&csrf=" + good)[0] == 405
    assert paused(r, "standard") == {}

    # The form as a browser without JavaScript posts it works.
    code, h, _ = c.request("/pause", {"queue": "standard", "reason": "r", "csrf": good})
    assert code == 303 and h["Location"].startswith("/?done=paused"), (code, h)
    assert paused(r, "standard")["reason"] == "r"
    code, _, body = c.request(h["Location"])
    assert code == 200 and "Paused queue standard" in body
    code, h, _ = c.request("/resume", {"queue": "standard", "csrf": c.token()})
    assert code == 303 and paused(r, "standard") == {}
    code, h, _ = c.request("/dlq/delete", {"id": "daily.1.1.0", "csrf": c.token("/dlq")})
    assert code == 303 and r.xlen("digest:dlq") == 0


def test_headers_and_escaping(tmp_path, redis_tcp, digestd_factory):
    cport = free_port()
    start(digestd_factory, console_config(tmp_path, redis_tcp, cport))
    console_up(cport)
    r = redis_tcp.client()
    r.xadd("digest:dlq", {"job_id": "<img src=x onerror=alert(1)>", "queue": "q\"'<>",
                          "reason": "a&b"})
    c = Client("http://127.0.0.1:%d" % cport)
    code, h, body = c.request("/dlq")
    assert code == 200
    assert "default-src 'none'" in h["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert "HttpOnly" in h["Set-Cookie"] and "SameSite=Strict" in h["Set-Cookie"]
    assert "<img" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "q&quot;&#39;&lt;&gt;" in body and "a&amp;b" in body
    assert c.request("/nope")[0] == 404


def test_basic_auth(tmp_path, redis_tcp, digestd_factory):
    secret = tmp_path / "console.pw"
    secret.write_text("correct horse\n")
    cport = free_port()
    path = console_config(tmp_path, redis_tcp, cport,
                          extra="console_password_file = %s\n" % secret)
    d = start(digestd_factory, path)
    console_up_auth = Client("http://127.0.0.1:%d" % cport, password="correct horse")
    wait_for(lambda: console_up_auth.request("/console.css")[0] == 200, timeout=15,
             what="the console")
    code, h, _ = Client("http://127.0.0.1:%d" % cport).request("/")
    assert code == 401 and h["WWW-Authenticate"].startswith("Basic ")
    for wrong in ("correct hors", "correct horse\n", "", "x" * 300):
        assert Client("http://127.0.0.1:%d" % cport, password=wrong).request("/")[0] == 401
    code, _, body = console_up_auth.request("/")
    assert code == 200 and "digestd console" in body
    # A POST without the password is refused before anything else.
    code, _, _ = Client("http://127.0.0.1:%d" % cport).request(
        "/pause", {"queue": "standard", "csrf": console_up_auth.token()})
    assert code == 401 and paused(redis_tcp.client(), "standard") == {}
    assert "correct horse" not in d.log()


@needs_browser
def test_works_with_javascript_off(tmp_path, redis_tcp, digestd_factory, browser_factory):
    cport = free_port()
    start(digestd_factory, console_config(tmp_path, redis_tcp, cport))
    console_up(cport)
    r = redis_tcp.client()
    b = browser_factory(javascript=False)
    page = b.get("http://127.0.0.1:%d/" % cport)
    assert page.find_element(By.TAG_NAME, "body").get_attribute("data-script") is None
    click(page, '#queues tr[data-queue="standard"] button[name="pause"]')
    wait_for(lambda: "Paused queue standard" in main_text(page),
             timeout=PAGE_TIMEOUT, what="the page saying paused")
    assert paused(r, "standard")["reason"] == "paused from the console"
    click(page, '#queues tr[data-queue="standard"] button[name="resume"]')
    wait_for(lambda: paused(r, "standard") == {}, timeout=PAGE_TIMEOUT, what="resumed")


def test_not_loopback_needs_a_password(tmp_path, redis_tcp):
    path = console_config(tmp_path, redis_tcp, free_port())
    text = open(path).read().replace("console_listen = 127.0.0.1:", "console_listen = 0.0.0.0:")
    open(path, "w").write(text)
    p = subprocess.run([DIGESTD, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "console_listen" in p.stderr and "loopback" in p.stderr
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    open(path, "w").write(text.replace("console_listen", "console_password_file = %s\n"
                                       "console_listen" % secret, 1))
    p = subprocess.run([DIGESTD, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "console_listen" in p.stderr


def test_console_crash_is_restarted(tmp_path, redis_tcp, digestd_factory):
    cport = free_port()
    d = start(digestd_factory, console_config(tmp_path, redis_tcp, cport))
    console_up(cport)
    pids = [p for p in descendants(d.pid())
            if "digestd: console" in open("/proc/%d/cmdline" % p).read()]
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    console_up(cport)
    assert d.http_status("/readyz") == 200
    assert "console %d exited (signal 9); restarting" % pids[0] in d.log()
