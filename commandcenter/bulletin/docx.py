"""A bulletin's content (builder.py) as a Word document: what these offices circulate.

A4 with the margins of official documents (GB/T 9704: 37/35/28/26 mm), the title in 宋体, headings in 黑体
and 楷体, the body in 仿宋_GB2312, tables in 宋体 五号. Chinese font names are set on w:eastAsia (Word picks
the East Asian font from there) and the theme fonts are removed so they cannot override it. Tables are
real Word tables (style "Table Grid") whose header row repeats on each page, each with its 表N caption.
"""

from __future__ import annotations

from io import BytesIO

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt, RGBColor

TITLE_FONT = "宋体"
HEADING_FONT = "黑体"
SUBHEADING_FONT = "楷体_GB2312"
BODY_FONT = "仿宋_GB2312"
TABLE_FONT = "宋体"
THEME_ATTRIBUTES = ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme")


def set_font(element, name: str, size: float | None = None, bold: bool | None = None) -> None:
    """Font of a style or a run, the East Asian name included."""
    font = element.font
    font.name = name
    if size is not None:
        font.size = Pt(size)
    if bold is not None:
        font.bold = bold
    rpr = element.element.get_or_add_rPr()
    fonts = rpr.get_or_add_rFonts()
    for attribute in THEME_ATTRIBUTES:
        fonts.attrib.pop(qn(attribute), None)
    for attribute in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attribute), name)


def _styles(doc) -> None:
    normal = doc.styles["Normal"]
    set_font(normal, BODY_FONT, 16)
    normal.paragraph_format.line_spacing = Pt(28)
    normal.paragraph_format.space_after = Pt(0)
    for name, font, size in (
        ("Title", TITLE_FONT, 22),
        ("Heading 1", HEADING_FONT, 16),
        ("Heading 2", SUBHEADING_FONT, 16),
    ):
        style = doc.styles[name]
        set_font(style, font, size, bold=name != "Heading 2")
        style.font.color.rgb = RGBColor(0, 0, 0)
        style.font.italic = False
        style.paragraph_format.space_before = Pt(6)
        style.paragraph_format.space_after = Pt(6)
    caption = doc.styles.add_style("Table Caption CC", 1)
    caption.base_style = normal
    set_font(caption, HEADING_FONT, 12, bold=True)
    caption.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.CENTER
    caption.paragraph_format.space_before = Pt(8)
    caption.paragraph_format.space_after = Pt(4)
    caption.paragraph_format.keep_with_next = True
    cell = doc.styles.add_style("Table Text CC", 1)
    cell.base_style = normal
    set_font(cell, TABLE_FONT, 10.5)
    cell.paragraph_format.line_spacing = 1.0
    cell.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.CENTER
    note = doc.styles.add_style("Note CC", 1)
    note.base_style = normal
    set_font(note, BODY_FONT, 12)
    note.paragraph_format.line_spacing = 1.2


def _page(doc) -> None:
    section = doc.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin = Mm(37), Mm(35)
    section.left_margin, section.right_margin = Mm(28), Mm(26)
    footer = section.footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _page_number(footer)


def _page_number(paragraph) -> None:
    """— N — in the footer, N being Word's PAGE field."""
    paragraph.add_run("— ")
    run = paragraph.add_run()
    for kind, text in (("begin", None), (None, "PAGE"), ("end", None)):
        if kind:
            element = OxmlElement("w:fldChar")
            element.set(qn("w:fldCharType"), kind)
        else:
            element = OxmlElement("w:instrText")
            element.set(qn("xml:space"), "preserve")
            element.text = text
        run._r.append(element)
    paragraph.add_run(" —")


def _add(doc, text: str, style: str | None = None):
    """A paragraph in a style given by name; the style id is looked up once (python-docx's lookup is slow)."""
    paragraph = doc.add_paragraph(text)
    if style is not None:
        ids = doc._bulletin_style_ids
        if style not in ids:
            ids[style] = doc.styles[style].style_id
        paragraph._p.style = ids[style]
    return paragraph


def _repeat_header(row) -> None:
    trpr = row._tr.get_or_add_trPr()
    element = OxmlElement("w:tblHeader")
    element.set(qn("w:val"), "true")
    trpr.append(element)


def _cell_text(cell, text: str, style_id: str, bold: bool) -> None:
    """Fill a new cell's empty paragraph. Written as plain XML: python-docx's setters re-check the schema
    order on every call, which made a city's table of 200+ villages take seconds."""
    paragraph = cell._tc.p_lst[0]
    ppr = OxmlElement("w:pPr")
    pstyle = OxmlElement("w:pStyle")
    pstyle.set(qn("w:val"), style_id)
    ppr.append(pstyle)
    paragraph.insert(0, ppr)
    run = OxmlElement("w:r")
    if bold:
        rpr = OxmlElement("w:rPr")
        rpr.append(OxmlElement("w:b"))
        run.append(rpr)
    element = OxmlElement("w:t")
    element.set(qn("xml:space"), "preserve")
    element.text = text
    run.append(element)
    paragraph.append(run)


def _table(doc, block: dict) -> None:
    _add(doc, block["caption"], "Table Caption CC")
    header = block["header"]
    body = list(block["rows"]) + ([block["total"]] if block.get("total") else [])
    table = doc.add_table(rows=1 + len(body), cols=len(header))
    table.style = doc.styles["Table Grid"]
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    rows = list(table.rows)
    _repeat_header(rows[0])
    style_id = doc.styles["Table Text CC"].style_id
    last = len(body) if block.get("total") is not None else -1
    for r, (row, values) in enumerate(zip(rows, [header, *body], strict=True)):
        for c, cell in enumerate(row.cells):
            _cell_text(cell, str(values[c]) if c < len(values) else "", style_id, bold=r in (0, last))
    if not block["rows"]:
        _add(doc, "（本表无数据）", "Note CC")


def render(content: dict) -> bytes:
    doc = Document()
    doc._bulletin_style_ids = {}
    _styles(doc)
    _page(doc)
    doc.core_properties.title = content["title"]
    doc.core_properties.subject = f"{content['place']['name']} {content['period_label']} 月度通报"
    title = _add(doc, content["title"], "Title")
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    sub = doc.add_paragraph(content.get("subtitle") or "")
    sub.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for section in content["sections"]:
        _add(doc, f"{section['number']}、{section['heading']}", "Heading 1")
        for block in section["blocks"]:
            kind = block["type"]
            if kind == "subheading":
                _add(doc, block["text"], "Heading 2")
            elif kind == "table":
                _table(doc, block)
            elif kind == "note":
                _add(doc, block["text"], "Note CC")
            elif kind == "story":
                lead = doc.add_paragraph()
                lead.paragraph_format.first_line_indent = Pt(32)
                lead.add_run(block["lead"]).bold = True
                body = doc.add_paragraph(block["text"])
                body.paragraph_format.first_line_indent = Pt(32)
            else:
                paragraph = doc.add_paragraph(block["text"])
                paragraph.paragraph_format.first_line_indent = Pt(32)
    closing = doc.add_paragraph(f"{content['place']['name']}　{content['generated_at'][:10]}")
    closing.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    out = BytesIO()
    doc.save(out)
    return out.getvalue()
