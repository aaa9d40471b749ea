"""Small spec dictionaries for service and integration tests."""


def simple_spec_data(prefix="TEST", keywords=("テスト",)) -> dict:
    return {
        "name": "テスト手続き",
        "description": "",
        "keywords": list(keywords),
        "receipt_prefix": prefix,
        "steps": [
            {"key": "kind", "kind": "single_choice", "label": "種類を選んでください", "choices": [
                {"value": "a", "label": "A", "amount": 100},
                {"value": "b", "label": "B", "amount": 200},
            ]},
            {"key": "copies", "kind": "number", "label": "通数", "options": {"min": 1, "max": 10, "unit": "通"}},
            {"key": "reason", "kind": "long_text", "label": "理由", "condition": {"step": "kind", "op": "equals", "value": "b"}},
            {"key": "phone", "kind": "short_text", "label": "電話番号", "sensitive": True, "options": {"format": "phone"}},
            {"key": "confirm", "kind": "confirmation", "label": "内容を確認してください"},
            {"key": "done", "kind": "completion", "label": "受け付けました"},
        ],
        "computed": [{"key": "fee", "label": "手数料", "unit": "円", "terms": [{"step": "copies", "factor": 300}]}],
    }


def template_bytes(data: dict) -> bytes:
    import json

    return json.dumps({"format": "govtech.procedure", "format_version": 1, "procedure": data}, ensure_ascii=False).encode()
