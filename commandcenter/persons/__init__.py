"""重点人员 (persons to be visited; masked, every view and every unmasking logged).

The rules (security.md, PIPL):
- Names, identity numbers, phones and the house/room numbers of addresses (``security.mask_address``)
  are masked on every screen. The full name, identity number, phone and address are shown only in the
  answer to one POST "显示完整信息" (with a stated reason), for that request only,
  and only to an account whose role has ``person.unmask`` *and* which holds the ``can_unmask`` grant.
  Every unmasking, granted or refused, is an audit row (who, when, whom, from where, why).
- Every view of a person page is an audit row (``person.view``); views of the list are logged too
  (``person.list``), with the filter and the number of rows shown.
- The four special populations (``SENSITIVE_PERSON_TYPES``: community correction, released prisoners,
  mentally ill persons at risk, drug users) are sensitive personal information: only the roles that
  handle those people see them at all — gridworkers (they visit them, in their own grid) and the
  town/village center administrators (综治中心, who manage them with the justice office and police).
  A supervisor (督导人员) sees the other key persons and only the *number* of hidden special-population
  persons; a sensitive person's page answers 404 to them, as a page outside the jurisdiction does.
- Who may see which person has one home, ``visibility.visible_person``: the pages here and the visits
  API (``fieldwork.record_visit``) both use it, so a hidden person answers like a missing one everywhere.
"""

from flask import Blueprint

bp = Blueprint("persons", __name__, url_prefix="/persons")

from . import views  # noqa: E402,F401  (registers the routes on bp)
