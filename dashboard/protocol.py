"""The wire protocol between livetrain's clients and its Visdom server: what both sides must
spell the same. The client (`connection`, `windows`, `visdom_backend`) and the server (`server`)
import it; neither imports the other, and a training worker imports no server code."""

from __future__ import annotations

# Visdom's login, from the environment (the server's --login; the clients log in with them)
USER_VAR, PASSWORD_VAR, COOKIE_VAR = "VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_COOKIE"

# Visdom's own answer to an update of a window that is not there
MISSING_WINDOW = "win does not exist"

# Every message that writes points or a pane carries a sequence number under this key (the time
# it was built: `windows.new_seq`); our server refuses one older than what it holds (STALE). A
# stock Visdom server ignores the key.
SEQ_KEY = "livetrain_seq"

# Our server's endpoint that replaces the tails of several traces in one request, and its
# answers per splice (besides MISSING_WINDOW)
SPLICE_PATH = "/livetrain/splice"
SPLICED, STALE = "livetrain: spliced", "livetrain: stale"
