"""The AI SDK's UI messages → OpenAI chat messages, for the model server behind us.

``useChat`` posts the whole conversation as *UI messages*: ``{"id", "role", "parts": [...]}``
where a part is ``{"type": "text", "text": …}``, ``{"type": "reasoning", …}``,
``{"type": "file", "mediaType", "url"}``, ``{"type": "step-start"}`` and so on. A chat
completion wants ``{"role", "content"}``. What a model server can take is kept: the text
(joined, in order) and, in user messages, images as ``image_url`` content parts. Reasoning
and step markers are the model's own output and are not sent back to it; tool parts are not
translated (trio-streams proxies text generation, it does not run tools).
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


class UIMessageError(ValueError):
    """The posted messages are not UI messages; the message says which field is wrong."""


def chat_messages(ui_messages: object) -> list[dict[str, Any]]:
    """The chat completion ``messages`` for ``ui_messages`` (raises :class:`UIMessageError`).

    A message with nothing left to send (only reasoning, say) is dropped rather than sent
    empty.
    """
    if not isinstance(ui_messages, list) or not ui_messages:
        raise UIMessageError("'messages' must be a non-empty array of UI messages")
    converted = []
    for index, message in enumerate(ui_messages):
        if not isinstance(message, dict):
            raise UIMessageError(f"'messages[{index}]' must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise UIMessageError(f"'messages[{index}].role' must be one of {', '.join(ROLES)}")
        content = _content(message, index, images=role == "user")
        if content:
            converted.append({"role": role, "content": content})
    if not converted:
        raise UIMessageError("'messages' has no text to send")
    return converted


def _content(message: dict[str, Any], index: int, *, images: bool) -> str | list[dict[str, Any]]:
    parts = message.get("parts")
    if not isinstance(parts, list):
        raise UIMessageError(f"'messages[{index}].parts' must be an array")
    texts: list[str] = []
    pictures: list[dict[str, Any]] = []
    for number, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise UIMessageError(f"'messages[{index}].parts[{number}]' must be a typed part")
        if part["type"] == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise UIMessageError(f"'messages[{index}].parts[{number}].text' must be a string")
            texts.append(text)
        elif images and part["type"] == "file" and _is_image(part):
            pictures.append({"type": "image_url", "image_url": {"url": part["url"]}})
    text = "".join(texts)
    if not pictures:
        return text
    return ([{"type": "text", "text": text}] if text else []) + pictures


def _is_image(part: dict[str, Any]) -> bool:
    media_type = part.get("mediaType")
    return (
        isinstance(media_type, str)
        and media_type.startswith("image/")
        and isinstance(part.get("url"), str)
    )
