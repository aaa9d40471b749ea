"""django-q2 tasks of push-and-confirm campaigns: thin, they take ids and call one service."""

from broadcasts import campaigns


def push_campaign(campaign_id: int) -> dict:
    run = campaigns.campaign_push(campaign_id=campaign_id)
    return {"pushed": run.pushed, "unreachable": run.unreachable}


def remind_campaigns() -> dict:
    run = campaigns.campaign_reminders_send()
    return {"pushed": run.pushed, "unreachable": run.unreachable}
