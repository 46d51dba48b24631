"""Front ends that print: one-line tail, summary (text and JSON)."""
