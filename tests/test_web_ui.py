"""The chat page's handler in process: the conversation is the session's turns, not the rendered replies."""

from __future__ import annotations

from qa.chat import Turn
from qa.web import render, ui


def test_follow_ups_still_work_when_the_reply_is_worded_otherwise(seed_library, monkeypatch):
    monkeypatch.setattr(render, "reply_markdown", lambda answer: "Here is what the articles say, in other words.")
    history, _, box, turns = ui.respond(seed_library, "Who traveled to Mexico City?", [], 5, ())
    assert box == "" and history[-1]["content"] == "Here is what the articles say, in other words."
    assert "traveled to Mexico City" in turns[0].quotes[0]

    history, panel, _, turns = ui.respond(seed_library, "What did he say about the cycle of crime?", history, 5, turns)
    assert len(history) == 4 and len(turns) == 2
    assert any("This is a cycle that continues" in q for q in turns[-1].quotes)
    assert "This is a cycle that continues" in panel


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
    shown, _, _, kept = ui.respond(seed_library, "   ", history, 5, turns)
    assert kept == turns and shown[-1]["content"] == render.EMPTY_QUESTION
