"""月度通报 (the monthly bulletin) of a town or the city: generated from the data, free text kept, .docx.

- `service`: the Bulletin row's lifecycle (create, edit, who may see it, the story candidates);
- `builder`: the content — numbered sections, tables 表1…, rankings, stories — as a plain dict;
- `docx`: that dict as a Word document; the print view renders the same dict as HTML;
- `jobs`: building is a job (RQ queue "reports" in server mode, a thread in embedded mode), with progress.
"""

from flask import Blueprint

bp = Blueprint("bulletin", __name__, url_prefix="/bulletins")

from . import views  # noqa: E402,F401  (registers the routes on bp)
