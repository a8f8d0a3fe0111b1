"""The chat page's handler in process: the conversation is the session's turns, not the rendered replies."""

from __future__ import annotations

from qa.chat import Turn
from qa.web import render, ui


def test_follow_ups_still_work_when_the_reply_is_worded_otherwise(wikinews_library, monkeypatch):
    # a case of tests/multiturn.json whose follow-up, asked alone, finds neither the article nor the answer
    first, follow_up, expected = (
        "How many people were killed when a crane fell in Mecca's Grand Mosque?",
        "What caused it?",
        "strong winds and heavy rain",
    )
    monkeypatch.setattr(render, "reply_markdown", lambda answer: "Here is what the articles say, in other words.")
    history, _, box, turns, _ = ui.respond(wikinews_library, first, [], 5, ())
    assert box == "" and history[-1]["content"] == "Here is what the articles say, in other words."
    assert len(turns) == 1 and any("crane" in q for q in turns[0].quotes), turns[0].quotes

    history, panel, _, turns, _ = ui.respond(wikinews_library, follow_up, history, 5, turns)
    assert len(history) == 4 and len(turns) == 2
    assert any(expected in q for q in turns[-1].quotes)
    assert expected in panel.split('data-n="2"')[0]  # in the first passage shown


def test_the_chat_sent_decides_how_many_turns_go_on():
    first, second = Turn("Who traveled to Mexico City?", ("Blinken traveled.",)), Turn("Why?")
    asked = {"role": "user", "content": "a question"}
    replied = {"role": "assistant", "content": "a reply"}
    assert ui.continued((first, second), [asked, replied, asked, replied]) == (first, second)
    assert ui.continued((first, second), [asked, replied]) == (first,)
    assert ui.continued((first, second), []) == ()  # a new conversation
    assert ui.continued((first,), [asked, replied, asked, replied]) == ()  # a chat from another session
    assert ui.continued(None, []) == ()


def test_an_empty_question_keeps_the_conversation(seed_library):
    turns = (Turn("Who traveled to Mexico City?"),)
    history = [{"role": "user", "content": "Who traveled to Mexico City?"}, {"role": "assistant", "content": "..."}]
    shown, _, _, kept, answer = ui.respond(seed_library, "   ", history, 5, turns)
    assert kept == turns and answer is None and shown[-1]["content"] == render.EMPTY_QUESTION
