from django import forms
from django.utils.translation import gettext_lazy as _


class CodeForm(forms.Form):
    token = forms.RegexField(
        label=_("確認コード（6桁）"),
        regex=r"^\s*\d{6}\s*$",
        error_messages={
            "required": _("認証アプリに表示されている6桁の数字を入力してください。"),
            "invalid": _("確認コードは6桁の数字です。認証アプリに表示されている数字をそのまま入力してください。"),
        },
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )

    def clean_token(self):
        return self.cleaned_data["token"].strip()
