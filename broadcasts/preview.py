"""What a resident's LINE roughly shows for LINE message objects: items for the admin's chat preview.

It reads the rendered LINE messages (compose.line_messages), not the composer's data, so the
preview shows what is really sent. Flex is summarised per bubble (image, texts, button labels).
"""

from __future__ import annotations


def _flex_walk(node, card: dict) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "image" and node.get("url"):
            card["images"].append(node["url"])
        elif kind == "text":
            text = node.get("text") or "".join(span.get("text", "") for span in node.get("contents") or [])
            card["texts"].append(text)
        elif kind == "button":
            card["buttons"].append((node.get("action") or {}).get("label", ""))
            return
        for key in ("hero", "header", "body", "footer", "contents"):
            child = node.get(key)
            if isinstance(child, list):
                for each in child:
                    _flex_walk(each, card)
            elif isinstance(child, dict):
                _flex_walk(child, card)


def _bubble_card(bubble: dict) -> dict:
    card = {"images": [], "texts": [], "buttons": []}
    _flex_walk(bubble, card)
    return {
        "image": card["images"][0] if card["images"] else "",
        "title": card["texts"][0] if card["texts"] else "",
        "texts": card["texts"][1:],
        "buttons": card["buttons"],
    }


def preview_items(line_messages: list[dict]) -> list[dict]:
    items = []
    for message in line_messages:
        kind = message.get("type")
        if kind == "text":
            items.append({"kind": "text", "text": message["text"]})
        elif kind == "image":
            items.append({"kind": "image", "url": message["previewImageUrl"]})
        elif kind == "template":
            template = message["template"]
            card = {
                "image": "",
                "title": template.get("title", ""),
                "texts": [template.get("text", "")],
                "buttons": [action.get("label", "") for action in template.get("actions", [])],
            }
            items.append({"kind": "cards", "cards": [card], "confirm": template.get("type") == "confirm"})
        elif kind == "flex":
            contents = message["contents"]
            bubbles = contents.get("contents", []) if contents.get("type") == "carousel" else [contents]
            items.append({"kind": "cards", "cards": [_bubble_card(bubble) for bubble in bubbles], "confirm": False})
    return items
