"""The link's counters are composed from the parts that count (framing, message layer, the link's
own tally), field by name: every field of LinkCounters has exactly one source, and every counter
of a part reaches it, so a counter cannot be forgotten or copied from the wrong place."""

from __future__ import annotations

import dataclasses

from host.link import LinkCounters, _counts, _Tally
from protocol import FramingCounters, StreamCounters


def _parts() -> tuple[StreamCounters, _Tally]:
    """Every counter of every part set to a distinct value."""
    framing = FramingCounters(**{f.name: 100 + i for i, f in enumerate(dataclasses.fields(FramingCounters))})
    stream_fields = [f.name for f in dataclasses.fields(StreamCounters) if f.name != "framing"]
    stream = StreamCounters(framing, **{name: 200 + i for i, name in enumerate(stream_fields)})
    tally = _Tally(**{f.name: 300 + i for i, f in enumerate(dataclasses.fields(_Tally))})
    return stream, tally


def test_every_field_has_exactly_one_source_and_its_value() -> None:
    stream, tally = _parts()
    sources = [_counts(stream.framing), _counts(stream), _counts(tally)]
    counters = LinkCounters.compose(stream, tally)
    for field in dataclasses.fields(LinkCounters):
        name = LinkCounters.RENAMED.get(field.name, field.name)
        owners = [part for part in sources if name in part]
        assert len(owners) == 1, f"{field.name}: {len(owners)} sources"
        assert getattr(counters, field.name) == owners[0][name]


def test_every_counter_of_the_link_and_the_message_layer_is_shown() -> None:
    shown = {LinkCounters.RENAMED.get(f.name, f.name) for f in dataclasses.fields(LinkCounters)}
    stream, tally = _parts()
    assert set(_counts(tally)) <= shown
    assert set(_counts(stream)) <= shown
