"""Loud failure when Textual moves or changes the private `FooterKey` the dashboard's footer uses
(host/dashboard/_textual_adapter.py)."""

from __future__ import annotations

import importlib.metadata
import inspect

from textual.widget import Widget

from host.dashboard._textual_adapter import TESTED_TEXTUAL, FooterKey


def test_textual_is_the_release_the_adapter_was_checked_against():
    version = importlib.metadata.version("textual")
    assert version.split(".")[:2] == TESTED_TEXTUAL.split("."), (
        f"textual {version}: re-check FooterKey (host/dashboard/_textual_adapter.py), then update "
        "TESTED_TEXTUAL and the pin in pyproject.toml"
    )


def test_footer_key_is_a_widget_built_from_key_display_description_and_action():
    assert issubclass(FooterKey, Widget)
    params = list(inspect.signature(FooterKey.__init__).parameters)
    assert params[1:5] == ["key", "key_display", "description", "action"], params
    key = FooterKey("escape", "Esc", "STOP", "stop('escape')")
    assert (key.key, key.key_display, key.description, key.action) == (
        "escape",
        "Esc",
        "STOP",
        "stop('escape')",
    )
