"""The page's socket, paced by the page (dashboard/page_flow.py): which messages wait, which a newer
one replaces, and how far ahead of the page's acknowledgements the server sends. The page's side
and a real server: tests/test_visdom_versions.py (a page paused while a window is redrawn)."""

from __future__ import annotations

import json

from dashboard.page_flow import LOADED, PageQueue, message_key


def whole(win: str, text: str) -> dict:
    return {"command": "window", "id": win, "content": text}


def sent_all(queue: PageQueue) -> list:
    out = []
    while queue.waiting:
        out.append(queue.take())
    return out


def test_the_window_a_message_draws_on_each_visdom() -> None:
    assert message_key(whole("w", "x")) == ("w", True)  # 0.2.4, and livetrain's handlers: the pane itself
    named = json.dumps({"command": "window", "version": 4, "id": 'say "hi"', "title": "t"})  # 0.3's
    assert message_key(named) == ('say "hi"', True)
    assert message_key(json.dumps({"command": "window_update", "win": "w", "eid": "e", "content": []})) == ("w", False)
    assert message_key({"command": "window_update", "win": "w", "env": "e", "content": []}) == ("w", False)  # 0.2.4's
    other_order = json.dumps({"title": "first", "command": "window", "id": "w"})
    assert message_key(other_order) == (None, False)  # not a message of visdom's: taken as no window's
    assert message_key(json.dumps({"command": "window", "title": "t", "id": "w"})) == ("w", True)  # parsed whole
    assert message_key(json.dumps({"command": "layout_update", "data": []})) == (None, False)
    assert message_key({"command": "reload", "data": {}}) == (None, False)
    assert message_key("not json") == (None, False)


def test_a_window_sent_whole_replaces_its_waiting_message_in_place() -> None:
    queue = PageQueue()
    for message in (whole("a", "1"), whole("b", "1"), whole("a", "2"), whole("c", "1"), whole("a", "3")):
        queue.put(message)
    assert sent_all(queue) == [whole("a", "3"), whole("b", "1"), whole("c", "1")]  # a keeps its place: the grid's order
    assert queue.replaced == 2


def test_a_newer_whole_window_drops_the_diffs_waiting_after_the_older_one() -> None:
    queue = PageQueue()
    diff = json.dumps({"command": "window_update", "win": "a", "content": [], "version": 2})
    queue.put(whole("a", "1"))
    queue.put(diff)
    queue.put(whole("b", "1"))
    queue.put(whole("a", "3"))
    assert sent_all(queue) == [whole("a", "3"), whole("b", "1")]
    queue.put(diff)  # a diff with no whole window waiting before it: it goes, then the window
    queue.put(whole("a", "4"))
    assert sent_all(queue) == [diff, whole("a", "4")]


def test_a_window_that_changed_again_goes_as_the_server_holds_it_when_it_goes() -> None:
    held = {"a": whole("a", "3"), "b": whole("b", "1")}
    queue = PageQueue(current=lambda env, win: held.get(win) if env == "e" else None)
    diff = {"command": "window_update", "win": "a", "content": []}
    queue.put(whole("a", "1"), "e")
    queue.put(whole("b", "1"), "e")
    queue.put(diff, "e")  # the diffs and the whole windows of a since the first: one entry, in its place
    queue.put(whole("a", "2"), "e")
    queue.put(whole("c", "1"), "e")
    assert [entry.key for entry in queue.waiting] == ["a", "b", "c"] and queue.replaced == 2
    held["a"] = whole("a", "4")  # changed again before it went: it goes as it is then
    assert sent_all(queue) == [whole("a", "4"), whole("b", "1"), whole("c", "1")]
    queue.put(whole("b", "2"), "e")
    queue.put(whole("b", "3"), "e")
    del held["b"]  # not in the env it was put for (closed, or put while the page changed envs)
    assert queue.take() == whole("b", "3") and not queue.waiting  # the newest copy put goes
    queue.put(whole("b", "4"), "e")
    queue.put({"command": "window_update", "win": "b", "content": []}, "e")
    assert queue.take() is None and not queue.waiting  # a diff alone: nothing to draw it on


def test_nothing_moves_across_a_message_of_another_kind() -> None:
    queue = PageQueue()
    layout = json.dumps({"command": "layout_update", "data": []})
    queue.put(whole("a", "1"))
    queue.put(layout)
    queue.put(whole("a", "2"))  # after the layout: it waits behind it, the older one before it goes too
    queue.put(whole("a", "3"))
    assert sent_all(queue) == [whole("a", "1"), layout, whole("a", "3")]


def test_the_server_sends_as_far_ahead_as_the_page_acknowledges() -> None:
    queue = PageQueue(budget=250)
    for i in range(4):
        queue.put(whole(f"w{i}", "x"))
    queue.put(LOADED)  # the env's load ends
    sent = []
    while queue.ready():  # a page that has acknowledged nothing yet: everything goes, as from visdom
        message = queue.take()
        sent.append(message)
        queue.sent(100, message)
    assert len(sent) == 5 and queue.unacked_bytes == 500
    queue.acked(3)
    assert not queue.paced  # the load goes at once (the page packs it in one go)
    queue.acked(2)  # the page has taken its env's load: from now on it paces the server
    assert queue.paced and queue.unacked_bytes == 0
    for i in range(5):
        queue.put(whole(f"v{i}", "x"))
    while queue.ready():
        queue.take()
        queue.sent(100)
    assert queue.unacked_bytes == 300 and len(queue.waiting) == 2  # sent while under 250 bytes were unacknowledged
    queue.acked(10)  # more than sent: no harm
    assert queue.unacked_bytes == 0 and queue.ready()
    queue.put(whole("big", "x"))
    queue.take()
    queue.sent(10_000)  # one message over the budget goes all the same: one at least is always in flight
    assert not queue.ready()
