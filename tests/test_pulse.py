"""The parsing of pactl output used by the sound tests (no sound card needed)."""

from __future__ import annotations

from tests.pulse import module_arguments, null_sink_module, parse_streams

MODULES = (
    "6\tmodule-native-protocol-unix\t\t\n"
    "17\tmodule-null-sink\tsink_name=uservoice sink_properties=device.description=User-voice\t\n"
    "18\tmodule-null-sink\tsink_name=speaker2\t\n"
    "19\tmodule-null-sink\tsink_name=speaker\t\n"  # loaded without other arguments: a tab follows
    '20\tmodule-null-sink\tsink_properties=device.description="My speaker" sink_name=mic\n'
)


def test_a_null_sink_is_found_whatever_follows_its_name():
    assert null_sink_module(MODULES, "speaker") == "19"  # not speaker2, whose name starts alike
    assert null_sink_module(MODULES, "uservoice") == "17"
    assert null_sink_module(MODULES, "mic") == "20"  # quoted value with a space before it
    assert null_sink_module(MODULES, "nothing") is None


def test_module_arguments_are_shell_words():
    assert module_arguments('a=1 b="x y" c') == {"a": "1", "b": "x y", "c": ""}
    assert module_arguments("") == {}


def test_streams_are_read_with_their_device_and_process():
    text = (
        "Source Output #13\n\tDriver: protocol-native.c\n\tSource: 1\n\tProperties:\n"
        '\t\tapplication.name = "python"\n\t\tapplication.process.id = "4242"\n\n'
        "Source Output #14\n\tSource: 2\n\tProperties:\n\t\tmedia.name = \"x\"\n"
    )
    assert parse_streams(text) == [(13, "1", 4242), (14, "2", -1)]
