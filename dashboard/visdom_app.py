"""Our additions to visdom's tornado Application, which `dashboard.server` builds: handlers that
replace visdom's /update and /events (in place, with sequence numbers) and add a splice endpoint,
the Application without tornado's debug mode and refusing other sites' requests, and the page's
scripts (`dashboard.page_scripts`)."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from dashboard.protocol import MISSING_WINDOW, SEQ_KEY, SPLICED, STALE


# Every message livetrain sends carries a sequence number (`windows.new_seq`: the time it was
# built). A request that timed out on a frozen server is still read and applied when the server
# thaws, possibly after newer ones; this server keeps the newest number it applied, per trace and
# per whole pane (in the pane, under SEQ_KEY: {trace name: seq}, "" for the whole pane), and
# refuses an older message (it answers STALE). A stock Visdom server ignores the key.


def held_seq(pane: dict | None, name: str) -> int:
    """The newest sequence number applied to `pane`'s trace `name` ("" for the whole pane); -1 for none."""
    return int(((pane or {}).get(SEQ_KEY) or {}).get(name, -1))


def _set_seq(pane: dict, name: str, seq: Any) -> None:
    if seq is not None:
        pane.setdefault(SEQ_KEY, {})[name] = int(seq)


# What differs between the visdom releases served (0.2.4 and 0.3): see `visdom_version`.
def visdom_version() -> tuple[int, ...]:
    """The installed visdom's version, (0, 2, 4) or (0, 3, 0), read without importing it."""
    from dashboard import assets

    return assets.version_key(assets.installed_version(assets.static_dir()))


@functools.cache
def _update_takes_limits() -> bool:
    """Whether this visdom's `UpdateHandler.update` takes the server's history limits (0.3 added
    them); looked at once, not on every request."""
    from visdom.server.handlers.web_handlers import UpdateHandler

    return len(inspect.signature(UpdateHandler.update).parameters) > 2


def _updated(handler: Any, p: dict, args: dict) -> dict:
    """`UpdateHandler.update` as this visdom's takes it: 0.3 added the server's history limits.
    0.3 also counts a pane's versions (its `update_window` adds one); the page takes a diff only
    on the version after its own, and a whole pane (what these handlers send) as it comes."""
    from visdom.server.handlers.web_handlers import UpdateHandler

    if _update_takes_limits():
        return UpdateHandler.update(p, args, handler.max_text_lines, handler.max_old_content,
                                    handler.max_image_history)
    return UpdateHandler.update(p, args)


def fast_update_handler() -> type:
    """Visdom's /update handler without its whole-pane diff, and with sequence numbers.

    For every update visdom deep-copies the pane, diffs old and new with `jsonpatch` (its own
    comment: "make_patch isn't high performance"), and hashes the result: a cost that grows with
    the window (docs/benchmarks.md gives the numbers). This handler applies
    the very same update (`UpdateHandler.update`) to plot windows in place and broadcasts the
    whole pane, as the /events handler does; anything else goes to visdom's own code.

    A trace message with a sequence number older than the trace's is refused (STALE). One that
    appends a whole trace (livetrain's "create the window if missing") replaces a trace of that
    name already there: a late or repeated create must not double the points; nor does it change
    the layout of the window it finds there."""
    from visdom.server.handlers.web_handlers import UpdateHandler
    from visdom.utils.server_utils import broadcast, extract_eid
    from visdom.utils.shared_utils import get_rand_id

    class FastUpdateHandler(UpdateHandler):  # type: ignore[misc]
        @staticmethod
        def wrap_func(handler: UpdateHandler, args: dict) -> None:
            eid = extract_eid(args)
            env = handler.state[eid]["jsons"] if eid in handler.state else {}
            p = env.get(args.get("win"))
            name, seq = args.get("name"), args.get(SEQ_KEY)
            if seq is not None and name is not None and p is not None and int(seq) < held_seq(p, name):
                handler.write(STALE)
                return
            data = p["content"]["data"] if p is not None and p.get("type") == "plot" else None
            if not data or data[0].get("type") not in ("scatter", "scattergl") or name is None:
                UpdateHandler.wrap_func(handler, args)
                created = handler.state.get(eid, {}).get("jsons", {}).get(args.get("win"))
                if created is not None and created.get("type") == "plot" and name is not None:
                    _set_seq(created, name, seq)
                return
            if seq is not None and args.get("append"):
                # livetrain's "create the window if missing": the window is there, so its layout
                # (a loss window's robust y range, see dashboard.yrange) stays as it is
                args = {k: v for k, v in args.items() if k not in ("layout", "opts")}
                if any(t.get("name") == name for t in data):
                    args["append"] = False  # a whole trace: replace, never append twice
            p = _updated(handler, p, args)
            _set_seq(p, name, seq)
            p["contentID"] = get_rand_id()
            broadcast(handler, p, eid)
            handler.write(p["id"])

    return FastUpdateHandler


def events_handler() -> type:
    """Visdom's /events handler (a whole pane), refusing a message older than the pane it would
    replace (STALE): a gallery or runs table from before a freeze must not replace a newer one."""
    import tornado.escape
    from visdom.server.handlers.web_handlers import PostHandler
    from visdom.utils.server_utils import check_auth, extract_eid, register_window, window

    class SeqPostHandler(PostHandler):  # type: ignore[misc]  # its initialize
        @check_auth  # type: ignore[misc]
        def post(self) -> None:
            req = tornado.escape.json_decode(tornado.escape.to_basestring(self.request.body))
            eid = extract_eid(req)
            seq = req.get(SEQ_KEY)
            old = self.state[eid]["jsons"].get(req.get("win")) if eid in self.state else None
            if seq is not None and old is not None and int(seq) < held_seq(old, ""):
                self.write(STALE)
                return
            p = window(req)
            _set_seq(p, "", seq)
            register_window(self, p, eid)

    return SeqPostHandler


def splice_handler() -> type:
    """Replaces the tails of several named traces in one request:
    `{"eid": ..., "splices": [{"win", "name", "from": k, "base": s0, "livetrain_seq": s, "x": [...],
    "y": [...]}, ...]}`.

    A run's traces of 1,000 points that gained a few since the last flush go as those few points,
    all in one request, instead of one request per window, each with the whole trace. A splice is
    applied only if its trace still holds the very message the client built it on: the trace's
    sequence number is `base` (a trace's length is no proof: a bounded trace keeps about the same
    length, so an older head that came back late would take the new tail). Else STALE: the
    client sends that trace whole. A window that is not there answers visdom's own
    "win does not exist". The answer is a JSON list, one of SPLICED / STALE / MISSING_WINDOW per
    splice. A stock Visdom server answers anything but such a list here (its catch-all login
    handler: HTTP 500), and the client then sends whole traces to it."""
    import json

    from visdom.server.handlers.web_handlers import UpdateHandler
    from visdom.utils.server_utils import broadcast, extract_eid
    from visdom.utils.shared_utils import get_rand_id

    def apply(env: dict, item: dict) -> str:
        p = env.get(item["win"])
        if p is None or p.get("type") != "plot":
            return MISSING_WINDOW
        traces = [t for t in p["content"]["data"] if t.get("name") == item["name"]]
        start = int(item["from"])
        if len(traces) != 1 or held_seq(p, item["name"]) != int(item["base"]) or not 0 <= start <= len(traces[0]["x"]):
            return STALE
        trace = traces[0]
        trace["x"] = trace["x"][:start] + list(item["x"])
        trace["y"] = trace["y"][:start] + list(item["y"])
        _set_seq(p, item["name"], item[SEQ_KEY])
        if "version" in p:  # visdom 0.3 counts a pane's changes
            p["version"] += 1
        return SPLICED

    class SpliceHandler(UpdateHandler):  # type: ignore[misc]  # its initialize, login check and post
        @staticmethod
        def wrap_func(handler: UpdateHandler, args: dict) -> None:
            eid = extract_eid(args)
            env = handler.state[eid]["jsons"] if eid in handler.state else {}
            answers = [apply(env, item) for item in args["splices"]]
            for win in dict.fromkeys(i["win"] for i, a in zip(args["splices"], answers) if a == SPLICED):
                env[win]["contentID"] = get_rand_id()
                broadcast(handler, env[win], eid)  # each changed pane once
            handler.write(json.dumps(answers))

    return SpliceHandler


def _env_file_for_deletion(handler: Any, eid: Any) -> None:
    """Visdom deletes an env by removing its file, which a live env (never saved from the page)
    does not have: FileNotFoundError, a 500 or a dropped socket message, and the page keeps
    listing the env. Give a live env an empty file first, so that visdom's own deletion goes on."""
    import os

    env_path = getattr(handler, "env_path", None)
    if env_path is not None and isinstance(eid, str) and eid in handler.state:
        os.makedirs(env_path, exist_ok=True)
        path = os.path.join(env_path, f"{eid}.json")
        if not os.path.exists(path):
            open(path, "w").close()


def env_deletion_handlers() -> list[tuple[str, type]]:
    """Visdom's /delete_env (its client's `delete_env`) and the page's /socket, each deleting a
    live env as it does a saved one (see `_env_file_for_deletion`). None on visdom 0.3, whose
    storage deletes a live env itself."""
    import json

    if visdom_version() >= (0, 3):
        return []

    from visdom.server.handlers.socket_handlers import SocketHandler
    from visdom.server.handlers.web_handlers import DeleteEnvHandler
    from visdom.utils.server_utils import extract_eid

    class LiveDeleteEnvHandler(DeleteEnvHandler):  # type: ignore[misc]
        @staticmethod
        def wrap_func(handler: DeleteEnvHandler, args: dict) -> None:
            _env_file_for_deletion(handler, extract_eid(args))
            DeleteEnvHandler.wrap_func(handler, args)

    class LiveDeleteSocketHandler(SocketHandler):  # type: ignore[misc]
        def on_message(self, message: str | bytes) -> None:
            try:
                msg = json.loads(message)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and msg.get("cmd") == "delete_env" and not self.readonly:
                _env_file_for_deletion(self, msg.get("eid"))
            super().on_message(message)

    return [(r"/delete_env", LiveDeleteEnvHandler), (r"/socket", LiveDeleteSocketHandler)]


def visdom_socket_handler() -> type:
    """Visdom's handler of the page's /socket."""
    from visdom.server.handlers.socket_handlers import SocketHandler

    return SocketHandler


def quiet_application(visdom_application: type) -> type:
    """Visdom's Application without tornado's debug mode, which visdom turns on: it re-reads every
    loaded module's mtime twice a second (CPU taken from the training beside it even when the
    server is idle), restarts the server when a source file changes, re-hashes
    static files on every request and sends tracebacks to clients."""
    import tornado.web

    class NoDebug(tornado.web.Application):  # type: ignore[misc]
        def __init__(self, *args: object, **settings: object) -> None:
            settings["debug"] = False
            super().__init__(*args, **settings)

    # visdom's __init__ calls super(Application, self).__init__: that is NoDebug's here
    return type("QuietApplication", (visdom_application, NoDebug), {})


# Body types an HTML form (or a script of another site, with no preflight) can send
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def refusal(method: str, headers: Any, host: str, loopback: bool) -> str:
    """Why a request must be refused, or "" when it may go on.

    Any page a person has open can make their browser send requests to this server: a form's
    POST, a script's fetch with a simple body type, a WebSocket (visdom's handlers accept every
    origin). Such a request carries an Origin header naming the other site (or "null"), so a
    request that can change something (a POST, a WebSocket) is refused when its Origin is not
    this server's own (the page's, Origin = its Host). Livetrain's workers and visdom's Python
    client send no Origin; a form body type with no Origin is refused too, for old browsers that
    sent none. On a server bound to loopback, a Host that is not a loopback name is refused
    (a DNS-rebinding site reaches 127.0.0.1 under its own name)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if loopback and name not in ("localhost", "") and not _is_loopback_address(name):
        return f"Host {host!r} is not a name of this machine"
    changes = method not in ("GET", "HEAD", "OPTIONS") or headers.get("Upgrade", "").lower() == "websocket"
    if not changes:
        return ""
    origin = headers.get("Origin")
    if origin is not None:
        from urllib.parse import urlsplit

        if urlsplit(origin).netloc.lower() != host.lower():
            return f"a request from another site ({origin}) may not change this server's dashboards"
        return ""
    kind = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if kind in FORM_TYPES:
        return (f"a {kind} body with no Origin is what a form of another site sends; send JSON, with "
                "Content-Type: application/json")
    return ""


def _is_loopback_address(name: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def guarded_application(visdom_application: type, loopback: bool) -> type:
    """Visdom's Application refusing, before any handler runs, what `refusal` names: with 403 and
    one line saying why."""
    import tornado.web

    class Refused(tornado.web.RequestHandler):  # type: ignore[misc]
        def initialize(self, reason: str) -> None:
            self.reason = reason

        def prepare(self) -> None:
            self.set_status(403)
            self.finish(f"livetrain: refused: {self.reason}\n")

    class Guarded(visdom_application):  # type: ignore[misc, valid-type]
        def find_handler(self, request: Any, **kwargs: Any) -> Any:
            reason = refusal(request.method, request.headers, request.host, loopback)
            if reason:
                return self.get_handler_delegate(request, Refused, {"reason": reason})
            return super().find_handler(request, **kwargs)

    return Guarded


def reconnect_transform() -> type:
    """A tornado output transform that adds `dashboard.page_scripts`' additions to the HTML pages
    the server sends."""
    import tornado.web

    from dashboard.page_scripts import page_additions

    addition = page_additions(visdom_version())

    class AddReconnect(tornado.web.OutputTransform):  # type: ignore[misc]
        def transform_first_chunk(self, status_code: int, headers: Any, chunk: bytes,
                                  finishing: bool) -> tuple[int, Any, bytes]:
            if (finishing and headers.get("Content-Type", "").startswith("text/html")
                    and b"</body>" in chunk and b"main.js" in chunk):
                chunk = chunk.replace(b"</body>", addition + b"</body>", 1)
                if "Content-Length" in headers:
                    headers["Content-Length"] = str(len(chunk))
            return status_code, headers, chunk

    return AddReconnect
