"""The BD-rate table as files: CSV (spreadsheets) and a LaTeX `tabular` (papers).

Both take the JSON table (``experiments/table.py``) as it is answered. Text from the data
is made safe for each format: CSV cells that a spreadsheet would run as a formula get a
leading apostrophe; LaTeX's special characters are escaped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Final

FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """A text cell as a spreadsheet shows it: never run as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def to_csv(table: Mapping[str, Any]) -> str:
    """One line per row: the method, its experiments, then per set its BD-rate (%), BD-PSNR
    (dB), overlap (0-1) and note (the warning, or the reason there is no figure)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    sets = table["datasets"]
    header = ["method", "experiments"]
    for entry in sets:
        label = entry["name"] if entry["name"] is not None else "(unspecified)"
        header += [
            _text(f"{label} BD-rate (%)"),
            _text(f"{label} BD-PSNR (dB)"),
            _text(f"{label} overlap"),
            _text(f"{label} note"),
        ]
    writer.writerow(header)
    for row in table["rows"]:
        line = [_text(row["method"]), str(row["experiments"])]
        for entry in sets:
            cell = row["cells"].get(entry["key"])
            if cell is None:
                line += ["", "", "", ""]
            elif "reason" in cell:
                line += ["", "", "", _text(cell["reason"])]
            else:
                line += [
                    _number(cell["bd_rate_pct"]),
                    _number(cell["bd_psnr_db"]),
                    _number(cell["overlap"]),
                    _text(cell["warning"] or ""),
                ]
        writer.writerow(line)
    return out.getvalue()


LATEX_SPECIALS: Final = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """`text` as LaTeX typesets it literally (its special characters escaped; control
    characters, which LaTeX cannot take, dropped)."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text if ch >= " " or ch in ("\t",)).replace(
        "\t", " "
    )


def to_latex(table: Mapping[str, Any]) -> str:
    """A `tabular` with one column per set: BD-rate (%) against the set's anchor, the best
    of each column in bold, `--` where there is no figure. Needs only LaTeX itself."""
    sets = table["datasets"]
    lines = [
        "% BD-rate (%) against the anchor of each test set"
        f" ({'MS-SSIM' if table['quality_metric'] == 'ms_ssim' else 'PSNR'});"
        " negative: fewer bits for the same quality. Made by codecdash.",
        "\\begin{tabular}{l" + "r" * len(sets) + "}",
        "\\hline",
    ]
    heads = ["Method"]
    for entry in sets:
        name = entry["name"] if entry["name"] is not None else "(unspecified)"
        anchor = f" (vs. {entry['anchor']})" if entry["anchor"] else ""
        heads.append(latex_escape(name + anchor))
    lines.append(" & ".join(heads) + " \\\\")
    lines.append("\\hline")
    for row in table["rows"]:
        cells = [latex_escape(row["method"])]
        for entry in sets:
            cell = row["cells"].get(entry["key"])
            if cell is None or "bd_rate_pct" not in cell:
                cells.append("--")
                continue
            figure = f"{cell['bd_rate_pct']:.2f}"
            cells.append(f"\\textbf{{{figure}}}" if cell.get("best") else figure)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\hline", "\\end{tabular}", ""]
    return "\n".join(lines)
