"""What to say to each customer: ``next_best_action`` and message drafts, from the playbook.

The rules are data, in ``playbook.json`` (``--playbook FILE`` for an edited copy):

* ``next_best_action.rules``: tried in order, the first whose ``when`` fields all match wins
  (a value may be a list: any of them); the fields are the segment's ``base`` name and the
  row's own ``value_tier``, ``loyalty_tier`` and ``sentiment_label``; no match gives
  ``next_best_action.default``. The names come from ``next_best_action.vocabulary``.
* ``offers``: per action, the text of ``{offer}`` in each language.
* ``messages``: per segment kind (same ``when`` matching, on the segment's ``base`` and its
  ``next_best_action``), a subject and body per language with merge fields.

Templates are ``str.format_map`` strings restricted to the plain names of
:data:`MERGE_FIELDS`: ``{first_name}``, ``{segment_name}``, ``{top_topic}``, ``{top_aspect}``,
``{offer}``, ``{recommended_items}``. Anything else (``{x.__class__}``, ``{x[0]}``, a format
spec or conversion, an unbalanced brace) is refused when the playbook is loaded, before any
work, so a playbook can never reach an object's attributes.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from nlp_seg.errors import InputError
from nlp_seg.stages.naming import NO_TOPIC, load_playbook

LANGS = ("en", "vi")
MERGE_FIELDS = (
    "first_name",
    "segment_name",
    "top_topic",
    "top_aspect",
    "offer",
    "recommended_items",
)
#: Merge fields that differ per customer: left as ``{name}`` in a segment's draft.
CUSTOMER_FIELDS = ("first_name", "recommended_items")
#: Fields a ``next_best_action`` rule may test.
ACTION_FIELDS = ("base", "value_tier", "loyalty_tier", "sentiment_label")
MESSAGE_FIELDS = ("base", "next_best_action", "value_tier", "loyalty_tier")
#: Playbook sections read here; one missing from an edited playbook comes from the shipped one.
PERSONAL_SECTIONS = (
    "next_best_action",
    "offers",
    "greeting_name",
    "no_recommendations",
    "messages",
)


def check_template(template: object, where: str) -> str:
    """``template`` when it uses only plain :data:`MERGE_FIELDS`; else one line saying why."""
    if not isinstance(template, str):
        raise InputError(f"playbook {where} must be text")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"playbook {where} is not a valid template: {exc}") from exc
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in MERGE_FIELDS or spec or conversion:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            allowed = ", ".join("{" + f + "}" for f in MERGE_FIELDS)
            raise InputError(
                f"playbook {where} uses {shown}: only {allowed} are allowed (no attributes, "
                "indexes or formats)"
            )
    return template


class _KeepMissing(dict):
    """A merge mapping that leaves an unknown field as ``{name}`` for a later fill."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` (checked by :func:`check_template`) with ``values`` filled in; fields not
    in ``values`` stay as ``{name}``."""
    return template.format_map(_KeepMissing({k: str(v) for k, v in values.items()}))


def load_personalisation(path: str | None = None) -> dict[str, Any]:
    """The playbook (shipped or ``--playbook``) with its action rules and message templates
    checked, so a bad or hostile template stops the run before anything is computed."""
    playbook = load_playbook(path)
    if path is not None:
        # A playbook edited before these sections existed keeps working: the shipped ones fill in.
        shipped = load_playbook(None)
        for key in PERSONAL_SECTIONS:
            if key not in playbook:
                playbook[key] = shipped[key]
    nba = playbook.get("next_best_action")
    if not isinstance(nba, dict) or not isinstance(nba.get("rules"), list):
        raise InputError("playbook needs a 'next_best_action' object with a 'rules' list")
    vocabulary = nba.get("vocabulary") or {}
    default = nba.get("default")
    if default not in vocabulary:
        raise InputError(f"playbook next_best_action.default {default!r} is not in its vocabulary")
    for i, rule in enumerate(nba["rules"]):
        _check_when(rule, ACTION_FIELDS, f"next_best_action.rules[{i}]")
        if rule.get("action") not in vocabulary:
            raise InputError(
                f"playbook next_best_action.rules[{i}] action {rule.get('action')!r} is not one "
                f"of {', '.join(vocabulary)}"
            )
    for action, texts in (playbook.get("offers") or {}).items():
        for lang, text in (texts or {}).items():
            check_template(text, f"offers.{action}.{lang}")
    messages = playbook.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("playbook needs a non-empty 'messages' list")
    for i, rule in enumerate(messages):
        _check_when(rule, MESSAGE_FIELDS, f"messages[{i}]")
        for lang in LANGS:
            draft = rule.get(lang)
            if not isinstance(draft, dict):
                raise InputError(f"playbook messages[{i}] needs '{lang}' with subject and body")
            for part in ("subject", "body"):
                check_template(draft.get(part), f"messages[{i}].{lang}.{part}")
    return playbook


def _check_when(rule: object, fields: Sequence[str], where: str) -> None:
    when = rule.get("when", {}) if isinstance(rule, dict) else None
    if not isinstance(when, dict):
        raise InputError(f"playbook {where} needs a 'when' object")
    unknown = [k for k in when if k not in fields]
    if unknown:
        raise InputError(
            f"playbook {where} tests {', '.join(unknown)}; it may test {', '.join(fields)}"
        )


def _matches(when: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    for key, want in when.items():
        have = fields.get(key)
        if isinstance(want, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def next_best_action(playbook: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    """The action of the first ``next_best_action`` rule matching ``fields`` (``base``,
    ``value_tier``, ``loyalty_tier``, ``sentiment_label``), else the playbook's default."""
    nba = playbook["next_best_action"]
    for rule in nba["rules"]:
        if _matches(rule.get("when", {}), fields):
            return str(rule["action"])
    return str(nba["default"])


def top_topic(segment: Mapping[str, Any], lang: str = "en", n: int = 2) -> str:
    """What a segment talks about, for ``{top_topic}`` / ``{top_aspect}``: its top aspects when
    the profile has them (``aspects``: a list of names or of ``{"aspect": ...}``), else its top
    keywords; a neutral phrase when it has neither."""
    aspects = segment.get("aspects") or []
    names = [a.get("aspect") if isinstance(a, Mapping) else a for a in aspects]
    words = [str(a) for a in names if a] or [str(k) for k in segment.get("keywords") or []]
    return ", ".join(words[:n]) if words else NO_TOPIC.get(lang, NO_TOPIC["en"])


def offer_text(playbook: Mapping[str, Any], action: str, lang: str) -> str:
    texts = (playbook.get("offers") or {}).get(action) or {}
    return str(texts.get(lang) or texts.get("en") or "")


def message_rule(playbook: Mapping[str, Any], fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first ``messages`` rule matching ``fields``; the last rule is the fallback."""
    for rule in playbook["messages"]:
        if _matches(rule.get("when", {}), fields):
            return rule
    return playbook["messages"][-1]


def segment_fields(segment: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a segment-level rule tests: its base name and the tiers most members share."""
    return {
        "base": segment.get("base_name", ""),
        "value_tier": segment.get("value_tier"),
        "loyalty_tier": segment.get("loyalty_tier"),
    }


def segment_message(
    playbook: Mapping[str, Any], segment: Mapping[str, Any]
) -> tuple[str, dict[str, dict[str, str]]]:
    """A segment's ``next_best_action`` and its draft ``{lang: {subject, body}}`` in every
    language, segment-level fields filled, :data:`CUSTOMER_FIELDS` left as ``{name}``."""
    fields = segment_fields(segment)
    action = next_best_action(playbook, fields)
    rule = message_rule(playbook, {**fields, "next_best_action": action})
    drafts: dict[str, dict[str, str]] = {}
    for lang in LANGS:
        values = segment_values(playbook, segment, action, lang)
        drafts[lang] = {part: render(rule[lang][part], values) for part in ("subject", "body")}
    return action, drafts


def segment_values(
    playbook: Mapping[str, Any], segment: Mapping[str, Any], action: str, lang: str
) -> dict[str, str]:
    """The segment-level merge values in ``lang``."""
    topic = top_topic(segment, lang)
    return {
        "segment_name": str(segment.get("name", "")),
        "top_topic": topic,
        "top_aspect": topic,
        "offer": render(offer_text(playbook, action, lang), {}),
    }


def greeting_name(playbook: Mapping[str, Any], lang: str) -> str:
    """What ``{first_name}`` reads for a customer without a name (``there`` / ``bạn``)."""
    names = playbook.get("greeting_name") or {}
    return str(names.get(lang) or names.get("en") or "")
