"""Request keys: what makes two chat requests the same, and which requests the semantic cache may answer."""

from __future__ import annotations

from plugins.cache.llm import compatible, request_key, single_turn

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_key_ignores_transport_fields_and_number_spelling() -> None:
    assert request_key(BASE) == request_key({**BASE, "stream": True, "metadata": {"a": 1}, "temperature": None})
    assert request_key({**BASE, "temperature": 1}) == request_key({**BASE, "temperature": 1.0})
    assert request_key({**BASE, "temperature": 1}) != request_key({**BASE, "temperature": 1.5})
    assert request_key({**BASE, "unknown_param": 1}) != request_key(BASE)


def test_the_end_user_is_part_of_the_key() -> None:
    assert request_key({**BASE, "user": "ada"}) != request_key({**BASE, "user": "bob"}) != request_key(BASE)
    ada, bob = single_turn({**BASE, "user": "ada"}), single_turn({**BASE, "user": "bob"})
    assert ada is not None and bob is not None and ada.match_key != bob.match_key  # semantic hits too


def test_single_turn_takes_one_user_message_after_at_most_one_system_message() -> None:
    plain = single_turn(BASE)
    assert plain is not None and plain.user_text == "hi" and plain.model == "m"
    system = {**BASE, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}
    parts = {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert single_turn(system) is not None and single_turn(parts) is not None
    assert single_turn(parts).match_key == plain.match_key  # type: ignore[union-attr]
    two_turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    for messages in (two_turns, image, [{"role": "assistant", "content": "x"}], [], "hi"):
        assert single_turn({**BASE, "messages": messages}) is None


def test_match_key_separates_models_and_system_prompts_not_wording() -> None:
    def key(model: str, system: str | None, text: str) -> str:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        turn = single_turn({"model": model, "messages": msgs})
        assert turn is not None
        return turn.match_key

    assert key("m", "s", "a") == key("m", "s", "b")
    assert key("m", "s", "a") != key("other", "s", "a")
    assert key("m", "s", "a") != key("m", "t", "a")
    assert key("m", None, "a") != key("m", "s", "a")


def test_guards_refuse_different_numbers_and_negation() -> None:
    assert compatible("turn off the alarm", "switch the alarm off")
    assert not compatible("set a timer for 5 minutes", "set a timer for 10 minutes")
    assert not compatible("do not turn the alarm off", "turn the alarm off")
    assert not compatible("don't stop", "stop")
