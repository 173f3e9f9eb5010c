"""A person's own account: name and email, and the password reset mail that uses the email."""

from __future__ import annotations

import email.policy
import logging
from email.message import Message
from email.policy import Policy
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)
User = get_user_model()

# RFC 5322 allows 998 characters on a line. Python's email package wraps at 78 by default,
# which forces quoted-printable on any longer line: the reset link then prints with "="
# soft breaks in it (console backend) and cannot be clicked or pasted as it is.
MAIL_LINE_LIMIT = 998


def email_in_use(address: str, *, other_than: AbstractBaseUser | None = None) -> bool:
    """Whether another account already has ``address`` (case-insensitive).

    Password resets are sent to every account with the address, so two accounts sharing
    one would each let the other's owner reset them.
    """
    accounts = User._default_manager.filter(email__iexact=address)
    if other_than is not None and other_than.pk is not None:
        accounts = accounts.exclude(pk=other_than.pk)
    return accounts.exists()


def clean_address(form: forms.ModelForm) -> str:
    """The form's ``email``, normalized, refused if another account uses it."""
    address = User._default_manager.normalize_email(form.cleaned_data.get("email") or "")
    if address and email_in_use(address, other_than=form.instance):
        raise forms.ValidationError(
            "Another account uses this address. Each account needs its own, since password "
            "reset links are sent to it."
        )
    return address


class AccountForm(forms.ModelForm):
    """Name and email. Changing the email needs the current password: whoever controls the
    address can reset the password, so a borrowed session must not be able to change it."""

    current_password = forms.CharField(
        label="Current password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Needed only when you change your email.",
    )

    class Meta:
        model = User
        fields = ["first_name", "last_name", "email"]
        labels = {"email": "Email"}
        help_texts = {"email": "Where password reset links are sent."}
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}

    def clean_email(self) -> str:
        return clean_address(self)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "email" in self.changed_data and not self.instance.check_password(
            cleaned.get("current_password") or ""
        ):
            self.add_error("current_password", "Enter your current password to change your email.")
        return cleaned


class LinkSafeEmail(EmailMultiAlternatives):
    """A mail whose lines are only wrapped where RFC 5322 requires it (998 characters).

    The body then goes out as 7bit (8bit when not ASCII) instead of quoted-printable, so a
    long link reaches the reader, or the console, in one piece.
    """

    def message(self, *, policy: Policy[Message[str, str]] | None = None) -> Any:
        base = policy if policy is not None else email.policy.default
        return super().message(policy=base.clone(max_line_length=MAIL_LINE_LIMIT))


class ResetForm(PasswordResetForm):
    """Django's password reset form, sending its mail as a ``LinkSafeEmail``."""

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        # A subject is one line, whatever the template's trailing newline.
        subject = " ".join(render_to_string(subject_template_name, context).split())
        mail = LinkSafeEmail(
            subject, render_to_string(email_template_name, context), from_email, [to_email]
        )
        if html_email_template_name:
            html = render_to_string(html_email_template_name, context)
            mail.attach_alternative(html, "text/html")
        try:
            mail.send()
        except Exception:
            # Same as Django: the page never says whether an address has an account, so a
            # mail that cannot be sent is logged, not shown.
            logger.exception("Password reset mail to user %s not sent", context["user"].pk)
