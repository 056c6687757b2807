"""Access reports: every access to one patient's record, or by one user, with who, when, what, why, and the
alerts each access took part in (GDPR Art. 15 access overview, NEN 7513 / ISO 27789 logging).

A report is PHI by nature: it names a patient and the staff who opened the record. The engine never logs a
report's contents; files are written private (``engine.private_files``: 0600), and the HTML page opens
with a notice saying what it holds (the CSV stays a plain table with one header row, for spreadsheets).

``build`` collects the rows from the store, ``render`` turns a :class:`Report` into CSV or HTML, and
``accountability`` records each report handed out in the audit chain.
"""

from engine.reports.accountability import record_report

from engine.reports.build import patient_report, user_report
from engine.reports.model import AccessRow, AlertRef, Report
from engine.reports.render import render_csv, render_html

__all__ = ["AccessRow", "AlertRef", "Report", "patient_report", "record_report", "render_csv", "render_html",
           "user_report"]
