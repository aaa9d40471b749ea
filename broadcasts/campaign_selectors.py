"""Reads for push-and-confirm campaigns: result counts, the per-recipient list, the export rows."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from broadcasts.models import Campaign, CampaignRecipient

RESULT_HEADERS = ("行番号", "照合キー", "照合", "回答", "回答日時", "受付番号", "送信日時", "再通知日時")


@dataclass(frozen=True)
class CampaignCounts:
    total: int
    unmatched: int
    pushed: int
    yes: int
    no: int
    none: int  # matched and not answered (pushed or not)


def campaign_counts(*, campaign: Campaign) -> CampaignCounts:
    answer = CampaignRecipient.Answer
    counts = CampaignRecipient.objects.filter(campaign=campaign).aggregate(
        total=Count("pk"),
        unmatched=Count("pk", filter=Q(resident__isnull=True)),
        pushed=Count("pk", filter=Q(pushed_at__isnull=False)),
        yes=Count("pk", filter=Q(answer=answer.YES)),
        no=Count("pk", filter=Q(answer=answer.NO)),
        none=Count("pk", filter=Q(answer=answer.NONE, resident__isnull=False)),
    )
    return CampaignCounts(**counts)


def campaign_recipients(*, campaign: Campaign) -> QuerySet[CampaignRecipient]:
    return (
        CampaignRecipient.objects.filter(campaign=campaign).select_related("application").order_by("row_number", "pk")
    )


def _when(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}" if moment else ""


def result_row(recipient: CampaignRecipient) -> list[str]:
    """One recipient in words, in the order of RESULT_HEADERS."""
    matched = recipient.resident_id is not None
    return [
        str(recipient.row_number),
        recipient.match_value,
        _("照合済み") if matched else _("該当する住民なし"),
        recipient.get_answer_display() if matched else "",
        _when(recipient.answered_at),
        recipient.application.receipt_number if recipient.application_id else "",
        _when(recipient.pushed_at),
        _when(recipient.reminded_at),
    ]


def campaign_result_rows(*, campaign: Campaign) -> list[list[str]]:
    return [result_row(recipient) for recipient in campaign_recipients(campaign=campaign).iterator(chunk_size=2000)]
