"""What Choir's admin pages share: the person acting, and the page that asks before a destructive action."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from choir.access import Singer, display_name


def staff_singer(request: HttpRequest) -> Singer:
    return Singer(user=request.user, name=display_name(request.user))


def confirmed(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset, *, action: str, question: str, consequence: str
) -> TemplateResponse | None:
    """None once the person has said yes; until then, the page that asks."""
    if request.POST.get("post") == "yes":
        return None
    return TemplateResponse(
        request,
        "admin/choir/confirm_action.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Are you sure?",
            "question": question,
            "consequence": consequence,
            "items": list(queryset),
            "action": action,
            "opts": modeladmin.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        },
    )
