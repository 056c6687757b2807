"""The Teams sink: a Power Automate "Workflows" webhook message carrying one Adaptive Card per revision.

The body is what the "When a Teams webhook request is received" flow expects
(https://learn.microsoft.com/en-us/connectors/teams/?tabs=text1#microsoft-teams-webhook): a ``message`` with
one attachment of content type ``application/vnd.microsoft.card.adaptive`` whose ``content`` is an
Adaptive Card (``type: AdaptiveCard``, ``version`` 1.4, ``body`` of a title TextBlock, a FactSet and the
rule's text). The flow answers 202 Accepted. The URL carries its signature (``sig=``): ``url_file`` or
``url_env`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from engine.alerts.sinks.base import SinkOptions
from engine.alerts.sinks.chat import Message, clip, message
from engine.alerts.sinks.http import SecretUrlOptions, SecretUrlSink

CARD_VERSION = "1.4"  # what Teams renders on every client (1.5 is desktop/web only)
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def card(msg: Message) -> dict[str, Any]:
    """The Adaptive Card for one message."""
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": clip(msg.title, 300), "weight": "Bolder",
                                   "size": "Medium", "wrap": True}]
    if msg.facts:
        body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in msg.facts]})
    if msg.text:
        body.append({"type": "TextBlock", "text": clip(msg.text, 3000), "wrap": True})
    if msg.footer:
        body.append({"type": "TextBlock", "text": msg.footer, "isSubtle": True, "size": "Small", "wrap": True})
    return {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}


def workflow_message(msg: Message) -> dict[str, Any]:
    """The webhook body: one ``message`` with the card as its only attachment."""
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                                                "content": card(msg)}]}


@dataclass(kw_only=True)
class TeamsOptions(SecretUrlOptions):
    """``alerts.sinks[]`` options of ``type: teams``."""

    deliver: str = "cases"


class TeamsSink(SecretUrlSink):
    type_name = "teams"
    summary = "Microsoft Teams Workflows webhook, one Adaptive Card per alert / case revision"
    Options: ClassVar[type[SinkOptions]] = TeamsOptions

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self.post(workflow_message(message("alert", payload)))

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self.post(workflow_message(message("case", payload)))

    def send_notice(self, notice: Mapping[str, Any]) -> None:
        self.post(workflow_message(message("notice", notice)))
