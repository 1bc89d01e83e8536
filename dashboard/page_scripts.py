"""What livetrain's server adds to Visdom's page (`visdom_app.reconnect_transform` puts it before
</body>): small scripts and styles for what the page's own code gets wrong, on visdom 0.2.4 and 0.3."""

from __future__ import annotations


# Visdom's page stays "offline" after its server restarts until the person clicks the button or
# reloads. This script, added to the page, clicks it every 2 s while the page is offline, unless
# the person turned it offline themselves (a click of theirs on "online"; clicking "offline"
# hands it back). On reconnecting, the page loads the env again, redrawn by then.
RECONNECT_SCRIPT = b"""<script>/* livetrain: reconnect after a server restart */
(function () {
  var paused = false;
  document.addEventListener('click', function (e) {
    var b = e.target && e.target.closest ? e.target.closest('button') : null;
    var text = b ? b.textContent.trim() : '';
    if (e.isTrusted && /^(online|offline|readonly)$/.test(text)) { paused = text !== 'offline'; }
  }, true);
  setInterval(function () {
    var b = document.querySelector('button.btn-danger');
    if (!paused && b && b.textContent.trim() === 'offline') { b.click(); }
  }, 2000);
})();
</script>"""


# Visdom 0.3's style sheet sets `.react-grid-item {min-width: fit-content}`: a window whose title
# is longer than its bar has room for (0.3's bar holds seven buttons) grows wider than its size,
# over the window beside it. On 0.3 this keeps every window at its size and ends a long title with
# an ellipsis; the whole title stays in the page and shows on hover.
LONG_TITLES = b"""<style>/* livetrain: a window keeps its size whatever its title */
.react-grid-item { min-width: 0 !important; }
.bar div.pull-right { max-width: calc(100% - 140px); overflow: hidden; white-space: nowrap;
                      text-overflow: ellipsis; }
</style><script>
document.addEventListener('mouseover', function (e) {
  var t = e.target && e.target.closest ? e.target.closest('.bar div.pull-right') : null;
  if (t && t.scrollWidth > t.clientWidth) { t.title = t.textContent; }
});
</script>"""


# Visdom's page (0.2.4 and 0.3) turns a window's width in pixels into grid columns with the page
# width it holds at that moment, and does so again each time the window is redrawn. After the
# browser window is resized (narrower, or a scroll bar measured), a redrawn window comes out a
# hair wider (37.031 columns where it was placed as 37.008) and overlaps the window to its right;
# at the next window created the grid moves every overlapped window down, and the page becomes a
# staircase, one window a row. This script drops the width from a redraw of a window the page
# already shows at that width, so the page keeps the columns it placed the window with; a new
# window, or one sent at another width, keeps its width. (Which windows the page shows: the keys
# React gives the grid's items, the windows' ids.)
def on_message_script(title: bytes, body: bytes, wrap: bytes) -> bytes:
    """A page script whose `body` defines `function WRAP(handler)`: every handler the page sets as
    a WebSocket's onmessage goes through it (reading onmessage still gives the page's own)."""
    key = b"this.__livetrain_" + wrap
    return (b"<script>/* livetrain: " + title + b" */\n(function () {\n"
            b"  var WS = window.WebSocket, desc = WS && Object.getOwnPropertyDescriptor(WS.prototype, 'onmessage');\n"
            b"  if (!desc || !desc.set) { return; }\n" + body +
            b"  Object.defineProperty(WS.prototype, 'onmessage', {\n"
            b"    configurable: true, enumerable: desc.enumerable,\n"
            b"    get: function () { return " + key + b" || null; },\n"
            b"    set: function (f) {\n"
            b"      " + key + b" = f;\n"
            b"      desc.set.call(this, typeof f === 'function' ? " + wrap + b"(f) : f);\n"
            b"    }\n  });\n})();\n</script>")


GRID_WIDTHS = on_message_script(b"a redrawn window keeps its grid width", b"""  var widths = {};
  function shown(id) {
    var items = document.querySelectorAll('.react-grid-item');
    for (var i = 0; i < items.length; i++) {
      for (var k in items[i]) {
        if ((k.indexOf('__reactInternalInstance') === 0 || k.indexOf('__reactFiber') === 0)
            && items[i][k] && items[i][k].key === id) { return true; }
      }
    }
    return false;
  }
  function keepWidth(handler) {
    return function (evt) {
      if (typeof evt.data === 'string' && evt.data.indexOf('"width"') !== -1) {
        try {
          var cmd = JSON.parse(evt.data);
          if ((cmd.command === 'window' || cmd.command === 'pane') && cmd.id != null && cmd.width) {
            var same = widths[cmd.id] === cmd.width;
            widths[cmd.id] = cmd.width;
            if (same && shown(cmd.id)) {
              delete cmd.width;
              evt = {data: JSON.stringify(cmd), type: evt.type, target: evt.target};
            }
          }
        } catch (e) { /* not JSON: the page's own handler says so */ }
      }
      return handler.call(this, evt);
    };
  }
""", b"keepWidth")


# The page acknowledges each message of its socket once its own handler has taken it (drawn the
# window); the server sends no further ahead of it than `dashboard.page_flow` allows.
ACKS = on_message_script(b"the page says what it has taken (dashboard.page_flow)", b"""  function acking(handler) {
    return function (evt) {
      try {
        return handler.call(this, evt);
      } finally {
        if (this.readyState === 1 && /\\/socket$/.test(this.url)) {
          try { this.send('{"cmd":"livetrain_ack","n":1}'); } catch (e) { /* closing */ }
        }
      }
    };
  }
""", b"acking")


def page_additions(version: tuple[int, ...]) -> bytes:
    """What goes before the page's </body> on this visdom release."""
    return RECONNECT_SCRIPT + GRID_WIDTHS + ACKS + (LONG_TITLES if version >= (0, 3) else b"")
