"""Procedure answers saved into the resident's profile when an application is submitted or corrected.

A step mapped to an attribute or to the 受信設定 categories (its `profile_target`, checked by
residents/profile_targets.py) writes its answer through the residents' services, with the receipt
number as the source detail (never the answer). Connected to procedures' application_submitted
and application_resubmitted in residents/apps.py; the engine never sees the mapping.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError

from procedures.selectors import version_spec_data
from procedures.spec import PROFILE_TARGET_CATEGORIES, Step, parse_spec, profile_target_attribute_key
from residents.models import ProfileChange
from residents.profile_targets import YES_NO_VALUES
from residents.services import resident_attributes_set, resident_categories_set

logger = logging.getLogger(__name__)


def application_profile_apply(*, application, step_keys=None, now=None) -> None:
    """Write the answers of the application's mapped steps into its resident's profile.

    `step_keys` limits it to those steps (a correction writes only the answers it changed, so it
    never undoes what a later application set); `now` is when the answers were given (default:
    the submission). A test application or one without a resident (代理入力, simulator) changes
    no profile. Each target is written on its own: a mapping that no longer fits (an attribute
    changed since publishing) is skipped and logged without the answer, and never stops the
    application.
    """
    resident = application.resident
    if resident is None or application.is_test:
        return
    spec = parse_spec(version_spec_data(application.version))
    answers = application.answers if isinstance(application.answers, dict) else {}
    for step in spec.steps:
        answer = answers.get(step.key)
        if not step.profile_target or step.sensitive or answer is None:
            continue
        if step_keys is not None and step.key not in step_keys:
            continue
        try:
            _target_write(step, answer, resident=resident, application=application, now=now or application.submitted_at)
        except ValidationError:
            logger.warning(
                "profile target skipped: receipt=%s step=%s target=%s",
                application.receipt_number,
                step.key,
                step.profile_target,
            )


def _target_write(step: Step, answer, *, resident, application, now) -> None:
    common = {
        "resident": resident,
        "source": ProfileChange.Source.PROCEDURE,
        "source_detail": application.receipt_number,
        "now": now,
    }
    if step.profile_target == PROFILE_TARGET_CATEGORIES:
        resident_categories_set(category_keys=answer, **common)
        return
    if step.kind == "yes_no":
        answer = YES_NO_VALUES.get(answer, answer)
    key = profile_target_attribute_key(step.profile_target)
    resident_attributes_set(values={key: answer}, **common)


def on_application_submitted(sender, application, **kwargs) -> None:
    application_profile_apply(application=application)


def on_application_resubmitted(sender, application, changed_keys, at, **kwargs) -> None:
    application_profile_apply(application=application, step_keys=set(changed_keys), now=at)
