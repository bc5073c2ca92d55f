"""Cases: intake, the six-step loop, deadlines, duplicates, and the center screens.

- `loop`: the six-step closed loop as a state machine (one function per step);
- `actions`: the one door every page and API action goes through (`perform`);
- `queries`, `forms`: the read side and the form input of the screens; `views`: the routes.
"""

from flask import Blueprint

bp = Blueprint("cases", __name__, url_prefix="/cases")

from . import views  # noqa: E402,F401  (registers the routes on bp)
