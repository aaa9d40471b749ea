"""What a browser does with the admin pages, for tests that drive the admin as staff do."""

from django.contrib.messages import get_messages

from procedures.admin_forms import TermsField


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def form_data(response) -> dict:
    """The POST data the browser would send for an admin add/change form as it was rendered."""
    data: dict = {}

    def add(form, prefix=""):
        for name, field in form.fields.items():
            if field.disabled:
                continue
            key = f"{prefix}{name}"
            value = form[name].value()
            if isinstance(field, TermsField):
                for index, (step, factor) in enumerate(field.widget.rows(value)):
                    data[f"{key}_{index}_step"] = step
                    data[f"{key}_{index}_factor"] = factor
                continue
            if value is None or value is False:
                continue
            data[key] = "on" if value is True else value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value()
        for form in formset.forms:
            add(form, f"{form.prefix}-")
    return data
