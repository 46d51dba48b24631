"""Front ends that print: one-line tail, summary (text and JSON)."""

EXPORT_FORMATS = ("md", "text", "html", "jsonl")  # pkspy export --to (report/export.py)
