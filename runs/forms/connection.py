"""Forms of the Runflow connection page. Keys and secrets are write-only fields.

The secret fields use ``PasswordInput(render_value=False)``: when a form is shown again
after an error, the key the admin typed is never written back into the page.
"""

from __future__ import annotations

from typing import Any

from django import forms

from runs.connection import endpoints


def _secret_widget(placeholder: str) -> forms.PasswordInput:
    return forms.PasswordInput(
        render_value=False,
        attrs={
            "autocomplete": "off",
            "spellcheck": "false",
            "autocapitalize": "off",
            "placeholder": placeholder,
        },
    )


class KeyField(forms.CharField):
    """A pasted API key: whitespace around it (a copy-paste habit) is dropped."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 256)
        kwargs.setdefault("widget", _secret_widget("rf_live_…"))
        super().__init__(strip=True, **kwargs)

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if value and not value.startswith("rf_"):
            raise forms.ValidationError(
                "A Runflow API key starts with rf_live_ or rf_svc_: copy the whole key from "
                "Runflow's dashboard (Settings → API Keys)."
            )
        if value and any(ch.isspace() for ch in value):
            raise forms.ValidationError("A key has no spaces inside: paste it again.")
        return value


class ConnectKeyForm(forms.Form):
    label = forms.CharField(
        max_length=100,
        initial="Main",
        help_text="How the team will recognize this key, e.g. “Production”.",
    )
    api_url = forms.ChoiceField(
        label="Endpoint", help_text="Where the key is sent. Only these are allowed."
    )
    api_key = KeyField(
        label="API key",
        help_text="Checked with Runflow at once, then stored encrypted and never shown again.",
    )
    make_default = forms.BooleanField(
        label="Use it for the team's runs (default key)", required=False
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["api_url"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(e.url, e.label) for e in endpoints.endpoints()]
        field.initial = endpoints.default_endpoint()


class ReenterKeyForm(forms.Form):
    api_key = KeyField(label="API key")


class PasteSecretForm(forms.Form):
    secret = forms.CharField(
        label="Callback secret",
        max_length=512,
        strip=True,
        widget=_secret_widget("whsec_…"),
        help_text="Made in Runflow's dashboard; shown there only once.",
    )
