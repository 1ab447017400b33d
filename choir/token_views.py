"""The signed-in user's API tokens: list, issue (shown once), revoke."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from choir.access import Singer, display_name
from choir.models import ApiToken, Room
from choir.protocol import Refusal
from choir.selectors import visible_rooms
from choir.services import tokens as token_services


class TokenForm(forms.Form):
    name = forms.CharField(max_length=token_services.NAME_MAX, help_text="What the token is for: “deploy bot”.")
    rooms = forms.ModelMultipleChoiceField(
        queryset=Room.objects.none(), required=False, help_text="Leave empty for every room you may see."
    )
    read_only = forms.BooleanField(required=False, help_text="May follow rooms, never post.")
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Leave empty for a token that does not expire."
    )

    def __init__(self, *args, user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rooms"].queryset = visible_rooms(user).order_by("title")


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    singer = Singer(user=request.user, name=display_name(request.user))
    issued = None
    if request.method == "POST":
        form = TokenForm(request.POST, user=request.user)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                row, issued = token_services.token_issue(
                    user=request.user,
                    name=form.cleaned_data["name"],
                    actor=singer,
                    rooms=form.cleaned_data["rooms"],
                    read_only=form.cleaned_data["read_only"],
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                )
            except Refusal as refusal:
                form.add_error(None, refusal.detail)
            else:
                # Rendered, not redirected: the token is shown this once and never stored.
                form = TokenForm(user=request.user)
    else:
        form = TokenForm(user=request.user)
    rows = ApiToken.objects.filter(user=request.user).prefetch_related("rooms")
    response = render(request, "choir/tokens.html", {"form": form, "tokens": rows, "issued": issued})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(ApiToken, pk=pk, user=request.user)
    token_services.token_revoke(token=row, actor=Singer(user=request.user, name=display_name(request.user)))
    return redirect("tokens")
