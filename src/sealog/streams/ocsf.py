"""Sealog events as OCSF 1.8 events (the `ocsf` stream format): the class chosen from the
action (docs/streams.md has the whole table), the Sealog event's id, index and leaf hash
kept in `metadata` and `unmapped.sealog`, so that the original can be found and verified."""

from __future__ import annotations

from typing import Any

from sealog import times

OCSF_VERSION = "1.8.0"
PRODUCT = {"name": "Sealog", "vendor_name": "Sealog"}

API_ACTIVITY, AUTHENTICATION, ACCOUNT_CHANGE = 6003, 3002, 3001
ENTITY_MANAGEMENT, USER_ACCESS = 3004, 3005
CLASS_NAMES = {API_ACTIVITY: "API Activity", AUTHENTICATION: "Authentication",
               ACCOUNT_CHANGE: "Account Change", ENTITY_MANAGEMENT: "Entity Management",
               USER_ACCESS: "User Access Management"}
CATEGORY_NAMES = {3: "Identity & Access Management", 6: "Application Activity"}

# Actions with a class and activity of their own: (class_uid, activity_id, activity_name).
ACTIONS: dict[str, tuple[int, int, str]] = {
    "auth.login_succeeded": (AUTHENTICATION, 1, "Logon"),
    "auth.login_failed": (AUTHENTICATION, 1, "Logon"),
    "auth.logout": (AUTHENTICATION, 2, "Logoff"),
    "member.invited": (ACCOUNT_CHANGE, 1, "Create"),
    "member.removed": (ACCOUNT_CHANGE, 6, "Delete"),
    "member.role_changed": (USER_ACCESS, 1, "Assign Privileges"),
}
# Entity Management for the actions on these resources, the activity from the verb.
MANAGED = ("agent", "guardrail", "policy", "api_key", "settings", "stream")
VERBS = {"created": (1, "Create"), "updated": (3, "Update"), "deleted": (4, "Delete"),
         "revoked": (4, "Delete"), "enabled": (8, "Enable"), "disabled": (9, "Disable"),
         "blocked": (12, "Suspend"), "paused": (12, "Suspend"), "unblocked": (13, "Resume"),
         "resumed": (13, "Resume")}
# API Activity for the rest, the activity from the request's method.
METHODS = {"POST": (1, "Create"), "GET": (2, "Read"), "HEAD": (2, "Read"),
           "PUT": (3, "Update"), "PATCH": (3, "Update"), "DELETE": (4, "Delete")}
HTTP_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")

# result -> (status_id, status, severity_id, severity)
RESULTS = {"success": (1, "Success", 1, "Informational"),
           "approved": (1, "Success", 1, "Informational"),
           "allowed": (1, "Success", 1, "Informational"),
           "failed": (2, "Failure", 2, "Low"), "denied": (2, "Failure", 2, "Low"),
           "warning": (99, "Warning", 3, "Medium")}
USER_TYPES = {"user": (1, "User"), "system": (3, "System"), "api_key": (4, "Service"),
              "service": (4, "Service")}


def ocsf_class(action: str, method: str | None) -> tuple[int, int, str]:
    """The OCSF class, activity id and activity name of an event with this action."""
    if action in ACTIONS:
        return ACTIONS[action]
    resource, _, verb = action.partition(".")
    if resource in MANAGED and verb != "used":
        activity, name = VERBS.get(verb, (99, "Other"))
        return ENTITY_MANAGEMENT, activity, name
    activity, name = METHODS.get(method or "", (99, "Other"))
    return API_ACTIVITY, activity, name


def to_ocsf(doc: dict[str, Any], leaf_hash: str) -> dict[str, Any]:
    """The OCSF event of a stored Sealog event (its document and leaf hash, hex)."""
    actor, context = doc["actor"], doc["context"]
    resource = doc["resource"] or {}
    request = doc["request"] or {}
    class_uid, activity_id, activity_name = ocsf_class(doc["action"], request.get("method"))
    category_uid = class_uid // 1000
    status_id, status, severity_id, severity = RESULTS[doc["result"]]
    if doc["action"] == "security.suspicious_activity":
        severity_id, severity = 4, "High"
    user = _user(actor)
    out: dict[str, Any] = {
        "class_uid": class_uid, "class_name": CLASS_NAMES[class_uid],
        "category_uid": category_uid, "category_name": CATEGORY_NAMES[category_uid],
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{CLASS_NAMES[class_uid]}: {activity_name}",
        "time": times.parse_rfc3339(doc["occurred_at"]) // 1000,
        "severity_id": severity_id, "severity": severity,
        "status_id": status_id, "status": status,
        "message": doc["description"],
        "metadata": {
            "version": OCSF_VERSION, "product": PRODUCT, "uid": doc["id"],
            "sequence": doc["index"], "tenant_uid": doc["org_id"],
            "logged_time": times.parse_rfc3339(doc["received_at"]) // 1000,
            "log_name": "audit_log", "event_code": doc["action"],
            **({"correlation_uid": context["request_id"]} if context.get("request_id") else {}),
        },
        "unmapped": {"sealog": {
            "id": doc["id"], "index": doc["index"], "leaf_hash": leaf_hash,
            "org_id": doc["org_id"], "action": doc["action"], "category": doc["category"],
            "result": doc["result"], "event_type": doc["event_type"],
            "resource": doc["resource"], "metadata": doc["metadata"],
        }},
    }
    if class_uid == API_ACTIVITY:
        api: dict[str, Any] = {"operation": doc["action"]}
        if context.get("request_id"):
            api["request"] = {"uid": context["request_id"]}
        out.update(actor=_actor(user, context), api=api, src_endpoint=_endpoint(context))
        http = _http_request(request, context)
        if http:
            out["http_request"] = http
        if isinstance(request.get("status"), int) and 100 <= request["status"] <= 599:
            out["http_response"] = {"code": request["status"]}
        if resource:
            out["resources"] = [_named(resource)]
    elif class_uid == ENTITY_MANAGEMENT:
        out.update(actor=_actor(user, context),
                   entity=_named(resource) or {"name": doc["action"].partition(".")[0]})
        if context.get("ip"):
            out["src_endpoint"] = {"ip": context["ip"]}
    else:  # the IAM classes about a user: the member acted on, else the actor itself
        target = _user({"id": resource.get("id"), "name": resource.get("name"),
                        "email": None, "type": "user"}) if resource.get("id") else user
        out.update(actor=_actor(user, context), user=target)
        if context.get("ip"):
            out["src_endpoint"] = {"ip": context["ip"]}
        if class_uid == AUTHENTICATION:
            out["service"] = {"uid": doc["org_id"], "name": f"organization {doc['org_id']}"}
        if class_uid == USER_ACCESS:
            body = request.get("body")
            role = (doc["metadata"].get("to") or doc["metadata"].get("role")
                    or (body.get("role") if isinstance(body, dict) else None))
            out["privileges"] = [str(role)] if role is not None else []
    return out


def _user(actor: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": actor["id"]}
    if actor.get("name"):
        user["name"] = actor["name"]
    if actor.get("email"):
        user["email_addr"] = actor["email"]
    type_id, type_name = USER_TYPES.get(actor.get("type") or "", (99, actor.get("type")))
    user["type_id"] = type_id
    if type_name:
        user["type"] = type_name
    return user


def _actor(user: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    actor: dict[str, Any] = {"user": user}
    if context.get("session_id"):
        actor["session"] = {"uid": context["session_id"]}
    return actor


def _endpoint(context: dict[str, Any]) -> dict[str, Any]:
    if context.get("ip"):
        return {"ip": context["ip"]}
    return {"name": "unknown"}  # OCSF asks for an endpoint; Sealog was not told one


def _http_request(request: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    http: dict[str, Any] = {}
    if request.get("method") in HTTP_METHODS:
        http["http_method"] = request["method"]
    if request.get("path"):
        http["url"] = {"path": request["path"]}
    if context.get("user_agent"):
        http["user_agent"] = context["user_agent"]
    return http


def _named(resource: dict[str, Any]) -> dict[str, Any]:
    named = {"uid": resource.get("id"), "name": resource.get("name"),
             "type": resource.get("type")}
    return {k: v for k, v in named.items() if v}
