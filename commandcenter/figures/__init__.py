"""/figures: 口径说明, the catalogue of every figure shown anywhere (issue 12 §1).

``catalogue`` defines each figure once; ``views`` serves the page ``/figures/`` (any logged-in account) and
``api`` the JSON ``GET /api/v1/figures`` (the same numbers the drill-down shows, for a place and a period);
``figure_label(key)`` is the Jinja global every screen uses for a figure's label: the catalogue's name, linked
to its entry, with the definition as its title.
"""

from flask import Blueprint, url_for
from markupsafe import Markup, escape

bp = Blueprint("figures", __name__, url_prefix="/figures")


def figure_label(key: str, prefix: str = "", suffix: str = "") -> Markup:
    """The label of figure `key` as a link to its entry in /figures/ (title = its one-sentence definition).
    `prefix` / `suffix` add a period word ("今日", "本月") around the catalogue's name, never another name."""
    from .catalogue import get

    fig = get(key)
    href = f"{url_for('figures.index')}#{fig.key}"
    return Markup('<a class="figure-label" href="{}" title="{}" data-figure-key="{}">{}{}{}</a>').format(
        href, fig.definition, fig.key, escape(prefix), fig.name, escape(suffix)
    )


def figure_help(key: str) -> Markup:
    """A small ⓘ link to the entry of `key`, for a label that is itself a link already (a sortable header)."""
    from .catalogue import get

    fig = get(key)
    href = f"{url_for('figures.index')}#{fig.key}"
    return Markup(
        '<a class="figure-help" href="{}" title="{}：{}" data-figure-key="{}" aria-label="{}的口径">ⓘ</a>'
    ).format(href, fig.name, fig.definition, fig.key, fig.name)


@bp.record_once
def _register_helpers(state) -> None:
    from .catalogue import ASSESSMENT_KEYS, alert_figure, key_of_name, label

    state.app.jinja_env.globals["figure_label"] = figure_label
    state.app.jinja_env.globals["figure_name"] = label
    state.app.jinja_env.globals["figure_help"] = figure_help
    state.app.jinja_env.globals["figure_key_of"] = key_of_name
    state.app.jinja_env.globals["alert_figure"] = alert_figure
    state.app.jinja_env.globals["assessment_figure"] = lambda indicator: ASSESSMENT_KEYS.get(indicator, indicator)


from . import api, views  # noqa: E402,F401  (routes on bp and on the API blueprint)
