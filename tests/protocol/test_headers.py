"""Header values the handshake reads: the multi-map and the list grammars (RFC 9110 §5,
RFC 6455 §9.1)."""

from __future__ import annotations

import pytest

from legato.protocol.headers import (
    Headers,
    is_token,
    parse_extensions,
    parse_token_list,
    serialize_extension,
)


class TestRFC9110Section5_1_FieldNamesAreCaseInsensitive:
    # RFC 9110 §5.1: "Field names are case-insensitive."
    def test_lookup_ignores_the_case_of_the_name(self):
        headers = Headers([("Sec-WebSocket-Key", "k")])
        assert headers["sec-websocket-key"] == headers["SEC-WEBSOCKET-KEY"] == "k"
        assert "sEc-WeBsOcKeT-kEy" in headers
        assert headers.get("SEC-websocket-KEY") == "k"

    def test_missing_names_raise_key_error_and_are_not_contained(self):
        headers = Headers([("Host", "a")])
        with pytest.raises(KeyError):
            headers["Origin"]
        assert "Origin" not in headers
        assert headers.get("Origin") is None
        assert headers.get_all("Origin") == []

    def test_non_string_keys_are_never_contained(self):
        assert 1 not in Headers([("1", "x")])
        assert None not in Headers()

    def test_iteration_yields_each_name_once_in_lower_case(self):
        headers = Headers([("Host", "a"), ("X-A", "1"), ("x-a", "2")])
        assert list(headers) == ["host", "x-a"]
        assert len(headers) == 2

    def test_an_empty_headers_object_is_empty(self):
        assert len(Headers()) == 0 and list(Headers()) == [] and Headers().raw_items() == []


class TestRFC9110Section5_3_FieldOrderAndRepetition:
    # RFC 9110 §5.3: a field may appear several times; the order of its lines is
    # significant, and the order across different names is not.
    def test_get_all_returns_every_value_in_arrival_order_whatever_the_case(self):
        headers = Headers([("Sec-WebSocket-Protocol", "chat"), ("Host", "h"),
                           ("sec-websocket-protocol", "superchat"),
                           ("SEC-WEBSOCKET-PROTOCOL", "v2")])
        assert headers.get_all("Sec-WebSocket-Protocol") == ["chat", "superchat", "v2"]

    def test_indexing_returns_the_first_value(self):
        headers = Headers([("X", "first"), ("x", "second")])
        assert headers["X"] == "first"

    def test_raw_items_keep_original_case_order_and_duplicates(self):
        items = [("Host", "h"), ("X-A", "1"), ("x-a", "2"), ("Host", "h2")]
        assert Headers(items).raw_items() == items

    def test_get_all_returns_a_copy_that_cannot_change_the_headers(self):
        headers = Headers([("X", "1")])
        headers.get_all("X").append("2")
        headers.raw_items().append(("Y", "3"))
        assert headers.get_all("X") == ["1"] and "Y" not in headers

    def test_headers_accept_any_iterable_of_pairs(self):
        headers = Headers(iter([("A", "1"), ("B", "2")]))
        assert headers["a"] == "1" and headers["b"] == "2"

    def test_repr_shows_the_raw_items(self):
        assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


class TestRFC9110Section5_6_2_Tokens:
    # RFC 9110 §5.6.2: token = 1*tchar; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*"
    # / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    @pytest.mark.parametrize("value", ["websocket", "chat.v2", "a", "!#$%&'*+-.^_`|~09AZaz"])
    def test_tchar_strings_are_tokens(self, value):
        assert is_token(value)

    @pytest.mark.parametrize("value", ["", "a b", "a,b", "a;b", 'a"', "a/b", "a=b", "(a)",
                                       "a\tb", "caf\u00e9", "a\x00", "\u0661"])
    def test_strings_with_separators_controls_or_non_ascii_are_not_tokens(self, value):
        assert not is_token(value)


class TestRFC9110Section5_6_1_TokenLists:
    # RFC 9110 §5.6.1: #token lists, comma-separated with optional whitespace.
    @pytest.mark.parametrize("values, expected", [
        (["Upgrade"], ["Upgrade"]),
        (["keep-alive, Upgrade"], ["keep-alive", "Upgrade"]),
        (["keep-alive,Upgrade"], ["keep-alive", "Upgrade"]),
        (["  keep-alive \t,\t Upgrade  "], ["keep-alive", "Upgrade"]),
        (["keep-alive", "Upgrade"], ["keep-alive", "Upgrade"]),
        (["chat, chat"], ["chat", "chat"]),
        ([], []),
    ])
    def test_token_lists_split_on_commas_and_trim_whitespace(self, values, expected):
        assert parse_token_list(values) == expected

    # §5.6.1.2: "a recipient MUST accept lists that contain empty list elements" and
    # "MUST parse and ignore a reasonable number of empty list elements".
    @pytest.mark.parametrize("value", [",Upgrade", "Upgrade,", ", ,Upgrade,,  ,", "Upgrade , ,"])
    def test_empty_list_elements_are_skipped(self, value):
        assert parse_token_list([value]) == ["Upgrade"]

    @pytest.mark.parametrize("value", ["", " ", ",", " , , "])
    def test_a_list_of_only_empty_elements_is_empty(self, value):
        assert parse_token_list([value]) == []

    @pytest.mark.parametrize("value", ["keep alive", "a;b", "a=b", '"quoted"', "a/1",
                                       "caf\u00e9", "a\x00"])
    def test_an_element_that_is_not_a_token_raises_value_error(self, value):
        with pytest.raises(ValueError):
            parse_token_list(["ok", value])


class TestRFC6455Section9_1_ExtensionHeaderGrammar:
    # RFC 6455 §9.1:
    #   Sec-WebSocket-Extensions = extension-list
    #   extension-list = 1#extension
    #   extension = extension-token *( ";" extension-param )
    #   extension-param = token [ "=" (token | quoted-string) ]
    # "When using the quoted-string syntax variant, the value after quoted-string
    # unescaping MUST conform to the 'token' ABNF."

    def test_a_bare_extension_has_no_parameters(self):
        assert parse_extensions(["permessage-deflate"]) == [("permessage-deflate", [])]

    def test_parameters_keep_their_order_and_bare_ones_have_no_value(self):
        value = "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
        assert parse_extensions([value]) == [
            ("permessage-deflate", [("client_max_window_bits", None),
                                    ("server_max_window_bits", "10")])]

    def test_several_extensions_on_one_line_and_across_lines_are_listed_in_order(self):
        values = ["permessage-deflate; server_no_context_takeover, x-foo",
                  "permessage-deflate"]
        assert parse_extensions(values) == [
            ("permessage-deflate", [("server_no_context_takeover", None)]),
            ("x-foo", []),
            ("permessage-deflate", []),
        ]

    @pytest.mark.parametrize("value", [
        "permessage-deflate;client_max_window_bits=10",
        "permessage-deflate ; client_max_window_bits=10",
        "permessage-deflate;\tclient_max_window_bits = 10 ",
        "  permessage-deflate; client_max_window_bits=10  ",
    ])
    def test_optional_whitespace_around_separators_is_ignored(self, value):
        assert parse_extensions([value]) == [
            ("permessage-deflate", [("client_max_window_bits", "10")])]

    def test_duplicate_parameters_are_reported_not_merged(self):
        # Rejecting duplicates is a per-extension rule (RFC 7692 §7); the parser keeps them.
        assert parse_extensions(["e; a=1; a=2"]) == [("e", [("a", "1"), ("a", "2")])]

    def test_a_quoted_value_is_unquoted(self):
        assert parse_extensions(['permessage-deflate; server_max_window_bits="10"']) == [
            ("permessage-deflate", [("server_max_window_bits", "10")])]

    def test_a_quoted_value_with_an_escaped_token_character_is_unescaped(self):
        assert parse_extensions(['e; p="a\\bc"']) == [("e", [("p", "abc")])]

    @pytest.mark.parametrize("value", [
        'e; p="a b"', 'e; p=""', 'e; p="a,b"', 'e; p="a;b"', 'e; p="a\\"b"', 'e; p="1 0"',
        'e; p="caf\u00e9"',
    ])
    def test_a_quoted_value_that_is_not_a_token_after_unquoting_raises(self, value):
        with pytest.raises(ValueError):
            parse_extensions([value])

    # RFC 9110 §5.6.1.2: empty list elements are ignored.
    @pytest.mark.parametrize("value", [", permessage-deflate", "permessage-deflate,",
                                       ",, permessage-deflate ,, ,", " , permessage-deflate"])
    def test_empty_list_elements_are_skipped(self, value):
        assert parse_extensions([value]) == [("permessage-deflate", [])]

    @pytest.mark.parametrize("values", [[""], [" "], [","], [], ["", " , "]])
    def test_a_header_of_only_empty_elements_lists_nothing(self, values):
        assert parse_extensions(values) == []

    @pytest.mark.parametrize("value", [
        "permessage-deflate;",                 # ";" with no parameter
        "permessage-deflate; ;",
        "; server_max_window_bits=10",         # parameter with no extension
        "permessage-deflate x",                # two tokens without a separator
        "permessage-deflate; a b",
        "permessage-deflate; a=",              # "=" with no value
        "permessage-deflate; a==1",
        "permessage-deflate; a=1 2",
        "permessage-deflate; a=1=2",
        "permessage-deflate; =1",
        'permessage-deflate; a="10',           # unterminated quoted string
        'permessage-deflate; a=10"',
        'permessage-deflate; a="1"0',
        '"permessage-deflate"',                # quoted extension name
        "permessage/deflate",
        "permessage-deflate; a=b/c",
        "permessage-deflate; a=\x00",
        'permessage-deflate; a="\x00"',
        "permessage-deflate; a=1; ,",
    ])
    def test_malformed_input_raises_value_error(self, value):
        with pytest.raises(ValueError):
            parse_extensions([value])

    def test_one_malformed_line_fails_the_whole_header(self):
        with pytest.raises(ValueError):
            parse_extensions(["permessage-deflate", "x;"])


class TestRFC6455Section9_1_SerializingAnExtension:
    # RFC 6455 §9.1: the same grammar on the way out.
    @pytest.mark.parametrize("params, expected", [
        ([], "permessage-deflate"),
        ([("client_max_window_bits", None)], "permessage-deflate; client_max_window_bits"),
        ([("server_no_context_takeover", None), ("server_max_window_bits", "10")],
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
    ])
    def test_serialize_extension_writes_parameters_in_order(self, params, expected):
        assert serialize_extension("permessage-deflate", params) == expected

    @pytest.mark.parametrize("params", [
        [], [("a", None)], [("a", "1"), ("b", None), ("c", "x-y")]])
    def test_serialized_extensions_parse_back_to_the_same_value(self, params):
        assert parse_extensions([serialize_extension("ext", params)]) == [("ext", params)]
