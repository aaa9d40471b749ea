"""Factories for residents' profiles: residents, categories, attributes."""

import factory

from residents.models import Attribute, Category, Resident


class ResidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Resident

    line_user_id = factory.Sequence(lambda n: f"U{n:032x}")
    display_name = factory.Sequence(lambda n: f"住民{n}")


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"category_{n}")
    name = factory.Sequence(lambda n: f"分野{n}")
    position = factory.Sequence(lambda n: n)


class AttributeFactory(factory.django.DjangoModelFactory):
    """Pass `choices=[("north", "北地区"), ...]` (value, label) for the choice kinds."""

    class Meta:
        model = Attribute

    key = factory.Sequence(lambda n: f"attribute_{n}")
    label = factory.Sequence(lambda n: f"属性{n}")
    kind = Attribute.Kind.TEXT
    position = factory.Sequence(lambda n: n)

    @factory.lazy_attribute
    def choices(self):
        return []

    @classmethod
    def _adjust_kwargs(cls, **kwargs):
        kwargs["choices"] = [
            choice if isinstance(choice, dict) else {"value": choice[0], "label": choice[1]}
            for choice in kwargs.get("choices") or []
        ]
        return kwargs
