"""Chat templates: how a list of messages becomes text, and which parts of it a model is trained to write.

A model directory may hold `chat_template.json` (the fields of ChatTemplate); without one, the plain-text
DEFAULT is used, which any tokenizer that saw ordinary text can encode:

    System: <content>\n        (optional, first)
    User: <content>\n
    Assistant: <content>\n     (the content and its newline are the trained part; "Assistant: " is not)

Generation for a chat (the server) continues the rendered messages followed by "Assistant: ".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from llm.errors import UserError
from llm.files import write_text_atomic

TEMPLATE_FILE = "chat_template.json"
ROLES = ("system", "user", "assistant")


class ChatError(UserError):
    """Messages or a chat template that cannot be rendered; the message names the fix."""


@dataclass(frozen=True)
class ChatTemplate:
    system: str = "System: "
    user: str = "User: "
    assistant: str = "Assistant: "
    end_of_turn: str = "\n"

    def prefix(self, role: str) -> str:
        return {"system": self.system, "user": self.user, "assistant": self.assistant}[role]

    def segments(self, messages: list[dict[str, Any]], where: str) -> list[tuple[str, bool]]:
        """(text, trained) pieces: assistant contents and their end of turn are trained, the rest is not."""
        if not messages:
            raise ChatError(f"{where}: messages is empty; give at least a user and an assistant message")
        pieces: list[tuple[str, bool]] = []
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role not in ROLES or not isinstance(content, str):
                raise ChatError(
                    f'{where}: message {i} must be {{"role": one of {", ".join(ROLES)}, "content": text}}, '
                    f"got {json.dumps(message)[:200]}"
                )
            trained = role == "assistant"
            pieces.append((self.prefix(role), False))
            pieces.append((content + self.end_of_turn, trained))
        if not any(trained for _, trained in pieces):
            raise ChatError(f"{where}: no assistant message, so nothing to learn; add one")
        return pieces

    def generation_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The messages rendered, then the start of the assistant's turn: what the model continues."""
        rendered = "".join(self.prefix(m["role"]) + m["content"] + self.end_of_turn for m in messages)
        return rendered + self.assistant

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


DEFAULT_TEMPLATE = ChatTemplate()


def load_chat_template(model_dir: str | Path) -> ChatTemplate:
    """The model directory's chat_template.json, or DEFAULT_TEMPLATE when it has none."""
    path = Path(model_dir) / TEMPLATE_FILE
    if not path.is_file():
        return DEFAULT_TEMPLATE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(ChatTemplate)}
        if not isinstance(data, dict) or set(data) - known or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"expected an object with text fields among {sorted(known)}")
        return ChatTemplate(**data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ChatError(f"{path} is not a chat template ({e}); fix it or delete it to use the default") from e


def save_chat_template(template: ChatTemplate, model_dir: str | Path) -> None:
    write_text_atomic(Path(model_dir) / TEMPLATE_FILE, json.dumps(template.to_dict(), indent=1) + "\n")
