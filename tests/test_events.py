"""The event model: validation, catalog defaults, redaction, truncation, limits."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import time
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealog import times
from sealog.config import Settings, SettingsError
from sealog.events import (
    _COUNTING,
    _DESCRIBING,
    MAX_BATCH_EVENTS,
    MAX_JSON_DEPTH,
    REDACTED,
    EventValidationError,
    Redactor,
    _is_stored_form,
    _nests_at_most,
    _singular,
    catalog_entry,
    loads_json,
    validate_events,
)
from sealog.sealing import prepare_events, seal

from conftest import event

NOW = times.parse_rfc3339("2026-02-13T10:28:22Z")


def one(raw: dict, redactor: Redactor | None = None) -> dict:
    return validate_events([raw], received_at_us=NOW, redactor=redactor or Redactor())[0].doc


def errors_of(raws: list) -> list[tuple[int | None, str, str]]:
    with pytest.raises(EventValidationError) as info:
        validate_events(raws, received_at_us=NOW, redactor=Redactor())
    return [(e.index, e.field, e.message) for e in info.value.errors]


def test_catalog_fills_category_type_and_description():
    doc = one(event(action="policy.enabled"))
    assert doc["category"] == "policy_changes"
    assert doc["event_type"] == "Policy Change"
    assert doc["description"] == "Enabled OPA policy"
    assert catalog_entry("job.nightly_backup").event_type == "Scheduled Job"
    assert catalog_entry("system.restart").category == "system_events"


def test_fixed_shape_with_nulls_for_absent_objects():
    doc = one(event())
    assert doc["resource"] is None and doc["request"] is None
    assert doc["context"] == {"ip": None, "user_agent": None, "session_id": None,
                              "request_id": None}
    assert doc["metadata"] == {}
    assert doc["actor"]["type"] == "user"
    assert doc["occurred_at"] == doc["received_at"] == "2026-02-13T10:28:22.000000Z"


def test_unknown_action_needs_a_category_naming_all_five():
    [(index, field, message)] = errors_of([event(action="billing.invoice_paid")])
    assert (index, field) == (0, "category")
    for name in ("agent_operations", "policy_changes", "user_actions", "security_events",
                 "system_events"):
        assert name in message
    doc = one(event(action="billing.invoice_paid", category="user_actions"))
    assert doc["event_type"] == "User Actions"


def test_catalog_action_with_another_category_is_refused():
    [(_, field, message)] = errors_of([event(category="security_events")])
    assert field == "category" and "agent_operations" in message


def test_every_bad_event_is_named_with_its_field():
    errors = errors_of([
        event(),
        event(result="exploded"),
        event(actor={"email": "not-an-email"}),
        event(action="Guardrail Created"),
        event(occurred_at="2026-02-13 10:28"),
        event(extra_field=1),
        event(actor={}),
    ])
    fields = {(i, f) for i, f, _ in errors}
    assert {(1, "result"), (2, "actor.email"), (3, "action"), (4, "occurred_at"),
            (5, "extra_field"), (6, "actor")} <= fields
    assert not any(i == 0 for i, _, _ in errors)
    assert any("dotted machine name" in m for _, f, m in errors if f == "action")


def test_wrong_types_are_refused_not_coerced():
    errors = errors_of([event(actor={"email": "a@b.co", "id": 12}),
                        event(request={"method": "GET", "path": "/x", "status": "200"})])
    assert (0, "actor.id") in {(i, f) for i, f, _ in errors}
    assert (1, "request.status") in {(i, f) for i, f, _ in errors}


def test_future_limit_is_five_minutes():
    ok = times.format_rfc3339(NOW + 5 * 60 * 10**6)
    late = times.format_rfc3339(NOW + 5 * 60 * 10**6 + 1)
    assert one(event(occurred_at=ok))["occurred_at"] == ok
    [(_, field, message)] = errors_of([event(occurred_at=late)])
    assert field == "occurred_at" and "future" in message


def test_occurred_at_is_normalised_to_utc_microseconds():
    doc = one(event(occurred_at="2026-02-13T11:28:22.5+01:00"))
    assert doc["occurred_at"] == "2026-02-13T10:28:22.500000Z"
    doc = one(event(occurred_at="2026-02-13T10:28:22.123456789012Z"))  # RFC 3339: any length
    assert doc["occurred_at"] == "2026-02-13T10:28:22.123456Z"


def test_batch_limits():
    assert errors_of([])[0][1] == "events"
    [(index, field, message)] = errors_of([event()] * (MAX_BATCH_EVENTS + 1))
    assert index is None and "1000" in message
    assert len(validate_events([event()] * MAX_BATCH_EVENTS, received_at_us=NOW,
                               redactor=Redactor())) == MAX_BATCH_EVENTS


@pytest.mark.parametrize("pad", ["", "x" * 400])  # walked at once, or checked first
def test_secrets_are_redacted_at_any_depth_before_storage(pad):
    doc = one(event(
        description=f"login {pad}"[:900],
        request={"method": "POST", "path": "/login",
                 "body": {"user": "a", "password": "hunter2", "pad": pad,
                          "nested": [{"Authorization": "Bearer x", "ok": 1}]},
                 "response": {"access_token": "t", "max_tokens": 5, "apiKey": "k", "pad": pad}},
        metadata={"deep": {"client_secret": "s", "Set-Cookie": "c"}, "tokens_used": 3,
                  "pad": pad},
        context={"ip": "10.0.0.1", "x_private_key": "pk"},
    ))
    body, response = doc["request"]["body"], doc["request"]["response"]
    assert body["password"] == REDACTED and body["user"] == "a"
    assert body["nested"][0] == {"Authorization": REDACTED, "ok": 1}
    assert response == {"access_token": REDACTED, "max_tokens": 5, "apiKey": REDACTED,
                        "pad": pad}
    assert doc["metadata"] == {"deep": {"client_secret": REDACTED, "Set-Cookie": REDACTED},
                               "tokens_used": 3, "pad": pad}
    assert doc["context"]["x_private_key"] == REDACTED
    assert doc["context"]["ip"] == "10.0.0.1"


SECRET_KEYS = ["tokens", "refresh_tokens", "access_token", "id_token", "api-keys", "x-api-key",
               "apiKeys", "APIKey", "accesstoken", "passphrase", "pwd", "mysql_pwd",
               "credentials", "aws_secret_access_key", "client_secret", "private_key",
               "session_cookie", "cookies", "auth", "basic_auth", "password2",
               "password_confirmation", "password_reset_url", "X-Amz-Security-Token",
               "Proxy-Authorization", "secret_id", "secretId", "secret_ids", "client_secret_id",
               "approle_secret_id"]
PLAIN_KEYS = ["max_tokens", "max_completion_tokens", "prompt_tokens", "completion_tokens",
              "total_tokens", "input_tokens", "cache_read_input_tokens", "reasoning_tokens",
              "token_count", "num_tokens", "tokens_used", "token_usage", "promptTokenCount",
              "tokenizer", "token_type", "token_endpoint", "secret_name", "secretKeyRef",
              "api_key_id", "private_key_id", "password_changed_at", "auth_method", "oauth",
              "author", "keys_url", "idempotency_key", "token_id", "key_id", "token_ids",
              "secret_id_ttl", "secret_key_id", "token_status", "auth_status", "password_status"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_plural_compound_and_synonym_keys_are_redacted(key):
    doc = one(event(metadata={key: "s3cr3t-value", "note": "kept"}))
    assert doc["metadata"] == {key: REDACTED, "note": "kept"}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_keys_that_count_or_describe_a_secret_are_kept(key):
    # A string, not a number: the key's words alone keep it.
    doc = one(event(metadata={key: "kept-value"}))
    assert doc["metadata"] == {key: "kept-value"}


def test_a_number_under_a_plural_key_is_a_count_and_kept():
    doc = one(event(metadata={"tokens": 1523, "api_keys": 2, "tokens_list": ["t1"],
                              "access_tokens": ["t1", "t2"], "token": 123456, "auth": True,
                              "headers": [["x-ratelimit-reset-tokens", 149984],
                                          ["x-ratelimit-remaining-tokens", "149984"],
                                          ["x-ratelimit-reset-tokens", "6m0s"]]}))
    assert doc["metadata"] == {"tokens": 1523, "api_keys": 2, "tokens_list": REDACTED,
                               "access_tokens": REDACTED, "token": REDACTED, "auth": REDACTED,
                               "headers": [["x-ratelimit-reset-tokens", 149984],
                                           ["x-ratelimit-remaining-tokens", "149984"],
                                           ["x-ratelimit-reset-tokens", REDACTED]]}


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_digits_as_text_under_a_plural_name_are_redacted(pad):
    # A PIN, an OTP or a numeric token is text of digits; only a JSON number is a count.
    doc = one(event(metadata={"credentials": "12345678", "tokens": "483920",
                              "passwords": "123456", "headers": [["X-Tokens", "12"]],
                              "named": {"name": "tokens", "value": "-7.5"},
                              "query": "/x?tokens=5&page=2", "pad": pad}))
    assert doc["metadata"] == {"credentials": REDACTED, "tokens": REDACTED,
                               "passwords": REDACTED, "headers": [["X-Tokens", REDACTED]],
                               "named": {"name": "tokens", "value": REDACTED},
                               "query": "/x?tokens=[REDACTED]&page=2", "pad": pad}


def test_a_name_given_in_the_plural_is_no_count():
    # credentials is a configured name: its plural is the name itself, not a count of it.
    doc = one(event(metadata={"credentials": 5, "max_credentials": 2, "tokens": 5,
                              "credentials_count": 1}))
    assert doc["metadata"] == {"credentials": REDACTED, "max_credentials": REDACTED,
                               "tokens": 5, "credentials_count": 1}
    doc = one(event(metadata={"ssns": 3, "ssn_list": 4, "max_ssns": 1}), Redactor(("ssns",)))
    assert doc["metadata"] == {"ssns": REDACTED, "ssn_list": REDACTED, "max_ssns": REDACTED}


def test_words_that_end_in_s_but_are_no_plural_keep_their_s():
    assert [_singular(w) for w in ("status", "analysis", "pass", "tokens", "keys", "ids")] == [
        "status", "analysis", "pass", "token", "key", "ids"]
    # Every word that describes or counts is one a key's words can be.
    assert [w for w in sorted(_DESCRIBING | _COUNTING) if _singular(w) != w] == []


def test_json_held_in_a_string_changes_only_where_it_held_a_secret():
    """Its numbers are the producer's text: a 64-bit id inside it stays as it was sent."""
    plain = '{"order_id": 1234567890123456789, "ratio": 1e20, "n": [1, 2]}'
    secret = '{"order_id": 1234567890123456789012, "api_key": "sk-shop-9f8e"}'
    doc = one(event(metadata={"plain": plain, "arguments": secret}))
    assert doc["metadata"]["plain"] == plain
    assert json.loads(doc["metadata"]["arguments"]) == {
        "order_id": "1234567890123456789012", "api_key": "[REDACTED]"}


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_json_in_a_string_that_cannot_be_read_whole_is_redacted_whole_if_it_may_hold_one(pad):
    # Too deep to walk (past 64 levels) or to parse (past orjson's 1024), or holding a number
    # beyond a double: its secrets cannot be found one by one, so none of it is kept.
    unreadable = [
        '{"password": "hunter2", "x": ' + _deep(70) + "}",
        '{"password": "hunter2", "x": ' + _deep(1100) + "}",
        '{"password": "hunter2", "n": 1e400}',
        '[["Authorization", "Bearer x"], ' + _deep(70) + "]",
        '{"p\\u0061ssword": "hunter2", "x": ' + _deep(70) + "}",  # an escape spells the name
        '{"url": "https://bob:hunter2@host/", "x": ' + _deep(70) + "}",
    ]
    harmless = ['{"note": "kept", "x": ' + _deep(70) + "}", _deep(1100), "[1e400]"]
    doc = one(event(metadata={"unreadable": unreadable, "harmless": harmless, "pad": pad}))
    assert doc["metadata"] == {"unreadable": [REDACTED] * len(unreadable),
                               "harmless": harmless, "pad": pad}


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_json_in_a_string_is_read_after_leading_white_space_and_inside_a_json_string(pad):
    doc = one(event(metadata={
        "spaced": ' {"password": "hunter2", "n": 1}',
        "lines": '\n\t[["Authorization", "Bearer x"]]',
        "twice": json.dumps(json.dumps({"api_key": "sk-1", "n": 1})),
        "plain": '  {"note": "kept"}', "pad": pad}))
    stored = doc["metadata"]
    assert stored["spaced"] == '{"password":"[REDACTED]","n":1}'
    assert stored["lines"] == '[["Authorization","[REDACTED]"]]'
    assert json.loads(json.loads(stored["twice"])) == {"api_key": REDACTED, "n": 1}
    assert stored["plain"] == '  {"note": "kept"}'


# Each about 1 MB: a name at every other word, each match undone by a word far away.
LONG_KEYS = ["token_" * 170_000 + "type", "max_" + "tokens_" * 145_000 + "x",
             "Token" * 200_000 + "Type"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["key", "pair", "named", "parameter", "json_text"])
@pytest.mark.parametrize("key", LONG_KEYS, ids=["describing", "counting", "camel"])
def test_a_long_key_is_judged_in_time_linear_in_its_length(where, key):
    body = {"key": {key: "v"}, "pair": [[key, "v"]], "named": {"name": key, "value": "v"},
            "parameter": f"{key}=v", "json_text": orjson.dumps({key: "v"}).decode()}[where]
    start = time.perf_counter()
    one(event(request={"method": "POST", "path": "/x", "body": body}))
    assert time.perf_counter() - start < 2
    redactor = Redactor()
    assert redactor.redact(body) == body  # each name is described or counted: all kept
    assert key not in redactor._cache  # long keys are judged again, not kept in memory


@pytest.mark.timeout(60)
def test_a_batch_of_long_keys_is_validated_in_time_linear_in_its_size():
    keys = [f"{i}_" + "token_" * 85_000 + "type" for i in range(9)]  # 9 MB of keys
    batch = [event(request={"method": "POST", "path": "/x", "body": {key: "v"},
                            "response": [[key, "v"]]}) for key in keys]
    start = time.perf_counter()
    events = validate_events(batch, received_at_us=NOW, redactor=Redactor())
    assert time.perf_counter() - start < 2 * len(batch)
    assert len(events) == 9


def _json_in_json(levels: int) -> str:
    text = '{"password": "hunter2"}'
    for _ in range(levels):
        text = json.dumps([text, "x"])
    return text


# About 1 MB each, shaped against each regular expression and parse a string goes through.
ADVERSARIAL_STRINGS = {
    "schemes": "a://" * 250_000 + "@", "userinfo": "a://b:" + "@" * 1_000_000,
    "passwords": "x://u:p@" * 125_000, "parameters": "?" + "a=1&" * 250_000,
    "escaped_names": "token%20" * 125_000 + "=x", "equals": "&=" * 500_000,
    "json_in_json": _json_in_json(17), "unclosed_json": '["a",' * 200_000,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", ADVERSARIAL_STRINGS.values(), ids=ADVERSARIAL_STRINGS.keys())
def test_each_string_is_redacted_in_time_linear_in_its_length(text):
    start = time.perf_counter()
    one(event(request={"method": "POST", "path": "/x", "body": {"text": text}}))
    assert time.perf_counter() - start < 2


def test_a_name_deep_inside_a_long_key_is_still_found():
    redactor = Redactor()
    key = "x_" * 200_000 + "password" + "_y" * 200_000
    assert redactor.redact({key: "hunter2", "k": [[key, "v"]]}) == {key: REDACTED,
                                                                      "k": [[key, REDACTED]]}


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_an_openai_chat_call_keeps_its_token_counts_and_loses_its_key(pad):
    body = {
        "model": "gpt-4o-2024-08-06", "max_tokens": 512, "max_completion_tokens": 512,
        "messages": [{"role": "user", "content": f"Look up order 1042 {pad}"}],
        "tools": [{"type": "function", "function": {"name": "lookup_order"}}],
    }
    response = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "call_Ijg", "type": "function", "function": {
                    "name": "lookup_order",
                    "arguments": '{"order_id": 1042, "api_key": "sk-shop-9f8e"}'}}]}}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
    }
    metadata = {
        "http": {"url": "https://api.openai.com/v1/chat/completions",
                 "headers": [["Authorization", "Bearer sk-proj-4f1c"],
                             ["OpenAI-Organization", "org-acme"],
                             ["Content-Type", "application/json"]]},
        "llm_output": {"token_usage": {"prompt_tokens": 19, "completion_tokens": 10,
                                       "total_tokens": 29}, "model_name": "gpt-4o"},
        "usageMetadata": {"promptTokenCount": 19, "candidatesTokenCount": 10,
                          "totalTokenCount": 29},
        "pad": pad,
    }
    doc = one(event(request={"method": "POST", "path": "/v1/chat/completions", "body": body,
                             "response": response}, metadata=metadata))
    assert doc["request"]["body"] == body
    stored = doc["request"]["response"]
    call = stored["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["arguments"] == '{"order_id":1042,"api_key":"[REDACTED]"}'
    assert {**stored, "choices": response["choices"]} == response
    assert doc["metadata"]["http"]["headers"] == [["Authorization", REDACTED],
                                                  ["OpenAI-Organization", "org-acme"],
                                                  ["Content-Type", "application/json"]]
    assert {**doc["metadata"], "http": metadata["http"]} == metadata


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_an_oauth_token_exchange_keeps_the_token_type_and_loses_the_tokens(pad):
    form = ("grant_type=authorization_code&code=4%2F0AdLIrYf&client_id=1234.apps"
            "&client_secret=GOCSPX-9f8e7d&redirect_uri=https%3A%2F%2Fapp.example%2Fcb")
    response = {"access_token": "ya29.a0AfB_byC", "expires_in": 3599, "token_type": "Bearer",
                "refresh_token": "1//0gdU3", "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
                "scope": "openid email", "pad": pad}
    doc = one(event(request={"method": "POST",
                             "path": "/graph/me?fields=id,name&access_token=EAAB1x",
                             "body": form, "response": response}))
    request = doc["request"]
    assert request["path"] == "/graph/me?fields=id,name&access_token=[REDACTED]"
    assert request["body"] == form.replace("GOCSPX-9f8e7d", REDACTED)
    assert request["response"] == {**response, "access_token": REDACTED,
                                   "refresh_token": REDACTED, "id_token": REDACTED}


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_a_stripe_redirect_and_webhook_lose_the_client_secret(pad):
    intent = {
        "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent", "amount": 2000,
        "currency": "usd", "status": "requires_action", "capture_method": "automatic",
        "client_secret": "pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH",
        "next_action": {"type": "redirect_to_url", "redirect_to_url": {
            "url": "https://hooks.stripe.com/redirect/authenticate/src_1Mtw?client_secret="
                   "src_client_secret_RMyEf5&source_redirect_slug=test_YWNjdF8x",
            "return_url": "https://shop.example/checkout/return"}},
        "description": pad,
    }
    webhook = {"id": "evt_3MtwBw", "object": "event", "api_version": "2024-06-20",
               "type": "payment_intent.requires_action", "livemode": False,
               "request": {"id": "req_8Rpx", "idempotency_key": "f1c2-77"},
               "data": {"object": intent}}
    doc = one(event(request={
        "method": "GET",
        "path": "/checkout/return?payment_intent=pi_3MtwBwLkdIwHu7ix28a3tqPa"
                "&payment_intent_client_secret=pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJ"
                "&redirect_status=succeeded"}, metadata={"webhook": webhook}))
    assert doc["request"]["path"] == ("/checkout/return?payment_intent=pi_3MtwBwLkdIwHu7ix28a3"
                                      "tqPa&payment_intent_client_secret=[REDACTED]"
                                      "&redirect_status=succeeded")
    stored = doc["metadata"]["webhook"]["data"]["object"]
    assert stored["client_secret"] == REDACTED
    assert stored["next_action"]["redirect_to_url"] == {
        "url": "https://hooks.stripe.com/redirect/authenticate/src_1Mtw?client_secret="
               "[REDACTED]&source_redirect_slug=test_YWNjdF8x",
        "return_url": "https://shop.example/checkout/return"}
    assert doc["metadata"]["webhook"]["request"] == webhook["request"]


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_a_github_push_keeps_its_urls_and_authors_and_loses_the_clone_token(pad):
    push = {
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/agents", "keys_url":
                       "https://api.github.com/repos/acme/agents/keys{/key_id}",
                       "clone_url": "https://github.com/acme/agents.git"},
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "head_commit": {"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                        "message": f"Rotate the guardrail keys {pad}",
                        "author": {"name": "Mona", "email": "mona@acme.com"}},
        "hook": {"type": "Repository", "config": {"url": "https://ci.acme.com/hook",
                                                  "content_type": "json",
                                                  "secret": "whsec_71c"}},
    }
    remote = "https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/acme/agents.git"
    doc = one(event(metadata={"push": push, "remote": remote}))
    stored = doc["metadata"]
    assert stored["remote"] == "https://x-access-token:[REDACTED]@github.com/acme/agents.git"
    assert stored["push"]["hook"]["config"]["secret"] == REDACTED
    assert {**stored["push"], "hook": push["hook"]} == push


@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_a_har_entry_loses_its_header_cookie_query_and_body_secrets(pad):
    entry = {
        "request": {
            "method": "POST", "url": "https://api.example.com/v1/items?api_key=abc123&page=2",
            "headers": [{"name": "Authorization", "value": "Bearer eyJ0"},
                        {"name": "Cookie", "value": "sid=s%3A9f"},
                        {"name": "Accept", "value": "application/json"}],
            "queryString": [{"name": "api_key", "value": "abc123"},
                            {"name": "page", "value": "2"}],
            "cookies": [{"name": "sid", "value": "s%3A9f"}],
            "postData": {"mimeType": "application/x-www-form-urlencoded",
                         "params": [{"name": "password", "value": "hunter2"},
                                    {"name": "user", "value": "bob"}]},
        },
        "response": {
            "status": 200,
            "headers": [{"name": "Set-Cookie", "value": "sid=s%3Aa1; HttpOnly"},
                        {"name": "Content-Type", "value": "application/json"}],
            "content": {"mimeType": "application/json", "size": 52,
                        "text": '{"access_token": "at-77", "token_type": "bearer"}'},
        },
        "comment": pad,
    }
    stored = one(event(metadata={"har": entry}))["metadata"]["har"]
    request, response = stored["request"], stored["response"]
    assert request["url"] == "https://api.example.com/v1/items?api_key=[REDACTED]&page=2"
    assert [h["value"] for h in request["headers"]] == [REDACTED, REDACTED, "application/json"]
    assert request["queryString"][0] == {"name": "api_key", "value": REDACTED}
    assert request["queryString"][1] == {"name": "page", "value": "2"}
    assert request["cookies"] == REDACTED
    assert request["postData"]["params"] == [{"name": "password", "value": REDACTED},
                                             {"name": "user", "value": "bob"}]
    assert [h["value"] for h in response["headers"]] == [REDACTED, "application/json"]
    assert response["content"]["text"] == '{"access_token":"[REDACTED]","token_type":"bearer"}'
    assert stored["comment"] == pad


def test_urls_lose_their_password_and_secret_parameters_wherever_they_appear():
    url = "https://bob:hunter2@host/x?token=abc&page=2"
    shown = "https://bob:[REDACTED]@host/x?token=[REDACTED]&page=2"
    doc = one(event(
        description=f"Webhook target set to {url}",
        request={"method": "PUT", "path": "/hooks/7?token=abc&page=2#access_token=at&x=1",
                 "body": {"target": url, "dsn": "postgresql://app:p@ss:w0rd@db:5432/app"},
                 "response": [url, "https://bob@host/x", "ftp://anon:@host/"]},
        metadata={"env": "API_KEY=sk-123 MAX_TOKENS=5 python agent.py"},
        context={"ip": "10.0.0.1", "referrer": url},
    ))
    assert doc["description"] == f"Webhook target set to {shown}"
    assert doc["request"]["path"] == "/hooks/7?token=[REDACTED]&page=2#access_token=[REDACTED]&x=1"
    assert doc["request"]["body"] == {"target": shown,
                                      "dsn": "postgresql://app:[REDACTED]@db:5432/app"}
    assert doc["request"]["response"] == [shown, "https://bob@host/x", "ftp://anon:@host/"]
    assert doc["metadata"] == {"env": "API_KEY=[REDACTED] MAX_TOKENS=5 python agent.py"}
    assert doc["context"]["referrer"] == shown


def test_configured_names_get_the_same_matching():
    redactor = Redactor(("ssn", "license key"))
    doc = one(event(metadata={"SSNs": ["1", "2"], "customer_ssn": "3", "licenseKeys": ["k"],
                              "license_key_count": 2, "ssn_count": 1, "password": "p",
                              "form": "ssn=123-45-6789&name=Bob",
                              "fields": [["License-Key", "LK-1"]]}), redactor)
    assert doc["metadata"] == {"SSNs": REDACTED, "customer_ssn": REDACTED,
                               "licenseKeys": REDACTED, "license_key_count": 2, "ssn_count": 1,
                               "password": "p", "form": "ssn=[REDACTED]&name=Bob",
                               "fields": [["License-Key", REDACTED]]}


def test_a_redact_keys_setting_without_a_word_is_refused():
    with pytest.raises(SettingsError, match="SEALOG_REDACT_KEYS"):
        Settings.from_env({"SEALOG_REDACT_KEYS": "ssn, ---"})
    assert Settings.from_env({"SEALOG_REDACT_KEYS": "ssn, api key"}).redact_keys == (
        "ssn", "api key")


# Keys, names and strings each redaction rule acts on, mixed with random ones.
_SUSPECT_KEYS = st.sampled_from([
    "password", "Pwd", "tokens", "max_tokens", "token_type", "apiKeys", "x-api-key", "auth",
    "oauth", "Authorization", "name", "value", "key", "Value", "credentials", "ssn", "SSNs",
    "secret_name", "accesstoken", "cookie"])
_SUSPECT_TEXT = st.sampled_from([
    "https://bob:pw@host/x?token=abc&page=2", "ftp://u:p@h", "https://u@h/?a=1",
    "a=1&api_key=k", "tokens=5", "ssn=1", "x?%70assword=1", '{"pwd": "p", "n": 1}', "[1, 2]",
    "[REDACTED]", "Authorization", "SSN", "user%5Bpassword%5D=x", "12345", ' {"pwd": "p"}',
    '"{\\"token\\": 1}"', '{"pwd": 1, "x": ' + _deep(70) + "}", _deep(70), '\n[1e400]'])
_free_json = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10)
    | _SUSPECT_TEXT,
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(_SUSPECT_KEYS | st.text(max_size=6), children,
                                        max_size=4)
                      | st.tuples(_SUSPECT_KEYS | _SUSPECT_TEXT, children).map(list)
                      | st.fixed_dictionaries({"name": _SUSPECT_KEYS, "value": children})),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=_free_json, names=st.sampled_from([None, ("ssn", "api key")]))
def test_the_fast_path_stores_what_the_walk_stores(value, names):
    # Past SMALL_JSON bytes a value is stored as sent when may_need_walk finds nothing to
    # redact; that must be exactly what walking it would have stored.
    redactor = Redactor(names) if names else Redactor()
    pad = "padding " * 40
    body = {"pad": pad, "value": value}
    doc = one(event(request={"method": "POST", "path": "/p", "body": body},
                    metadata={"value": value, "pad": pad}), redactor)
    assert doc["request"]["body"] == redactor.redact(body)
    assert doc["metadata"] == redactor.redact({"value": value, "pad": pad})


def test_redaction_leaves_the_callers_objects_alone():
    body = {"password": "hunter2"}
    one(event(request={"method": "POST", "path": "/x", "body": body}))
    assert body == {"password": "hunter2"}


def test_configured_secret_keys_replace_the_defaults():
    doc = one(event(metadata={"ssn": "123", "password": "p"}), Redactor(("ssn",)))
    assert doc["metadata"] == {"ssn": REDACTED, "password": "p"}


def test_large_body_is_replaced_by_a_visible_marker():
    big = {"blob": "x" * 70_000, "password": "hunter2"}
    doc = one(event(request={"method": "PUT", "path": "/x", "body": big, "response": {"ok": 1}}))
    marker = doc["request"]["body"]
    assert marker["_truncated"] is True
    assert marker["size"] > 64 * 1024
    assert len(marker["preview"]) == 1024
    assert "hunter2" not in marker["preview"]
    assert doc["request"]["response"] == {"ok": 1}


@pytest.mark.parametrize("secret", [{"password": "hunter2"}, {"args": '{"token": "hunter2"}'},
                                    {"headers": [["Cookie", "hunter2"]]}])
def test_the_preview_of_a_large_body_is_cut_from_its_redacted_json(secret):
    big = {**secret, "blob": "x" * 70_000}
    preview = one(event(request={"method": "PUT", "path": "/x", "body": big}))[
        "request"]["body"]["preview"]
    assert "hunter2" not in preview
    assert preview.startswith(orjson.dumps(Redactor().redact(secret)).decode()[:-1])


def test_metadata_over_16_kib_is_refused():
    [(_, field, message)] = errors_of([event(metadata={"x": "y" * 17_000})])
    assert field == "metadata" and "16 KiB" in message


# Sent, and kept: what RFC 8785 writes for each, read back alike by Python and JavaScript.
NUMBERS = [
    (2**53 - 1, 2**53 - 1),
    (2**53, "9007199254740992"),
    (1234567890123456789, "1234567890123456789"),
    (-(2**70), "-1180591620717411303424"),
    (1e20, "100000000000000000000"),  # RFC 8785 writes it as bare digits
    (-(2.0**60), "-1152921504606847000"),
    (9007199254740992.0, "9007199254740992"),
    (1e21, 1e21),
    (1.7976931348623157e308, 1.7976931348623157e308),
    (5e-324, 5e-324),
    (3.0, 3.0),
]


@pytest.mark.parametrize("where", ["metadata", "request.body", "request.response", "context"])
@pytest.mark.parametrize("company", ["", "x" * 400, "password", "ratio"])
def test_numbers_beyond_two_to_the_53_are_kept_as_their_digits(where, company):
    # Alone past SMALL_JSON bytes (no walk), beside a secret or a float: on every path.
    value = {"n": [sent for sent, _ in NUMBERS], "pad": company, company: 0.5}
    request = {"method": "POST", "path": "/x"}
    raw = (event(metadata=value) if where == "metadata"
           else event(context={"ip": None, "x": value}) if where == "context"
           else event(request={**request, where.split(".")[1]: value}))
    doc = one(raw)
    kept = (doc["context"]["x"] if where == "context"
            else doc["metadata"] if where == "metadata"
            else doc["request"][where.split(".")[1]])
    assert kept["n"] == [stored for _, stored in NUMBERS]
    assert [type(v) for v in kept["n"]] == [type(stored) for _, stored in NUMBERS]


def test_integers_beyond_the_range_of_json_numbers_are_refused():
    [(_, field, message)] = errors_of([event(metadata={"n": 2**1100})])
    assert field == "metadata" and "1.8e308" in message


def test_text_with_integers_past_64_bits_is_read_exactly():
    text = b'{"a": [123456789012345678901234567890, -9223372036854775809, 18446744073709551615'
    text += b', 1.5, "12345678901234567890123"]}'
    assert loads_json(text) == {"a": [123456789012345678901234567890, -9223372036854775809,
                                      18446744073709551615, 1.5, "12345678901234567890123"]}
    assert loads_json(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    with pytest.raises(ValueError):
        loads_json(b'{"a": NaN, "b": 12345678901234567890123}')


@pytest.mark.parametrize("where", ["metadata", "request.body", "request.response", "context"])
# Walked at once (short); checked with the others first; checked alone (beside a float).
@pytest.mark.parametrize("path", ["walked", "with_others", "alone"])
def test_free_json_nested_past_64_levels_is_refused_naming_the_field(where, path):
    pad = "" if path == "walked" else "x" * 400

    def nested(levels: int) -> dict:
        value: object = "[{]}"  # brackets in a string are not nesting
        for level in range(levels - 1):
            value = [value] if level % 2 else {"k": value}
        return {"pad": pad, "v": value, "flat": [[1], {"a": 2}] * 40}

    def raw(levels: int) -> dict:
        request = {"method": "POST", "path": "/x"}
        beside = {"ratio": 0.5} if path == "alone" else None
        if where == "context":  # its own object is its first level
            return event(context={"x": nested(levels - 1)}, metadata=beside)
        if where == "metadata":
            return event(metadata=nested(levels), request={**request, "body": beside})
        field = where.split(".")[1]
        other = "response" if field == "body" else "body"
        return event(request={**request, field: nested(levels), other: beside})

    one(raw(MAX_JSON_DEPTH))
    message = f"is nested more than {MAX_JSON_DEPTH} levels deep (arrays and objects)"
    for levels in (MAX_JSON_DEPTH + 1, 300, 900):
        assert errors_of([raw(levels)]) == [(0, where, message)]


def _depth(value: object) -> int:
    items = (value.values() if isinstance(value, dict)
             else value if isinstance(value, list) else None)
    return 0 if items is None else 1 + max(map(_depth, items), default=0)


@settings(max_examples=500)
@given(value=st.recursive(
    st.booleans() | st.text(alphabet="[]{}ab", max_size=4),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text("[]{}ab", max_size=2), c,
                                                        max_size=3),
    max_leaves=40,
), levels=st.integers(0, 12))
def test_the_nesting_of_json_text_is_measured_exactly(value, levels):
    assert _nests_at_most(orjson.dumps(value), levels) == (_depth(value) <= levels)


def test_nul_characters_are_refused_in_indexed_fields():
    [(_, field, message)] = errors_of([event(description="a\x00b")])
    assert field == "description" and "NUL" in message


def test_client_id_must_be_a_uuid7():
    [(_, field, _m)] = errors_of([event(id="123")])
    assert field == "id"
    doc = one(event(id="01a214a4-65df-7047-b506-bf87b41fd50a"))
    assert doc["id"] == "01a214a4-65df-7047-b506-bf87b41fd50a"


def test_ids_and_emails_take_no_trailing_newline():
    # Python's `$` matches before a final newline.
    errors = errors_of([event(id="01a214a4-65df-7047-b506-bf87b41fd50a\n"),
                        event(actor={"email": "alice@acme.com\n"})])
    assert [(i, f) for i, f, _ in errors] == [(0, "id"), (1, "actor.email")]


@pytest.mark.parametrize("text", [
    "\uff12\uff10\uff12\uff16-12-01T10:00:00.000000Z",  # fullwidth digits
    "2026-12-01T10:00:00.000000Z\n",
    "2026-12-01T10:00:00Z\n",
    "2026-12-01T1\u0660:00:00Z",  # an Arabic-Indic zero
    "2026-12-01T10:00:00.\u0665Z",
    "2026-12-01T10:00:00+0\u0661:00",
    "2026-12-0\U0001d7cfT10:00:00Z",  # a mathematical bold one
])
def test_times_are_rfc3339_in_ascii_digits_only(text):
    with pytest.raises(times.TimeError):
        times.parse_rfc3339(text)
    [(_, field, message)] = errors_of([event(occurred_at=text)])
    assert field == "occurred_at" and "RFC 3339" in message
    with pytest.raises(times.TimeError):
        times.resolve_range("custom", start=text)


def test_method_is_uppercased_and_checked():
    assert one(event(request={"method": "put", "path": "/a"}))["request"]["method"] == "PUT"
    [(_, field, _m)] = errors_of([event(request={"method": "FETCH", "path": "/a"})])
    assert field == "request.method"


@pytest.mark.parametrize("where", ["metadata", "request.body", "request.response"])
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_not_stored_as_null(where, number):
    # orjson would write them as null: a caller passing them must hear of it.
    deep = {"a": 1, "b": 2, "c": 3, "d": 4, "e": [1, 2, 3, 4, 5, {"x": number}]}
    request = {"method": "POST", "path": "/x"}
    raw = event(metadata=deep) if where == "metadata" else event(
        request={**request, where.split(".")[1]: deep})
    assert errors_of([raw]) == [(0, where, "NaN and Infinity are not JSON numbers")]


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Label(enum.StrEnum):
    A = "a"


class Text(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def _outcome(body: dict) -> tuple[str, object]:
    raw = event(request={"method": "POST", "path": "/p", "body": body})
    try:
        [item] = prepare_events([raw], org_id="acme", received_at_us=NOW, redactor=Redactor())
    except EventValidationError as exc:
        return "refused", exc.errors[0].message
    doc = orjson.loads(seal(item, org_id="acme", index=0).doc)
    return "stored", doc["request"]["body"]


@pytest.mark.parametrize("value", [
    (1, "two"), uuid.UUID("12345678-1234-5678-1234-567812345678"), Colour.RED, Level.HIGH,
    Label.A, Text("t"), datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
    datetime.date(2026, 1, 2), Point(1), {1, 2}, b"bytes",
])
@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_a_python_value_is_stored_or_refused_alike_on_every_path(value, pad):
    # Alone a body past SMALL_JSON bytes needs no walk (a shorter one is always walked);
    # beside a secret key it is walked; beside a float the event takes the exact RFC 8785
    # path. The outcome must not depend on which.
    plain = _outcome({"v": value, "pad": pad})
    walked = _outcome({"v": value, "pad": pad, "password": "p"})
    exact = _outcome({"v": value, "pad": pad, "ratio": 0.5})
    assert walked[0] == plain[0] == exact[0]
    if plain[0] == "refused":
        assert plain[1] == walked[1] == exact[1]
        assert "is not a JSON value" in plain[1]
    else:
        assert walked[1] == {**plain[1], "password": "[REDACTED]"}
        assert exact[1] == {**plain[1], "ratio": 0.5}


@given(year=st.integers(1970, 2100), month=st.integers(1, 12), day=st.integers(1, 31),
       hour=st.integers(0, 23), minute=st.integers(0, 59), second=st.integers(0, 60),
       micros=st.integers(0, 999_999))
def test_a_time_sent_in_its_stored_form_is_kept_as_sent(year, month, day, hour, minute,
                                                         second, micros):
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micros:06d}Z"
    try:
        us = times.parse_rfc3339(text)
    except times.TimeError:
        return  # no such day
    assert (times.format_rfc3339(us) == text) == _is_stored_form(text)
