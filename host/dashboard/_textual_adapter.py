"""The one place the dashboard relies on Textual beyond its documented API.

Textual's `Footer` (public) draws one `FooterKey` widget per binding; `FooterKey` itself lives in the
private module `textual.widgets._footer`. The dashboard needs it for one safety reason: while a text
field has the focus Textual leaves the letter bindings out of the footer, so `KeyFooter`
(widgets/footer.py) inserts a `FooterKey` for Escape, STOP, of its own: the operator must see the
stop key in every focus. The tests query the footer's `FooterKey`s to check exactly that.

tests/dashboard/test_textual_adapter.py fails loudly when a Textual release moves the class or
changes its constructor; pyproject.toml pins Textual to the minor release it was checked against.
"""

from __future__ import annotations

from textual.widgets._footer import FooterKey

__all__ = ["TESTED_TEXTUAL", "FooterKey"]

TESTED_TEXTUAL = "8.2"
"""The Textual minor release `FooterKey` was checked against (the test compares)."""
