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


def optional(schema: dict) -> dict:
    """An optional field may also be sent as null, which means absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def request_body(properties: dict, required: list[str], body_required: bool = True) -> dict:
    """A JSON object body; its optional fields may be null."""
    return {"required": body_required, "content": {"application/json": {"schema": {
        "type": "object", "required": required,
        "properties": {k: v if k in required else optional(v) for k, v in properties.items()}}}}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict, description: str = "") -> dict:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


# ---------------------------------------------------------------------------------------------- SPWP

SPWP_ERRORS = {
    "400": ("VALIDATION_FAILED", None),
    "401": ("INVALID_API_KEY", None),
    "402": ("SUBSCRIPTION_SUSPENDED", None),
    "403": ("IP_NOT_ALLOWED", None),
    "409": ("ACCOUNT_NOT_CONNECTED, or IDEMPOTENCY_KEY_IN_USE: the first request with this `Idempotency-Key` is still being handled", None),
    "422": ("IDEMPOTENCY_KEY_REUSED: the `Idempotency-Key` was used with another body", None),
    "413": ("PAYLOAD_TOO_LARGE: the body is larger than this route accepts (24 MiB for files, 256 KiB otherwise), refused before it is read", None),
    "429": ("RATE_LIMITED or QUOTA_EXCEEDED", RETRY_AFTER),
    "502": ("SEND_FAILED: the device bridge could not be reached (to store a file, or to ask WhatsApp)", None),
}


def spwp_errors(*codes: str) -> dict:
    out = {}
    for code in codes:
        description, headers = SPWP_ERRORS[code]
        out[code] = json_body(ref("Error"), description)
        if headers:
            out[code]["headers"] = headers
    return out


def with_example(body: dict, example: dict) -> dict:
    body["content"]["application/json"]["example"] = example
    return body


def spwp_send(kind: str, body: dict, required: list[str], example: dict) -> dict:
    """Text and locations are only queued; a file is first fetched and stored at the bridge."""
    media = "source" in body
    errors = spwp_errors("400", "401", "402", "403", "409", "413", "422", "429", *(("502",) if media else ()))
    if media:
        errors["400"]["description"] = "VALIDATION_FAILED, or MEDIA_FETCH_FAILED: the source could not be fetched or is not the file it claims to be"
    return {
        "post": {
            "operationId": f"send{kind.capitalize()}",
            "summary": f"Send a {kind} message",
            "tags": ["messages"],
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": with_example(request_body({"to": PHONE, **body}, ["to", *required]), example),
            "responses": {
                "202": {**json_body(ref("MessageEnvelope"), "Accepted: queued for sending"), "headers": RATE_HEADERS},
                **errors,
            },
        }
    }


def media_body() -> dict:
    return {
        "source": {"type": "string", "minLength": 1, "description": "An https URL on a public host (fetched once the send is accepted, redirects not followed, within `MEDIA_FETCH_TIMEOUT_S`), or a `data:<mime>;base64,…` URL; at most 16 MB."},
        "caption": {"type": "string", "maxLength": 1024},
        "fileName": {"type": "string", "minLength": 1, "maxLength": 255},
        "mimeType": {"type": "string", "minLength": 3, "maxLength": 255},
    }


MESSAGE_TYPE = {"type": "string", "enum": ["TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT", "STICKER", "LOCATION", "REACTION"]}
PARTICIPANT = {"type": "string", "description": "wagate's addition: in a group message, the JID of the member who wrote it (`…@s.whatsapp.net`); `remoteJid` is the group's (`…@g.us`)."}
# The SPWP names an endpoint's `events` filter takes besides LoginWA's (each stands for the events it is sent for).
SPWP_EVENT_NAMES = ["MESSAGE_RECEIVED", "MESSAGE_STATUS", "ACCOUNT_CONNECTED", "ACCOUNT_DISCONNECTED"]


def spwp_event_schemas() -> dict:
    """The bodies a `format: spwp` webhook endpoint receives."""
    def envelope(name: str, data: dict, account: str = "The WhatsApp account it concerns.") -> dict:
        return {"type": "object", "required": ["event", "accountId", "occurredAt", "data"], "properties": {
            "event": {"const": name}, "accountId": {"type": ["string", "null"], "description": account},
            "occurredAt": {"type": "string", "format": "date-time"}, "data": data}}
    date = {"type": "string", "format": "date-time"}
    account = {"type": "object", "required": ["status", "phoneNumber", "reason"], "properties": {
        "status": {"type": "string"}, "phoneNumber": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]}}}
    return {
        "MessageReceivedEvent": envelope("MESSAGE_RECEIVED", {"type": "object", "required": ["id", "direction", "type", "remoteJid", "externalId", "status", "payload"], "properties": {
            "id": {"type": "string", "description": "Looked up by `GET /api/v1/public/messages/{id}`."}, "direction": {"const": "IN"}, "type": MESSAGE_TYPE,
            "remoteJid": {"type": "string"}, "participant": PARTICIPANT, "externalId": {"type": "string"},
            "status": {"const": "RECEIVED"}, "payload": ref("Payload")}}),
        "MessageStatusEvent": envelope("MESSAGE_STATUS", {"type": "object", "required": ["id", "status"], "properties": {
            "id": {"type": "string"}, "externalId": {"type": "string"}, "status": {"type": "string", "enum": ["SENT", "DELIVERED", "READ", "FAILED"]},
            "sentAt": date, "deliveredAt": date, "readAt": date,
            "errorCode": {"type": "string", "description": "FAILED only."}, "errorReason": {"type": "string", "description": "FAILED only."}}}),
        "AccountConnectedEvent": envelope("ACCOUNT_CONNECTED", account),
        "AccountDisconnectedEvent": envelope("ACCOUNT_DISCONNECTED", account),
        "WebhookTestEvent": envelope("WEBHOOK_TEST", {"type": "object", "required": ["webhookId", "message"], "properties": {
            "webhookId": {"type": "string"}, "message": {"type": "string"}}}, "The account the endpoint is limited to, if any."),
    }


def spwp_webhooks() -> dict:
    headers = {name: {"in": "header", "name": name, "required": True, "schema": {"type": "string"}} for name in ("X-WA-Event", "X-WA-Delivery-Id", "X-WA-Timestamp", "X-WA-Signature")}
    said = {
        "MESSAGE_RECEIVED": ("MessageReceivedEvent", "An inbound message arrived (text, media, location, reaction)."),
        "MESSAGE_STATUS": ("MessageStatusEvent", "A message you sent moved on: SENT → DELIVERED → READ, or FAILED."),
        "ACCOUNT_CONNECTED": ("AccountConnectedEvent", "The account paired and is online."),
        "ACCOUNT_DISCONNECTED": ("AccountDisconnectedEvent", "The account went offline; `reason` says why when known."),
        "WEBHOOK_TEST": ("WebhookTestEvent", "wagate's addition: what `POST /api/v1/webhooks/{id}/test` sends to an `spwp` endpoint."),
    }
    return {name: {"post": {
        "operationId": f"webhook{''.join(w.title() for w in name.split('_'))}", "summary": summary,
        "description": "Signed `X-WA-Signature: t=<X-WA-Timestamp>,v1=<hex HMAC-SHA256 of \"<X-WA-Timestamp>.<raw body>\">`.",
        "parameters": list(headers.values()),
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(schema)}}},
        "responses": {"200": {"description": "Any 2xx acknowledges the delivery"}}}} for name, (schema, summary) in said.items()}


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
            "requestBody": request_body({"phone": PHONE}, ["phone"]),
            "responses": {
                "200": {**json_body({"type": "object", "required": ["data", "meta"], "properties": {
                    "data": {"type": "object", "required": ["phone", "exists"], "properties": {
                        "phone": {"type": "string"}, "exists": {"type": "boolean"},
                        "jid": {"type": ["string", "null"]}, "reason": {"type": "string", "enum": ["NOT_CONNECTED"]}}},
                    "meta": ref("Meta")}}, "The answer; an offline account says `reason: NOT_CONNECTED`"), "headers": RATE_HEADERS},
                **spwp_errors("400", "401", "402", "403", "413", "429", "502"),
            },
        }},
        "/api/v1/public/messages/{id}": {"get": {
            "operationId": "getMessage", "summary": "A message sent or received, and its status", "tags": ["messages"],
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
        "security": [{"apiKey": []}],
        "tags": [{"name": "messages"}],
        "paths": paths,
        "webhooks": spwp_webhooks(),
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "The app's key (`wg_live_…`). `Authorization: Bearer <key>` is accepted too."},
            },
            "parameters": {"IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                "description": "Repeat a request safely: the same key and body within 24 h answer the first response.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}},
            "schemas": {
                "Meta": {"type": "object", "required": ["requestId", "timestamp"], "properties": {
                    "requestId": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"}}},
                "Message": {"type": "object", "required": ["id", "accountId", "direction", "type", "remoteJid", "status", "payload", "createdAt"],
                    "description": "A message the account sent (`OUT`) or received (`IN`, status `RECEIVED`, looked up by the id its `MESSAGE_RECEIVED` webhook carried; only by the app that received it).",
                    "properties": {
                    "id": {"type": "string"}, "accountId": {"type": "string"}, "direction": {"type": "string", "enum": ["IN", "OUT"]},
                    "type": MESSAGE_TYPE,
                    "remoteJid": {"type": "string", "description": "The chat: the recipient, or the sender (a group's JID for a group message)."},
                    "participant": PARTICIPANT,
                    "status": {"type": "string", "enum": ["QUEUED", "SENDING", "SENT", "DELIVERED", "READ", "FAILED", "RECEIVED"]},
                    "payload": ref("Payload"), "externalId": {"type": "string"},
                    "errorCode": {"type": "string"}, "errorReason": {"type": "string"},
                    "createdAt": {"type": "string", "format": "date-time"}, "sentAt": {"type": "string", "format": "date-time"},
                    "deliveredAt": {"type": "string", "format": "date-time"}, "readAt": {"type": "string", "format": "date-time"},
                    "failedAt": {"type": "string", "format": "date-time"}}},
                "MessageEnvelope": {"type": "object", "required": ["data", "meta"], "properties": {"data": ref("Message"), "meta": ref("Meta")}},
                "Payload": {"description": "What the message carries, by `type`; lookups and `MESSAGE_RECEIVED` show the same shape.", "anyOf": [
                    {"title": "TEXT", "type": "object", "required": ["text"], "additionalProperties": False, "properties": {"text": {"type": "string"}}},
                    {"title": "IMAGE, VIDEO, AUDIO, DOCUMENT, STICKER", "type": "object", "required": ["mimeType", "size", "sha256"], "properties": {
                        "mimeType": {"type": "string"}, "size": {"type": "integer"}, "sha256": {"type": "string"},
                        "caption": {"type": "string"}, "fileName": {"type": "string"},
                        "mediaUrl": {"type": "string", "description": "`MESSAGE_RECEIVED` only: a time-limited link to the received file."}}},
                    {"title": "LOCATION", "type": "object", "required": ["latitude", "longitude"], "properties": {
                        "latitude": {"type": "number"}, "longitude": {"type": "number"}, "name": {"type": "string"}, "address": {"type": "string"}}},
                    {"title": "REACTION", "type": "object", "required": ["targetExternalId", "emoji"], "properties": {
                        "targetExternalId": {"type": "string"}, "emoji": {"type": "string", "description": "Empty: the reaction was removed."}}}]},
                **spwp_event_schemas(),
                "Error": {"type": "object", "required": ["statusCode", "code", "message", "details", "path", "timestamp", "requestId"], "properties": {
                    "statusCode": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
                    "path": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"}, "requestId": {"type": "string"}}},
            },
        },
    }



# ------------------------------------------------------------------------------------------ LoginWA

def lw_error(description: str, extra: dict | None = None) -> dict:
    return json_body(ref("Error"), description) | ({"headers": extra} if extra else {})


LW_ERRORS = {
    "401": lw_error("unauthorized: missing, unknown, revoked or expired key (429 after too many from one address)"),
    "402": lw_error("subscription_suspended"),
    "403": lw_error("ip_not_allowed (\"Your IP address is not whitelisted for this API key.\", with `ip`), key_scoped_to_device (the key acts for one device; this is app-wide), or a plan limit such as device_limit_reached"),
    "404": lw_error("not_found"),
    "405": lw_error("method_not_allowed (with an `Allow` header)"),
    "409": lw_error("conflict: the resource is not in a state that allows this"),
    "413": lw_error("payload_too_large: the body is larger than this route accepts (`max_bytes`), refused before it is read"),
    "422": lw_error("validation_failed: `errors` lists the messages per field"),
    "429": lw_error("rate_limited or quota_exceeded", RETRY_AFTER),
    "502": lw_error("send_failed: the device bridge could not be reached"),
    "503": lw_error("no_device_available / no_device_connected"),
}


# LoginWA answers a send with WhatsApp's outcome (the reference: 200 once sent, 502 send_failed).
SEND_WAIT = ("The answer waits, up to the server's `SEND_WAIT_MS` (default 10 s), for WhatsApp to take or refuse the message: "
             "200 once it is sent, 502 `send_failed` if WhatsApp refused it. A message still queued at that bound, or while its "
             "device is offline, is answered 200 as accepted and carries on; its outcome follows as `message.sent` / `message.failed` webhooks.")
SEND_REFUSED = ("send_failed: WhatsApp refused the message (a number not on WhatsApp, an engine error). `message_id`, `error_code` and "
                "`error_reason` say which and why, as the message log does; its quota unit is given back.")

# Who may call an operation, as the generic errors it can answer: an API key (checked against the
# IP allow-list), a key on the allow-list's own endpoints (exempt, so a client can mend its list),
# or a signed link that is its own credential (no key, no rate limit).
KEY = ("401", "402", "403", "429")
KEY_ANY_IP = ("401", "402", "429")
LINK = ()


def lw(op_id: str, summary: str, tag: str, ok: tuple[str, dict], *errors: str, body: dict | None = None,
       required: list[str] | None = None, params: list[dict] | None = None, description: str = "",
       body_required: bool = True, access: tuple[str, ...] = KEY, said: dict[str, str] | None = None) -> dict:
    """`said` words an error for this operation where the generic description would not name its code."""
    code, schema = ok
    success = schema if "content" in schema else json_body(schema)  # a file rather than JSON
    if access:
        success = {**success, "headers": RATE_HEADERS}
    responses = {code: success, **{e: LW_ERRORS[e] for e in (*access, *errors, *(("413",) if body is not None else ()))}}
    for status, text in (said or {}).items():
        responses[status] = {**responses[status], "description": text}
    operation = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if not access:
        operation["security"] = []
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = request_body(body, required or [], body_required)
    return operation


def file_body(mime: str, description: str) -> dict:
    return {"description": description, "content": {mime: {"schema": {"type": "string", "contentMediaType": mime}}}}


def path_id(name: str, pattern: str | None = None) -> dict:
    schema = {"type": "string"} | ({"pattern": pattern} if pattern else {})
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema}


OBJ = {"type": "object"}
NULLABLE_STR = {"type": ["string", "null"]}
DATE = {"type": "string", "format": "date-time"}
NULLABLE_DATE = {"type": ["string", "null"], "format": "date-time"}
# LoginWA's reference prints whole seconds: `Z` for OTP and campaign times, `+00:00` for devices and webhooks.
SECONDS_Z = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
SECONDS_OFFSET = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\+00:00$"
DATE_Z = DATE | {"pattern": SECONDS_Z, "examples": ["2026-06-01T12:00:00Z"]}
NULLABLE_DATE_Z = NULLABLE_DATE | {"pattern": SECONDS_Z, "examples": ["2026-06-01T12:00:00Z"]}
DATE_OFFSET = DATE | {"pattern": SECONDS_OFFSET, "examples": ["2026-06-01T10:00:00+00:00"]}
NULLABLE_DATE_OFFSET = NULLABLE_DATE | {"pattern": SECONDS_OFFSET, "examples": ["2026-06-01T10:00:00+00:00"]}
SUCCESS = {"type": "object", "required": ["success"], "properties": {"success": {"const": True}}}
EVENT_NAMES = ["message.incoming", "message.sent", "message.delivered", "message.read", "message.failed",
               "device.connected", "device.disconnected", "device.qr_ready", "otp.verified", "otp.expired",
               "campaign.paused", "campaign.completed"]


def wrapped(schema: dict) -> dict:
    return {"type": "object", "required": ["success", "data"], "properties": {"success": {"const": True}, "data": schema}}


def loginwa() -> dict:
    device = {"type": "object", "required": ["id", "status", "is_online", "created_at"], "properties": {
        "id": {"type": "string"}, "engine_device_id": {"type": "string"}, "label": NULLABLE_STR,
        "status": {"type": "string", "enum": ["registering", "qr_waiting", "online", "offline"]},
        "phone_number": NULLABLE_STR, "is_online": {"type": "boolean"}, "qr_code": NULLABLE_STR,
        "pair_code": NULLABLE_STR, "disconnect_reason": NULLABLE_STR, "last_seen_at": NULLABLE_DATE_OFFSET, "created_at": DATE_OFFSET}}
    pairing = {"type": "object", "required": ["device_id", "status", "qr_status_url"], "properties": {
        "device_id": {"type": "string"}, "engine_device_id": {"type": "string"}, "label": NULLABLE_STR,
        "status": {"type": "string"}, "qr_code": NULLABLE_STR, "pair_code": NULLABLE_STR, "job_id": {"type": "string"},
        "qr_status_url": {"type": "string"}, "message": {"type": "string"}}}
    webhook = {"type": "object", "required": ["id", "url", "events", "format", "active", "retry_count", "health"], "properties": {
        "id": {"type": "string"}, "url": {"type": "string"}, "events": {"type": "array", "items": {"type": "string"}},
        "format": {"type": "string", "enum": ["loginwa", "spwp", "standard"]}, "device_id": NULLABLE_STR,
        "retry_count": {"type": "integer"}, "active": {"type": "boolean"}, "disabled_reason": NULLABLE_STR,
        "created_at": DATE_OFFSET, "secret": {"type": "string", "description": "Only when created."}, "health": OBJ}}
    rule = {"type": "object", "required": ["id", "match", "pattern", "reply", "active", "priority", "hits"], "properties": {
        "id": {"type": "string"}, "match": {"type": "string", "enum": ["exact", "contains", "regex"]},
        "pattern": {"type": "string"}, "reply": {"type": "string"}, "device_id": NULLABLE_STR,
        "active": {"type": "boolean"}, "priority": {"type": "integer"}, "hits": {"type": "integer"},
        "last_matched_at": NULLABLE_DATE, "created_at": DATE, "updated_at": DATE}}
    campaign = {"type": "object", "required": ["id", "name", "status", "total_contacts", "progress", "estimated_duration"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"},
        "status": {"type": "string", "enum": ["draft", "queued", "sending", "paused", "completed", "failed"]},
        "pause_reason": NULLABLE_STR, "waiting": {"type": ["object", "null"]}, "total_contacts": {"type": "integer"},
        "progress": {"type": "object", "required": ["total", "sent", "delivered", "failed", "pending", "percentage"], "properties": {
            "total": {"type": "integer"}, "sent": {"type": "integer"}, "delivered": {"type": "integer"},
            "failed": {"type": "integer"}, "pending": {"type": "integer"}, "percentage": {"type": "number"}}},
        "estimated_duration": {"type": "string"}, "delay_seconds": {"type": "integer"}, "schedule_at": NULLABLE_DATE_Z,
        "media": {"type": ["object", "null"]}, "device_ids": {"type": "array"}, "created_at": DATE_Z,
        "started_at": NULLABLE_DATE_Z, "completed_at": NULLABLE_DATE_Z}}
    page_of = lambda item: {"type": "object", "required": ["current_page", "data", "per_page", "total", "last_page"], "properties": {
        "current_page": {"type": "integer"}, "data": {"type": "array", "items": item}, "per_page": {"type": "integer"},
        "total": {"type": "integer"}, "last_page": {"type": "integer"}}}
    allow_list = {"type": "object", "required": ["restriction_enabled", "count", "ips"], "properties": {
        "restriction_enabled": {"type": "boolean"}, "count": {"type": "integer"}, "ips": {"type": "array", "items": OBJ}}}
    device_id = path_id("id")
    link_token = query("token", {"type": "string", "minLength": 1}, True)
    link_view = {"type": "object", "required": ["device_id", "status", "connected", "has_qr"], "properties": {
        "device_id": {"type": "string"}, "label": NULLABLE_STR, "status": {"type": "string"}, "connected": {"type": "boolean"},
        "phone_number": NULLABLE_STR, "has_qr": {"type": "boolean"}, "qr_code": NULLABLE_STR, "pair_code": NULLABLE_STR}}
    link_said = {"403": "invalid_link: the token is not this device's, or has expired", "404": "not_found",
                 "422": "validation_failed: the `token` query parameter is missing"}
    webhook_id = path_id("id")
    phone_or_jid = {"anyOf": [
        {"type": "string", "pattern": "^\\+?[1-9][0-9]{9,14}$"},
        {"type": "string", "pattern": "^[1-9][0-9]{6,14}@(s\\.whatsapp\\.net|c\\.us)$"}]}
    e164 = {"type": "string", "pattern": "^\\+?[1-9][0-9]{6,14}$"}
    country_code = {"type": "string", "pattern": "^\\+?[1-9][0-9]{0,3}$", "examples": ["62", "+62"], "description":
        "Default country code if not in `phone`: a national number takes it (`81234567890` with `62` is `6281234567890`), "
        "a leading 0 is replaced by it. A `phone` written internationally (`+…`, `00…`, a JID), already beginning with "
        "this code, or too long to be national (with the code it would pass 15 digits) is left as it is; write any other "
        "number of another country with `+`. Without it, only a leading-0 number is completed, with the app's `default_country_code`."}
    webhook_body = {
        "url": {"type": "string", "format": "iri", "pattern": "^https?://", "maxLength": 2048},
        "events": {"type": "array", "description": "LoginWA event names; SPWP's (`MESSAGE_RECEIVED`, `MESSAGE_STATUS`, `ACCOUNT_CONNECTED`, `ACCOUNT_DISCONNECTED`) are taken too and stored as the events they stand for. Empty: every event.",
                   "items": {"type": "string", "enum": EVENT_NAMES + SPWP_EVENT_NAMES}},
        "secret": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Any non-blank secret of your choosing; one is generated when omitted."},
        "retry_count": {"type": "integer", "minimum": 0, "maximum": 10},
        "format": {"type": "string", "enum": ["loginwa", "spwp", "standard"]},
        "device_id": {"type": "string", "pattern": "^dev_[0-9a-f]{16}$"},
    }
    webhook_patch = {k: v for k, v in webhook_body.items() if k in ("url", "events", "secret", "retry_count")} | {"active": {"type": "boolean"}}
    secret_change = ("A `loginwa` endpoint signs with the new secret at once: `X-LoginWA-Signature` carries one hex HMAC, "
                     "so there is no room for the old one's. `spwp` and `standard` endpoints, whose headers carry a signature per secret, "
                     "are signed with the old secret too for 24 h.")
    rule_body = {
        "match": {"type": "string", "enum": ["exact", "contains", "regex"]},
        "pattern": {"type": "string", "minLength": 1, "maxLength": 500},
        "reply": {"type": "string", "minLength": 1, "maxLength": 4096},
        "device_id": {"type": "string", "pattern": "^dev_[0-9a-f]{16}$"},
        "active": {"type": "boolean"}, "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
    }
    paths = {
        "/api/auth/start": {"post": lw("startOtp", "Send a one-time code", "otp", ("200", {"type": "object", "required": ["session_id", "expires_in", "debug_code"], "properties": {
            "session_id": {"type": "string"}, "expires_in": {"type": "integer"}, "debug_code": NULLABLE_STR}}), "422", "502", "503",
            said={"502": SEND_REFUSED + " The session is ended: it cannot be verified."},
            body={"phone": e164, "country_code": country_code,
                  "otp_length": {"type": "integer", "minimum": 4, "maximum": 8},
                  "message_template": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": "\\{code\\}"}, "meta": OBJ},
            required=["phone"], description="The code goes out over WhatsApp ahead of other traffic. `debug_code` is null in production. " + SEND_WAIT)},
        "/api/auth/verify": {"post": lw("verifyOtp", "Check a one-time code", "otp", ("200", {"type": "object", "required": ["status"], "properties": {
            "status": {"const": "verified"}, "phone_number": {"type": "string"}, "verified_at": NULLABLE_DATE_Z}}), "422",
            body={"session_id": {"type": "string", "minLength": 1, "maxLength": 64}, "otp_code": {"type": "string", "minLength": 1, "maxLength": 16}},
            required=["session_id", "otp_code"], description="422 with `status` invalid_code (and `attempts_remaining`), expired or max_attempts.",
            said={"422": "validation_failed, or the code is not accepted: invalid_code (with `attempts_remaining`), expired or max_attempts"})},
        "/api/v1/messages/send": {"post": lw("sendMessage", "Send a text message", "messages", ("200", {"type": "object", "required": ["success", "message_id", "trace_id", "device_id", "phone", "quota_remaining"], "properties": {
            "success": {"const": True}, "message_id": {"type": "string"}, "trace_id": {"type": "string"}, "device_id": {"type": "string"},
            "phone": {"type": "string"}, "quota_remaining": {"type": "integer"}}}), "404", "409", "422", "502", "503",
            said={"409": "idempotency_key_in_use: the first request with this `Idempotency-Key` is still being handled; retry once it has answered",
                  "502": SEND_REFUSED + " Replayed as it is under the same `Idempotency-Key`; a new key sends again."},
            description=SEND_WAIT,
            body={"phone": phone_or_jid, "country_code": country_code, "message": {"type": "string", "minLength": 1, "maxLength": 4096},
                  "device_id": {"type": "string", "pattern": "^dev_[0-9a-f]{16}$"}, "meta": OBJ},
            required=["phone", "message"], params=[{"$ref": "#/components/parameters/IdempotencyKey"}])},
        "/api/v1/devices": {
            "get": lw("listDevices", "List devices", "devices", ("200", {"type": "object", "required": ["devices", "count"], "properties": {
                "devices": {"type": "array", "items": device}, "count": {"type": "integer"}}})),
            "post": lw("createDevice", "Register a device and start pairing", "devices", ("202", pairing), "422",
                       body={"label": {"type": "string", "maxLength": 100}, "pair_phone": e164}, body_required=False,
                       description="Pairs by QR, or by an 8-character code when `pair_phone` is given. If the bridge cannot be reached the device is still created, and pairing starts when it can be."),
        },
        "/api/v1/devices/{id}": {
            "get": lw("getDevice", "A device, with its QR while waiting for a scan", "devices", ("200", device), "404", params=[device_id]),
            "delete": lw("deleteDevice", "Disconnect and remove a device", "devices", ("200", SUCCESS), "404", "502", params=[device_id]),
        },
        "/api/v1/devices/{id}/refresh-qr": {"post": lw("refreshQr", "A fresh QR code", "devices", ("202", pairing), "404", "409", "502", params=[device_id])},
        "/api/v1/devices/{id}/link-token": {"post": lw("linkToken", "A short-lived link to a pairing page that needs no API key", "devices", ("201", {"type": "object", "required": ["token", "url", "expires_at"], "properties": {
            "device_id": {"type": "string"}, "token": {"type": "string"}, "url": {"type": "string"}, "expires_at": DATE}}), "404", params=[device_id])},
        "/api/v1/devices/{id}/qr.svg": {"get": lw("deviceQrSvg", "The QR code to scan, as SVG", "devices", ("200", file_body("image/svg+xml", "The QR code")), "404", "409",
            params=[device_id], said={"409": "conflict: the device is not waiting for a scan"})},
        "/api/v1/devices/{id}/qr.png": {"get": lw("deviceQrPng", "The QR code to scan, as PNG", "devices", ("200", file_body("image/png", "The QR code")), "404", "409",
            params=[device_id], said={"409": "conflict: the device is not waiting for a scan"})},
        "/api/v1/link/{id}": {"get": lw("linkStatus", "What the linking page shows: QR, pair code, connected", "link page", ("200", link_view), "403", "404", "422",
            params=[device_id, link_token], access=LINK, said=link_said,
            description="The signed token from `POST /api/v1/devices/{id}/link-token` is the credential; no API key.")},
        "/api/v1/link/{id}/qr.svg": {"get": lw("linkQr", "The current QR code, as SVG", "link page", ("200", file_body("image/svg+xml", "The QR code")), "403", "404", "409", "422",
            params=[device_id, link_token], access=LINK, said=link_said | {"409": "conflict: there is no QR code to scan now"})},
        "/api/v1/link/{id}/pair-code": {"post": lw("linkPairCode", "Pair by an 8-character code instead of the QR", "link page", ("200", link_view), "403", "404", "409", "422", "502",
            params=[device_id, link_token], access=LINK, said=link_said | {"409": "conflict: the device is already connected"},
            body={"phone": e164}, required=["phone"])},
        "/api/v1/media/{sha256}": {"get": lw("downloadMedia", "An inbound message's file, by the signed link its webhook carried", "media",
            ("200", file_body("application/octet-stream", "The file, as an attachment, with the type named by `mime`")), "403", "404", "422", "502",
            params=[path_id("sha256", "^[0-9a-f]{64}$"), query("mime", {"type": "string"}, True), query("expires", {"type": "integer", "minimum": 0, "maximum": 9007199254740991, "description": "Unix seconds"}, True),
                    query("signature", {"type": "string"}, True)],
            access=LINK, said={"403": "invalid_link: the signature does not match or the link has expired", "404": "not_found: the bridge no longer holds the file",
                               "422": "validation_failed: `mime`, `expires` or `signature` is missing", "502": "send_failed: the device bridge could not be reached"})},
        "/api/v1/webhooks": {
            "get": lw("listWebhooks", "Webhook endpoints and the events they may subscribe to", "webhooks", ("200", {"type": "object", "required": ["webhooks", "available_events"], "properties": {
                "webhooks": {"type": "array", "items": webhook}, "available_events": {"type": "array", "items": {"type": "string"}}}})),
            "post": lw("createWebhook", "Register an endpoint (at most 5); the secret is shown once", "webhooks", ("201", webhook), "422", body=webhook_body, required=["url"]),
        },
        "/api/v1/webhooks/{id}": {
            "get": lw("getWebhook", "An endpoint and its delivery health", "webhooks", ("200", webhook), "404", params=[webhook_id]),
            "put": lw("replaceWebhook", "Change an endpoint (as PATCH does)", "webhooks", ("200", webhook), "404", "422", params=[webhook_id],
                      body=webhook_patch, body_required=False, description=secret_change),
            "patch": lw("updateWebhook", "Change an endpoint", "webhooks", ("200", webhook), "404", "422", params=[webhook_id],
                        body=webhook_patch, body_required=False, description=secret_change),
            "delete": lw("deleteWebhook", "Remove an endpoint", "webhooks", ("200", SUCCESS), "404", params=[webhook_id]),
        },
        "/api/v1/webhooks/{id}/test": {"post": lw("testWebhook", "Send a signed webhook.test (to an `spwp` endpoint: an SPWP `WEBHOOK_TEST` event)", "webhooks", ("200", SUCCESS), "404", params=[webhook_id])},
        "/api/v1/webhooks/{id}/regenerate-secret": {"post": lw("regenerateSecret", "A new signing secret", "webhooks", ("200", {"type": "object", "required": ["id", "secret", "previous_secret_valid_until"], "properties": {
            "id": {"type": "string"}, "secret": {"type": "string"}, "previous_secret_valid_until": NULLABLE_DATE_OFFSET}}), "404", params=[webhook_id],
            description=secret_change + " `previous_secret_valid_until` says until when the old one signs (null: it has stopped).")},
        "/api/v1/webhooks/{id}/deliveries": {"get": lw("listDeliveries", "Deliveries, newest first", "webhooks", ("200", {"type": "object", "required": ["deliveries"], "properties": {
            "deliveries": {"type": "array", "items": OBJ}}}), "404", "422", params=[webhook_id, query("status", {"type": "string", "enum": ["pending", "succeeded", "failed"]})])},
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay": {"post": lw("replayDelivery", "Send one delivery again, same id and body", "webhooks", ("200", SUCCESS), "404", params=[webhook_id, path_id("delivery_id")])},
        "/api/v1/webhooks/{id}/replay": {"post": lw("replayFailed", "Send every failed delivery since a time again", "webhooks", ("200", SUCCESS), "404", "422", params=[webhook_id],
            body={"since": {"type": "string", "format": "date-time"}}, required=["since"])},
        "/api/v1/auto-replies": {
            "get": lw("listAutoReplies", "Auto-reply rules, in the order they are tried", "auto-replies", ("200", {"type": "object", "required": ["auto_replies"], "properties": {"auto_replies": {"type": "array", "items": rule}}})),
            "post": lw("createAutoReply", "Add a rule", "auto-replies", ("201", rule), "422", body=rule_body, required=["match", "pattern", "reply"],
                       description="`reply` may use `{name}`, `{phone}`, `{message}` and spintax `{Hi|Hello}`; regexes run in linear time."),
        },
        "/api/v1/auto-replies/{id}": {
            "get": lw("getAutoReply", "A rule", "auto-replies", ("200", rule), "404", params=[path_id("id")]),
            "patch": lw("updateAutoReply", "Change a rule", "auto-replies", ("200", rule), "404", "422", params=[path_id("id")], body=rule_body, body_required=False),
            "delete": lw("deleteAutoReply", "Remove a rule", "auto-replies", ("200", SUCCESS), "404", params=[path_id("id")]),
        },
        "/api/v1/broadcast/campaigns": {
            "get": lw("listCampaigns", "Campaigns, newest first, 20 a page", "broadcast", ("200", wrapped(page_of(campaign))), "422", params=[query("page", {"type": "integer", "minimum": 1, "maximum": 1000000})]),
            "post": lw("createCampaign", "Create a campaign (draft, or queued with schedule_at)", "broadcast", ("201", wrapped(campaign)), "422", "502",
                       body={"name": {"type": "string", "minLength": 1, "maxLength": 255}, "message": {"type": "string", "minLength": 1, "maxLength": 4096},
                             "contacts": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "object", "required": ["phone"], "properties": {
                                 "phone": e164, "name": {"type": "string", "maxLength": 100}, "variables": {"type": "object", "additionalProperties": {"type": ["string", "number"]}}}}},
                             "media_url": {"type": "string"}, "media_type": {"type": "string", "enum": ["image", "video", "document", "audio"]},
                             "delay_seconds": {"type": "integer", "minimum": 1, "maximum": 60}, "schedule_at": {"type": "string", "format": "date-time"},
                             "device_ids": {"type": "array", "items": {"type": "string", "pattern": "^dev_[0-9a-f]{16}$"}}},
                       required=["name", "message", "contacts"],
                       description="402 quota_exceeded when the contacts need more than the month's remaining quota.") | {"responses": {}},
        },
        "/api/v1/broadcast/campaigns/{id}": {
            "get": lw("getCampaign", "A campaign and its progress", "broadcast", ("200", wrapped(campaign)), "404", params=[path_id("id")]),
            "delete": lw("deleteCampaign", "Delete a campaign (not while sending)", "broadcast", ("200", wrapped(OBJ)), "404", "409", params=[path_id("id")]),
        },
        "/api/v1/broadcast/campaigns/{id}/send": {"post": lw("sendCampaign", "Start sending (needs an online device)", "broadcast", ("200", wrapped(campaign)), "404", "409", "503", params=[path_id("id")])},
        "/api/v1/broadcast/campaigns/{id}/pause": {"post": lw("pauseCampaign", "Pause", "broadcast", ("200", wrapped(campaign)), "404", "409", params=[path_id("id")])},
        "/api/v1/broadcast/campaigns/{id}/resume": {"post": lw("resumeCampaign", "Resume", "broadcast", ("200", wrapped(campaign)), "404", "409", params=[path_id("id")])},
        "/api/v1/broadcast/campaigns/{id}/contacts": {"get": lw("campaignContacts", "Contacts with their status, 50 a page", "broadcast", ("200", wrapped(page_of(OBJ))), "404", "422",
            params=[path_id("id"), query("status", {"type": "string", "enum": ["sent", "failed", "pending"]}), query("page", {"type": "integer", "minimum": 1, "maximum": 1000000})])},
        "/api/v1/opt-outs": {
            "get": lw("listOptOuts", "Phones that opted out of campaigns", "broadcast", ("200", wrapped({"type": "object", "required": ["opt_outs", "count"], "properties": {"opt_outs": {"type": "array", "items": OBJ}, "count": {"type": "integer"}}}))),
            "post": lw("addOptOut", "Add a phone", "broadcast", ("201", wrapped(OBJ)), "422", body={"phone": e164}, required=["phone"]),
        },
        "/api/v1/opt-outs/{phone}": {"delete": lw("removeOptOut", "Remove a phone", "broadcast", ("200", wrapped(OBJ)), "404", params=[path_id("phone")])},
        "/api/v1/ip-whitelist": {
            "get": lw("listIps", "The IP whitelist and whether it is enforced", "ip-whitelist", ("200", allow_list), access=KEY_ANY_IP),
            "post": lw("addIp", "Add an address or CIDR range (409 if present)", "ip-whitelist", ("201", OBJ), "403", "409", "422",
                       description="The entry answers as it was given: `203.0.113.5` stays `203.0.113.5` (here and in the list), a range stays a range. "
                                   "`203.0.113.5` and `203.0.113.5/32` are one entry: adding either when the other is present is a 409.",
                       body={"ip_address": {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}],
                                              "description": "An address, or a CIDR range such as `203.0.113.0/24` or `2001:db8::/32`."},
                             "label": {"type": "string", "minLength": 1, "maxLength": 100}}, required=["ip_address"], access=KEY_ANY_IP,
                       said={"403": "key_scoped_to_device: a device-scoped key may not change the app-wide whitelist"}),
        },
        "/api/v1/ip-whitelist/{id}": {"delete": lw("removeIp", "Remove an entry", "ip-whitelist", ("200", SUCCESS), "403", "404", params=[path_id("id")], access=KEY_ANY_IP,
            said={"403": "key_scoped_to_device: a device-scoped key may not change the app-wide whitelist"})},
        "/api/v1/ip-whitelist/restriction": {"put": lw("restrictIps", "Enforce the whitelist (422 when it is empty)", "ip-whitelist", ("200", allow_list), "403", "422",
            body={"enabled": {"type": "boolean"}}, required=["enabled"], access=KEY_ANY_IP, said={"403": "key_scoped_to_device: a device-scoped key may not change the app-wide whitelist"})},
    }
    create = paths["/api/v1/broadcast/campaigns"]["post"]
    create["responses"] = {"201": {**json_body(wrapped(campaign)), "headers": RATE_HEADERS},
                           "402": lw_error("subscription_suspended, or quota_exceeded: more contacts than the month's quota left"),
                           **{e: LW_ERRORS[e] for e in ("401", "403", "413", "422", "429", "502")}}
    document = loginwa_shaped(
        "wagate — LoginWA dialect",
        "OTP verification, messaging, devices, webhooks, broadcast campaigns, auto-replies and the IP whitelist. Errors are `{\"error\", \"message\", \"errors\"?}`; every authenticated answer carries `RateLimit-Policy` and `RateLimit`.",
        "make run", "The app's key (`wg_live_…`). `X-API-Key: <key>` is accepted too.", paths)
    document["components"]["parameters"] = {"IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Repeat a request safely: the same key and body within 24 h answer the first response.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255}}}
    return document


def loginwa_shaped(title: str, description: str, server: str, credential: str, paths: dict) -> dict:
    """A document whose errors have the LoginWA shape and whose credential is a bearer token."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "servers": [{"url": "http://127.0.0.1:8787", "description": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": credential}},
            "schemas": {"Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"},
                "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}}}},
        },
    }


# ------------------------------------------------------------------------------------------- Operator

def admin() -> dict:
    app = {"type": "object", "required": ["app_id", "name", "plan", "quota", "suspended", "keys"], "properties": {
        "app_id": {"type": "string"}, "name": {"type": "string"}, "plan": OBJ, "quota": OBJ,
        "suspended": {"type": "boolean"}, "default_country_code": {"type": "string"}, "governor": OBJ,
        "keys": {"type": "array", "items": OBJ}, "created_at": DATE}}
    errors = {"401": lw_error("unauthorized: the admin token is missing or wrong"),
              "429": lw_error("rate_limited: too many failed authentications from this address", RETRY_AFTER), "404": lw_error("not_found"),
              "405": lw_error("method_not_allowed"), "422": lw_error("validation_failed"),
              "502": lw_error("send_failed: the bridge is unreachable"),
              "413": lw_error("payload_too_large: the body is larger than 256 KiB (`max_bytes`), refused before it is read")}
    limit = {"type": "integer", "minimum": 0, "maximum": 1000000000}

    def op(op_id: str, summary: str, ok: tuple[str, dict], *codes: str, body: dict | None = None,
           required: list[str] | None = None, params: list[dict] | None = None, body_required: bool = True, tag: str = "apps") -> dict:
        code, schema = ok
        operation = {"operationId": op_id, "summary": summary, "tags": [tag],
                     "responses": {code: json_body(schema) if schema else {"description": "Done"},
                                   **{c: errors[c] for c in ("401", "429", *codes, *(("413",) if body is not None else ()))}}}
        if params:
            operation["parameters"] = params
        if body is not None:
            operation["requestBody"] = request_body(body, required or [], body_required)
        return operation

    app_id = path_id("app_id", "^app_[0-9a-f]{16}$")
    dead_letter = {"type": "object", "required": ["id", "device_id", "type", "status", "error", "created_at", "dead_at"], "properties": {
        "id": {"type": "string"}, "device_id": {"type": "string"}, "type": {"type": "string", "description": "The event's type, e.g. inbound"},
        "status": {"type": "integer", "description": "The worker's HTTP status"}, "error": {"type": "string", "description": "The worker's error code"},
        "created_at": DATE, "dead_at": DATE}}
    plan = {"monthly_messages": limit, "api_rpm": {"type": "integer", "minimum": 1, "maximum": 1000000000},
            "auth_rpm": {"type": "integer", "minimum": 1, "maximum": 1000000000}, "max_devices": {"type": "integer", "minimum": 0, "maximum": 10000}}
    paths = {
        "/admin/v1/apps": {
            "get": op("listApps", "Every app, oldest first, 50 a page", ("200", {"type": "object", "required": ["apps", "page", "total", "last_page"], "properties": {
                "apps": {"type": "array", "items": app}, "page": {"type": "integer"}, "per_page": {"type": "integer"},
                "total": {"type": "integer"}, "last_page": {"type": "integer"}}}), "422", params=[query("page", {"type": "integer", "minimum": 1, "maximum": 1000000})]),
            "post": op("createApp", "Create an app; its first API key is shown only here", ("201", {"type": "object", "required": ["app_id", "api_key", "key_id"], "properties": {
                "app_id": {"type": "string"}, "api_key": {"type": "string"}, "key_id": {"type": "string"}}}), "422",
                body={"name": {"type": "string", "minLength": 1, "maxLength": 200}, **plan}, required=["name"]),
        },
        "/admin/v1/apps/{app_id}": {
            "get": op("getApp", "An app: plan, quota, suspension, keys (never their secrets)", ("200", app), "404", params=[app_id]),
            "patch": op("updateApp", "Change an app's plan, suspension, country code, governor or usage", ("200", app), "404", "422", params=[app_id], body_required=False,
                        body={"suspended": {"type": "boolean"}, **plan, "default_country_code": {"type": "string", "pattern": "^[1-9][0-9]{0,3}$"},
                              "quota_used": limit, "warm_up_first_day_cap": {"type": "integer", "minimum": 1, "maximum": 1000000000},
                              "warm_up_growth_percent": {"type": "integer", "minimum": 0, "maximum": 1000},
                              "warm_up_uncapped_after": {"type": "integer", "minimum": 1, "maximum": 1000000000,
                                                         "description": "A number whose daily cap would exceed this is uncapped; at least the first day's cap."},
                              "opt_out_keywords": {"type": "array", "items": {"type": "string", "pattern": "\\S", "maxLength": 32}},
                              "auto_reply_cooldown_s": {"type": "integer", "minimum": 0, "maximum": 86400,
                                                        "description": "Least time between two replies of one auto-reply rule to one sender (60 by default)."},
                              "auto_reply_hourly_cap": {"type": "integer", "minimum": 0, "maximum": 3600,
                                                        "description": "Most auto-replies one sender gets in any hour, all rules together (5 by default; 0: none)."}}),
        },
        "/admin/v1/apps/{app_id}/keys": {
            "get": op("listKeys", "The app's keys: prefix, scope, state, created, last used, expiry", ("200", {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": OBJ}}}), "404", params=[app_id]),
            "post": op("createKey", "A new key, optionally scoped to one device and expiring", ("201", {"type": "object", "required": ["key_id", "api_key"], "properties": {
                "key_id": {"type": "string"}, "api_key": {"type": "string"}, "device_id": NULLABLE_STR, "expires_at": NULLABLE_DATE}}), "404", "422", params=[app_id], body_required=False,
                body={"device_id": {"type": "string", "pattern": "^dev_[0-9a-f]{16}$"}, "expires_at": {"type": "string", "format": "date-time"}}),
        },
        "/admin/v1/apps/{app_id}/keys/{key_id}": {"delete": op("revokeKey", "Revoke a key at once", ("204", None), "404", params=[app_id, path_id("key_id")])},
        "/admin/v1/apps/{app_id}/events": {"get": op("listEvents", "The app's recorded events, oldest first", ("200", {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": OBJ}}}), "404", "422",
            params=[app_id, query("after", {"type": "integer", "minimum": 0, "maximum": 9007199254740991}), query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})])},
        "/admin/v1/apps/{app_id}/audit": {"get": op("auditTrail", "Access changes with time and actor, newest first", ("200", {"type": "object", "required": ["audit"], "properties": {"audit": {"type": "array", "items": OBJ}}}), "404", params=[app_id])},
        "/admin/v1/bridge/dead-letters": {"get": op("listDeadLetters", "Events the worker refused for good, oldest first: what each was and why (never its content)", ("200", {"type": "object", "required": ["dead_letters"], "properties": {"dead_letters": {"type": "array", "items": dead_letter}}}), "422", "502",
            params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})], tag="bridge")},
        "/admin/v1/bridge/dead-letters/{event_id}/replay": {"post": op("replayDeadLetter", "Queue a dead letter again, under its own event id (applied at most once)", ("202", {"type": "object", "required": ["replayed"], "properties": {"replayed": {"type": "string"}}}), "404", "502",
            params=[path_id("event_id", "^evt_[0-9a-f]{32}$")], tag="bridge")},
    }
    return loginwa_shaped("wagate — operator API",
                          "Apps, plans and keys, and the bridge's dead letters, for the operator running wagate. Errors are in the LoginWA shape.",
                          "make run (token dev-admin-token)", "`ADMIN_TOKEN`.", paths)

DOCUMENTS = {"admin": admin, "loginwa": loginwa, "spwp": spwp}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in DOCUMENTS.items():
        (OUT / f"{name}.json").write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
