"""Writes the OpenAPI 3.1 documents the worker serves from public/openapi/ (static assets, so the
Wasm bundle does not grow). The suite checks that the committed files equal this output and fuzzes
the running stack against them with Schemathesis (tests/e2e/test_openapi.py).

    .venv/bin/python scripts/openapi.py          # rewrite public/openapi/*.json
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "public" / "openapi"

RATE_HEADERS = {
    "RateLimit-Policy": {"description": "The key's limit (IETF draft-ietf-httpapi-ratelimit-headers), e.g. `120;w=60`.", "schema": {"type": "string"}},
    "RateLimit": {"description": "What is left now, e.g. `limit=120, remaining=119, reset=1`.", "schema": {"type": "string"}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}


# What a recipient may be, as the server checks it: international digits (7-15, optionally with
# `+`), or a JID. Local numbers with a leading zero are also taken (the app's country code), but
# the document keeps to the forms every account accepts.
PHONE = {"anyOf": [
    {"type": "string", "pattern": "^\\+?[1-9][0-9]{6,14}$"},
    {"type": "string", "pattern": "^[1-9][0-9]{6,14}@(s\\.whatsapp\\.net|c\\.us)$"},
], "description": "International digits (E.164 without `+`, a leading `+` is accepted) or a WhatsApp JID."}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict, description: str = "") -> dict:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


# ---------------------------------------------------------------------------------------------- SPWP

SPWP_ERRORS = {
    "400": ("VALIDATION_FAILED or MEDIA_FETCH_FAILED", None),
    "401": ("INVALID_API_KEY", None),
    "402": ("SUBSCRIPTION_SUSPENDED", None),
    "403": ("IP_NOT_ALLOWED", None),
    "409": ("ACCOUNT_NOT_CONNECTED", None),
    "422": ("IDEMPOTENCY_KEY_REUSED: the `Idempotency-Key` was used with another body", None),
    "429": ("RATE_LIMITED or QUOTA_EXCEEDED", RETRY_AFTER),
    "502": ("SEND_FAILED: the device bridge could not be reached", None),
}


def spwp_errors(*codes: str) -> dict:
    out = {}
    for code in codes:
        description, headers = SPWP_ERRORS[code]
        out[code] = json_body(ref("Error"), description)
        if headers:
            out[code]["headers"] = headers
    return out


def spwp_send(kind: str, body: dict, required: list[str], example: dict) -> dict:
    return {
        "post": {
            "operationId": f"send{kind.capitalize()}",
            "summary": f"Send a {kind} message",
            "tags": ["messages"],
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["to", *required],
                    "properties": {"to": PHONE, **body},
                }, "example": example}},
            },
            "responses": {
                "202": {**json_body(ref("MessageEnvelope"), "Accepted: queued for sending"), "headers": RATE_HEADERS},
                **spwp_errors("400", "401", "402", "403", "409", "422", "429", "502"),
            },
        }
    }


def media_body() -> dict:
    return {
        "source": {"type": "string", "minLength": 1, "description": "An https URL, or a `data:<mime>;base64,…` URL; at most 16 MB."},
        "caption": {"type": "string", "maxLength": 1024},
        "fileName": {"type": "string", "minLength": 1, "maxLength": 255},
        "mimeType": {"type": "string", "minLength": 3, "maxLength": 255},
    }


def spwp() -> dict:
    data_url = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    paths = {
        "/api/v1/public/messages/text": spwp_send("text", {"text": {"type": "string", "minLength": 1, "maxLength": 4096}}, ["text"], {"to": "6281234567890", "text": "Hi there!"}),
        "/api/v1/public/messages/image": spwp_send("image", media_body(), ["source"], {"to": "6281234567890", "source": data_url, "caption": "A pixel"}),
        "/api/v1/public/messages/video": spwp_send("video", media_body(), ["source"], {"to": "6281234567890", "source": "https://example.com/clip.mp4"}),
        "/api/v1/public/messages/audio": spwp_send("audio", media_body(), ["source"], {"to": "6281234567890", "source": "https://example.com/note.ogg"}),
        "/api/v1/public/messages/document": spwp_send("document", media_body(), ["source"], {"to": "6281234567890", "source": "https://example.com/a.pdf", "fileName": "a.pdf"}),
        "/api/v1/public/messages/location": spwp_send("location", {
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            "name": {"type": "string", "maxLength": 256},
            "address": {"type": "string", "maxLength": 512},
        }, ["latitude", "longitude"], {"to": "6281234567890", "latitude": -6.2, "longitude": 106.8, "name": "Monas"}),
        "/api/v1/public/messages/check-phone": {"post": {
            "operationId": "checkPhone", "summary": "Is a number on WhatsApp", "tags": ["messages"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["phone"],
                "properties": {"phone": PHONE}}}}},
            "responses": {
                "200": {**json_body({"type": "object", "required": ["data", "meta"], "properties": {
                    "data": {"type": "object", "required": ["phone", "exists"], "properties": {
                        "phone": {"type": "string"}, "exists": {"type": "boolean"},
                        "jid": {"type": ["string", "null"]}, "reason": {"type": "string", "enum": ["NOT_CONNECTED"]}}},
                    "meta": ref("Meta")}}, "The answer; an offline account says `reason: NOT_CONNECTED`"), "headers": RATE_HEADERS},
                **spwp_errors("400", "401", "402", "403", "429", "502"),
            },
        }},
        "/api/v1/public/messages/{id}": {"get": {
            "operationId": "getMessage", "summary": "A message and its status", "tags": ["messages"],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {**json_body(ref("MessageEnvelope")), "headers": RATE_HEADERS},
                "404": json_body(ref("Error"), "NOT_FOUND"),
                **spwp_errors("401", "402", "403", "429"),
            },
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wagate — SPWP dialect",
            "version": "1.0.0",
            "description": "Send WhatsApp messages from a linked account. Answers are wrapped in `{data, meta}`; errors carry `statusCode`, `code`, `message`, `details`, `path`, `timestamp`, `requestId`.",
        },
        "servers": [{"url": "http://127.0.0.1:8787", "description": "make run"}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "tags": [{"name": "messages"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "parameters": {"IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                "description": "Repeat a request safely: the same key and body within 24 h answer the first response.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}},
            "schemas": {
                "Meta": {"type": "object", "required": ["requestId", "timestamp"], "properties": {
                    "requestId": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"}}},
                "Message": {"type": "object", "required": ["id", "accountId", "direction", "type", "remoteJid", "status", "payload", "createdAt"], "properties": {
                    "id": {"type": "string"}, "accountId": {"type": "string"}, "direction": {"const": "OUT"},
                    "type": {"type": "string", "enum": ["TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT", "STICKER", "LOCATION", "REACTION"]},
                    "remoteJid": {"type": "string"},
                    "status": {"type": "string", "enum": ["QUEUED", "SENDING", "SENT", "DELIVERED", "READ", "FAILED"]},
                    "payload": {"type": "object"}, "externalId": {"type": "string"},
                    "errorCode": {"type": "string"}, "errorReason": {"type": "string"},
                    "createdAt": {"type": "string", "format": "date-time"}, "sentAt": {"type": "string", "format": "date-time"},
                    "deliveredAt": {"type": "string", "format": "date-time"}, "readAt": {"type": "string", "format": "date-time"},
                    "failedAt": {"type": "string", "format": "date-time"}}},
                "MessageEnvelope": {"type": "object", "required": ["data", "meta"], "properties": {"data": ref("Message"), "meta": ref("Meta")}},
                "Error": {"type": "object", "required": ["statusCode", "code", "message", "details", "path", "timestamp", "requestId"], "properties": {
                    "statusCode": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
                    "path": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"}, "requestId": {"type": "string"}}},
            },
        },
    }


DOCUMENTS = {"spwp": spwp}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in DOCUMENTS.items():
        (OUT / f"{name}.json").write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
