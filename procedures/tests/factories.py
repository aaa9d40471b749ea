"""factory-boy factories for the procedures app, shared by every test module.

Steps, choices and computed values can only be written while their version is
a draft (the models refuse otherwise), so the factories build drafts; publish
with `services.version_publish` (or `published_version()` below) afterwards.

    version = ProcedureVersionFactory()                 # a draft of a new procedure
    item = SingleChoiceStepFactory(version=version, key="item", label="品目")
    StepChoiceFactory(step=item, value="tansu", label="タンス")
    NumberStepFactory(version=version, condition={"step": "item", "op": "equals", "value": "tansu"})
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.db.models import Max
from django.utils import timezone

from procedures import models
from staff.models import Department


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department
        django_get_or_create = ("code",)

    name = factory.Sequence(lambda n: f"部署{n}")
    code = factory.Sequence(lambda n: f"dept{n}")


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A staff member who may do everything (roles come later); pass is_superuser=False for a plain one."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.jp")
    is_staff = True
    is_superuser = True
    is_active = True
    password = factory.django.Password("correct horse battery staple")


class ProcedureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Procedure

    name = factory.Sequence(lambda n: f"テスト手続き{n}")
    description = ""
    keywords = factory.Sequence(lambda n: f"テスト{n}")
    receipt_prefix = factory.Sequence(lambda n: f"T{n:04d}")
    department = None
    is_open = False


def _next_version_number(version) -> int:
    last = models.ProcedureVersion.objects.filter(procedure=version.procedure).aggregate(last=Max("number"))["last"]
    return (last or 0) + 1


class ProcedureVersionFactory(factory.django.DjangoModelFactory):
    """A draft version (the default); the number continues the procedure's numbering."""

    class Meta:
        model = models.ProcedureVersion

    procedure = factory.SubFactory(ProcedureFactory)
    number = factory.LazyAttribute(_next_version_number)
    status = models.ProcedureVersion.Status.DRAFT


def _next_position(step) -> int:
    last = models.Step.objects.filter(version=step.version).aggregate(last=Max("position"))["last"]
    return (last or 0) + 10


class StepFactory(factory.django.DjangoModelFactory):
    """Base for the per-kind factories: placed after the version's last step."""

    class Meta:
        model = models.Step
        abstract = True

    version = factory.SubFactory(ProcedureVersionFactory)
    position = factory.LazyAttribute(_next_position)
    key = factory.Sequence(lambda n: f"step_{n}")
    label = factory.Sequence(lambda n: f"質問{n}")
    help_text = ""
    required = True
    sensitive = False
    condition = None


class MessageStepFactory(StepFactory):
    class Meta:
        model = models.MessageStep


class ShortTextStepFactory(StepFactory):
    class Meta:
        model = models.ShortTextStep


class LongTextStepFactory(StepFactory):
    class Meta:
        model = models.LongTextStep


class NumberStepFactory(StepFactory):
    class Meta:
        model = models.NumberStep


class DateStepFactory(StepFactory):
    class Meta:
        model = models.DateStep


class ChoiceStepFactory(StepFactory):
    """Pass `choices=[("tansu", "タンス", 1200), ...]` (value, label[, amount]) to add choices."""

    class Meta:
        model = models.Step
        abstract = True
        skip_postgeneration_save = True

    @factory.post_generation
    def choices(step, create, extracted, **kwargs):  # noqa: N805
        if not create or not extracted:
            return
        for position, item in enumerate(extracted, start=1):
            value, label, *rest = item
            StepChoiceFactory(step=step, position=position, value=value, label=label, amount=rest[0] if rest else 0)


class SingleChoiceStepFactory(ChoiceStepFactory):
    class Meta:
        model = models.SingleChoiceStep


class MultipleChoiceStepFactory(ChoiceStepFactory):
    class Meta:
        model = models.MultipleChoiceStep


class YesNoStepFactory(StepFactory):
    class Meta:
        model = models.YesNoStep


class ImageStepFactory(StepFactory):
    class Meta:
        model = models.ImageStep


class LocationStepFactory(StepFactory):
    class Meta:
        model = models.LocationStep


class ConfirmationStepFactory(StepFactory):
    class Meta:
        model = models.ConfirmationStep

    label = "入力内容を確認してください。"


class CompletionStepFactory(StepFactory):
    class Meta:
        model = models.CompletionStep

    label = "受け付けました。"


class ExitStepFactory(StepFactory):
    class Meta:
        model = models.ExitStep

    label = "この手続きの対象外です。"


# kind -> factory, in the order of models.STEP_MODELS.
STEP_FACTORIES: dict[str, type[StepFactory]] = {
    "message": MessageStepFactory,
    "short_text": ShortTextStepFactory,
    "long_text": LongTextStepFactory,
    "number": NumberStepFactory,
    "date": DateStepFactory,
    "single_choice": SingleChoiceStepFactory,
    "multiple_choice": MultipleChoiceStepFactory,
    "yes_no": YesNoStepFactory,
    "image": ImageStepFactory,
    "location": LocationStepFactory,
    "confirmation": ConfirmationStepFactory,
    "completion": CompletionStepFactory,
    "exit": ExitStepFactory,
}
assert set(STEP_FACTORIES) == set(models.STEP_MODELS)


def step_create(kind: str, **fields) -> models.Step:
    """A step of any kind by name, e.g. step_create("number", version=v, key="count")."""
    return STEP_FACTORIES[kind](**fields)


class StepChoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.StepChoice

    step = factory.SubFactory(SingleChoiceStepFactory)
    position = factory.Sequence(lambda n: n)
    value = factory.Sequence(lambda n: f"choice_{n}")
    label = factory.Sequence(lambda n: f"選択肢{n}")
    amount = 0


class ComputedValueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ComputedValue

    version = factory.SubFactory(ProcedureVersionFactory)
    position = factory.Sequence(lambda n: n)
    key = factory.Sequence(lambda n: f"computed_{n}")
    label = factory.Sequence(lambda n: f"計算{n}")
    unit = "円"
    constant = 0
    terms = factory.LazyFunction(list)


class ApplicationFactory(factory.django.DjangoModelFactory):
    """An application; `version` defaults to a published version of a small valid procedure."""

    class Meta:
        model = models.Application

    version = factory.LazyFunction(lambda: published_version())
    procedure = factory.LazyAttribute(lambda application: application.version.procedure)
    receipt_number = factory.Sequence(lambda n: f"FACT-2026-{n:06d}")
    line_user_id = factory.Sequence(lambda n: f"U{n:032x}")
    submission_key = factory.Sequence(lambda n: f"submission-{n}")
    answers = factory.LazyFunction(dict)
    computed = factory.LazyFunction(dict)
    is_test = False
    submitted_at = factory.LazyFunction(timezone.now)


# --------------------------------------------------------------------------
# Whole procedures
# --------------------------------------------------------------------------


def valid_draft(version: models.ProcedureVersion | None = None, **procedure_fields) -> models.ProcedureVersion:
    """A draft that can be published: a choice, a conditional question, a confirmation and a completion.

    Keys: item (single choice tansu/bed/other), reason (long text, only for "other"),
    count (number), name (sensitive short text), confirm, done.
    """
    if version is None:
        version = ProcedureVersionFactory(procedure=ProcedureFactory(**procedure_fields))
    SingleChoiceStepFactory(
        version=version,
        key="item",
        label="品目",
        choices=[("tansu", "タンス", 1200), ("bed", "ベッド", 1000), ("other", "その他", 0)],
    )
    LongTextStepFactory(
        version=version, key="reason", label="品目の説明", condition={"step": "item", "op": "equals", "value": "other"}
    )
    NumberStepFactory(version=version, key="count", label="個数", min_value=1, max_value=5, unit="点")
    ShortTextStepFactory(version=version, key="name", label="お名前", sensitive=True)
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    ComputedValueFactory(
        version=version, key="fee", label="手数料", unit="円", terms=[{"step": "item", "factor": 1}]
    )
    return version


def published_version(version: models.ProcedureVersion | None = None, user=None, **procedure_fields):
    """Publish `version` (default: a new valid_draft()) through the real service; returns it published."""
    from procedures.services import version_publish

    version = version or valid_draft(**procedure_fields)
    return version_publish(version=version, user=user)
