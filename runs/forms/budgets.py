"""Forms for budgets, per-model policy and the retention rule (team admins only)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from runs.forms.launch import clean_model_id, drop_null_character_check
from runs.models import Membership, Role, Team

MONEY_HELP = "US dollars, as Runflow bills. Leave empty for no limit."


def _money_field(label: str, help_text: str = MONEY_HELP) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=Decimal(0),
        max_value=Decimal("99999999"),
        decimal_places=2,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"}),
    )


class _MoneyForm(forms.ModelForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Stored with four decimals; shown as dollars and cents.
        for name, value in list(self.initial.items()):
            if isinstance(value, Decimal):
                self.initial[name] = value.quantize(Decimal("0.01"))


class TeamBudgetForm(_MoneyForm):
    monthly_budget = _money_field("Team monthly budget")
    confirm_threshold = _money_field(
        "Ask for confirmation above",
        "A launch estimated above this amount asks “Launch anyway?”. Empty: never ask.",
    )

    class Meta:
        model = Team
        fields = ["monthly_budget", "confirm_threshold"]


class MemberBudgetForm(_MoneyForm):
    monthly_budget = _money_field("Monthly budget")

    class Meta:
        model = Membership
        fields = ["monthly_budget"]


class ModelPolicyForm(forms.Form):
    model_id = forms.CharField(
        label="Model",
        max_length=300,
        help_text="The model id, e.g. google/nano-banana-pro.",
        widget=forms.TextInput(attrs={"list": "catalog-models", "autocomplete": "off"}),
    )
    allowed = forms.TypedChoiceField(
        label="In this team",
        choices=[("1", "Allowed"), ("0", "Not allowed")],
        coerce=lambda value: value == "1",
        initial="1",
    )
    min_role = forms.ChoiceField(
        label="Who may launch it",
        choices=[
            (Role.MEMBER, "Members and admins"),
            (Role.ADMIN, "Admins only"),
        ],
        initial=Role.MEMBER,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A NUL is just one more character a model id cannot hold: one message for all.
        drop_null_character_check(self.fields["model_id"])

    def clean_model_id(self) -> str:
        """The launch form's rule: any well-formed id, listed in the catalog or not.

        A policy may name a model the catalog does not list (yet): such models can be
        launched by id, so they must be governable too. Anything else (markup, "../",
        spaces) is refused here rather than stored and shown on every budgets page.
        """
        try:
            return clean_model_id(self.cleaned_data["model_id"])
        except forms.ValidationError:
            raise forms.ValidationError(
                "This is not a model id. A model id is a slash path such as "
                "google/nano-banana-pro: letters, digits, dots, dashes and underscores."
            ) from None


class RetentionForm(forms.ModelForm):
    retention_days = forms.IntegerField(
        label="Delete archived media older than (days)",
        required=False,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Empty: keep everything. Counted from when each run was launched.",
        widget=forms.NumberInput(attrs={"min": "1", "max": "3650"}),
    )
    retention_delete_runs = forms.BooleanField(
        label="Also delete the runs themselves (inputs, logs, history)",
        required=False,
    )

    class Meta:
        model = Team
        fields = ["retention_days", "retention_delete_runs"]
