"""End-to-end: the chat example in headless Chromium, as two users would use it.

The server is ``examples/chat``'s own ``manage.py runserver`` (embedded
workers, in-memory layer, a fresh SQLite file) - exactly what
``bash scripts/chat`` starts. Two independent browsers (separate profiles, so
separate cookies) sign in as the demo users and prove, through the page:

* a message typed in one page appears in the other (WebSocket, Group);
* presence lists both users, and drops one when its page goes away;
* the moderation task (a consumer on its own channel) masks banned words;
* the long-poll fallback (``?transport=poll``) receives and sends too;
* a reminder (a delayed message through ``asgi.delay``) rings after its delay.

Chromium is Debian's (``/usr/bin/chromium`` + ``/usr/bin/chromedriver``),
driven by Selenium with the driver path given explicitly so Selenium
Manager never downloads anything. Without them the module is skipped with
the reason; scripts/test installs them in CI. Every wait is bounded
(WebDriverWait) and says what it was waiting for.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest

from .chat_example import DEMO_PASSWORD, ChatServer

CHROMIUM = os.environ.get("CHANLITE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHANLITE_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 20.0  # seconds; generous for a loaded 2-core CI box, never slept

# selenium is in the [test] extra: a missing one is a broken test install,
# which must fail, not skip. Only a missing Chromium skips (below).
from selenium import webdriver  # noqa: E402


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return (f"{path} not found: install Debian's chromium and chromium-driver "
                    "(scripts/test does when apt-get is available)")
    return None


if _missing():
    print(f"\ntest_e2e_browser skipped: {_missing()}", file=sys.stderr)
    pytest.skip(_missing() or "", allow_module_level=True)

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path_factory.mktemp("chat"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(chat: ChatServer) -> Iterator[Callable[[], WebDriver]]:
    """``browser()`` opens a new, independent headless Chromium (own profile)."""
    opened: list[tuple[WebDriver, str]] = []
    os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: Selenium Manager stays offline

    def open_browser() -> WebDriver:
        profile = tempfile.mkdtemp(prefix="chanlite-e2e-chromium-")
        options = Options()
        options.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1000,800",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(WAIT)
        opened.append((driver, profile))
        return driver

    yield open_browser
    for driver, profile in opened:
        try:
            driver.quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], object], what: str,
             chat: ChatServer) -> object:
    """Wait (bounded) until ``condition`` is truthy; fail saying what and showing state."""
    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        page = _page_state(driver)
        pytest.fail(f"timed out after {WAIT}s waiting for {what}\npage: {page}\n"
                    f"server output:\n{chat.log()}")


def _page_state(driver: WebDriver) -> dict:
    try:
        return driver.execute_script(
            "return {url: location.href, status: document.body.dataset.status,"
            " transport: document.body.dataset.transport, log: messages(), presence: presence()};"
            .replace("messages()", _LOG_JS).replace("presence()", _PRESENCE_JS))
    except Exception as exc:  # the page itself may be the problem
        return {"error": repr(exc)}


_LOG_JS = ("Array.from(document.querySelectorAll('#log li[data-id]')).map(li => "
           "[li.dataset.user, li.querySelector('.text').textContent, li.className])")
_PRESENCE_JS = ("Array.from(document.querySelectorAll('#presence li[data-user]'))"
                ".map(li => li.dataset.user)")


def log_of(driver: WebDriver) -> list[list[str]]:
    """The chat log as ``[user, text, css class]`` rows, read in one script call."""
    return driver.execute_script("return " + _LOG_JS + ";")


def presence_of(driver: WebDriver) -> list[str]:
    return driver.execute_script("return " + _PRESENCE_JS + ";")


def sign_in(driver: WebDriver, chat: ChatServer, username: str) -> None:
    driver.get(chat.url + "accounts/login/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(DEMO_PASSWORD)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "me"), f"{username} to be signed in", chat)
    assert driver.find_element(By.ID, "me").text == username


def open_room(driver: WebDriver, chat: ChatServer, room: str, *, transport: str = "websocket"
              ) -> None:
    query = "?transport=poll" if transport == "long-poll" else ""
    driver.get(f"{chat.url}chat/{room}/{query}")
    expected = "connected" if transport == "websocket" else "polling"
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-status")
             == expected, f"the {transport} transport to be {expected!r} in {room}", chat)
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-transport") == transport


def say(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "text")
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def sees(driver: WebDriver, user: str, text: str) -> Callable[[WebDriver], bool]:
    return lambda d: any(row[0] == user and row[1] == text for row in log_of(d))


def new_room() -> str:
    return "e2e-" + uuid.uuid4().hex[:10]


def test_two_pages_talk_see_presence_and_moderation(chat: ChatServer, browser) -> None:
    room = new_room()
    alice, bob = browser(), browser()
    sign_in(alice, chat, "alice")
    sign_in(bob, chat, "bob")

    open_room(alice, chat, room)
    wait_for(alice, lambda d: presence_of(d) == ["alice"], "alice alone in presence", chat)
    open_room(bob, chat, room)
    for page, name in ((alice, "alice"), (bob, "bob")):
        wait_for(page, lambda d: presence_of(d) == ["alice", "bob"],
                 f"both users in {name}'s presence list", chat)

    hello = f"hello bob, it's alice {uuid.uuid4().hex[:6]}"
    say(alice, hello)
    wait_for(bob, sees(bob, "alice", hello), "bob's page to show alice's message", chat)
    wait_for(alice, sees(alice, "alice", hello), "alice's page to echo her own message", chat)

    say(bob, "well darn it")  # a banned word: the moderation task masks it
    wait_for(alice, sees(alice, "bob", "well **** it"),
             "alice to see bob's message masked by the moderation task", chat)
    row = next(r for r in log_of(alice) if r[1] == "well **** it")
    assert "moderated" in row[2]

    bob.get("about:blank")  # closing the page closes its WebSocket
    wait_for(alice, lambda d: presence_of(d) == ["alice"], "bob to leave alice's presence list",
             chat)

    # A page opened later gets the history, in order.
    open_room(bob, chat, room)
    wait_for(bob, lambda d: [r[1] for r in log_of(d)] == [hello, "well **** it"],
             "bob's reopened page to show the room history in order", chat)


def test_long_poll_fallback_delivers_both_ways(chat: ChatServer, browser) -> None:
    room = new_room()
    alice, bob = browser(), browser()
    sign_in(alice, chat, "alice")
    sign_in(bob, chat, "bob")
    open_room(alice, chat, room)
    open_room(bob, chat, room, transport="long-poll")

    # WebSocket -> long-poll: bob's parked poll request is woken by the group.
    text = f"to the poller {uuid.uuid4().hex[:6]}"
    say(alice, text)
    wait_for(bob, sees(bob, "alice", text), "the long-polling page to receive alice's message",
             chat)

    # long-poll -> WebSocket: bob posts through the Django view.
    reply = f"from the poller {uuid.uuid4().hex[:6]}"
    say(bob, reply)
    wait_for(alice, sees(alice, "bob", reply), "alice's WebSocket page to receive bob's post",
             chat)
    wait_for(bob, sees(bob, "bob", reply), "bob's polling page to receive his own post", chat)



_REMINDERS_JS = ("Array.from(document.querySelectorAll('#reminders li')).map(li => "
                 "({text: li.dataset.text, state: li.dataset.state, "
                 "setAt: Number(li.dataset.setAt), rangAt: Number(li.dataset.rangAt || 0)}))")


def reminders_of(driver: WebDriver) -> list[dict]:
    return driver.execute_script("return " + _REMINDERS_JS + ";")


def test_reminder_rings_after_its_delay(chat: ChatServer, browser) -> None:
    """The delay service inside runserver sends the reminder when its delay is up."""
    alice = browser()
    sign_in(alice, chat, "alice")
    open_room(alice, chat, new_room())
    wait_for(alice, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(
        "data-reminders") == "ready", "the reminders WebSocket to open", chat)
    text = f"stretch {uuid.uuid4().hex[:6]}"
    seconds = alice.find_element(By.ID, "reminder-seconds")
    seconds.clear()
    seconds.send_keys("2")
    alice.find_element(By.ID, "reminder-text").send_keys(text)
    alice.find_element(By.ID, "reminder-set").click()
    wait_for(alice, lambda d: any(r["text"] == text for r in reminders_of(d)),
             "the reminder to be set", chat)
    wait_for(alice, lambda d: any(r["text"] == text and r["state"] == "rang"
                                  for r in reminders_of(d)), "the reminder to ring", chat)
    rang = next(r for r in reminders_of(alice) if r["text"] == text)
    # The delay counts from the server's send, shortly before the page heard "set".
    assert rang["rangAt"] - rang["setAt"] >= 2000 - 250, f"rang too early: {rang}"


# --------------------------------------------------- live room list (data binding)

_ROOM_LIST_JS = ("Array.from(document.querySelectorAll('#room-list li[data-room]'))"
                 ".map(li => [li.dataset.room, li.textContent])")
ADMIN_USER = "e2e-admin"


def room_list_of(driver: WebDriver) -> list[list[str]]:
    """The index page's live room list as ``[name, shown title]`` rows."""
    return driver.execute_script("return " + _ROOM_LIST_JS + ";")


def admin_sign_in(driver: WebDriver, chat: ChatServer) -> None:
    chat.manage("shell", "-c", (
        "from django.contrib.auth.models import User\n"
        f"User.objects.filter(username={ADMIN_USER!r}).exists() or "
        f"User.objects.create_superuser({ADMIN_USER!r}, '', {DEMO_PASSWORD!r})"))
    driver.get(chat.url + "admin/login/")
    driver.find_element(By.ID, "id_username").send_keys(ADMIN_USER)
    driver.find_element(By.ID, "id_password").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(driver, lambda d: "/admin/login/" not in d.current_url, "the admin sign-in", chat)


def save_room_in_admin(driver: WebDriver, chat: ChatServer, path: str, title: str,
                       name: str | None = None) -> None:
    driver.get(chat.url + path)
    if name is not None:
        driver.find_element(By.ID, "id_name").send_keys(name)
    box = driver.find_element(By.ID, "id_title")
    box.clear()
    box.send_keys(title)
    driver.find_element(By.NAME, "_save").click()
    wait_for(driver, lambda d: d.current_url.rstrip("/").endswith("/admin/chat/room"),
             f"the admin to save room title {title!r}", chat)


def test_room_list_follows_rooms_created_and_renamed(chat: ChatServer, browser) -> None:
    """The index page's room list is a data binding of the Room model: a
    room added or renamed in the admin, or visited for the first time,
    shows up in an open page without a reload."""
    alice, admin = browser(), browser()
    sign_in(alice, chat, "alice")
    alice.get(chat.url)
    wait_for(alice, lambda d: d.find_element(By.ID, "room-list").get_attribute("data-status")
             == "live", "the room list to be live", chat)
    admin_sign_in(admin, chat)

    room = new_room()
    save_room_in_admin(admin, chat, "admin/chat/room/add/", "Book club", name=room)
    wait_for(alice, lambda d: [room, "Book club"] in room_list_of(d),
             "the room added in the admin to appear in alice's list", chat)

    save_room_in_admin(admin, chat, f"admin/chat/room/{room}/change/", "Reading circle")
    wait_for(alice, lambda d: [room, "Reading circle"] in room_list_of(d),
             "the rename in the admin to reach alice's list", chat)
    assert [room, "Book club"] not in room_list_of(alice)

    visited = new_room()  # a room comes to exist when someone first opens it
    bob = browser()
    sign_in(bob, chat, "bob")
    open_room(bob, chat, visited)
    wait_for(alice, lambda d: [visited, visited] in room_list_of(d),
             "a newly visited room to appear in alice's list", chat)
